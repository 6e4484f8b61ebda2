//! A real Slurm 22.05 cluster on this host (`scripts/slurm-cluster`): nodes with one simulated
//! A100-40GB each, whose MIG slices are typed GPU gres with device files of their own.
//!
//! With miso (`up`): `miso serve`, a simulated agent per node and the connector `miso slurm
//! run`. Plain `sbatch -p miso --gres=gpu:1` jobs are placed by miso on typed slices, several
//! per node at once, all complete, and after re-partitions Slurm's gres and `miso status` agree;
//! a job whose slice changes is requeued and runs again; the connector killed in the middle of
//! a re-partition and started again loses nothing. Without miso (`up --no-miso`): fixed slices,
//! and the script's own drain/requeue/rewrite/resume. `down` stops every process `up` started.
//!
//! Needs root and slurm-wlm + munge (the script installs them with apt-get). Skipped with a note
//! when not root, unless MISO_REQUIRE_SLURM=1 (set by .ci/run, which runs it for real).

use std::collections::{BTreeSet, HashMap};
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

fn skip() -> bool {
    if is_root() {
        return false;
    }
    assert!(!required(), "MISO_REQUIRE_SLURM=1 but not root");
    eprintln!("skipped: the Slurm cluster needs root (set MISO_REQUIRE_SLURM=1 to require it)");
    true
}

/// The cluster of one test: its folder and ports are its own; `down` runs on drop.
struct Cluster {
    dir: PathBuf,
    conf: String,
    /// The controller's URL when miso runs the cluster.
    controller: Option<String>,
}

impl Cluster {
    fn up(name: &str, nodes: usize, port: u16, extra: &[&str]) -> Cluster {
        let dir = std::env::temp_dir().join(format!("miso-slurm-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (n, p) = (nodes.to_string(), port.to_string());
        let mut args = vec!["up", "--nodes", &n, "--port", &p];
        args.extend_from_slice(extra);
        let out = script(&dir, &args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            // Whatever it started before failing stops with it.
            let _ = script(&dir, &["down"]);
        }
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
        let controller = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export MISO_CONTROLLER="))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string);
        Cluster {
            dir,
            conf,
            controller,
        }
    }

    /// `miso status --json` of this cluster's controller.
    fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_miso"))
            .args(["status", "--json", "--controller"])
            .arg(self.controller.as_deref().expect("a cluster with miso"))
            .arg("--token-file")
            .arg(self.dir.join("etc/token"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Submit `sbatch -p miso --gres=gpu:1` with these extra arguments; the job id.
    fn sbatch(&self, extra: &[&str], wrap: &str) -> String {
        let out = self.dir.join("job-%j.out");
        let mut args = vec![
            "--parsable",
            "--open-mode=append",
            "-p",
            "miso",
            "--gres=gpu:1",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--wrap", wrap]);
        self.slurm("sbatch", &args).trim().to_string()
    }

    fn job_state(&self, id: &str) -> String {
        let d = self.slurm("scontrol", &["-o", "show", "job", id]);
        d.split_whitespace()
            .find_map(|w| w.strip_prefix("JobState="))
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until every job has left the queue; panics with the logs after `limit`.
    fn wait_all_done(&self, limit: Duration, mut each: impl FnMut(&Cluster)) {
        let t0 = Instant::now();
        loop {
            each(self);
            let left = self.slurm("squeue", &["-h", "-t", "PD,R,CG,S,CF", "-o", "%i %P %T %r"]);
            if left.trim().is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "jobs still queued after {limit:?}:\n{left}\n{}",
                logs(&self.dir)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
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
    for f in [
        "slurmctld.log",
        "slurmd-node1.log",
        "munged.log",
        "miso-slurm.log",
        "miso-agent-node1.log",
        "miso-serve.log",
    ] {
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

/// Slurm's record of a node's layout (its `Comment=miso:layout=...` and the seats of its
/// gres.conf lines, both written by the connector) and the layout `miso status` reports for its
/// GPU agree.
fn layouts_agree(c: &Cluster, node: &str) -> Result<(), String> {
    let n = c.slurm("scontrol", &["-o", "show", "node", node]);
    let slurm = n
        .split_whitespace()
        .find_map(|w| w.strip_prefix("Comment=miso:layout="))
        .unwrap_or_default()
        .to_string();
    let gres = std::fs::read_to_string(c.dir.join("etc/gres.conf")).unwrap();
    let mut seats: Vec<&str> = gres
        .lines()
        .filter(|l| l.starts_with(&format!("NodeName={node} ")))
        .filter_map(|l| l.split("# miso:").nth(1))
        .filter(|i| *i != "empty")
        .collect();
    seats.sort_by_key(|i| i.split('@').nth(1).and_then(|x| x.parse::<u32>().ok()));
    let st = c.status();
    let g = st["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["node"] == node)
        .cloned()
        .unwrap_or_default();
    let reported = g["reported"].as_str().unwrap_or("empty");
    let in_gres = if seats.is_empty() {
        "empty".to_string()
    } else {
        seats.join(",")
    };
    if slurm == reported && in_gres == reported && g["desired"] == g["reported"] {
        Ok(())
    } else {
        Err(format!(
            "{node}: Slurm Comment layout `{slurm}`, gres.conf seats `{in_gres}`, miso status {g}"
        ))
    }
}

#[test]
fn plain_sbatch_jobs_are_placed_by_miso_on_typed_slices_and_the_layouts_agree() {
    if skip() {
        return;
    }
    let c = Cluster::up(
        "eight",
        2,
        16817 + (std::process::id() % 500) as u16 * 4,
        &[],
    );
    let gres = std::fs::read_to_string(c.dir.join("etc/gres.conf")).unwrap();
    // Seven seats per A100 (one per compute slice), empty until miso partitions the GPU.
    let seats = gres
        .lines()
        .filter(|l| l.contains(" Type=mig") && l.ends_with("# miso:empty"));
    assert_eq!(seats.count(), 14, "{gres}");
    // The must-show workload, word for word: 8 × `sbatch -p miso --gres=gpu:1 --wrap 'sleep 40'`.
    let ids: Vec<String> = (0..8)
        .map(|_| {
            c.sbatch(
                &[],
                "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; sleep 40",
            )
        })
        .collect();
    // While they run: each running job holds a typed MIG gres (its seat, `gpu:mig3`) and its
    // comment names the MIG slice in it; at some moment one node runs two or more at once on
    // different slices.
    let mut most_on_one_node = 0;
    let mut typed: BTreeSet<String> = BTreeSet::new();
    c.wait_all_done(Duration::from_secs(240), |c| {
        let q = c.slurm("squeue", &["-h", "-t", "R", "-o", "%i %N"]);
        let mut slices: HashMap<String, BTreeSet<String>> = HashMap::new();
        for l in q.lines() {
            let Some((id, node)) = l.split_once(' ') else {
                continue;
            };
            let d = c.slurm("scontrol", &["-d", "-o", "show", "job", id]);
            let Some(g) = d.split_whitespace().find_map(|w| w.strip_prefix("GRES=")) else {
                continue;
            };
            // gpu:mig3:1(IDX:3) and Comment=... miso:slice=3g.20gb@4: a seat and its slice.
            let slice = d
                .split_whitespace()
                .find_map(|w| w.split_once("miso:slice=").map(|(_, s)| s));
            if let (Some(seat), Some(slice)) = (g.strip_prefix("gpu:mig"), slice) {
                let k = seat.split(':').next().unwrap_or("");
                assert!(g.ends_with(&format!("(IDX:{k})")), "{g}");
                typed.insert(id.to_string());
                slices
                    .entry(node.to_string())
                    .or_default()
                    .insert(slice.to_string());
            }
        }
        most_on_one_node =
            most_on_one_node.max(slices.values().map(BTreeSet::len).max().unwrap_or(0));
    });
    assert!(
        most_on_one_node >= 2,
        "never two jobs on different slices of one node at once\n{}",
        logs(&c.dir)
    );
    assert_eq!(
        typed.len(),
        8,
        "running jobs seen on typed MIG gres: {typed:?}"
    );
    for id in &ids {
        assert_eq!(c.job_state(id), "COMPLETED", "{id}");
        let out = std::fs::read_to_string(c.dir.join(format!("job-{id}.out"))).unwrap();
        assert!(out.starts_with("CUDA_VISIBLE_DEVICES="), "{id}: {out}");
    }
    // Re-partitions happened (empty → layouts, and again as jobs ended); afterwards Slurm and
    // miso status agree on every node's layout.
    let log = std::fs::read_to_string(c.dir.join("log/miso-slurm.log")).unwrap();
    assert!(log.matches("\"relayout\"").count() >= 2, "{log}");
    let t0 = Instant::now();
    for node in ["node1", "node2"] {
        while let Err(e) = layouts_agree(&c, node) {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "{e}\n{}",
                logs(&c.dir)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // `down` stops exactly what `up` started: munge, slurmctld, 2 slurmd, miso serve, 2
    // agents, the connector.
    let pids: Vec<PathBuf> = std::fs::read_dir(c.dir.join("run"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        .collect();
    assert_eq!(pids.len(), 8, "{pids:?}");
    assert!(pids.iter().all(|p| alive(p)), "{pids:?}");
    let kept: Vec<(PathBuf, i32)> = pids
        .iter()
        .map(|p| {
            (
                p.clone(),
                std::fs::read_to_string(p).unwrap().trim().parse().unwrap(),
            )
        })
        .collect();
    let out = script(&c.dir, &["down"]);
    assert!(out.status.success());
    for (p, pid) in kept {
        // SAFETY: signal 0 only checks that the process exists.
        assert!(
            unsafe { libc::kill(pid, 0) } != 0,
            "{} still runs",
            p.display()
        );
    }
}

/// The connector's re-partitions so far, from its log (one JSON line each).
fn relayouts(c: &Cluster) -> Vec<serde_json::Value> {
    std::fs::read_to_string(c.dir.join("log/miso-slurm.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("relayout").cloned())
        .collect()
}

/// Kill a pid file's process with SIGKILL and start it again with the same command line.
fn kill_and_restart(pidfile: &Path, log: &Path) {
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // SAFETY: a plain kill of a process this test's cluster started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    // Detached on purpose: the cluster's `down` stops it by its pid file.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    std::fs::write(pidfile, child.id().to_string()).unwrap();
}

#[test]
fn a_job_whose_slice_changes_is_requeued_and_a_killed_connector_loses_nothing() {
    if skip() {
        return;
    }
    let c = Cluster::up(
        "requeue",
        1,
        18817 + (std::process::id() % 500) as u16 * 4,
        &[],
    );
    // A long job alone gets the whole GPU; it knows whether it was restarted.
    let a = c.sbatch(
        &["--comment", "miso:workload=bert_train8"],
        "echo start ${SLURM_RESTART_COUNT:-0}; sleep 30",
    );
    let t0 = Instant::now();
    while c.job_state(&a) != "RUNNING" {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{a} never ran\n{}",
            logs(&c.dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = c.slurm("scontrol", &["-d", "-o", "show", "job", &a]);
    assert!(
        d.contains("GRES=gpu:mig0:1(IDX:0)") && d.contains("miso:slice=7g.40gb@0"),
        "{d}"
    );
    // A second job arrives: MISO re-plans the GPU for both, so the whole-GPU instance goes and
    // the first job is requeued (checkpoint/requeue), then runs again on its new slice. The
    // connector is killed (SIGKILL) in the middle of that re-partition, right after the drain,
    // and started again.
    let b = c.sbatch(
        &["--comment", "miso:workload=gnn_train64"],
        "echo start ${SLURM_RESTART_COUNT:-0}; sleep 5",
    );
    let t0 = Instant::now();
    loop {
        let n = c.slurm("scontrol", &["-o", "show", "node", "node1"]);
        if n.contains("DRAIN") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "node1 never drained\n{}",
            logs(&c.dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_and_restart(
        &c.dir.join("run/miso-slurm.pid"),
        &c.dir.join("log/miso-slurm.log"),
    );
    c.wait_all_done(Duration::from_secs(180), |_| {});
    for id in [&a, &b] {
        assert_eq!(c.job_state(id), "COMPLETED", "{id}\n{}", logs(&c.dir));
    }
    // The first job ran again after its requeue (the second may be requeued too, when the first
    // ends and MISO gives it the whole GPU): each job's starts strictly in order, never
    // repeated, and as many as Slurm counted.
    let d = c.slurm("scontrol", &["-o", "show", "job", &a]);
    let restarts: usize = d
        .split_whitespace()
        .find_map(|w| w.strip_prefix("Restarts="))
        .and_then(|r| r.parse().ok())
        .unwrap();
    assert!(restarts >= 1, "{d}");
    assert!(
        starts_in_order(&c, &a) >= 2,
        "the first job ran again after its requeue"
    );
    assert!(starts_in_order(&c, &b) >= 1);
    // The re-partition that requeued it finished under the restarted connector.
    let r = relayouts(&c);
    assert!(r.iter().any(|r| r["from"] == "7g.40gb@0"), "{r:?}");
    let t0 = Instant::now();
    while let Err(e) = layouts_agree(&c, "node1") {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "{e}\n{}",
            logs(&c.dir)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let n = c.slurm("scontrol", &["-o", "show", "node", "node1"]);
    assert!(!n.contains("DRAIN"), "{n}");
}

/// The pid in a pid file.
fn pid_of(pidfile: &Path) -> i32 {
    std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The node a job runs on (empty while it does not).
fn node_of(c: &Cluster, id: &str) -> String {
    c.slurm("squeue", &["-h", "-j", id, "-t", "R", "-o", "%N"])
        .trim()
        .to_string()
}

/// The `start k` lines of a job's output (k = Slurm's restart count): strictly increasing from
/// 0 (a start is never repeated; a count may be skipped when Slurm's launch of a restart was
/// refused, as slurmd does while the previous run's process is still there). How many ran.
fn starts_in_order(c: &Cluster, id: &str) -> usize {
    let out = std::fs::read_to_string(c.dir.join(format!("job-{id}.out"))).unwrap();
    let ks: Vec<u32> = out
        .lines()
        .filter_map(|l| l.strip_prefix("start ")?.trim().parse().ok())
        .collect();
    assert_eq!(ks.first(), Some(&0), "job {id}: {out}");
    assert!(ks.windows(2).all(|w| w[0] < w[1]), "job {id}: {out}");
    ks.len()
}

#[test]
fn faults_a_job_ignoring_sigterm_a_slurmd_killed_mid_repartition_and_a_node_that_never_returns() {
    if skip() {
        return;
    }
    let c = Cluster::up(
        "faults",
        2,
        21817 + (std::process::id() % 500) as u16 * 4,
        &[],
    );
    let running = |id: &str, limit: u64| {
        let t0 = Instant::now();
        loop {
            let n = node_of(&c, id);
            if !n.is_empty() {
                return n;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(limit),
                "{id} never ran\n{}",
                logs(&c.dir)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // X ignores the checkpoint signal (SIGTERM): Slurm kills it after KillWait when it is
    // requeued. Y runs on the other node.
    let x = c.sbatch(
        &["--comment", "miso:workload=bert_train8"],
        "trap '' TERM; echo start ${SLURM_RESTART_COUNT:-0}; sleep 50",
    );
    let nx = running(&x, 60);
    let y = c.sbatch(
        &["--comment", "miso:workload=gnn_train64"],
        "echo start ${SLURM_RESTART_COUNT:-0}; sleep 15.5",
    );
    let ny = running(&y, 60);
    assert_ne!(nx, ny, "fewest jobs: Y on the other node");
    // Y's node dies for good: slurmd, its agent and the job's processes.
    for f in [format!("slurmd-{ny}.pid"), format!("miso-agent-{ny}.pid")] {
        // SAFETY: plain kills of processes this test's cluster started.
        unsafe { libc::kill(pid_of(&c.dir.join("run").join(f)), libc::SIGKILL) };
    }
    let _ = Command::new("pkill")
        .args(["-9", "-f", &format!("slurmstepd: \\[{y}\\.")])
        .status();
    let _ = Command::new("pkill")
        .args(["-9", "-f", "sleep 15.5"])
        .status();
    // Slurm declares it DOWN (SlurmdTimeout) and requeues Y; miso takes the GPU out of the plan
    // and places Y beside X, which is requeued for the new layout (and killed after KillWait,
    // having ignored SIGTERM). While X's node drains for that, its slurmd is killed and
    // started again.
    let t0 = Instant::now();
    loop {
        let n = c.slurm("scontrol", &["-o", "show", "node", &nx]);
        if n.contains("DRAIN") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "{nx} never drained\n{}",
            logs(&c.dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pf = c.dir.join("run").join(format!("slurmd-{nx}.pid"));
    // SAFETY: as above.
    unsafe { libc::kill(pid_of(&pf), libc::SIGKILL) };
    std::thread::sleep(Duration::from_secs(1));
    let st = Command::new("slurmd")
        .args(["-f", &c.conf, "-N", &nx])
        .status()
        .unwrap();
    assert!(st.success());
    c.wait_all_done(Duration::from_secs(300), |_| {});
    for id in [&x, &y] {
        assert_eq!(c.job_state(id), "COMPLETED", "{id}\n{}", logs(&c.dir));
    }
    assert!(starts_in_order(&c, &x) >= 2, "X was requeued and ran again");
    assert!(
        starts_in_order(&c, &y) >= 2,
        "Y ran again after its node died"
    );
    let log = std::fs::read_to_string(c.dir.join("log/miso-slurm.log")).unwrap();
    assert!(log.contains(&format!("{ny}: DOWN in Slurm")), "{log}");
    // The dead node's GPU is out of the plan; the living one agrees with Slurm.
    let st = c.status();
    assert!(
        !st["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["node"] == ny.as_str()),
        "{st}"
    );
    let t0 = Instant::now();
    while let Err(e) = layouts_agree(&c, &nx) {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "{e}\n{}",
            logs(&c.dir)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_starts() {
    let dir = std::env::temp_dir().join(format!("miso-slurm-{}-bad", std::process::id()));
    for args in [
        vec!["up", "--nodes", "0"],
        vec!["up", "--nodes", "x"],
        vec!["up", "--colour", "red"],
        vec!["up", "--layout", "7g.40gb@0"],
        vec!["sideways"],
    ] {
        let out = script(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!dir.join("run").exists(), "{args:?} started something");
    }
}

#[test]
fn without_miso_the_script_relayout_drains_requeues_rewrites_gres_and_resumes() {
    if skip() {
        return;
    }
    let c = Cluster::up(
        "relayout",
        1,
        23817 + (std::process::id() % 500) as u16 * 4,
        &["--no-miso"],
    );
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
