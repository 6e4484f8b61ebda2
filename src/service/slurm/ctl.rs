//! Slurm through its own commands (`squeue`, `scontrol`), as an administrator would type them:
//! no plugin, no library, the same on every Slurm 22.05+ host. Every call is bounded in time;
//! outputs are parsed here, and nowhere else.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Slurm job as `squeue` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SJob {
    pub id: u64,
    pub partition: String,
    /// PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, ...
    pub state: String,
    /// The node it runs on (or ran on); empty while pending.
    pub node: String,
    /// The node it was asked to run on (`NodeList=` of a placed job).
    pub req_node: String,
    /// Why it is pending (`JobHeldAdmin`, `PartitionDown`, ...).
    pub reason: String,
    /// The gres it asks for per node, as squeue prints it (`gres:gpu:3g.20gb:1`).
    pub gres: String,
    /// `--comment`, `(null)` read as empty.
    pub comment: String,
}

impl SJob {
    pub fn pending(&self) -> bool {
        self.state == "PENDING"
    }
    /// Running or completing: it holds its GPU.
    pub fn on_gpu(&self) -> bool {
        matches!(
            self.state.as_str(),
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "CONFIGURING"
        )
    }
    /// Held (`scontrol hold`, `requeuehold`): squeue says `JobHeldAdmin`, `JobHeldUser` or
    /// `job requeued in held state`.
    pub fn held(&self) -> bool {
        self.reason.to_ascii_lowercase().contains("held")
    }
    /// Ended for good (Slurm keeps it visible for MinJobAge).
    pub fn ended(&self) -> bool {
        !self.pending()
            && !self.on_gpu()
            && self.state != "REQUEUED"
            && self.state != "REQUEUE_HOLD"
    }
    /// The profile type it asks for (`3g.20gb`), if typed.
    pub fn gres_type(&self) -> Option<&str> {
        let g = self
            .gres
            .strip_prefix("gres:")
            .or_else(|| self.gres.strip_prefix("gres/"))?;
        let mut parts = g.split(':');
        (parts.next()? == "gpu").then_some(())?;
        let t = parts.next()?;
        parts.next().map(|_| t)
    }
    /// The value of `miso:KEY=VALUE` in the comment (words separated by spaces or commas).
    pub fn miso_field(&self, key: &str) -> Option<&str> {
        self.comment
            .split([' ', ','])
            .filter_map(|w| w.strip_prefix("miso:"))
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
}

/// A node as `scontrol show node` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SNode {
    pub name: String,
    /// `IDLE`, `MIXED+DRAIN`, `DOWN*`, ...
    pub state: String,
    pub gres: String,
    pub reason: String,
    /// `Comment=` (miso writes `miso:layout=...` there).
    pub comment: String,
    /// When its slurmd last started (changes when it restarts).
    pub slurmd_start: String,
}

impl SNode {
    pub fn drained(&self) -> bool {
        self.state.contains("DRAIN")
    }
    /// Registered and answering (not DOWN, not `*` = not responding).
    pub fn responding(&self) -> bool {
        !self.state.contains('*')
            && !self.state.starts_with("DOWN")
            && !self.state.contains("NOT_RESPONDING")
    }
}

/// The Slurm commands of one cluster.
#[derive(Clone, Debug)]
pub struct Slurm {
    /// `SLURM_CONF` for every command (None: the host's default).
    pub conf: Option<PathBuf>,
    pub timeout: Duration,
}

impl Slurm {
    pub fn new(conf: Option<PathBuf>) -> Slurm {
        Slurm {
            conf,
            timeout: Duration::from_secs(20),
        }
    }

    /// Run a Slurm command; its stdout, or an error with its stderr.
    pub fn run(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new(prog);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(conf) = &self.conf {
            c.env("SLURM_CONF", conf);
        }
        let what = format!("{prog} {}", args.join(" "));
        let mut child = c.spawn().map_err(|e| format!("{what}: {e}"))?;
        let t0 = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if t0.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{what}: no answer within {:?}", self.timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{what}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{what}: {}", err.trim()));
        }
        Ok(stdout)
    }

    fn scontrol(&self, args: &[&str]) -> Result<String, String> {
        self.run("scontrol", args)
    }

    /// Every job of these partitions, ended ones Slurm still keeps included.
    pub fn jobs(&self, partitions: &[&str]) -> Result<Vec<SJob>, String> {
        let p = partitions.join(",");
        let out = self.run(
            "squeue",
            &[
                "-h",
                "-a",
                "-t",
                "all",
                "-p",
                &p,
                "-o",
                "%i|%P|%T|%N|%n|%r|%b|%k",
            ],
        )?;
        Ok(parse_squeue(&out))
    }

    /// One node.
    pub fn node(&self, name: &str) -> Result<SNode, String> {
        let out = self.scontrol(&["-o", "show", "node", name])?;
        parse_node(&out).ok_or_else(|| format!("scontrol show node {name}: no such node"))
    }

    /// The nodes of a partition.
    pub fn partition_nodes(&self, partition: &str) -> Result<Vec<String>, String> {
        let out = self.run("sinfo", &["-h", "-N", "-p", partition, "-o", "%N"])?;
        let mut v: Vec<String> = out
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        v.dedup();
        Ok(v)
    }

    pub fn drain(&self, node: &str, reason: &str) -> Result<(), String> {
        self.scontrol(&[
            "update",
            &format!("NodeName={node}"),
            "State=DRAIN",
            &format!("Reason={reason}"),
        ])
        .map(drop)
    }

    /// Set a node's `Comment=` (one word: no spaces).
    pub fn set_node_comment(&self, node: &str, comment: &str) -> Result<(), String> {
        self.scontrol(&[
            "update",
            &format!("NodeName={node}"),
            &format!("Comment={comment}"),
        ])
        .map(drop)
    }

    pub fn resume(&self, node: &str) -> Result<(), String> {
        self.scontrol(&["update", &format!("NodeName={node}"), "State=RESUME"])
            .map(drop)
    }

    /// Requeue a running job and hold it (its checkpoint folder is its own).
    pub fn requeue_hold(&self, id: u64) -> Result<(), String> {
        self.scontrol(&["requeuehold", &id.to_string()]).map(drop)
    }

    pub fn release(&self, id: u64) -> Result<(), String> {
        self.scontrol(&["release", &id.to_string()]).map(drop)
    }

    pub fn update_job(&self, id: u64, fields: &[String]) -> Result<(), String> {
        let mut args = vec!["update".to_string(), format!("JobId={id}")];
        args.extend(fields.iter().cloned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.scontrol(&a).map(drop)
    }

    /// Make a pending job with an untyped request (`--gres=gpu:1`) run on `node` on the GPU
    /// gres of type `ty`: the request is cleared, then set typed (Slurm 22.05 refuses a typed
    /// request over an untyped one; measured). Only once per job: a typed request, once set,
    /// cannot be changed (see `gres`).
    pub fn place(&self, id: u64, partition: &str, node: &str, ty: &str) -> Result<(), String> {
        self.update_job(id, &["TresPerNode=".into()])?;
        self.update_job(id, &[format!("TresPerNode=gres:gpu:{ty}:1")])?;
        self.update_job(
            id,
            &[
                format!("Partition={partition}"),
                format!("NodeList={node}"),
                "StartTime=now".into(),
            ],
        )
    }
}

/// `squeue -o '%i|%P|%T|%N|%n|%r|%b|%k'` lines; the comment is last and may hold `|`.
pub fn parse_squeue(out: &str) -> Vec<SJob> {
    let mut v = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.splitn(8, '|').collect();
        if f.len() < 8 {
            continue;
        }
        let Ok(id) = f[0].trim().parse::<u64>() else {
            continue; // array tasks and heterogeneous components are not ours
        };
        let clean = |s: &str| {
            let s = s.trim();
            if s == "(null)" || s == "N/A" {
                String::new()
            } else {
                s.to_string()
            }
        };
        v.push(SJob {
            id,
            partition: clean(f[1]),
            state: clean(f[2]),
            node: clean(f[3]),
            req_node: clean(f[4]),
            reason: clean(f[5]),
            gres: clean(f[6]),
            comment: clean(f[7]),
        });
    }
    v
}

fn word<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// `scontrol -o show node N`.
pub fn parse_node(out: &str) -> Option<SNode> {
    let line = out.lines().find(|l| l.starts_with("NodeName="))?;
    Some(SNode {
        name: word(line, "NodeName")?.to_string(),
        state: word(line, "State").unwrap_or_default().to_string(),
        gres: word(line, "Gres").unwrap_or_default().to_string(),
        // Free text up to Slurm's ` [user@time]` stamp: `Reason=Duplicate jobid [root@...]`.
        reason: line
            .split_once(" Reason=")
            .map(|(_, r)| r.split(" [").next().unwrap_or(r).trim().to_string())
            .unwrap_or_default(),
        comment: word(line, "Comment")
            .filter(|c| *c != "(null)")
            .unwrap_or_default()
            .to_string(),
        slurmd_start: word(line, "SlurmdStartTime")
            .unwrap_or_default()
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_node_and_job_outputs_are_read_as_slurm_22_05_prints_them() {
        // Recorded from the test cluster (scripts/slurm-cluster).
        let q = "6|miso|PENDING|||PartitionDown|gres:gpu:1|miso:workload=bert_train8\n\
                 7|miso-run|RUNNING|node1|node1|None|gres:gpu:3g.20gb:1|(null)\n\
                 8|miso-run|PENDING||node2|JobHeldAdmin|gres/gpu:1g.5gb:1|a|b miso:speeds=x\n\
                 9_1|miso|PENDING|||None|gres:gpu:1|\n";
        let j = parse_squeue(q);
        assert_eq!(j.len(), 3);
        assert_eq!(j[0].miso_field("workload"), Some("bert_train8"));
        assert_eq!(j[0].gres_type(), None);
        assert!(j[0].pending() && !j[0].held());
        assert_eq!(j[1].gres_type(), Some("3g.20gb"));
        assert!(j[1].on_gpu() && !j[1].ended() && j[1].comment.is_empty());
        assert!(j[2].held());
        let r = parse_squeue(
            "4|miso-run|PENDING||node2|job requeued in held state|gres:gpu:2g.10gb:1|\n",
        );
        assert!(r[0].held() && r[0].pending());
        assert_eq!(j[2].req_node, "node2");
        assert_eq!(j[2].comment, "a|b miso:speeds=x");
        assert_eq!(j[2].gres_type(), Some("1g.5gb"));
        let n = parse_node("NodeName=node1 Arch=x86_64 CoresPerSocket=1 Gres=gpu:3g.20gb:2,gpu:unused:5 NodeAddr=127.0.0.1 State=MIXED+DRAIN ThreadsPerCore=1 Reason=miso-relayout [root@2026-12-03T11:31:11]\n").unwrap();
        assert_eq!(n.gres, "gpu:3g.20gb:2,gpu:unused:5");
        assert!(n.drained() && n.responding());
        assert_eq!(n.reason, "miso-relayout");
        let d = parse_node("NodeName=node1 State=IDLE+DRAIN Reason=Duplicate jobid [root@2026-12-03T12:27:13] Comment=x\n").unwrap();
        assert_eq!(d.reason, "Duplicate jobid");
        assert!(!parse_node("NodeName=n State=IDLE*").unwrap().responding());
    }
}
