//! The optimizer against brute force, least disruption, cost awareness and input errors.

use proptest::prelude::*;

use super::*;
use crate::gpu::{self, parse_valid_layout, Layout, GPUS};
use crate::perf::{self, JobPerf, KINDS};

fn a100() -> &'static GpuModel {
    gpu::gpu("a100-40gb").unwrap()
}

fn wl(id: &str, name: &str) -> OptJob {
    OptJob::new(id, perf::workload(name).unwrap().perf())
}

/// A random job: speeds increasing with slice size (as measured ones are, mostly), some
/// profiles infeasible from the small end, an optional remaining amount of work.
fn arb_job() -> impl Strategy<Value = JobPerf> {
    (prop::array::uniform5(0.05f64..1.0), 0usize..3).prop_map(|(mut s, unfit)| {
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut speed = [None; KINDS];
        for k in 0..KINDS {
            speed[k] = if k < unfit {
                None
            } else {
                Some(s[k] / s[KINDS - 1])
            };
        }
        JobPerf {
            speed,
            memory_mb: None,
        }
    })
}

fn arb_objective() -> impl Strategy<Value = Objective> {
    prop_oneof![
        Just(Objective::MeanSlowdown),
        Just(Objective::Throughput),
        Just(Objective::CompletionTime)
    ]
}

/// Brute force over layouts and assignments: the best cost, and the most jobs kept on their
/// current instance among the assignments within tolerance of it.
fn brute_force_kept(g: &'static GpuModel, jobs: &[OptJob], opts: &Options) -> (f64, usize) {
    let mut all: Vec<(f64, usize)> = Vec::new();
    for l in gpu::all_layouts(g, false)
        .iter()
        .filter(|l| l.len() == jobs.len())
    {
        let insts = l.instances();
        let mut perm: Vec<usize> = (0..insts.len()).collect();
        permute(&mut perm, 0, &mut |p| {
            let mut c = 0.0;
            let mut kept = 0;
            for (j, &i) in p.iter().enumerate() {
                match jobs[j].perf.speed_on(g, insts[i].profile as usize) {
                    Some(s) => c += opts.objective.cost(s, jobs[j].remaining_s.unwrap_or(1.0)),
                    None => return,
                }
                kept += (jobs[j].current == Some(insts[i])) as usize;
            }
            all.push((c, kept));
        });
    }
    let best = all.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    let thr = best + opts.tolerance * best.abs().max(1.0);
    let kept = all
        .iter()
        .filter(|x| x.0 <= thr)
        .map(|x| x.1)
        .max()
        .unwrap_or(0);
    (best, kept)
}

fn permute(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
    if k == v.len() {
        f(v);
        return;
    }
    for i in k..v.len() {
        v.swap(k, i);
        permute(v, k + 1, f);
        v.swap(k, i);
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]
    #[test]
    fn optimum_equals_brute_force(
        perfs in prop::collection::vec(arb_job(), 1..=7),
        rem in prop::collection::vec(1.0f64..1e4, 7),
        objective in arb_objective(),
        spare in any::<bool>(),
        gi in 0usize..GPUS.len(),
    ) {
        let g = &GPUS[gi];
        let jobs: Vec<OptJob> = perfs.iter().enumerate().map(|(i, p)| OptJob {
            remaining_s: Some(rem[i]),
            ..OptJob::new(format!("j{i}"), p.clone())
        }).collect();
        let opts = Options { objective, spare, ..Options::default() };
        let want = brute_force(g, &jobs, &opts).unwrap();
        match optimize(g, &jobs, &Layout::empty(), &opts) {
            Ok(d) => {
                prop_assert!(close(d.cost, want), "dp {} brute {}", d.cost, want);
                prop_assert!(d.layout.validate(g).is_ok());
                // Every job assigned exactly once, to a profile it fits.
                let mut seen = vec![false; jobs.len()];
                let mut recomputed = 0.0;
                for (i, a) in d.assignment.iter().enumerate() {
                    if let Some(j) = a {
                        prop_assert!(!seen[*j]);
                        seen[*j] = true;
                        let s = jobs[*j].perf.speed_on(g, d.layout.instances()[i].profile as usize);
                        prop_assert!(s.is_some());
                        recomputed += objective.cost(s.unwrap(), rem[*j]);
                    }
                }
                prop_assert!(seen.iter().all(|s| *s));
                prop_assert!(close(recomputed, d.cost));
                if !spare { prop_assert_eq!(d.layout.len(), jobs.len()); }
            }
            Err(OptError::NoFit { .. }) | Err(OptError::TooManyJobs { .. }) => prop_assert!(want == f64::INFINITY),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn least_disruption_never_costs_optimality(
        perfs in prop::collection::vec(arb_job(), 2..=6),
        li in 0usize..10_000,
        drop_one in any::<bool>(),
    ) {
        // Jobs run on a current layout; one finishes (or a new one arrives); the re-plan must
        // stay optimal and keep at least as many jobs in place as any optimal alternative
        // that the search saw — checked here against "keep everyone possible".
        let g = a100();
        let layouts: Vec<&Layout> = gpu::all_layouts(g, false).iter().filter(|l| l.len() == perfs.len()).collect();
        prop_assume!(!layouts.is_empty());
        let cur = layouts[li % layouts.len()].clone();
        let mut jobs: Vec<OptJob> = perfs.iter().enumerate().map(|(i, p)| OptJob {
            current: Some(cur.instances()[i]),
            ..OptJob::new(format!("j{i}"), p.clone())
        }).collect();
        if drop_one { jobs.remove(0); } else { jobs[0].current = None; }
        let opts = Options::default();
        let (want, want_kept) = brute_force_kept(g, &jobs, &opts);
        let d = match optimize(g, &jobs, &cur, &opts) {
            Ok(d) => d,
            Err(_) => { prop_assert!(want == f64::INFINITY); return Ok(()); }
        };
        prop_assert!(close(d.cost, want));
        let kept = jobs.iter().enumerate().filter(|(j, job)| job.current.is_some() && d.instance_of(*j) == job.current).count();
        prop_assert_eq!(kept, d.kept_jobs);
        prop_assert_eq!(kept, want_kept, "an optimal alternative keeps more jobs in place");
        prop_assert_eq!(kept, d.kept_jobs);
    }
}

#[test]
fn four_plus_three_is_found() {
    // Two jobs that both gain from big slices: 4g+3g beats 3g+3g, a layout missing from the
    // original MISO partition list.
    let g = a100();
    let jobs = vec![wl("a", "bert_train8"), wl("b", "cyclegan_train4")];
    let d = optimize(g, &jobs, &Layout::empty(), &Options::default()).unwrap();
    assert_eq!(
        d.layout,
        parse_valid_layout(g, "4g.20gb@0,3g.20gb@4").unwrap()
    );
    assert!(close(
        d.cost,
        brute_force(g, &jobs, &Options::default()).unwrap()
    ));
}

#[test]
fn memory_need_is_respected_and_no_fit_is_reported() {
    let g = a100();
    // bert_train8 does not fit 1g or 2g: seven of them cannot share a GPU.
    let jobs: Vec<OptJob> = (0..3)
        .map(|i| wl(&format!("b{i}"), "bert_train8"))
        .collect();
    let e = optimize(g, &jobs, &Layout::empty(), &Options::default()).unwrap_err();
    assert!(matches!(e, OptError::NoFit { .. }), "{e}");
    let e = optimize(
        g,
        &vec![wl("x", "resnet_train64"); 8],
        &Layout::empty(),
        &Options::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most 7"), "{e}");
    // A job with explicit memory: 12 GB rules out 1g.5gb and 2g.10gb.
    let p = JobPerf {
        speed: [Some(0.2), Some(0.35), Some(0.55), Some(0.7), Some(1.0)],
        memory_mb: Some(12_000),
    };
    let jobs = vec![OptJob::new("m", p), wl("r", "resnet_train64")];
    let d = optimize(g, &jobs, &Layout::empty(), &Options::default()).unwrap();
    let inst = d.instance_of(0).unwrap();
    assert!(g.profiles[inst.profile as usize].memory_mb >= 12_000);
}

#[test]
fn plan_keeps_untouched_jobs_running() {
    let g = a100();
    let cur = parse_valid_layout(g, "3g.20gb@0,2g.10gb@4,1g.5gb@6").unwrap();
    let mut jobs = vec![
        wl("a", "bert_train6"),
        wl("b", "resnet_train128"),
        wl("c", "embedding_train64"),
    ];
    for (j, i) in jobs.iter_mut().zip(cur.instances()) {
        j.current = Some(*i);
    }
    // c finishes: the re-plan closes the gap and must not touch more than it needs.
    jobs.pop();
    let p = plan(g, &jobs, &cur, &Options::default()).unwrap();
    let d = &p.decision;
    assert!(close(
        d.cost,
        brute_force(g, &jobs, &Options::default()).unwrap()
    ));
    for &j in &p.untouched {
        assert_eq!(jobs[j].current, d.instance_of(j));
        assert!(p.diff.keep.contains(&d.instance_of(j).unwrap()));
    }
    // Every destroyed instance is idle by then: its job is checkpointed first.
    for inst in &p.diff.destroy {
        if let Some(j) = jobs.iter().position(|job| job.current == Some(*inst)) {
            assert!(p.restart.contains(&j));
        }
    }
    let v = p.view(g, &jobs);
    assert_eq!(
        v.untouched.len() + v.checkpoint_restart.len() + v.start.len(),
        jobs.len()
    );
}

#[test]
fn cost_aware_keeps_layout_when_the_move_does_not_pay() {
    let g = a100();
    let cur = parse_valid_layout(g, "3g.20gb@0,3g.20gb@4").unwrap();
    let mut a = wl("a", "bert_train8");
    let mut b = wl("b", "cyclegan_train4");
    a.current = Some(cur.instances()[0]);
    b.current = Some(cur.instances()[1]);
    let opts = Options {
        cost_aware: true,
        ..Options::default()
    };
    // Almost done: moving to 4g+3g is not worth a restart.
    a.remaining_s = Some(5.0);
    b.remaining_s = Some(5.0);
    let p = plan(g, &[a.clone(), b.clone()], &cur, &opts).unwrap();
    assert!(p.is_noop(), "{:?}", p.diff);
    assert!(p.skipped_gain_s.unwrap() <= 0.0);
    // Lots of work left: it pays.
    a.remaining_s = Some(50_000.0);
    b.remaining_s = Some(50_000.0);
    let p = plan(g, &[a, b], &cur, &opts).unwrap();
    assert!(!p.is_noop());
    assert_eq!(
        p.decision.layout,
        parse_valid_layout(g, "4g.20gb@0,3g.20gb@4").unwrap()
    );
}

#[test]
fn cluster_placement() {
    let g = a100();
    let mk = |n: usize| GpuState {
        gpu: g,
        layout: Layout::empty(),
        jobs: (0..n)
            .map(|i| wl(&format!("x{i}"), "resnet_train64"))
            .collect(),
    };
    let cluster = vec![mk(3), mk(1), mk(7), mk(1)];
    let job = wl("new", "mobilenet_train64");
    assert_eq!(
        choose_gpu(&cluster, &job, Placement::FewestJobs, &Options::default()),
        Some(1)
    );
    let full = vec![mk(7), mk(7)];
    assert_eq!(
        choose_gpu(&full, &job, Placement::FewestJobs, &Options::default()),
        None
    );
    let best = choose_gpu(&cluster, &job, Placement::BestGain, &Options::default()).unwrap();
    assert!(best == 1 || best == 3);
}

#[test]
fn jobs_json_errors_name_the_field() {
    let g = a100();
    let e = |s: &str| parse_jobs(g, &Layout::empty(), s).unwrap_err().to_string();
    assert!(e(r#"[{"id":"a","workload":"bert_train3"}]"#).contains("jobs[0].workload"));
    assert!(e(r#"[{"id":"a","speeds":{"3g.20gb":-0.5}}]"#).contains("jobs[0].speeds.3g.20gb"));
    assert!(
        e(r#"[{"id":"a","speeds":{"3g.20gb":0.5},"memory_mb":90000}]"#)
            .contains("jobs[0].memory_mb")
    );
    assert!(e(r#"[{"id":"a","speeds":{"5g.20gb":0.5}}]"#).contains("allowed: 1g.5gb"));
    assert!(e(r#"[{"id":"a"}]"#).contains("needs `workload`"));
    assert!(
        e(r#"[{"id":"a","workload":"bert_train8"},{"id":"a","workload":"bert_train8"}]"#)
            .contains("jobs[1].id")
    );
    assert!(e(r#"[{"id":"a","workload":"bert_train8","colour":1}]"#).contains("colour"));
    assert!(e(r#"{"id":"a"}"#).contains("jobs"));
    let ok = parse_jobs(
        g,
        &Layout::empty(),
        r#"[{"id":"a","workload":"bert_train8","remaining_s":100}]"#,
    )
    .unwrap();
    assert_eq!(ok[0].restart_s, 18.0);
}
