//! `miso slurm` as a user runs it, without a Slurm cluster: `gres` prints a node's seat lines
//! from a (simulated) GPU's instances and the driver's mig-minors table, and both verbs refuse
//! bad input with exit 2 and a line that names the flag.

use std::process::Command;

fn miso(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_miso"));
    c.args(args).env_remove("SLURM_CONF");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("miso-cli-slurm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn gres_prints_the_seats_of_a_gpus_instances_with_their_capability_files() {
    let d = tmpdir("gres");
    let state = d.join("gpu.json");
    std::fs::write(&state, r#"["3g.20gb@0,2g.10gb@4,1g.5gb@6"]"#).unwrap();
    // The simulated backend numbers GPU instances 1, 2, 3 in placement order, one compute
    // instance (0) each; the table gives their capability minors as the driver's file does.
    let minors = d.join("mig-minors");
    std::fs::write(
        &minors,
        "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\ngpu0/gi2/access 21\n\
         gpu0/gi2/ci0/access 22\ngpu0/gi3/access 30\ngpu0/gi3/ci0/access 31\n",
    )
    .unwrap();
    let s = state.to_str().unwrap();
    let m = minors.to_str().unwrap();
    let base = [
        "slurm",
        "gres",
        "--node",
        "gpu7",
        "--backend",
        "simulated",
        "--sim-state",
        s,
        "--mig-minors",
        m,
    ];
    let (code, out, err) = miso(&base, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("NodeName=gpu7 Name=gpu Type=mig0 MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap12,/dev/nvidia-caps/nvidia-cap13 # miso:3g.20gb@0"), "{out}");
    assert!(out.contains("Type=mig2 MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap30,/dev/nvidia-caps/nvidia-cap31 # miso:1g.5gb@6"), "{out}");
    assert!(
        out.contains("Type=mig6 File=/dev/nvidia0 # miso:empty"),
        "{out}"
    );
    assert!(
        out.contains(
            "Gres=gpu:mig0:1,gpu:mig1:1,gpu:mig2:1,gpu:mig3:1,gpu:mig4:1,gpu:mig5:1,gpu:mig6:1"
        ),
        "{out}"
    );
    // With the node's present lines, instances keep their seats.
    let conf = d.join("gres.conf");
    std::fs::write(&conf, "NodeName=gpu7 Name=gpu Type=mig0 File=/x # miso:empty\nNodeName=gpu7 Name=gpu Type=mig1 File=/x # miso:empty\nNodeName=gpu7 Name=gpu Type=mig2 File=/x # miso:empty\nNodeName=gpu7 Name=gpu Type=mig3 File=/x # miso:empty\nNodeName=gpu7 Name=gpu Type=mig4 File=/x # miso:1g.5gb@6\n").unwrap();
    let mut with = base.to_vec();
    with.extend(["--gres-conf", conf.to_str().unwrap(), "--json"]);
    let (code, out, err) = miso(&with, &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layout"], "3g.20gb@0,2g.10gb@4,1g.5gb@6");
    assert!(
        v["lines"][4].as_str().unwrap().ends_with("# miso:1g.5gb@6"),
        "{out}"
    );
    // Bad input: named, exit 2, nothing printed on stdout.
    let bad_minors = d.join("bad-minors");
    std::fs::write(&bad_minors, "gpu0/gi1/access twelve\n").unwrap();
    for (args, needle) in [
        (
            vec![
                "slurm",
                "gres",
                "--node",
                "a b",
                "--backend",
                "simulated",
                "--sim-state",
                s,
            ],
            "--node",
        ),
        (
            vec!["slurm", "gres", "--node", "n", "--backend", "simulated"],
            "--sim-state",
        ),
        (
            vec![
                "slurm",
                "gres",
                "--node",
                "n",
                "--backend",
                "simulated",
                "--sim-state",
                s,
                "--mig-minors",
                "/nonexistent",
            ],
            "--mig-minors",
        ),
        (
            vec![
                "slurm",
                "gres",
                "--node",
                "n",
                "--backend",
                "simulated",
                "--sim-state",
                s,
                "--mig-minors",
                bad_minors.to_str().unwrap(),
            ],
            "line 1",
        ),
        (
            vec!["slurm", "gres", "--node", "n", "--gpu-index", "-1"],
            "--gpu-index",
        ),
    ] {
        let (code, out, err) = miso(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn run_refuses_a_missing_slurm_conf_and_bad_partitions_before_it_starts() {
    let d = tmpdir("run");
    let conf = d.join("slurm.conf");
    std::fs::write(&conf, "ClusterName=x\n").unwrap();
    std::fs::write(d.join("gres.conf"), "").unwrap();
    let c = conf.to_str().unwrap();
    let dev = d.join("dev");
    let dv = dev.to_str().unwrap();
    for (args, needle) in [
        (vec!["slurm", "run", "--dev-dir", dv], "--slurm-conf"),
        (
            vec![
                "slurm",
                "run",
                "--dev-dir",
                dv,
                "--slurm-conf",
                "/nonexistent",
            ],
            "--slurm-conf",
        ),
        (
            vec![
                "slurm",
                "run",
                "--dev-dir",
                dv,
                "--slurm-conf",
                c,
                "--partition",
                "a b",
            ],
            "--partition",
        ),
        (
            vec![
                "slurm",
                "run",
                "--dev-dir",
                dv,
                "--slurm-conf",
                c,
                "--run-partition",
                "miso",
            ],
            "--run-partition",
        ),
        (
            vec![
                "slurm",
                "run",
                "--dev-dir",
                dv,
                "--slurm-conf",
                c,
                "--restart-cmd",
                " ",
            ],
            "--restart-cmd",
        ),
        (
            vec![
                "slurm",
                "run",
                "--dev-dir",
                dv,
                "--slurm-conf",
                c,
                "--interval-ms",
                "-5",
            ],
            "--interval-ms",
        ),
        (
            vec![
                "slurm",
                "run",
                "--dev-dir",
                dv,
                "--slurm-conf",
                c,
                "--controller",
                "http://10.1.2.3:7450",
            ],
            "--allow-plain-http",
        ),
    ] {
        let (code, _, err) = miso(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!dev.exists(), "nothing was created");
    std::fs::remove_dir_all(&d).ok();
}
