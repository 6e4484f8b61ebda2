//! Simulator throughput: the MISO trace on 8 A100s under MISO, the Philly week (3,324
//! single-GPU jobs) on 64 A100s, and the scale case: 80,000 synthetic jobs on 1,000 A100s under
//! every policy (target: under 10 s and 1 GB each; `miso simulate --synthetic 80000
//! --mean-interarrival-s 3 --gpus 1000 --policy P` measures the same with /usr/bin/time).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

use miso::gpu;
use miso::predictor::{data, Predictor};
use miso::sim::{scenario, trace};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ds = data::load(&root.join("../shared/datasets/miso-a100")).expect("MISO data");
    let model_dir = root.join("models/default");
    let load = move || Predictor::load(&model_dir).map_err(|e| e.to_string());
    let model = gpu::gpu("a100-40gb").expect("a100");
    let env = |gpus| scenario::Env::artifact(model, gpus, &ds, &load);
    let opts = trace::LoadOptions::default();
    let miso_trace = trace::load_miso(
        &root.join("../shared/datasets/miso-a100/trace_100.json"),
        &opts,
    )
    .expect("trace");
    let philly = trace::load(
        &root.join("../shared/datasets/traces/philly_week_20171127_1gpu.csv"),
        &trace::Format::philly(),
        &opts,
    )
    .expect("philly")
    .jobs;
    let e8 = env(8);
    c.bench_function("sim/miso_trace_8gpus/miso", |b| {
        b.iter(|| scenario::run_named("miso", &miso_trace, &e8, &mut |_| {}).expect("runs"))
    });
    let e64 = env(64);
    for p in ["nopart", "miso", "ours"] {
        c.bench_function(&format!("sim/philly_3324jobs_64gpus/{p}"), |b| {
            b.iter(|| scenario::run_named(p, &philly, &e64, &mut |_| {}).expect("runs"))
        });
    }
    let big = trace::synthetic(80_000, 3.0, 600.0, 4.0 * 3600.0, 1);
    let e1000 = env(1000);
    for p in scenario::POLICIES {
        c.bench_function(&format!("sim/synthetic_80000jobs_1000gpus/{p}"), |b| {
            b.iter(|| scenario::run_named(p, &big, &e1000, &mut |_| {}).expect("runs"))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
