//! A real Slurm 22.05 cluster on this host (`scripts/slurm-cluster`): two nodes, each with one
//! simulated A100-40GB whose MIG slices are typed GPU gres with device files of their own.
//! Plain `sbatch -p miso --gres=gpu:1` jobs land on typed slices, two per node at once, and all
//! complete; `down` stops every daemon `up` started.
//!
//! Needs root and slurm-wlm + munge (the script installs them with apt-get). Skipped with a note
//! when not root, unless MISO_REQUIRE_SLURM=1 (set by .ci/run, which runs it for real).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn required() -> bool {
    std::env::var("MISO_REQUIRE_SLURM").is_ok_and(|v| v == "1")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The cluster of one test: its folder and ports are its own; `down` runs on drop.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Cluster {
    fn up(name: &str, nodes: usize, port: u16) -> Cluster {
        let dir = std::env::temp_dir().join(format!("miso-slurm-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = script(
            &dir,
            &[
                "up",
                "--nodes",
                &nodes.to_string(),
                "--port",
                &port.to_string(),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "slurm-cluster up failed:\n{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs(&dir)
        );
        let conf = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .unwrap_or_else(|| panic!("no export line in:\n{stdout}"))
            .to_string();
        Cluster { dir, conf }
    }

    /// Run a Slurm command against this cluster; its standard output.
    fn slurm(&self, cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&self.dir, &["down"]);
    }
}

fn script(dir: &Path, args: &[&str]) -> std::process::Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_miso"));
    Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/slurm-cluster"
    ))
    .args(args)
    .arg("--dir")
    .arg(dir)
    .env("MISO_BIN", bin)
    .output()
    .expect("scripts/slurm-cluster runs")
}

fn logs(dir: &Path) -> String {
    let mut s = String::new();
    for f in ["slurmctld.log", "slurmd-node1.log", "munged.log"] {
        let t = std::fs::read_to_string(dir.join("log").join(f)).unwrap_or_default();
        let tail: Vec<&str> = t.lines().rev().take(15).collect();
        s += &format!(
            "--- {f}\n{}\n",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    s
}

/// A pid file's process is alive.
fn alive(pidfile: &Path) -> bool {
    std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        // SAFETY: signal 0 only checks that the process exists.
        .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0)
}

#[test]
fn plain_sbatch_jobs_run_on_typed_mig_slices_two_per_node() {
    if !is_root() {
        assert!(!required(), "MISO_REQUIRE_SLURM=1 but not root");
        eprintln!("skipped: the Slurm cluster needs root (set MISO_REQUIRE_SLURM=1 to require it)");
        return;
    }
    let c = Cluster::up("eight", 2, 16817 + (std::process::id() % 500) as u16 * 4);
    let gres = std::fs::read_to_string(c.dir.join("etc/gres.conf")).unwrap();
    assert_eq!(
        gres.lines()
            .filter(|l| l.contains("Type=3g.20gb File="))
            .count(),
        4,
        "{gres}"
    );
    let mut ids = Vec::new();
    for _ in 0..8 {
        let out = c.slurm(
            "sbatch",
            &[
                "--parsable",
                "-p",
                "miso",
                "--gres=gpu:1",
                "-o",
                c.dir.join("job-%j.out").to_str().unwrap(),
                "--wrap",
                "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; sleep 4",
            ],
        );
        ids.push(out.trim().to_string());
    }
    // Until all are done: at some moment a node runs two at once, and each running job holds
    // a typed MIG gres.
    let t0 = Instant::now();
    let mut max_per_node = 0;
    let mut typed = std::collections::BTreeSet::new();
    loop {
        let q = c.slurm("squeue", &["-h", "-p", "miso", "-t", "R", "-o", "%i %N"]);
        let mut per: std::collections::HashMap<&str, usize> = Default::default();
        for l in q.lines() {
            if let Some((id, node)) = l.split_once(' ') {
                *per.entry(node).or_default() += 1;
                let d = c.slurm("scontrol", &["show", "job", "-d", id]);
                if d.contains("JOB_GRES=gpu:3g.20gb:1") {
                    typed.insert(id.to_string());
                }
            }
        }
        max_per_node = max_per_node.max(per.values().copied().max().unwrap_or(0));
        let left = c.slurm("squeue", &["-h", "-p", "miso"]);
        if left.trim().is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "jobs still queued after 120 s:\n{left}\n{}",
            logs(&c.dir)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(max_per_node >= 2, "never two jobs on one node at once");
    assert!(!typed.is_empty(), "no running job showed a typed MIG gres");
    for id in &ids {
        let d = c.slurm("scontrol", &["show", "job", id]);
        assert!(d.contains("JobState=COMPLETED"), "{id}: {d}");
        let out = std::fs::read_to_string(c.dir.join(format!("job-{id}.out"))).unwrap();
        assert!(
            out.starts_with("CUDA_VISIBLE_DEVICES=0") || out.starts_with("CUDA_VISIBLE_DEVICES=1"),
            "{id}: {out}"
        );
    }
    // `down` stops exactly the daemons `up` started.
    let pids: Vec<PathBuf> = std::fs::read_dir(c.dir.join("run"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        .collect();
    assert_eq!(pids.len(), 4, "munged, slurmctld, 2 slurmd: {pids:?}");
    assert!(pids.iter().all(|p| alive(p)));
    let kept: Vec<(PathBuf, Vec<u8>)> = pids
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    let out = script(&c.dir, &["down"]);
    assert!(out.status.success());
    for (p, pid) in kept {
        let pid: i32 = String::from_utf8_lossy(&pid).trim().parse().unwrap();
        // SAFETY: signal 0 only checks that the process exists.
        assert!(
            unsafe { libc::kill(pid, 0) } != 0,
            "{} still runs",
            p.display()
        );
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_starts() {
    let dir = std::env::temp_dir().join(format!("miso-slurm-{}-bad", std::process::id()));
    for args in [
        vec!["up", "--nodes", "0"],
        vec!["up", "--nodes", "x"],
        vec!["up", "--colour", "red"],
        vec!["sideways"],
    ] {
        let out = script(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!dir.join("run").exists(), "{args:?} started something");
    }
}

#[test]
fn relayout_drains_requeues_rewrites_gres_and_resumes() {
    if !is_root() {
        assert!(!required(), "MISO_REQUIRE_SLURM=1 but not root");
        eprintln!("skipped: the Slurm cluster needs root");
        return;
    }
    let c = Cluster::up("relayout", 1, 18817 + (std::process::id() % 500) as u16 * 4);
    // A job that checkpoints nothing but knows whether it was restarted.
    let id = c
        .slurm(
            "sbatch",
            &[
                "--parsable",
                "-p",
                "miso",
                "--gres=gpu:1",
                "--requeue",
                "-o",
                c.dir.join("job-%j.out").to_str().unwrap(),
                "--wrap",
                "echo start $SLURM_RESTART_COUNT; if [ \"${SLURM_RESTART_COUNT:-0}\" = 0 ]; then sleep 120; fi",
            ],
        )
        .trim()
        .to_string();
    let running = |c: &Cluster| {
        c.slurm("squeue", &["-h", "-j", &id, "-o", "%t"])
            .trim()
            .to_string()
    };
    let t0 = Instant::now();
    while running(&c) != "R" {
        assert!(t0.elapsed() < Duration::from_secs(60), "{} never ran", id);
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = script(
        &c.dir,
        &[
            "relayout",
            "--node",
            "node1",
            "--layout",
            "2g.10gb@0,2g.10gb@2,2g.10gb@4,1g.5gb@6",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}{}",
        String::from_utf8_lossy(&out.stderr),
        logs(&c.dir)
    );
    assert!(text.contains("1 job(s) requeued"), "{text}");
    let node = c.slurm("scontrol", &["show", "node", "node1"]);
    assert!(node.contains("Gres=gpu:1g.5gb:1,gpu:2g.10gb:3"), "{node}");
    // The requeued job runs again (its restart count says so) and completes; a job asking for
    // one of the new slices by type runs on it.
    let typed = c
        .slurm(
            "sbatch",
            &[
                "--parsable",
                "-p",
                "miso",
                "--gres=gpu:2g.10gb:1",
                "--wrap",
                "true",
            ],
        )
        .trim()
        .to_string();
    let t0 = Instant::now();
    loop {
        let a = c.slurm("scontrol", &["show", "job", &id]);
        let b = c.slurm("scontrol", &["show", "job", &typed]);
        if a.contains("JobState=COMPLETED") && b.contains("JobState=COMPLETED") {
            assert!(a.contains("Restarts=1"), "{a}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{a}\n{b}\n{}",
            logs(&c.dir)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = std::fs::read_to_string(c.dir.join(format!("job-{id}.out"))).unwrap();
    assert!(out.contains("start 1"), "{out}");
    // A layout miso does not accept changes nothing.
    let before = std::fs::read_to_string(c.dir.join("etc/gres.conf")).unwrap();
    let out = script(
        &c.dir,
        &[
            "relayout",
            "--node",
            "node1",
            "--layout",
            "4g.20gb@0,4g.20gb@4",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(c.dir.join("etc/gres.conf")).unwrap(),
        before
    );
}
