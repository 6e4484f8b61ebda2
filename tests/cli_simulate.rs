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
    let avg = |p: &str| v["policies"][p]["avg_jct_s"].as_f64().unwrap();
    for p in [
        "nopart",
        "static",
        "static-best",
        "mps",
        "miso",
        "oracle",
        "ours",
    ] {
        let m = &v["policies"][p];
        assert_eq!(m["jobs"], 100, "{p}");
        for f in [
            "avg_jct_s",
            "avg_jrt_s",
            "p95_jct_s",
            "makespan_s",
            "avg_stp",
        ] {
            assert!(m[f].as_f64().unwrap() > 0.0, "{p}.{f}");
        }
        assert!(m["reconfigurations"].is_u64());
        // A job's completion time is at least its work on the fastest slice (the whole GPU).
        assert!(avg(p) >= 770.0 * 0.9, "{p}: mean work is 770 s");
    }
    // MISO-family policies re-partition; the baselines never do.
    assert!(v["policies"]["miso"]["reconfigurations"].as_u64().unwrap() > 0);
    assert_eq!(v["policies"]["nopart"]["reconfigurations"], 0);
    assert_eq!(
        v["policies"]["miso"]["profiling_s_per_job"]
            .as_f64()
            .unwrap()
            > 0.0,
        true
    );
    assert_eq!(v["policies"]["oracle"]["profiling_s_per_job"], 0.0);
    assert_eq!(
        v["policies"]["static"]["detail"],
        "layout 2g.10gb@0,2g.10gb@2,3g.20gb@4"
    );
    assert!(v["policies"]["static-best"]["detail"]
        .as_str()
        .unwrap()
        .starts_with("best static layout"));
    // The paper's shape on its own setup (seed 1): MISO far below NoPart and below the static
    // 3g+2g+2g; Oracle no worse than MISO; ours below MISO.
    assert!(
        avg("miso") <= 0.6 * avg("nopart"),
        "{} vs {}",
        avg("miso"),
        avg("nopart")
    );
    assert!(
        avg("miso") <= 0.9 * avg("static"),
        "{} vs {}",
        avg("miso"),
        avg("static")
    );
    assert!(avg("oracle") <= avg("miso"));
    assert!(avg("ours") < avg("miso"));
    let c = ok(&["simulate", "--json", "--seed", "2", "--policy", "nopart"]);
    assert_ne!(a, c);
}

/// The `policies` part of a `--json` run.
fn policies(args: &[&str]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&ok(args)).unwrap();
    v["policies"].clone()
}

#[test]
fn named_formats_equal_their_csv_column_mappings() {
    let philly = "../shared/datasets/traces/philly_week_20171127_1gpu.csv";
    let common = [
        "--gpus",
        "16",
        "--limit",
        "300",
        "--policy",
        "nopart,miso",
        "--json",
    ];
    let named = policies(
        &[
            &["simulate", "--trace", philly, "--format", "philly"][..],
            &common,
        ]
        .concat(),
    );
    let csv = policies(
        &[
            &[
                "simulate",
                "--trace",
                philly,
                "--format",
                "csv",
                "--columns",
                "id=job_id,arrival=submit_time,work=duration,gpus=num_gpus",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(named, csv);
    assert_eq!(named["miso"]["jobs"], 300);
    let openb = "../shared/datasets/traces/openb_pod_list_default.csv";
    let out: serde_json::Value = serde_json::from_slice(&ok(&[
        &["simulate", "--trace", openb, "--format", "openb"][..],
        &common,
    ]
    .concat()))
    .unwrap();
    let csv = policies(
        &[
            &[
                "simulate",
                "--trace",
                openb,
                "--format",
                "csv",
                "--columns",
                "id=name,arrival=creation_time,start=scheduled_time,end=deletion_time,gpus=num_gpu,gpu_milli=gpu_milli,qos=qos,phase=pod_phase",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(out["policies"], csv);
    // openb: pods still running at the trace's end and pods never scheduled are left out and
    // counted; CPU-only pods too.
    let sk = &out["scenario"]["skipped"];
    assert_eq!(sk["running_at_end"], 5193);
    assert_eq!(sk["never_scheduled"], 897);
    assert!(sk["no_gpu"].as_u64().unwrap() > 0);
    // --qos keeps one class.
    let ls: serde_json::Value = serde_json::from_slice(&ok(&[
        "simulate", "--trace", openb, "--format", "openb", "--qos", "LS", "--policy", "nopart",
        "--json",
    ]))
    .unwrap();
    assert!(ls["scenario"]["skipped"]["other_qos"].as_u64().unwrap() > 0);
}

#[test]
fn csv_traces_with_datetimes_gangs_and_fractions() {
    let dir = std::env::temp_dir().join(format!("miso-sim-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("t.csv");
    // Rows out of order, quoted fields, a BOM, a row without duration (skipped), a gang job
    // and a fractional job.
    std::fs::write(
        &f,
        "\u{feff}when,\"run time\",ngpu,frac,model\n\
         2017-10-09 07:03:55,600,1,,bert_train8\n\
         2017-10-09 07:01:55,300,2,,\n\
         2017-10-09 07:02:55,,1,,\n\
         \"2017-10-09 07:02:00\",900,1,0.4,resnet_train64\n",
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&ok(&[
        "simulate",
        "--trace",
        f.to_str().unwrap(),
        "--format",
        "csv",
        "--columns",
        "arrival=when,work=run time,gpus=ngpu,gpu_fraction=frac,workload=model",
        "--gpus",
        "2",
        "--policy",
        "nopart,miso,ours",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["scenario"]["jobs"], 3);
    assert_eq!(v["scenario"]["skipped"]["no_duration"], 1);
    let g = &v["policies"]["miso"]["groups"];
    assert_eq!(g["multi_gpu"]["jobs"], 1);
    assert_eq!(g["single_gpu"]["jobs"], 2);
    // The gang arrived first at time 0 and ran alone on both GPUs: JCT = its work.
    assert_eq!(
        v["policies"]["nopart"]["groups"]["multi_gpu"]["avg_jct_s"],
        300.0
    );
    for (spec, want) in [
        ("work=run time", "`arrival=COLUMN` is required"),
        ("arrival=when,work=nope", "no column `nope`"),
        (
            "arrival=when,work=run time,colour=x",
            "unknown key `colour`",
        ),
    ] {
        let out = miso(&[
            "simulate",
            "--trace",
            f.to_str().unwrap(),
            "--format",
            "csv",
            "--columns",
            spec,
        ]);
        assert_eq!(out.status.code(), Some(2), "{spec}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{spec}: {e}");
    }
    std::fs::write(&f, "when,run\n2017-99-09 07:03:55,600\n").unwrap();
    let out = miso(&[
        "simulate",
        "--trace",
        f.to_str().unwrap(),
        "--format",
        "csv",
        "--columns",
        "arrival=when,work=run",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("t.csv:2") && e.contains("`when`"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn out_of_range_flags_exit_2_naming_the_flag() {
    for (args, want) in [
        (vec!["--profiling-s=-0.5"], "--profiling-s"),
        (vec!["--reconfig-s=-0.9"], "--reconfig-s"),
        (vec!["--mps-max-jobs", "0"], "--mps-max-jobs"),
        (vec!["--gpus", "0"], "--gpus"),
        (vec!["--synthetic", "100000000000"], "--synthetic"),
        (vec!["--tick-s=-1"], "--tick-s"),
        (vec!["--columns", "arrival=a,work=b"], "--columns"),
        (vec!["--seeds", "5-1"], "--seeds"),
        (vec!["--gpus", "-1"], "--gpus"),
        (
            vec!["--mean-interarrival-s", "-60"],
            "--mean-interarrival-s",
        ),
        (vec!["--limit", "0"], "--limit"),
    ] {
        let out = miso(&[&["simulate"][..], &args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    }
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
    for f in ["index.html", "jct_cdf.svg", "stp.svg", "occupancy_miso.svg"] {
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
        "nopart,static,oracle",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["policies"]["oracle"]["jobs"], 100);
    // A pod whose GPU share exceeds every instance of the static layout: that policy is
    // reported as not run to the end, the others still run.
    assert!(v["policies"]["static"]["error"]
        .as_str()
        .unwrap()
        .contains("can never run"));
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

#[test]
fn learning_online_and_robust_estimates_are_deterministic_and_report_a_family() {
    let args = [
        "simulate",
        "--policy",
        "miso,ours",
        "--json",
        "--family",
        "transformer",
        "--learn-online",
        "--estimate",
        "expected",
        "--gpus",
        "4",
    ];
    let a = ok(&args);
    assert_eq!(a, ok(&args), "same seed, same bytes");
    let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
    let f = &v["policies"]["miso"]["family"];
    assert_eq!(f["jobs"], 26, "the MISO trace's transformer jobs");
    assert_eq!(f["thirds"].as_array().unwrap().len(), 3);
    assert_eq!(v["scenario"]["parameters"]["learn_online"], true);
    assert_eq!(v["scenario"]["parameters"]["estimate"], "expected");
    let plain = policies(&["simulate", "--policy", "miso", "--json", "--gpus", "4"]);
    assert_ne!(
        plain["miso"]["avg_jct_s"], v["policies"]["miso"]["avg_jct_s"],
        "the expected-slowdown estimate and learning change decisions"
    );
    // Over seeds, the family's JCT is averaged too.
    let v: serde_json::Value = serde_json::from_slice(&ok(&[
        "simulate",
        "--seeds",
        "1-2",
        "--policy",
        "miso",
        "--json",
        "--family",
        "transformer",
    ]))
    .unwrap();
    let f = &v["mean"]["miso"]["family"];
    assert!(f["avg_jct_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(f["thirds"].as_array().unwrap().len(), 3);
    let o = miso(&["simulate", "--estimate", "best"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--estimate"));
}
