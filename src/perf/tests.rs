//! The measured catalog against its source, speed vectors, memory feasibility.

use super::*;
use crate::gpu;

#[test]
fn catalog_has_32_workloads_and_matches_the_csv() {
    assert_eq!(catalog().len(), 32);
    assert_eq!(models().len(), 8);
    // The embedded table must equal the shared data it cites, when the data is there.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/datasets/miso-a100/mig_iteration_time.csv"
    );
    let Ok(mut rdr) = csv::Reader::from_path(path) else {
        panic!("{path} is missing: the tests read the shared MISO data");
    };
    let mut rows = 0;
    for rec in rdr.records() {
        let f = rec.unwrap();
        let w = workload(&format!("{}_train{}", &f[0], &f[1])).unwrap();
        let k = A100_PROFILES.iter().position(|p| *p == &f[2]).unwrap();
        assert_eq!(w.iter_s[k], Some(f[3].parse::<f64>().unwrap()), "{f:?}");
        rows += 1;
    }
    let present: usize = catalog()
        .iter()
        .map(|w| w.iter_s.iter().flatten().count())
        .sum();
    assert_eq!(rows, present, "no measurement beyond the CSV");
}

#[test]
fn speeds_are_relative_to_the_whole_gpu() {
    let w = workload("bert_train8").unwrap();
    let p = w.perf();
    assert_eq!(p.speed[4], Some(1.0));
    assert!((p.speed[2].unwrap() - 0.12069 / 0.23347).abs() < 1e-12);
    assert_eq!(p.speed[0], None, "bert 8 does not fit 1g.5gb");
    let a100 = gpu::gpu("a100-40gb").unwrap();
    let (i3, _) = a100.profile("3g.20gb").unwrap();
    assert_eq!(p.speed_on(a100, i3), p.speed[2]);
    // On an A30 the whole GPU is 4g: speeds are renormalised to it.
    let a30 = gpu::gpu("a30").unwrap();
    let (i4, _) = a30.profile("4g.24gb").unwrap();
    assert_eq!(p.speed_on(a30, i4), Some(1.0));
    let e = workload("bert_train3").unwrap_err().to_string();
    assert!(e.contains("bert_train3") && e.contains("resnet"), "{e}");
}

#[test]
fn memory_need_excludes_small_profiles() {
    let a100 = gpu::gpu("a100-40gb").unwrap();
    let p = JobPerf {
        speed: [Some(0.2), Some(0.4), Some(0.6), Some(0.7), Some(1.0)],
        memory_mb: Some(9000),
    };
    let (i1, _) = a100.profile("1g.5gb").unwrap();
    let (i2, _) = a100.profile("2g.10gb").unwrap();
    assert_eq!(p.speed_on(a100, i1), None);
    assert_eq!(p.speed_on(a100, i2), Some(0.4));
    let bad = JobPerf {
        speed: [Some(-1.0), None, None, None, Some(1.0)],
        memory_mb: None,
    };
    assert!(bad
        .validate("jobs[0]")
        .unwrap_err()
        .to_string()
        .contains("jobs[0].speeds.1g"));
}
