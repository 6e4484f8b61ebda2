use super::eval::Scripted;
use super::*;

fn dataset() -> Dataset {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate::predictor::data::load(&root.join("../shared/datasets/miso-a100")).unwrap()
}

fn small_sets() -> Sets {
    let mut s = episodes(&TraceFiles::default()).unwrap();
    s.train.truncate(3);
    s.validate.truncate(1);
    s.heldout.truncate(1);
    s
}

fn tiny() -> TrainConfig {
    TrainConfig {
        iterations: 2,
        episodes: 2,
        hidden: 8,
        clone_epochs: 2,
        ..TrainConfig::default()
    }
}

#[test]
fn same_seed_same_policy_and_another_seed_another() {
    let ds = dataset();
    let sets = small_sets();
    let model = crate::gpu::gpu("A100-40GB").unwrap();
    let loader = || Predictor::builtin().map_err(|e| e.to_string());
    let train_with = |seed: u64, threads: usize| {
        let cfg = TrainConfig {
            seed,
            threads,
            ..tiny()
        };
        train(&cfg, &sets, model, &ds, &loader, "t", &mut |_| {}).unwrap()
    };
    let a = train_with(5, 2);
    let b = train_with(5, 1);
    assert_eq!(
        a.model.net, b.model.net,
        "same seed, any thread count: same weights"
    );
    assert_eq!(a.model.meta.input_lo, b.model.meta.input_lo);
    assert_eq!(curve_csv(&a.curve), curve_csv(&b.curve));
    let c = train_with(6, 2);
    assert_ne!(a.model.net, c.model.net, "another seed, other weights");
    // The curve has one point per iteration (0 = the cloned start) and plots.
    assert_eq!(a.curve.len(), 3);
    let svg = curve_svg(&a.curve).unwrap();
    assert!(svg.contains("PPO iteration") && svg.contains("ours (the rule)"));
}

#[test]
fn saved_policy_loads_back_and_evaluates() {
    let ds = dataset();
    let sets = small_sets();
    let model = crate::gpu::gpu("A100-40GB").unwrap();
    let loader = || Predictor::builtin().map_err(|e| e.to_string());
    let t = train(&tiny(), &sets, model, &ds, &loader, "t", &mut |_| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("miso-rl-{}", std::process::id()));
    t.model.save(&dir).unwrap();
    let back = PolicyModel::load(&dir).unwrap();
    assert_eq!(back.net, t.model.net);
    assert_eq!(back.meta.seed, 1);
    assert!(back.meta.data_fingerprint.starts_with("fnv1a64:"));
    let rows = evaluate(
        Arc::new(back),
        &sets.heldout,
        model,
        &ds,
        &loader,
        2,
        &|| {},
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.family, "miso");
    assert_eq!(r.mean_jct_s.len(), 4);
    assert!(r.decisions > 0);
    assert!(r
        .mean_jct_s
        .iter()
        .all(|(_, m, _)| m.is_finite() && *m > 0.0));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn windows_shift_and_never_overlap() {
    let jobs: Vec<TraceJob> = (0..10)
        .map(|i| TraceJob::new(format!("j{i}"), i as f64 * 10.0, 5.0, 0))
        .collect();
    let a = window(&jobs, 0.0, 50.0);
    let b = window(&jobs, 50.0, 100.0);
    assert_eq!(a.len() + b.len(), 10);
    assert_eq!(b[0].arrival_s, 0.0);
    assert_eq!(b[0].name, "j5");
}

#[test]
fn rewards_integrate_jobs_in_system() {
    // Two jobs: [0, 10) and [5, 20); decisions at 0 and 5.
    let r = Rollout {
        steps: vec![
            Step {
                rows: vec![],
                action: 0,
                rule: 0,
                logp: 0.0,
                at_s: 0.0,
            },
            Step {
                rows: vec![],
                action: 0,
                rule: 0,
                logp: 0.0,
                at_s: 5.0,
            },
        ],
        jobs: vec![(0.0, 10.0), (5.0, 20.0)],
        avg_jct_s: 12.5,
    };
    assert_eq!(in_system_integral(&r.jobs, 20.0), 25.0);
    let w = rewards(&r, 0.0);
    // Raw −5 then −20, scaled to a mean magnitude of 1.
    assert!(
        (w[0] + 0.4).abs() < 1e-6 && (w[1] + 1.6).abs() < 1e-6,
        "{w:?}"
    );
}

#[test]
fn a_decider_that_follows_the_rule_is_ours_exactly() {
    let ds = dataset();
    let model = crate::gpu::gpu("A100-40GB").unwrap();
    let loader = || Predictor::builtin().map_err(|e| e.to_string());
    let sets = episodes(&TraceFiles::default()).unwrap();
    for e in sets
        .heldout
        .iter()
        .take(2)
        .chain(sets.train.iter().rev().take(1))
    {
        let env = Env {
            seed: e.seed,
            ..Env::artifact(model, e.gpus, &ds, &loader)
        };
        let (ours, _) = scenario::run_named("ours", &e.trace, &env, &mut |_| {}).unwrap();
        let counts = Arc::new(Mutex::new((0, 0)));
        let mut w = Worker::new(&ds, &loader);
        let d = Scripted {
            probe: "the rule",
            counts: counts.clone(),
        };
        let avg = w.run(model, e, Some(Box::new(d))).unwrap().avg_jct_s;
        assert_eq!(avg, ours.metrics.avg_jct_s, "{}", e.name);
        let (decisions, deviations) = *counts.lock().unwrap();
        assert!(decisions > 0 && deviations == 0);
    }
}
