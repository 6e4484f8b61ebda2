//! `miso simulate` on the MISO trace and on small real-trace slices: output shape, seeds give
//! byte-identical JSON, malformed traces name file, line and column, bad flags exit 2.

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

#[test]
fn default_scenario_runs_every_policy_and_is_deterministic() {
    let a = ok(&["simulate", "--json"]);
    let b = ok(&["simulate", "--json"]);
    assert_eq!(a, b, "same seed, byte-identical output");
    let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
    for p in ["nopart", "static", "mps", "miso", "oracle", "ours"] {
        let m = &v["policies"][p];
        assert_eq!(m["jobs"], 100, "{p}");
        for f in ["avg_jct_s", "p95_jct_s", "makespan_s"] {
            assert!(m[f].as_f64().unwrap() > 0.0, "{p}.{f}");
        }
        assert!(m["reconfigurations"].is_u64());
        // A job's completion time is at least its work on the fastest slice (the whole GPU).
        assert!(
            m["avg_jct_s"].as_f64().unwrap() >= 770.0 * 0.9,
            "{p}: mean work is 770 s"
        );
    }
    // MISO-family policies re-partition; the baselines never do.
    assert!(v["policies"]["miso"]["reconfigurations"].as_u64().unwrap() > 0);
    assert_eq!(v["policies"]["nopart"]["reconfigurations"], 0);
    assert!(v["policies"]["static"]["detail"]
        .as_str()
        .unwrap()
        .starts_with("best static layout"));
    // Oracle knows the true speeds and never profiles: it is at least as good as MISO here.
    assert!(
        v["policies"]["oracle"]["avg_jct_s"].as_f64().unwrap()
            <= v["policies"]["miso"]["avg_jct_s"].as_f64().unwrap()
    );
    let c = ok(&["simulate", "--json", "--seed", "2", "--policy", "nopart"]);
    assert_ne!(a, c);
}

#[test]
fn real_traces_and_report() {
    let dir = std::env::temp_dir().join(format!("miso-sim-{}", std::process::id()));
    let rep = dir.join("report");
    let philly = "../shared/datasets/traces/philly_week_20171127_1gpu.csv";
    let v: serde_json::Value = serde_json::from_slice(&ok(&[
        "simulate",
        "--trace",
        philly,
        "--format",
        "philly",
        "--limit",
        "200",
        "--gpus",
        "16",
        "--policy",
        "nopart,miso,ours",
        "--json",
        "--report",
        rep.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(v["policies"]["miso"]["jobs"], 200);
    for f in ["index.html", "jct_cdf.svg", "occupancy_miso.svg"] {
        let s = std::fs::read_to_string(rep.join(f)).unwrap();
        assert!(s.len() > 200, "{f}");
    }
    let openb = "../shared/datasets/traces/openb_pod_list_default.csv";
    let v: serde_json::Value = serde_json::from_slice(&ok(&[
        "simulate",
        "--trace",
        openb,
        "--format",
        "openb",
        "--limit",
        "100",
        "--gpus",
        "8",
        "--policy",
        "nopart,oracle",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["policies"]["oracle"]["jobs"], 100);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn malformed_traces_name_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("miso-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("p.csv");
    std::fs::write(
        &f,
        "job_id,submit_time,duration,num_gpus\n0,10,60,1\n1,abc,60,1\n",
    )
    .unwrap();
    let out = miso(&[
        "simulate",
        "--trace",
        f.to_str().unwrap(),
        "--format",
        "philly",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing half-simulated is reported");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("p.csv:3") && e.contains("submit_time") && e.contains("`abc`"),
        "{e}"
    );
    std::fs::write(&f, "job_id,submit,duration\n").unwrap();
    let e = String::from_utf8_lossy(
        &miso(&[
            "simulate",
            "--trace",
            f.to_str().unwrap(),
            "--format",
            "philly",
        ])
        .stderr,
    )
    .to_string();
    assert!(e.contains("no column `submit_time`"), "{e}");
    let out = miso(&["simulate", "--policy", "fifo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy `fifo`"));
    std::fs::remove_dir_all(&dir).ok();
}
