//! Predictor inference: one MPS matrix (a mix of up to 7 jobs) → speeds on every profile, for
//! each architecture. The shipped default model (mlp ensemble) is loaded from models/default;
//! the others are trained here on the MISO data (the U-Net for one epoch only: inference cost
//! does not depend on training length).

use criterion::{criterion_group, criterion_main, Criterion};
use indicatif::ProgressBar;

use miso::predictor::{self, data, Arch, Predictor, TrainConfig};

fn bench(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets/miso-a100");
    let ds = data::load(std::path::Path::new(dir)).expect("MISO data in ../shared");
    let split = ds.random_split(0.2, 1);
    let m = ds.samples[split.val[0]].mps.clone();
    let default = Predictor::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/default"
    )))
    .expect("models/default");
    c.bench_function("predict_mix/mlp-ensemble-default", |b| {
        b.iter(|| default.predict(std::hint::black_box(&m)))
    });
    for arch in [Arch::Linear, Arch::Tree, Arch::Knn, Arch::Unet] {
        let mut cfg = TrainConfig::new(arch);
        cfg.epochs = Some(1);
        let p = predictor::train(&ds, &split, &cfg, &ProgressBar::hidden()).expect("trains");
        c.bench_function(&format!("predict_mix/{}", arch.name()), |b| {
            b.iter(|| p.predict(std::hint::black_box(&m)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
