//! `miso slurm`: miso as the MIG brain of a Slurm partition. Users submit as they always do
//! (`sbatch -p miso --gres=gpu:1 job.sh`, optionally `--comment miso:workload=NAME`); Slurm
//! runs the jobs; miso decides the layouts and the slice of each job, and re-partitions live.
//!
//! The mechanism (chosen over a job_submit plugin, which Debian's build would need compiled in,
//! and over holding jobs, which races Slurm's scheduler):
//! - Partition `miso` is State=DOWN: Slurm queues its jobs but never starts them. They are
//!   miso's to place. A hidden partition `miso-run` holds the same nodes, State=UP.
//! - Each pass (level-triggered; Slurm and the controller are the only state, so a restarted
//!   connector picks up where the last one was): new pending jobs of `miso` become controller
//!   jobs (`slurm-<id>`, speeds from the named workload or the measured mean); jobs Slurm ended
//!   are finished at the controller (which re-plans their GPU, as MISO does);
//!   `POST /v1/schedule` places the queued ones (same optimizer and predictor as everywhere).
//! - A node whose desired layout differs from its gres is re-partitioned through Slurm's own
//!   state machine: drain; requeue-and-hold only the jobs whose GPU would change (its instance
//!   destroyed, or its gres index moved, see `gres`); when they are gone, release the node's
//!   hold at the controller so its agent applies the layout (NVML, or the simulated backend),
//!   hold it again; rewrite the node's gres.conf lines and `Gres=` (the slot count never
//!   changes), restart its daemons (`--restart-cmd`), resume.
//! - A placed job is moved to `miso-run` with a typed gres (`gpu:3g.20gb:1`) and the node; a
//!   requeued job goes back to `miso` and is placed again.
//!
//! The controller's nodes stay held between re-partitions, so an agent never changes a GPU
//! Slurm still runs jobs on.

pub mod ctl;
pub mod gres;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gpu::{self, GpuModel, Layout};
use crate::perf::{self, A100_PROFILES, KINDS};

use super::client::Client;
use ctl::{SJob, Slurm};
use gres::Slot;

/// Settings of `miso slurm run`.
pub struct Config {
    pub client: Client,
    pub slurm: Slurm,
    /// The partition users submit to (State=DOWN).
    pub partition: String,
    /// The hidden partition placed jobs run in.
    pub run_partition: String,
    pub slurm_conf: PathBuf,
    pub gres_conf: PathBuf,
    /// Device files of the seats are made here (`DIR/<node>/seat<k>`, mknod), for simulated
    /// GPUs.
    pub dev_dir: PathBuf,
    /// `sh -c` command that restarts a node's Slurm daemons when its seats' device files
    /// changed (`MISO_SLURM_NODE` names the node); not needed when they never do (simulated).
    pub restart_cmd: Option<String>,
    pub interval: Duration,
    /// How long the agent gets to apply a layout.
    pub apply_timeout: Duration,
    pub once: bool,
}

/// The controller id of a Slurm job.
pub fn job_id(slurm_id: u64) -> String {
    format!("slurm-{slurm_id}")
}

fn slurm_id(id: &str) -> Option<u64> {
    id.strip_prefix("slurm-")?.parse().ok()
}

/// Speeds for a job that names no workload: the mean of the measured MISO workloads per
/// profile kind (A100 profile names), from the cited table.
pub fn prior_speeds() -> BTreeMap<String, f64> {
    let mut sum = [0.0; KINDS];
    let mut n = [0usize; KINDS];
    for w in perf::catalog() {
        for (k, s) in w.perf().speed.iter().enumerate() {
            if let Some(s) = s {
                sum[k] += s;
                n[k] += 1;
            }
        }
    }
    (0..KINDS)
        .filter(|&k| n[k] > 0)
        .map(|k| (A100_PROFILES[k].to_string(), sum[k] / n[k] as f64))
        .collect()
}

/// What a re-partition measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Relayout {
    pub node: String,
    pub from: String,
    pub to: String,
    pub requeued: Vec<u64>,
    pub kept: Vec<u64>,
    /// Drain → resume, seconds (from when this connector drained it).
    pub seconds: f64,
}

/// The connector's memory between passes: only for figures (drain start times); everything it
/// acts on is read again from Slurm and the controller each pass.
#[derive(Default)]
pub struct Connector {
    /// Nodes Slurm declared DOWN, whose GPU the controller forgot: their model, to register
    /// them again when they come back.
    gone: HashMap<String, &'static GpuModel>,
    drained_at: HashMap<String, Instant>,
    /// Nodes Slurm drained because a requeued job's old process was still there when it
    /// started again ("Duplicate jobid"), and when this connector first saw it.
    duplicate_since: HashMap<String, Instant>,
    /// Jobs already logged as waiting for their seat (logged once).
    waiting: std::collections::HashSet<u64>,
    requeued: HashMap<String, Vec<u64>>,
    pub relayouts: Vec<Relayout>,
}

const DRAIN_REASON: &str = "miso-relayout";

/// How long a node drained by Slurm for a duplicate job stays drained before miso resumes it.
const DUPLICATE_RESUME: Duration = Duration::from_secs(10);

impl Connector {
    /// One pass over Slurm and the controller.
    pub fn pass(&mut self, cfg: &Config, log: &mut dyn FnMut(&str)) -> Result<(), String> {
        let nodes = cfg.slurm.partition_nodes(&cfg.run_partition)?;
        let registered = cfg.client.call("GET", "/v1/nodes", None)?;
        let mut models: BTreeMap<String, &'static GpuModel> = BTreeMap::new();
        let mut down: Vec<String> = Vec::new();
        for n in registered.as_array().into_iter().flatten() {
            let name = n["name"].as_str().unwrap_or_default();
            if !nodes.iter().any(|x| x == name) {
                continue;
            }
            let sn = cfg.slurm.node(name)?;
            if sn.state.starts_with("DOWN") {
                // Slurm gave the node up (its jobs are requeued by Slurm): the controller
                // forgets its GPU, so the jobs it held are queued and placed elsewhere.
                down.push(name.to_string());
                if let Some(m) = gpu0_model(n) {
                    cfg.client.call(
                        "POST",
                        "/v1/nodes",
                        Some(&json!({"name": name, "gpus": []})),
                    )?;
                    self.gone.insert(name.to_string(), m);
                    log(&format!(
                        "{name}: DOWN in Slurm; its GPU is out of the plan until it returns"
                    ));
                }
                continue;
            }
            if let Some(m) = self.gone.get(name).copied() {
                if sn.responding() && n["gpus"].as_array().is_some_and(|g| g.is_empty()) {
                    let body = json!({"name": name, "gpus": [{"index": 0, "model": m.short}]});
                    cfg.client.call("POST", "/v1/nodes", Some(&body))?;
                    self.gone.remove(name);
                    log(&format!("{name}: back in Slurm; its GPU is planned again"));
                }
                continue;
            }
            let Some(m) = gpu0_model(n) else {
                continue;
            };
            if n["hold"].is_null() {
                // Held between re-partitions: its agent changes nothing Slurm runs jobs on.
                self.hold(cfg, name, true)?;
            }
            models.insert(name.to_string(), m);
        }
        let sjobs = cfg.slurm.jobs(&[&cfg.partition, &cfg.run_partition])?;
        let by_id: HashMap<u64, &SJob> = sjobs.iter().map(|j| (j.id, j)).collect();
        // Requeued (held) jobs, and jobs waiting for a node that is down, go back to the
        // partition miso places from.
        for j in &sjobs {
            let stranded = !j.held() && down.contains(&j.req_node);
            if j.partition == cfg.run_partition && j.pending() && (j.held() || stranded) {
                cfg.slurm
                    .update_job(j.id, &[format!("Partition={}", cfg.partition)])?;
                if j.held() {
                    cfg.slurm.release(j.id)?;
                }
                log(&format!(
                    "job {}: requeued, back to partition {}",
                    j.id, cfg.partition
                ));
            }
        }
        let cjobs = cfg.client.call("GET", "/v1/jobs", None)?;
        let cstate: HashMap<String, String> = pairs(&cjobs, "id", "state").into_iter().collect();
        // New jobs.
        let mut queued = false;
        for j in sjobs
            .iter()
            .filter(|j| j.partition == cfg.partition && j.pending() && !j.held())
        {
            let id = job_id(j.id);
            if cstate.contains_key(&id) {
                continue;
            }
            let mut body = json!({"id": id});
            match j.miso_field("workload") {
                Some(w) => body["workload"] = json!(w),
                None => body["speeds"] = json!(prior_speeds()),
            }
            match cfg.client.call("POST", "/v1/jobs", Some(&body)) {
                Ok(_) => {
                    queued = true;
                    log(&format!(
                        "job {}: registered as {id} ({})",
                        j.id,
                        j.miso_field("workload")
                            .unwrap_or("no workload named: mean speeds")
                    ));
                }
                Err(e) => log(&format!("job {}: {e}", j.id)),
            }
        }
        // Ended jobs.
        for (id, state) in &cstate {
            if state != "queued" && state != "running" {
                continue;
            }
            let Some(sid) = slurm_id(id) else { continue };
            let how = match by_id.get(&sid) {
                None => Some(None),
                Some(j) if j.ended() && j.state == "COMPLETED" => Some(None),
                Some(j) if j.ended() => Some(Some(format!("Slurm: {}", j.state))),
                _ => None,
            };
            if let Some(err) = how {
                let body = err.as_ref().map(|e| json!({"error": e}));
                match cfg
                    .client
                    .call("POST", &format!("/v1/jobs/{id}/finish"), body.as_ref())
                {
                    Ok(_) => log(&format!(
                        "job {sid}: ended in Slurm ({}), finished at the controller",
                        err.as_deref().unwrap_or("COMPLETED")
                    )),
                    Err(e) => log(&e),
                }
            } else if state == "queued" {
                queued = true;
            }
        }
        if queued {
            let r = cfg.client.call("POST", "/v1/schedule", Some(&json!({})))?;
            for p in r["jobs"].as_array().into_iter().flatten() {
                if !p["node"].is_null() {
                    log(&format!(
                        "{} placed on {}",
                        p["id"].as_str().unwrap_or("?"),
                        p["node"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        for (node, model) in &models {
            if let Err(e) = self.converge_node(cfg, node, model, &sjobs, log) {
                log(&format!("{node}: {e}"));
            }
        }
        Ok(())
    }

    fn hold(&self, cfg: &Config, node: &str, hold: bool) -> Result<(), String> {
        let body = json!({"hold": hold, "reason": "miso slurm: the layout changes only while Slurm has drained what it destroys"});
        cfg.client
            .call("PUT", &format!("/v1/nodes/{node}/hold"), Some(&body))
            .map(drop)
    }

    /// A seat's device file for simulated GPUs: one per seat, whatever it holds.
    fn seat_file(&self, cfg: &Config, node: &str, k: usize) -> String {
        cfg.dev_dir
            .join(node)
            .join(format!("seat{k}"))
            .display()
            .to_string()
    }

    fn converge_node(
        &mut self,
        cfg: &Config,
        node: &str,
        model: &'static GpuModel,
        sjobs: &[SJob],
        log: &mut dyn FnMut(&str),
    ) -> Result<(), String> {
        let desired = cfg
            .client
            .call("GET", &format!("/v1/nodes/{node}/desired"), None)?;
        let Some(d) = desired
            .as_array()
            .and_then(|a| a.iter().find(|d| d["index"] == 0))
        else {
            return Ok(()); // nothing planned for this node yet
        };
        let want = gpu::parse_valid_layout(model, d["layout"].as_str().unwrap_or_default())
            .map_err(|e| format!("desired layout: {e}"))?;
        let text = std::fs::read_to_string(&cfg.gres_conf)
            .map_err(|e| format!("{}: {e}", cfg.gres_conf.display()))?;
        let slots = gres::parse(&text, node).map_err(|e| e.to_string())?;
        if slots.len() != usize::from(model.compute_slices) {
            return Err(format!(
                "gres.conf has {} seats for {node}; a {} needs {} (mig0..mig{})",
                slots.len(),
                model.short,
                model.compute_slices,
                model.compute_slices - 1
            ));
        }
        let have = gres::layout_of(model, &slots).map_err(|e| e.to_string())?;
        let assigned = pairs(&d["jobs"], "id", "instance");
        let by_id: HashMap<u64, &SJob> = sjobs.iter().map(|j| (j.id, j)).collect();
        let seat_of_job = |id: &str| {
            slurm_id(id)
                .and_then(|s| by_id.get(&s))
                .and_then(|j| seat(j))
        };
        // The plan may swap jobs between equal instances (same profile): keep each on the one
        // its seat holds, and tell the controller, instead of requeueing both.
        let mut assigned = assigned;
        let mut swapped = false;
        for k in 0..assigned.len() {
            let Some(cur) = seat_of_job(&assigned[k].0).and_then(|s| slots[s].instance.clone())
            else {
                continue;
            };
            let planned = assigned[k].1.clone();
            let profile = |l: &str| l.split('@').next().map(str::to_string);
            if cur == planned
                || profile(&cur) != profile(&planned)
                || !want.instances().iter().any(|i| i.label(model) == cur)
            {
                continue;
            }
            if let Some(o) = assigned.iter().position(|(_, i)| *i == cur) {
                assigned[o].1 = planned;
            }
            assigned[k].1 = cur;
            swapped = true;
        }
        if swapped {
            let jobs: Vec<Value> = assigned
                .iter()
                .map(|(id, i)| json!({"id": id, "instance": i}))
                .collect();
            let body = json!({"layout": want.label(model), "jobs": jobs});
            cfg.client.call(
                "PUT",
                &format!("/v1/nodes/{node}/gpus/0/desired"),
                Some(&body),
            )?;
            log(&format!(
                "{node}: jobs kept on the equal slices they hold (assignment updated)"
            ));
        }
        // Where each instance of the new layout sits: in the seat of the job that will run on
        // it; else where it is now; else a free seat.
        let mut keep: HashMap<String, usize> = HashMap::new();
        for (id, inst) in &assigned {
            if let Some(k) = seat_of_job(id) {
                keep.entry(inst.clone()).or_insert(k);
            }
        }
        for s in &slots {
            if let Some(i) = &s.instance {
                if !keep.values().any(|k| *k == s.seat) {
                    keep.entry(i.clone()).or_insert(s.seat);
                }
            }
        }
        let new_slots = gres::slots_for(model, &want, &keep, |k, _| self.seat_file(cfg, node, k));
        let sn = cfg.slurm.node(node)?;
        let same = slots
            .iter()
            .zip(&new_slots)
            .all(|(a, b)| a.instance == b.instance && a.file == b.file);
        if !same {
            return self.relayout(
                cfg, node, model, &slots, &new_slots, &have, &want, &assigned, sjobs, log,
            );
        }
        let comment = format!("miso:layout={}", want.label(model));
        if sn.comment != comment {
            cfg.slurm.set_node_comment(node, &comment)?;
        }
        if sn.drained() && sn.reason.starts_with(DRAIN_REASON) {
            // A re-partition finished, or one a crashed connector left drained.
            cfg.slurm.resume(node)?;
        }
        if sn.drained() && sn.reason.starts_with("Duplicate jobid") {
            // slurmd found a requeued job's previous process still alive (one that ignored
            // SIGTERM while slurmd was down) and drained the node rather than run it twice.
            // Resumed after a while: if that process is still there, slurmd refuses again.
            let since = *self
                .duplicate_since
                .entry(node.to_string())
                .or_insert_with(Instant::now);
            if since.elapsed() > DUPLICATE_RESUME {
                cfg.slurm.resume(node)?;
                self.duplicate_since.remove(node);
                log(&format!(
                    "{node}: resumed after Slurm's `{}` drain",
                    sn.reason
                ));
            }
        }
        self.dispatch(cfg, node, &slots, &assigned, sjobs, log)
    }

    #[allow(clippy::too_many_arguments)]
    fn relayout(
        &mut self,
        cfg: &Config,
        node: &str,
        model: &'static GpuModel,
        slots: &[Slot],
        new_slots: &[Slot],
        have: &Layout,
        want: &Layout,
        assigned: &[(String, String)],
        sjobs: &[SJob],
        log: &mut dyn FnMut(&str),
    ) -> Result<(), String> {
        let sn = cfg.slurm.node(node)?;
        if !sn.drained() {
            cfg.slurm.drain(node, DRAIN_REASON)?;
            self.drained_at.insert(node.to_string(), Instant::now());
            log(&format!(
                "{node}: drained to re-partition {} -> {}",
                have.label(model),
                want.label(model)
            ));
        }
        // A job keeps running when its seat keeps its instance and the plan keeps it there;
        // the others are requeued and held (placed again once the new slices exist).
        let mut busy = false;
        let mut kept = Vec::new();
        for j in sjobs.iter().filter(|j| j.node == node && j.on_gpu()) {
            let stays = seat(j).is_some_and(|k| {
                gres::survives(slots, new_slots, k)
                    && assigned.iter().any(|(id, inst)| {
                        *id == job_id(j.id) && new_slots[k].instance.as_deref() == Some(inst)
                    })
            });
            if stays {
                kept.push(j.id);
                continue;
            }
            busy = true;
            if j.state == "RUNNING" {
                cfg.slurm.requeue_hold(j.id)?;
                self.requeued
                    .entry(node.to_string())
                    .or_default()
                    .push(j.id);
                log(&format!(
                    "job {}: requeued (its slice on {node} changes)",
                    j.id
                ));
            }
        }
        if busy {
            return Ok(()); // next pass, when they are gone
        }
        // The agent applies the layout while the node is released.
        if have.label(model) != want.label(model) {
            self.hold(cfg, node, false)?;
            let applied = self.wait_applied(cfg, node, &want.label(model));
            self.hold(cfg, node, true)?;
            if !applied? {
                return Err(format!(
                    "the agent did not report {} within {:?}; the node stays drained, retried next pass",
                    want.label(model),
                    cfg.apply_timeout
                ));
            }
        }
        // Slurm's view: the seats' device files and comments; daemons restarted only when a
        // seat's files change (real hardware: an instance's capability files).
        for s in new_slots {
            for f in s.file.split(',') {
                make_device(f)?;
            }
        }
        let text = std::fs::read_to_string(&cfg.gres_conf)
            .map_err(|e| format!("{}: {e}", cfg.gres_conf.display()))?;
        write_atomic(
            &cfg.gres_conf,
            &gres::replace_node_lines(&text, node, &gres::render(node, new_slots)),
        )?;
        if slots.iter().zip(new_slots).any(|(a, b)| a.file != b.file) {
            self.restart_daemons(cfg, node)?;
        }
        cfg.slurm
            .set_node_comment(node, &format!("miso:layout={}", want.label(model)))?;
        cfg.slurm.resume(node)?;
        let r = Relayout {
            node: node.to_string(),
            from: have.label(model),
            to: want.label(model),
            requeued: self.requeued.remove(node).unwrap_or_default(),
            kept,
            seconds: self
                .drained_at
                .remove(node)
                .map_or(0.0, |t| t.elapsed().as_secs_f64()),
        };
        log(&format!(
            "{node}: re-partitioned {} -> {}; requeued {:?}, kept {:?}; drain to resume {:.1} s",
            r.from, r.to, r.requeued, r.kept, r.seconds
        ));
        println!("{}", json!({"relayout": r}));
        self.relayouts.push(r);
        Ok(())
    }

    /// Poll the controller until the node's agent reports `layout` (not held).
    fn wait_applied(&self, cfg: &Config, node: &str, layout: &str) -> Result<bool, String> {
        let t0 = Instant::now();
        loop {
            let st = cfg.client.call("GET", "/v1/state", None)?;
            let done = st["gpus"].as_array().into_iter().flatten().any(|g| {
                g["node"] == node
                    && g["index"] == 0
                    && g["report"]["held"] != true
                    && g["report"]["layout"].as_str() == Some(layout)
            });
            if done {
                return Ok(true);
            }
            if t0.elapsed() > cfg.apply_timeout {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Restart a node's Slurm daemons (`--restart-cmd`) and wait until it answers again.
    fn restart_daemons(&self, cfg: &Config, node: &str) -> Result<(), String> {
        let Some(cmd) = &cfg.restart_cmd else {
            return Err(format!(
                "{node}: the seats' device files changed and slurmd must read them again: pass --restart-cmd"
            ));
        };
        let before = cfg
            .slurm
            .node(node)
            .map(|n| n.slurmd_start)
            .unwrap_or_default();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("MISO_SLURM_NODE", node)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("--restart-cmd: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "--restart-cmd for {node} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let t0 = Instant::now();
        loop {
            if let Ok(n) = cfg.slurm.node(node) {
                if n.responding() && n.slurmd_start != before {
                    return Ok(());
                }
            }
            if t0.elapsed() > Duration::from_secs(90) {
                return Err(format!("{node}: slurmd did not register again within 90 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Placed jobs to their seats: a job not placed before is given the seat of its instance
    /// (its only typed request); a requeued one keeps its seat, which now holds its instance.
    fn dispatch(
        &mut self,
        cfg: &Config,
        node: &str,
        slots: &[Slot],
        assigned: &[(String, String)],
        sjobs: &[SJob],
        log: &mut dyn FnMut(&str),
    ) -> Result<(), String> {
        let by_id: HashMap<u64, &SJob> = sjobs.iter().map(|j| (j.id, j)).collect();
        for (id, inst) in assigned {
            let Some(sid) = slurm_id(id) else { continue };
            let Some(j) = by_id.get(&sid) else { continue };
            if !j.pending() || j.held() {
                continue;
            }
            let Some(k) = slots
                .iter()
                .position(|s| s.instance.as_deref() == Some(inst))
            else {
                continue; // its instance is not in Slurm's view yet
            };
            match seat(j) {
                Some(s) if s == k => {
                    if j.partition == cfg.run_partition && j.req_node == node {
                        continue; // placed; Slurm starts it when the seat is free
                    }
                    cfg.slurm.update_job(
                        sid,
                        &[
                            format!("Partition={}", cfg.run_partition),
                            format!("NodeList={node}"),
                            "StartTime=now".into(),
                        ],
                    )?;
                }
                Some(s) => {
                    // Only after a move between nodes (its node failed): its seat here is
                    // another job's; it runs when that seat is free.
                    if self.waiting.insert(sid) {
                        log(&format!(
                            "job {sid}: waits for its seat mig{s} on {node} (another job's); planned on {inst}"
                        ));
                    }
                    continue;
                }
                None if j.gres_type().is_some() => {
                    log(&format!(
                        "job {sid}: asks for gres type `{}`; submit with --gres=gpu:1 (miso chooses the slice)",
                        j.gres_type().unwrap_or_default()
                    ));
                    continue;
                }
                None => cfg
                    .slurm
                    .place(sid, &cfg.run_partition, node, &gres::seat_type(k))?,
            }
            let mut comment: Vec<&str> = j
                .comment
                .split(' ')
                .filter(|w| !w.is_empty() && !w.starts_with("miso:slice="))
                .collect();
            let slice = format!("miso:slice={inst}");
            comment.push(&slice);
            cfg.slurm
                .update_job(sid, &[format!("Comment={}", comment.join(" "))])?;
            log(&format!("job {sid}: to {node}, seat mig{k}: {inst}"));
        }
        Ok(())
    }
}

/// The model of GPU 0 of a registered node (`GET /v1/nodes`), if miso knows it.
fn gpu0_model(node: &Value) -> Option<&'static GpuModel> {
    node["gpus"].as_array()?.iter().find(|g| g["index"] == 0)?["model"]
        .as_str()
        .and_then(|m| gpu::gpu(m).ok())
}

/// `(v[a], v[b])` of each object of a JSON array that has both as strings.
fn pairs(list: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| Some((j[a].as_str()?.to_string(), j[b].as_str()?.to_string())))
        .collect()
}

/// The seat a job was given (its typed request `gpu:migK`), if any.
fn seat(j: &SJob) -> Option<usize> {
    j.gres_type().and_then(gres::seat_of)
}

/// A character device of its own for a simulated MIG slot (Slurm drops file-less GPUs).
fn make_device(path: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if p.exists() {
        return Ok(());
    }
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let out = std::process::Command::new("mknod")
        .args([path, "c", "1", "3"])
        .output()
        .map_err(|e| format!("mknod {path}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mknod {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Replace a file at once (a crash leaves the old or the new one, never half).
fn write_atomic(path: &std::path::Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("miso-tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Run the connector: a pass every `interval` (or one).
pub fn run(cfg: &Config, log: &mut dyn FnMut(&str)) -> Result<Vec<Relayout>, String> {
    let mut c = Connector::default();
    loop {
        if let Err(e) = c.pass(cfg, log) {
            if cfg.once {
                return Err(e);
            }
            log(&e);
        }
        if cfg.once {
            return Ok(c.relayouts);
        }
        std::thread::sleep(cfg.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prior_is_the_measured_mean_and_ids_round_trip() {
        let p = prior_speeds();
        assert!((p["7g.40gb"] - 1.0).abs() < 1e-9);
        assert!(p["1g.5gb"] < p["3g.20gb"] && p["3g.20gb"] < p["4g.20gb"]);
        assert_eq!(slurm_id(&job_id(42)), Some(42));
        assert_eq!(slurm_id("a-42"), None);
    }
}
