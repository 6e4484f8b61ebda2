//! The `miso gpus|layouts|layout` commands as a user runs them: output shape and exit codes.

use std::process::{Command, Output};

fn miso(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_miso"))
        .args(args)
        .output()
        .expect("the miso binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = miso(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = miso(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: `{n}` not in {err}");
    }
}

#[test]
fn layouts_json_counts() {
    let v = json(&["layouts", "--gpu", "a100-40gb", "--json"]);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 19);
    assert!(arr.iter().any(|l| l
        == &serde_json::json!([
            {"profile": "4g.20gb", "start": 0, "size": 4},
            {"profile": "3g.20gb", "start": 4, "size": 4}
        ])));
    assert_eq!(
        json(&["layouts", "--gpu", "a30-24gb", "--json"])
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let h200 = json(&["layouts", "--gpu", "NVIDIA H200", "--json"]);
    assert_eq!(h200.as_array().unwrap().len(), 19);
    assert!(h200.to_string().contains("7g.141gb"));
    let all = json(&["layouts", "--gpu", "a100-40gb", "--all", "--json"]);
    assert!(all.as_array().unwrap().len() > 19);
    let allp = json(&["layouts", "--gpu", "a100-40gb", "--all-profiles", "--json"]);
    assert!(allp.to_string().contains("1g.5gb+me"));
}

#[test]
fn gpus_lists_every_model() {
    let v = json(&["gpus", "--json"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["short"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "a100-40gb",
            "a100-80gb",
            "a30-24gb",
            "h100-80gb",
            "h100-94gb",
            "h200-141gb"
        ]
    );
    let text = miso(&["gpus"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("3g.20gb"));
}

#[test]
fn check_diff_export_import() {
    let ok = miso(&[
        "layout",
        "check",
        "--gpu",
        "a100-40gb",
        "4g.20gb@0,3g.20gb@4",
    ]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("maximal"));
    let d = json(&[
        "layout",
        "diff",
        "--gpu",
        "a100-40gb",
        "3g.20gb@0,3g.20gb@4",
        "3g.20gb@0,2g.10gb@4,1g.5gb@6",
        "--json",
    ]);
    assert_eq!(d["keep"][0]["profile"], "3g.20gb");
    assert_eq!(d["destroy"][0]["start"], 4);
    assert_eq!(d["create"][0]["profile"], "2g.10gb");
    let out = miso(&[
        "layout",
        "export",
        "--gpu",
        "a100-40gb",
        "4g.20gb@0,3g.20gb@4",
        "3g.20gb@0,3g.20gb@4",
        "--format",
        "mig-parted",
    ]);
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("miso-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("cfg.yaml");
    std::fs::write(&f, &out.stdout).unwrap();
    let back = json(&[
        "layout",
        "import",
        "--gpu",
        "a100-40gb",
        f.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(back[0]["devices"], serde_json::json!({"list": [0]}));
    assert_eq!(back[1]["layout"][1]["start"], 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_exits_2_with_one_line() {
    fails_with(
        &["layouts", "--gpu", "v100"],
        &["unknown GPU `v100`", "a100-40gb", "h200-141gb"],
    );
    fails_with(
        &["layout", "check", "--gpu", "a100-40gb", "5g.20gb@0"],
        &["unknown profile `5g.20gb`", "3g.20gb"],
    );
    fails_with(
        &[
            "layout",
            "check",
            "--gpu",
            "a100-40gb",
            "4g.20gb@0,3g.20gb@2",
        ],
        &["3g.20gb@2", "allowed starts: 0, 4"],
    );
    fails_with(
        &[
            "layout",
            "check",
            "--gpu",
            "a100-40gb",
            "3g.20gb@0,2g.10gb@2",
        ],
        &["2g.10gb@2 overlaps 3g.20gb@0"],
    );
    fails_with(
        &["layout", "diff", "--gpu", "a30", "4g.24gb@0", "4g.24gb@2"],
        &["<TO>", "4g.24gb@2"],
    );
    fails_with(
        &[
            "layout",
            "import",
            "--gpu",
            "a100-40gb",
            "/nonexistent/x.yaml",
        ],
        &["cannot read"],
    );
}
