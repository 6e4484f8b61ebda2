//! The event engine's accounting on hand-checkable scenarios.

use super::*;
use crate::gpu;
use crate::policy::{NoPart, Static};

fn job(name: &str, at: f64, work: f64, workload: &str) -> TraceJob {
    let w = crate::perf::workload(workload).unwrap();
    let wi = crate::perf::catalog()
        .iter()
        .position(|x| x.name == w.name)
        .unwrap();
    TraceJob {
        name: name.into(),
        arrival_s: at,
        work_s: work,
        workload: wi,
    }
}

#[test]
fn nopart_queues_fifo_and_accounts_exactly() {
    let g = gpu::gpu("a100-40gb").unwrap();
    let trace = vec![
        job("a", 0.0, 100.0, "resnet_train64"),
        job("b", 10.0, 50.0, "bert_train8"),
        job("c", 20.0, 10.0, "gnn_train64"),
    ];
    let o = run(&mut NoPart, &trace, g, 1, &mut |_| {}).unwrap();
    // a: 0..100, b: 100..150, c: 150..160.
    assert_eq!(o.jct_s, vec![100.0, 140.0, 140.0]);
    assert_eq!(o.metrics.makespan_s, 160.0);
    assert!((o.metrics.avg_queue_s - (0.0 + 90.0 + 130.0) / 3.0).abs() < 1e-9);
    assert!((o.metrics.gpu_utilization - 1.0).abs() < 1e-9);
    // Two GPUs: a on GPU 0, b on GPU 1 from 10 to 60.
    let o = run(&mut NoPart, &trace, g, 2, &mut |_| {}).unwrap();
    // c waits for b (GPU 1 frees at 60): 60..70.
    assert_eq!(o.jct_s, vec![100.0, 50.0, 50.0]);
}

#[test]
fn static_slices_run_at_their_measured_speed() {
    let g = gpu::gpu("a100-40gb").unwrap();
    let l = gpu::parse_valid_layout(g, "3g.20gb@0,3g.20gb@4").unwrap();
    let trace = vec![job("a", 0.0, 100.0, "bert_train8")];
    let o = run(&mut Static { layout: l }, &trace, g, 1, &mut |_| {}).unwrap();
    let w = crate::perf::workload("bert_train8").unwrap();
    let speed = w.iter_s[4].unwrap() / w.iter_s[2].unwrap();
    assert!(
        (o.jct_s[0] - 100.0 / speed).abs() < 1e-6,
        "{} vs {}",
        o.jct_s[0],
        100.0 / speed
    );
    // A job that fits no slice of the layout can never run.
    let l = gpu::parse_valid_layout(g, "1g.5gb@0").unwrap();
    let e = run(&mut Static { layout: l }, &trace, g, 1, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("can never run"), "{e}");
}

#[test]
fn miso_arrivals_follow_the_paper() {
    let a = trace::miso_arrivals(300, 60.0, 9);
    assert_eq!(a, trace::miso_arrivals(300, 60.0, 9));
    let first = a[100] / 100.0;
    let rest = (a[299] - a[100]) / 199.0;
    assert!(
        first < rest,
        "first third arrives faster: {first} vs {rest}"
    );
    assert!((rest - 60.0).abs() < 15.0, "{rest}");
}
