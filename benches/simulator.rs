//! Simulator throughput: the MISO trace on 8 A100s under MISO, and the full Philly week
//! (3,324 single-GPU jobs) on 1,000 A100s under NoPart and MISO.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

use miso::gpu;
use miso::policy::Overheads;
use miso::predictor::{data, Predictor};
use miso::sim::{scenario, trace};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ds = data::load(&root.join("../shared/datasets/miso-a100")).expect("MISO data");
    let model_dir = root.join("models/default");
    let load = move || Predictor::load(&model_dir).map_err(|e| e.to_string());
    let model = gpu::gpu("a100-40gb").expect("a100");
    let env = |gpus| scenario::Env {
        model,
        gpus,
        seed: 1,
        data: &ds,
        predictor: &load,
        overheads: Overheads::default(),
        mps_max_jobs: 3,
    };
    let miso_trace = trace::load_miso(
        &root.join("../shared/datasets/miso-a100/trace_100.json"),
        60.0,
        1,
    )
    .expect("trace");
    let philly = trace::load_philly(
        &root.join("../shared/datasets/traces/philly_week_20171127_1gpu.csv"),
        1,
        1.0,
    )
    .expect("philly");
    let e8 = env(8);
    c.bench_function("sim/miso_trace_8gpus/miso", |b| {
        b.iter(|| scenario::run_named("miso", &miso_trace, &e8, &mut |_| {}).expect("runs"))
    });
    let e1000 = env(1000);
    for p in ["nopart", "miso"] {
        c.bench_function(&format!("sim/philly_3324jobs_1000gpus/{p}"), |b| {
            b.iter(|| scenario::run_named(p, &philly, &e1000, &mut |_| {}).expect("runs"))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
