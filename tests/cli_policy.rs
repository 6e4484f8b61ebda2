//! The learned scheduling policy as a user runs it: `miso simulate --policy rl[:DIR]`,
//! `miso train-policy` (a tiny run, its folder, `--evaluate`, `--probe`), and bad input.

use std::process::{Command, Output};

fn miso(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_miso"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("miso runs")
}

fn ok(args: &[&str]) -> Vec<u8> {
    let out = miso(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn fails(args: &[&str], needle: &str) {
    let out = miso(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
}

#[test]
fn simulate_runs_the_builtin_policy_beside_the_others_deterministically() {
    let a = ok(&["simulate", "--policy", "ours,rl", "--json"]);
    let b = ok(&["simulate", "--policy", "ours,rl", "--json"]);
    assert_eq!(a, b, "same seed, byte-identical output");
    let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
    let rl = v["policies"]["rl"]["avg_jct_s"].as_f64().unwrap();
    let ours = v["policies"]["ours"]["avg_jct_s"].as_f64().unwrap();
    assert!(rl > 0.0 && ours > 0.0);
    assert_eq!(v["policies"]["rl"]["jobs"], 100);
}

#[test]
fn train_policy_writes_a_folder_that_simulate_and_evaluate_use() {
    let dir = std::env::temp_dir().join(format!("miso-cli-policy-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let out = ok(&[
        "train-policy",
        "--out",
        d,
        "--families",
        "miso",
        "--iterations",
        "2",
        "--episodes",
        "2",
        "--hidden",
        "8",
        "--no-evaluate",
    ]);
    assert!(String::from_utf8_lossy(&out).contains("kept iteration"));
    for f in ["model.json", "weights.json", "curve.csv", "curve.svg"] {
        assert!(dir.join(f).exists(), "{f} written");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["format"], "miso-policy/1");
    assert_eq!(meta["seed"], 1);
    assert_eq!(meta["recipe"]["iterations"], 2);
    assert!(meta["data_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("fnv1a64:"));
    let csv = std::fs::read_to_string(dir.join("curve.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header + iterations 0..=2");
    let spec = format!("rl:{d}");
    let v: serde_json::Value =
        serde_json::from_slice(&ok(&["simulate", "--policy", &spec, "--json"])).unwrap();
    assert!(v["policies"][&spec]["avg_jct_s"].as_f64().unwrap() > 0.0);
    // Held-out table for that folder (MISO-trace families only).
    let v: serde_json::Value = serde_json::from_slice(&ok(&[
        "train-policy",
        "--evaluate",
        d,
        "--families",
        "miso",
        "--json",
    ]))
    .unwrap();
    let rows = v["heldout"].as_array().unwrap();
    let fams: Vec<&str> = rows.iter().map(|r| r["family"].as_str().unwrap()).collect();
    assert_eq!(fams, ["miso", "miso-load-30s", "miso-load-100s"]);
    assert_eq!(rows[0]["episodes"], 10);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_policies_and_flags_are_refused_with_the_field() {
    fails(
        &["simulate", "--policy", "rl:/nonexistent/policy"],
        "model.json",
    );
    let dir = std::env::temp_dir().join(format!("miso-cli-badpolicy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.json"), "{\"format\": 3}").unwrap();
    std::fs::write(dir.join("weights.json"), "{}").unwrap();
    let spec = format!("rl:{}", dir.display());
    fails(&["simulate", "--policy", &spec], "model.json");
    fails(&["serve", "--scheduler", &spec], "--scheduler");
    fails(&["serve", "--scheduler", "learned"], "--scheduler");
    fails(
        &["train-policy", "--out", "/tmp/x", "--families", "miso,nope"],
        "nope",
    );
    fails(
        &["train-policy", "--out", "/tmp/x", "--iterations", "0"],
        "--iterations",
    );
    fails(&["train-policy", "--out", "/tmp/x", "--lr", "-1"], "--lr");
    fails(&["train-policy", "--families", "miso"], "--out");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn probe_prints_every_scripted_deviation() {
    let v: serde_json::Value = serde_json::from_slice(&ok(&[
        "train-policy",
        "--probe",
        "--families",
        "miso",
        "--json",
    ]))
    .unwrap();
    let rows = v["probes"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    for r in rows {
        assert!(r["decisions"].as_u64().unwrap() > 0, "{r}");
        assert!(r["worst_pct"].as_f64().unwrap() >= r["best_pct"].as_f64().unwrap());
    }
}
