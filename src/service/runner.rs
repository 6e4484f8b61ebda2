//! The jobs a node agent runs. Each job is `sh -c COMMAND` in its own process group on one MIG
//! instance, with this environment:
//!
//! - `CUDA_VISIBLE_DEVICES`: the instance's MIG device UUID (from the backend);
//! - `MISO_JOB`: the job id; `MISO_INSTANCE`: the instance (`3g.20gb@4`);
//! - `MISO_CHECKPOINT_DIR`: a folder that survives restarts, for the job's checkpoints;
//! - `MISO_RESTART`: how many times it was started before (0 on the first start);
//! - `MISO_REPORT_HOST`, `MISO_REPORT_PORT`: where it may report each iteration's seconds
//!   (`<MISO_JOB> <seconds>\n`, the profiling line protocol); the agent turns them into
//!   observations of the job on its instance (learning from runs).
//!
//! Checkpoint protocol: before its instance changes the job's process group gets SIGTERM; the
//! job saves to `MISO_CHECKPOINT_DIR` and exits. After the grace period it gets SIGKILL. Started
//! again with `MISO_RESTART` > 0, it resumes from the checkpoint. A job that exits with status 0
//! on its own has finished; one that dies otherwise (lost) is restarted, up to a limit.
//!
//! What runs is saved in `<dir>/jobs.json` after every change, so an agent that is killed and
//! restarted adopts the jobs still alive instead of starting them twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::control::simulated::alive;

/// A job process the runner started (or adopted after a restart).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunningJob {
    pub id: String,
    pub gpu: u32,
    /// The instance label (`3g.20gb@4`).
    pub instance: String,
    /// The process (and process-group) id of its `sh -c`.
    pub pid: u32,
    /// How many times it has been started, this start included.
    pub starts: u32,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ended {
    /// Exited with status 0 on its own.
    Finished,
    /// Died otherwise, or vanished while the agent was away; the text says how.
    Lost(String),
    /// Stopped for a checkpoint (exited after SIGTERM).
    Checkpointed,
    /// Did not exit within the grace period and was killed.
    Killed,
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    running: Vec<RunningJob>,
    starts: BTreeMap<String, u32>,
    /// Unexpected exits per job, for the restart limit.
    losses: BTreeMap<String, u32>,
    /// Jobs that finished here (never started again), and whether the controller knows.
    finished: BTreeMap<String, bool>,
    /// Jobs given up after too many losses, and whether the controller knows.
    failed: BTreeMap<String, bool>,
    /// Profiling requests of the controller this agent has carried out.
    #[serde(default)]
    profiled: Vec<String>,
}

/// The agent's job processes.
pub struct Runner {
    dir: PathBuf,
    s: Saved,
    children: BTreeMap<String, Child>,
    /// Time a job gets to checkpoint after SIGTERM.
    pub grace: Duration,
    /// Losses after which a job is not restarted again.
    pub max_losses: u32,
    /// Where jobs report their iteration times (`MISO_REPORT_HOST`/`MISO_REPORT_PORT`).
    pub report_port: Option<u16>,
}

/// Send signal `s` to process group `pgid` (a job's `sh -c` and everything it started).
pub fn signal_group(pgid: u32, s: libc::c_int) {
    // SAFETY: kill(2) on a process group (negative pid); no memory is involved.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), s);
    }
}

/// Whether any live (non-zombie) process is left in process group `pgid`, read from
/// `/proc/<pid>/stat` ("pid (comm) state ppid pgrp ..."). The leader `sh` may exit at once on
/// SIGTERM while the job it started is still saving its checkpoint: only an empty group is done.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let mut f = st
            .rsplit_once(')')
            .map(|(_, r)| r)
            .unwrap_or("")
            .split_whitespace();
        let (state, _ppid, pgrp) = (f.next(), f.next(), f.next());
        state != Some("Z") && pgrp.and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
    })
}

/// A job id as a file name (ids are checked by the controller; this is a second guard).
fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Runner {
    /// The runner whose state lives in `dir`; jobs of a previous run that are still alive are
    /// adopted, the others are counted as lost (and started again).
    pub fn open(dir: &Path) -> Result<Runner, String> {
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("jobs.json");
        let s: Saved = match std::fs::read_to_string(&file) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{}: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        Ok(Runner {
            dir: dir.to_path_buf(),
            s,
            children: BTreeMap::new(),
            grace: Duration::from_secs(30),
            report_port: None,
            max_losses: 3,
        })
    }

    fn save(&self) {
        let file = self.dir.join("jobs.json");
        let tmp = self.dir.join("jobs.json.tmp");
        if let Ok(t) = serde_json::to_string_pretty(&self.s) {
            if std::fs::write(&tmp, t).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
        }
    }

    /// The jobs running now.
    pub fn running(&self) -> &[RunningJob] {
        &self.s.running
    }

    pub fn get(&self, id: &str) -> Option<&RunningJob> {
        self.s.running.iter().find(|j| j.id == id)
    }

    /// Finished here: it must not be started again.
    pub fn is_finished(&self, id: &str) -> bool {
        self.s.finished.contains_key(id)
    }

    /// Given up after `max_losses` losses.
    pub fn is_failed(&self, id: &str) -> bool {
        self.s.failed.contains_key(id)
    }

    /// Finished or failed jobs the controller has not been told of: (id, error if failed).
    pub fn unreported(&self) -> Vec<(String, Option<String>)> {
        let f = self
            .s
            .finished
            .iter()
            .filter(|(_, told)| !**told)
            .map(|(id, _)| (id.clone(), None));
        let g = self
            .s
            .failed
            .iter()
            .filter(|(_, told)| !**told)
            .map(|(id, _)| {
                (
                    id.clone(),
                    Some(format!(
                        "lost {} times; not restarted (see the agent's logs/{}.log)",
                        self.max_losses,
                        file_name(id)
                    )),
                )
            });
        f.chain(g).collect()
    }

    /// The controller knows that `id` ended.
    pub fn reported(&mut self, id: &str) {
        for m in [&mut self.s.finished, &mut self.s.failed] {
            if let Some(t) = m.get_mut(id) {
                *t = true;
            }
        }
        self.save();
    }

    /// Start job `id` on `instance` of `gpu`; `device` is its `CUDA_VISIBLE_DEVICES`.
    pub fn start(
        &mut self,
        id: &str,
        command: &str,
        gpu: u32,
        instance: &str,
        device: &str,
    ) -> Result<&RunningJob, String> {
        if self.get(id).is_some() {
            return Err(format!("job `{id}` runs already"));
        }
        let name = file_name(id);
        let log_path = self.dir.join("logs").join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let env = self.begin(id, instance)?;
        let starts = self.s.starts.get(id).copied().unwrap_or(1);
        let mut c = Command::new("sh");
        c.arg("-c").arg(command);
        // Its own process group: the checkpoint signal reaches everything the job started.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        if let Some(p) = self.report_port {
            c.env("MISO_REPORT_HOST", "127.0.0.1")
                .env("MISO_REPORT_PORT", p.to_string());
        }
        c.envs(env)
            .env("CUDA_VISIBLE_DEVICES", device)
            .env("MISO_JOB", id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = c
            .spawn()
            .map_err(|e| format!("cannot start job `{id}` (`{command}`): {e}"))?;
        let j = RunningJob {
            id: id.to_string(),
            gpu,
            instance: instance.to_string(),
            pid: child.id(),
            starts,
        };
        self.s.running.push(j);
        self.children.insert(id.to_string(), child);
        self.save();
        self.get(id)
            .ok_or_else(|| "lost track of a started job".to_string())
    }

    /// Count a start of job `id` on `instance` and return its environment (without
    /// `CUDA_VISIBLE_DEVICES` and `MISO_JOB`): instance, checkpoint folder, earlier starts.
    /// Used for runs on an instance and for the runs of a profiling phase alike.
    pub fn begin(&mut self, id: &str, instance: &str) -> Result<Vec<(String, String)>, String> {
        let ckpt = self.dir.join("checkpoints").join(file_name(id));
        std::fs::create_dir_all(&ckpt).map_err(|e| format!("{}: {e}", ckpt.display()))?;
        let before = self.s.starts.get(id).copied().unwrap_or(0);
        self.s.starts.insert(id.to_string(), before + 1);
        self.save();
        Ok(vec![
            ("MISO_INSTANCE".into(), instance.into()),
            ("MISO_CHECKPOINT_DIR".into(), ckpt.display().to_string()),
            ("MISO_RESTART".into(), before.to_string()),
        ])
    }

    /// Whether the controller's profiling request was carried out here.
    pub fn was_profiled(&self, request: &str) -> bool {
        self.s.profiled.iter().any(|r| r == request)
    }

    /// Remember a carried-out profiling request (the last 100).
    pub fn profiled(&mut self, request: &str) {
        self.s.profiled.push(request.to_string());
        let n = self.s.profiled.len();
        if n > 100 {
            self.s.profiled.drain(..n - 100);
        }
        self.save();
    }

    /// Whether job `id` has exited; `Some(status text, success)` when it has.
    fn exited(&mut self, id: &str, pid: u32) -> Option<(String, bool)> {
        match self.children.get_mut(id) {
            Some(c) => match c.try_wait() {
                Ok(Some(st)) => Some((st.to_string(), st.success())),
                Ok(None) => None,
                Err(e) => Some((e.to_string(), false)),
            },
            // Adopted from a previous agent: only its existence can be seen.
            None => (!alive(pid)).then(|| ("vanished while the agent was away".into(), false)),
        }
    }

    fn forget(&mut self, id: &str) {
        self.s.running.retain(|j| j.id != id);
        self.children.remove(id);
    }

    /// Ask jobs `ids` to checkpoint and stop: SIGTERM to every group at once, wait up to one
    /// grace period for all, then SIGKILL what is left. Returns how each ended (or why it could
    /// not be asked); none of them runs afterwards.
    pub fn checkpoint(&mut self, ids: &[String]) -> Vec<(String, Result<Ended, String>)> {
        let mut out = Vec::new();
        let mut asked = Vec::new();
        for id in ids {
            match self.get(id).map(|j| j.pid) {
                Some(pid) => {
                    signal_group(pid, libc::SIGTERM);
                    asked.push((id.clone(), pid));
                }
                None => out.push((id.clone(), Err(format!("job `{id}` is not running")))),
            }
        }
        let deadline = Instant::now() + self.grace;
        let mut done: Vec<bool> = vec![false; asked.len()];
        while Instant::now() < deadline && done.iter().any(|d| !d) {
            for (k, (id, pid)) in asked.iter().enumerate() {
                if !done[k] && self.exited(id, *pid).is_some() && !group_alive(*pid) {
                    done[k] = true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for ((id, pid), ok) in asked.into_iter().zip(done) {
            // Whatever is left of the group goes now.
            signal_group(pid, libc::SIGKILL);
            if !ok {
                if let Some(c) = self.children.get_mut(&id) {
                    let _ = c.wait();
                }
            }
            self.forget(&id);
            out.push((
                id,
                Ok(if ok {
                    Ended::Checkpointed
                } else {
                    Ended::Killed
                }),
            ));
        }
        self.save();
        out
    }

    /// Jobs that ended on their own since the last call. Finished ones are never started
    /// again; lost ones are, until they were lost `max_losses` times.
    pub fn reap(&mut self) -> Vec<(RunningJob, Ended)> {
        let mut out = Vec::new();
        for j in self.s.running.clone() {
            let Some((how, ok)) = self.exited(&j.id, j.pid) else {
                continue;
            };
            // A lost job's leftovers (its group) go too.
            signal_group(j.pid, libc::SIGKILL);
            self.forget(&j.id);
            if ok {
                self.s.finished.insert(j.id.clone(), false);
                out.push((j, Ended::Finished));
            } else {
                let n = self.s.losses.entry(j.id.clone()).or_insert(0);
                *n += 1;
                if *n >= self.max_losses {
                    self.s.failed.insert(j.id.clone(), false);
                }
                out.push((j, Ended::Lost(how)));
            }
        }
        if !out.is_empty() {
            self.save();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("miso-runner-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn wait_reap(r: &mut Runner) -> Vec<(RunningJob, Ended)> {
        for _ in 0..200 {
            let v = r.reap();
            if !v.is_empty() {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nothing ended");
    }

    #[test]
    fn a_group_outlives_its_leader() {
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 5; true"]);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c.spawn().unwrap();
        let pgid = child.id();
        std::thread::sleep(Duration::from_millis(100));
        assert!(group_alive(pgid));
        // The leader dies alone: its `sleep` still holds the group.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(group_alive(pgid), "the sleep is still there");
        signal_group(pgid, libc::SIGKILL);
        let t = Instant::now();
        while group_alive(pgid) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!group_alive(pgid));
    }

    #[test]
    fn checkpoint_kill_finish_loss_and_adoption() {
        let d = dir("all");
        let mut r = Runner::open(&d).unwrap();
        r.grace = Duration::from_millis(300);
        // A job that checkpoints on SIGTERM.
        let ok = "trap 'echo $MISO_RESTART > $MISO_CHECKPOINT_DIR/ck; exit 0' TERM; while true; do sleep 0.02; done";
        r.start("a", ok, 0, "3g.20gb@4", "MIG-x").unwrap();
        assert!(
            r.start("a", ok, 0, "3g.20gb@4", "MIG-x").is_err(),
            "runs already"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(r.checkpoint(&ids(&["a"]))[0].1, Ok(Ended::Checkpointed));
        assert_eq!(
            std::fs::read_to_string(d.join("checkpoints/a/ck"))
                .unwrap()
                .trim(),
            "0"
        );
        // Started again, it sees MISO_RESTART=1.
        let j = r.start("a", ok, 0, "4g.20gb@0", "MIG-y").unwrap().clone();
        assert_eq!(j.starts, 2);
        // A job that ignores SIGTERM is killed after the grace period.
        r.start(
            "b",
            "trap '' TERM; while true; do sleep 0.02; done",
            0,
            "1g.5gb@6",
            "MIG-z",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(r.checkpoint(&ids(&["b"]))[0].1, Ok(Ended::Killed));
        // A job that exits 0 has finished and is reported once.
        r.start("c", "exit 0", 0, "1g.5gb@5", "MIG-w").unwrap();
        let e = wait_reap(&mut r);
        assert_eq!((e[0].0.id.as_str(), &e[0].1), ("c", &Ended::Finished));
        assert!(r.is_finished("c"));
        assert_eq!(r.unreported(), vec![("c".to_string(), None)]);
        r.reported("c");
        assert!(r.unreported().is_empty());
        // A job that dies is lost; after max_losses it is given up.
        r.max_losses = 2;
        for k in 1..=2 {
            r.start("d", "exit 3", 0, "1g.5gb@4", "MIG-v").unwrap();
            let e = wait_reap(&mut r);
            assert!(matches!(e[0].1, Ended::Lost(_)), "{e:?}");
            assert_eq!(r.is_failed("d"), k == 2);
        }
        assert!(r.unreported()[0]
            .1
            .as_deref()
            .unwrap()
            .contains("lost 2 times"));
        // A new runner on the same folder adopts the job still alive.
        let r2 = Runner::open(&d).unwrap();
        assert_eq!(r2.running().len(), 1);
        assert_eq!(r2.running()[0].id, "a");
        assert!(r2.is_finished("c") && r2.is_failed("d"));
        let mut r2 = r2;
        r2.grace = Duration::from_millis(300);
        assert_eq!(r2.checkpoint(&ids(&["a"]))[0].1, Ok(Ended::Checkpointed));
        assert_eq!(
            std::fs::read_to_string(d.join("checkpoints/a/ck"))
                .unwrap()
                .trim(),
            "1"
        );
        // Several jobs are asked together; each ends its own way; unknown ids are named.
        r2.start("e", ok, 0, "3g.20gb@0", "MIG-u").unwrap();
        r2.start(
            "f",
            "trap '' TERM; while true; do sleep 0.02; done",
            0,
            "3g.20gb@4",
            "MIG-t",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let got = r2.checkpoint(&ids(&["e", "f", "nope"]));
        assert_eq!(got.len(), 3);
        let how = |id: &str| got.iter().find(|(i, _)| i == id).map(|(_, h)| h.clone());
        assert_eq!(how("e"), Some(Ok(Ended::Checkpointed)));
        assert_eq!(how("f"), Some(Ok(Ended::Killed)));
        assert!(how("nope").unwrap().unwrap_err().contains("not running"));
        assert!(r2.running().is_empty());
        // A damaged state file is an error naming it, not a silent reset.
        std::fs::write(d.join("jobs.json"), "{").unwrap();
        assert!(Runner::open(&d).err().unwrap().contains("jobs.json"));
        std::fs::remove_dir_all(&d).ok();
    }
}
