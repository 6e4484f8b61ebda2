//! `miso recommend` as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn recommend(args: &[&str], jobs: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_miso"))
        .arg("recommend")
        .args(args)
        .args(["--jobs", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("miso runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jobs.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok_json(args: &[&str], jobs: &str) -> serde_json::Value {
    let out = recommend(args, jobs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails(args: &[&str], jobs: &str, needle: &str) {
    let out = recommend(args, jobs);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains(needle), "`{needle}` not in {e}");
}

#[test]
fn recommend_json_shape() {
    let v = ok_json(
        &["--gpu", "a100-40gb", "--json"],
        r#"[{"id":"a","workload":"bert_train8"},{"id":"b","workload":"cyclegan_train4"}]"#,
    );
    assert_eq!(v["objective"]["name"], "mean-slowdown");
    let layout = v["layout"].as_array().unwrap();
    assert_eq!(layout.len(), 2);
    assert_eq!(layout[0]["profile"], "4g.20gb");
    assert_eq!(layout[1]["profile"], "3g.20gb");
    assert_eq!(layout[1]["start"], 4);
    assert!(layout.iter().all(|i| i["job"].is_string()));
    assert!(v["objective"]["value"].as_f64().unwrap() > 1.0);
    assert_eq!(v["plan"]["create"].as_array().unwrap().len(), 2);
    assert_eq!(v["plan"]["start"].as_array().unwrap().len(), 2);
}

#[test]
fn recommend_keeps_running_jobs_and_marks_spares() {
    let jobs = r#"[{"id":"a","workload":"bert_train6","instance":"3g.20gb@0"},
                   {"id":"b","workload":"resnet_train128","instance":"2g.10gb@4"}]"#;
    let v = ok_json(
        &["--current", "3g.20gb@0,2g.10gb@4,1g.5gb@6", "--json"],
        jobs,
    );
    let plan = &v["plan"];
    let moved = plan["checkpoint_restart"].as_array().unwrap().len();
    let kept = plan["untouched"].as_array().unwrap().len();
    assert_eq!(moved + kept, 2);
    let v = ok_json(
        &["--spare", "--objective", "throughput", "--json"],
        r#"[{"id":"x","workload":"resnet_train64"}]"#,
    );
    assert_eq!(v["objective"]["name"], "throughput");
    assert!(v["layout"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["job"].is_string() || i["job"].is_null()));
}

#[test]
fn recommend_bad_input() {
    fails(
        &[],
        r#"[{"id":"a","workload":"llama_train1"}]"#,
        "jobs[0].workload",
    );
    fails(
        &[],
        r#"[{"id":"a","speeds":{"3g.20gb":-1}}]"#,
        "jobs[0].speeds.3g.20gb",
    );
    fails(
        &[],
        r#"[{"id":"a","speeds":{"3g.20gb":0.5},"memory_mb":100000}]"#,
        "jobs[0].memory_mb",
    );
    fails(
        &[],
        r#"[{"id":"a","workload":"bert_train8"},{"id":"b","workload":"bert_train8"},{"id":"c","workload":"bert_train8"}]"#,
        "no layout",
    );
    fails(
        &["--objective", "completion-time"],
        r#"[{"id":"a","workload":"bert_train8"}]"#,
        "remaining_s",
    );
    fails(&[], "[{", "jobs");
    fails(&["--current", "3g.20gb@1"], "[]", "--current");
}
