//! The engine's accounting and the artifact's policy rules on hand-checkable scenarios.

use super::*;
use crate::gpu;
use crate::policy::{
    MpsOnly, MpsPlacement, MpsSource, MpsSpeeds, NoPart, Overheads, Static, StaticBest,
};

fn wl(workload: &str) -> usize {
    let w = crate::perf::workload(workload).unwrap();
    crate::perf::catalog()
        .iter()
        .position(|x| x.name == w.name)
        .unwrap()
}

fn job(name: &str, at: f64, work: f64, workload: &str) -> TraceJob {
    TraceJob::new(name, at, work, wl(workload))
}

fn events() -> EngineOptions {
    EngineOptions { tick_s: 0.0 }
}

fn a100() -> &'static crate::gpu::GpuModel {
    gpu::gpu("a100-40gb").unwrap()
}

#[test]
fn nopart_queues_fifo_and_accounts_exactly() {
    let g = a100();
    let trace = vec![
        job("a", 0.0, 100.0, "resnet_train64"),
        job("b", 10.0, 50.0, "bert_train8"),
        job("c", 20.0, 10.0, "gnn_train64"),
    ];
    let o = run(&mut NoPart, &trace, g, 1, &events(), &mut |_| {}).unwrap();
    // a: 0..100, b: 100..150, c: 150..160.
    assert_eq!(o.jct_s, vec![100.0, 140.0, 140.0]);
    assert_eq!(o.metrics.makespan_s, 160.0);
    assert!((o.metrics.avg_queue_s - (0.0 + 90.0 + 130.0) / 3.0).abs() < 1e-9);
    assert!((o.metrics.avg_jrt_s - (100.0 + 50.0 + 10.0) / 3.0).abs() < 1e-9);
    assert!((o.metrics.gpu_utilization - 1.0).abs() < 1e-9);
    assert!((o.metrics.avg_stp - 160.0 / 160.0).abs() < 1e-9);
    // Two GPUs: a on GPU 0, b on GPU 1 from 10 to 60; c waits for b: 60..70.
    let o = run(&mut NoPart, &trace, g, 2, &events(), &mut |_| {}).unwrap();
    assert_eq!(o.jct_s, vec![100.0, 50.0, 50.0]);
}

#[test]
fn ticks_delay_reactions_to_the_next_round() {
    // The artifact's loop: a job arriving at 3 s is noticed at 10 s; a GPU freed at 105 s is
    // reused at 110 s.
    let g = a100();
    let trace = vec![
        job("a", 3.0, 95.0, "resnet_train64"),
        job("b", 4.0, 50.0, "bert_train8"),
    ];
    let o = run(
        &mut NoPart,
        &trace,
        g,
        1,
        &EngineOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    // a: 10..105; b: 110..160. JCT from the trace arrival.
    assert_eq!(o.jct_s, vec![102.0, 156.0]);
    assert_eq!(o.metrics.makespan_s, 160.0);
}

#[test]
fn artifact_static_takes_the_largest_idle_slice_and_promotes() {
    let g = a100();
    let layout = scenario::default_static_layout(g);
    assert_eq!(layout.label(g), "2g.10gb@0,2g.10gb@2,3g.20gb@4");
    let mut p = Static {
        layout,
        overheads: Overheads::default(),
        promote: true,
    };
    // a takes the 3g, b a 2g; when a finishes, b is promoted to the 3g after its restore.
    let trace = vec![
        job("a", 0.0, 100.0, "resnet_train64"),
        job("b", 0.0, 400.0, "resnet_train64"),
    ];
    let o = run(&mut p, &trace, g, 1, &events(), &mut |_| {}).unwrap();
    let w = crate::perf::workload("resnet_train64").unwrap();
    let s3 = w.iter_s[4].unwrap() / w.iter_s[2].unwrap();
    let s2 = w.iter_s[4].unwrap() / w.iter_s[1].unwrap();
    let a_end = 100.0 / s3;
    assert!(
        (o.jct_s[0] - a_end).abs() < 1e-6,
        "{} vs {a_end}",
        o.jct_s[0]
    );
    // b: 2g until a ends, promoted in that round: 1 s wait + 9 s resnet restore, then 3g.
    let done_on_2g = a_end * s2;
    let b_end = a_end + 1.0 + 9.0 + (400.0 - done_on_2g) / s3;
    assert!(
        (o.jct_s[1] - b_end).abs() < 1e-6,
        "{} vs {b_end}",
        o.jct_s[1]
    );
    assert!((o.metrics.restarts_per_job - 0.5).abs() < 1e-9);
    // A job that fits no slice of a layout can never run.
    let l = gpu::parse_valid_layout(g, "1g.5gb@0").unwrap();
    let trace = vec![job("a", 0.0, 100.0, "bert_train8")];
    let e = run(
        &mut StaticBest::new(l),
        &trace,
        g,
        1,
        &events(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("can never run"), "{e}");
}

fn dataset() -> crate::predictor::Dataset {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate::predictor::data::load(&root.join("../shared/datasets/miso-a100")).unwrap()
}

#[test]
fn mps_baseline_first_fit_three_per_gpu_with_measured_interference() {
    let g = a100();
    let ds = dataset();
    let mut src = MpsSource::new(&ds, 1);
    let (r, b) = (wl("resnet_train64"), wl("bert_train8"));
    let alone = src.speeds(&[r], 33.0, MpsSpeeds::Mixes)[0];
    let shared = src.speeds(&[r, b, b], 33.0, MpsSpeeds::Mixes)[0];
    assert!(alone > 0.0 && alone <= 1.0, "{alone}");
    assert!(
        shared < alone,
        "co-runners slow a job down: {shared} vs {alone}"
    );
    let pen = src.speeds(&[r, b, b], 33.0, MpsSpeeds::Penalty)[0];
    let solo = src.speeds(&[r], 33.0, MpsSpeeds::Solo)[0];
    assert!((pen - solo / 1.3).abs() < 1e-12);
    let mut p = MpsOnly {
        max_jobs: 3,
        level_pct: 33.0,
        placement: MpsPlacement::FirstFitFixed,
        speeds: MpsSpeeds::Mixes,
        source: MpsSource::new(&ds, 1),
    };
    // Four jobs on two GPUs: the first three share GPU 0, the fourth is alone on GPU 1.
    let trace: Vec<TraceJob> = (0..4)
        .map(|i| job(&format!("j{i}"), 0.0, 1000.0, "resnet_train64"))
        .collect();
    let o = run(&mut p, &trace, g, 2, &events(), &mut |_| {}).unwrap();
    assert!(o.jct_s[3] < o.jct_s[0], "alone is faster: {:?}", o.jct_s);
    assert!((o.jct_s[3] - 1000.0 / alone).abs() < 1e-6);
}

#[test]
fn gang_jobs_take_whole_gpus_together_and_are_reported_apart() {
    let g = a100();
    let mut two = job("gang", 5.0, 100.0, "resnet_train64");
    two.gpus = 2;
    let trace = vec![job("a", 0.0, 50.0, "resnet_train64"), two];
    let o = run(&mut NoPart, &trace, g, 2, &events(), &mut |_| {}).unwrap();
    // The gang waits for GPU 0 (a ends at 50), then runs 50..150.
    assert_eq!(o.jct_s, vec![50.0, 145.0]);
    let groups = o.metrics.groups.unwrap();
    assert_eq!(groups["multi_gpu"].jobs, 1);
    assert_eq!(groups["single_gpu"].avg_jct_s, 50.0);
    // Three GPUs asked of a two-GPU cluster: never.
    let mut big = job("big", 0.0, 10.0, "resnet_train64");
    big.gpus = 3;
    assert!(run(&mut NoPart, &[big], g, 2, &events(), &mut |_| {}).is_err());
}

#[test]
fn a_fractional_job_never_gets_a_slice_below_its_share() {
    let g = a100();
    let mut half = job("half", 0.0, 100.0, "resnet_train64");
    half.share = Some(0.5);
    let mut c = crate::policy::Cluster::new(g, 1);
    c.jobs = vec![crate::policy::Job::new(
        "half",
        0.0,
        100.0,
        wl("resnet_train64"),
    )];
    c.jobs[0].min_share = Some(0.5);
    let perf = c.true_perf(0);
    assert_eq!(
        crate::policy::min_kind(&perf),
        Some(3),
        "4g is the smallest with half the SMs"
    );
    // Under static 2g+2g+3g it can never run.
    let l = scenario::default_static_layout(g);
    let mut s = Static {
        layout: l,
        overheads: Overheads::default(),
        promote: true,
    };
    assert!(run(&mut s, &[half], g, 1, &events(), &mut |_| {}).is_err());
}

#[test]
fn stp_series_integrates_the_speed_of_running_jobs() {
    let mut d = vec![(0.0, 1.0), (50.0, 0.5), (100.0, -1.5)];
    let s = stp_series(&mut d, 100.0, 4);
    assert_eq!(s.len(), 4);
    assert!((s[0].1 - 1.0).abs() < 1e-12 && (s[1].1 - 1.0).abs() < 1e-12);
    assert!((s[2].1 - 1.5).abs() < 1e-12 && (s[3].1 - 1.5).abs() < 1e-12);
}

#[test]
fn miso_profiles_only_co_located_joins_and_co_runners_keep_training() {
    let g = a100();
    let ds = dataset();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("models/default");
    let load = move || crate::predictor::Predictor::load(&dir).map_err(|e| e.to_string());
    let mut env = scenario::Env::artifact(g, 1, &ds, &load);
    env.fidelity.tick_s = 0.0;
    let trace = vec![
        job("a", 0.0, 2000.0, "resnet_train64"),
        job("b", 100.0, 2000.0, "bert_train8"),
    ];
    let (o, _) = scenario::run_named("miso", &trace, &env, &mut |_| {}).unwrap();
    // a starts alone on the whole GPU (no profiling); b's join profiles both for 30 s.
    assert!(
        (o.metrics.profiling_s_per_job - 30.0).abs() < 1e-9,
        "{:?}",
        o.metrics
    );
    // a: into MPS and back (2 restarts); b: out of MPS (1); when the first ends, the other is
    // restarted on the whole GPU (1).
    assert!(
        (o.metrics.restarts_per_job - 2.0).abs() < 1e-9,
        "{:?}",
        o.metrics
    );
    assert_eq!(
        o.metrics.reconfigurations, 2,
        "one plan after profiling, one when a job leaves"
    );
    // Oracle: no profiling; a restarts when b joins, the survivor when the other leaves.
    let (o, _) = scenario::run_named("oracle", &trace, &env, &mut |_| {}).unwrap();
    assert_eq!(o.metrics.profiling_s_per_job, 0.0);
    assert!(
        (o.metrics.restarts_per_job - 1.0).abs() < 1e-9,
        "{:?}",
        o.metrics
    );
    assert_eq!(o.metrics.reconfigurations, 2);
}
