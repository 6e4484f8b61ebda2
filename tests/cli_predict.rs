//! `miso predict` as a user runs it: which slots are real jobs must be said.

use std::process::Command;

#[test]
fn predict_needs_to_know_which_slots_are_real_jobs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let x: ndarray::Array3<f64> =
        ndarray_npy::read_npy(root.join("../shared/datasets/miso-a100/mps_features.npy")).unwrap();
    let dir = std::env::temp_dir().join(format!("miso-predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("f.npy");
    ndarray_npy::write_npy(&f, &x.slice(ndarray::s![0..10, .., ..]).to_owned()).unwrap();
    let out = dir.join("p.npy");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_miso"))
            .args(["predict", "--features"])
            .arg(&f)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    // Neither --dummy-from, --jobs nor --all-real: refused, saying how to tell.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--jobs N") && e.contains("--all-real"), "{e}");
    assert!(!out.exists(), "nothing written");
    // Two ways at once: refused.
    assert_eq!(run(&["--jobs", "2", "--all-real"]).status.code(), Some(2));
    assert_eq!(run(&["--jobs", "8"]).status.code(), Some(2));
    // The first two slots real: real slots get latencies, fillers none.
    let o = run(&["--jobs", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p: ndarray::Array3<f64> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(p.shape(), &[10, 3, 7]);
    assert!(p[[0, 0, 0]].is_finite() && p[[0, 0, 1]].is_finite());
    let o = run(&["--all-real"]);
    assert!(o.status.success());
    std::fs::remove_dir_all(&dir).ok();
}

fn miso(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_miso"))
        .current_dir(dir)
        .env("MISO_DATA", data())
        .args(args)
        .output()
        .unwrap()
}

fn data() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/miso-a100")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("miso-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn intervals_from_the_built_in_model_bracket_its_prediction_from_any_folder() {
    // A folder without models/: the embedded default (calibrated) answers.
    let dir = tmp("intervals");
    let x: ndarray::Array3<f64> = ndarray_npy::read_npy(data().join("mps_features.npy")).unwrap();
    ndarray_npy::write_npy(
        dir.join("f.npy"),
        &x.slice(ndarray::s![0..20, .., ..]).to_owned(),
    )
    .unwrap();
    let o = miso(
        &dir,
        &[
            "predict",
            "--features",
            "f.npy",
            "--out",
            "p.npy",
            "--jobs",
            "3",
            "--intervals",
        ],
    );
    ok(&o);
    let read = |n: &str| -> ndarray::Array3<f64> { ndarray_npy::read_npy(dir.join(n)).unwrap() };
    let (p, lo, hi) = (read("p.npy"), read("p.lo.npy"), read("p.hi.npy"));
    assert_eq!(lo.shape(), p.shape());
    let mut wider = 0;
    for i in 0..20 {
        for r in 0..3 {
            for s in 0..3 {
                let (l, v, h) = (lo[[i, r, s]], p[[i, r, s]], hi[[i, r, s]]);
                assert!(
                    l <= v + 1e-9 && v <= h + 1e-9,
                    "sample {i} row {r} slot {s}: {l} {v} {h}"
                );
                if h - l > 0.01 {
                    wider += 1;
                }
            }
        }
    }
    assert!(wider > 0, "intervals have width");
}

#[test]
fn lofo_calibrates_intervals_with_measured_coverage_and_learning_from_runs_lowers_the_error() {
    let dir = tmp("lofo");
    ok(&miso(&dir, &["train", "--arch", "linear", "--out", "lin"]));
    // An uncalibrated model has no intervals to give.
    let x: ndarray::Array3<f64> = ndarray_npy::read_npy(data().join("mps_features.npy")).unwrap();
    ndarray_npy::write_npy(
        dir.join("f.npy"),
        &x.slice(ndarray::s![0..5, .., ..]).to_owned(),
    )
    .unwrap();
    let predict = [
        "predict",
        "--model",
        "lin",
        "--features",
        "f.npy",
        "--out",
        "p.npy",
        "--jobs",
        "2",
        "--intervals",
    ];
    let o = miso(&dir, &predict);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--calibrate"));
    // The built-in model is read-only.
    let o = miso(&dir, &["evaluate", "--lofo", "--calibrate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--model models/default"));
    // Calibrate the linear model: coverage of the 90 % intervals on families never seen.
    let out = ok(&miso(
        &dir,
        &[
            "evaluate",
            "--model",
            "lin",
            "--lofo",
            "--calibrate",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cov = v["intervals"]["lofo_coverage"]["rows"].as_f64().unwrap();
    assert!((0.85..=0.95).contains(&cov), "coverage {cov}");
    assert_eq!(v["lofo"].as_array().unwrap().len(), 8);
    for f in v["lofo"].as_array().unwrap() {
        for e in ["point", "expected", "worst"] {
            assert!(f["decisions"][e]["mean_regret"].as_f64().unwrap() >= 0.0);
        }
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lin/model.json")).unwrap())
            .unwrap();
    assert_eq!(meta["intervals"]["level"], 0.9);
    ok(&miso(&dir, &predict));
    // Learning a family from its runs: the error on its held-out mixes drops.
    let out = ok(&miso(
        &dir,
        &[
            "evaluate",
            "--model",
            "lin",
            "--learn-from-runs",
            "transformer",
            "--json",
            "--observations-out",
            "obs.jsonl",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["learn_from_runs"][0];
    let (before, after) = (
        r["before"]["mae"].as_f64().unwrap(),
        r["after"]["mae"].as_f64().unwrap(),
    );
    assert!(after < before, "before {before}, after {after}");
    assert!(r["observations"].as_u64().unwrap() > 100);
    // The observations retrain a model with `miso train --observations`.
    ok(&miso(
        &dir,
        &[
            "train",
            "--arch",
            "linear",
            "--holdout-family",
            "transformer",
            "--out",
            "no-t",
        ],
    ));
    let out = ok(&miso(
        &dir,
        &[
            "train",
            "--arch",
            "linear",
            "--holdout-family",
            "transformer",
            "--observations",
            "obs.jsonl",
            "--prior",
            "no-t",
            "--json",
        ],
    ));
    let learned: serde_json::Value = serde_json::from_str(&out).unwrap();
    let no_t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("no-t/model.json")).unwrap())
            .unwrap();
    let (a, b) = (
        learned["metrics"]["mae"].as_f64().unwrap(),
        no_t["metrics"]["mae"].as_f64().unwrap(),
    );
    assert!(a < b, "with observations {a}, without {b}");
    // A broken observation is refused by line and field.
    let mut bad = std::fs::read_to_string(dir.join("obs.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    bad = bad.replace("\"iter_s\":", "\"iter_s\":-");
    std::fs::write(dir.join("bad.jsonl"), format!("{bad}\n")).unwrap();
    let o = miso(
        &dir,
        &[
            "train",
            "--arch",
            "linear",
            "--observations",
            "bad.jsonl",
            "--prior",
            "no-t",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.jsonl:1") && e.contains("iter_s"), "{e}");
}
