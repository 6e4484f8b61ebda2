//! The node agent: registers its GPUs with the controller, then level-triggered: on start and
//! every interval it reads the desired state of each GPU (layout + which job runs where),
//! checkpoints the jobs whose instance changes (SIGTERM, see `runner`), reconciles the real GPU
//! towards the layout through its `GpuControl` backend, starts the jobs on their new instances,
//! and reports what the GPU has and what runs on it. A crash mid-plan leaves a valid layout
//! (every step of a diff is valid) and the runner's saved state; the next pass converges.
//!
//! A GPU in a profiling phase (a job with unknown speeds arrived) gets the whole-GPU instance;
//! the agent runs the mix there under an MPS daemon at each thread level, as `miso profile`
//! does, and sends the sample with the job ids; the controller then plans the GPU.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::control::{self, GpuControl};
use crate::gpu::{self, GpuModel, Instance, Layout};

use super::client::Client;
use super::profile::{profile_mix, MpsTarget, ProfileJob};
use super::runner::{Ended, Runner};

/// Settings of `miso agent`.
pub struct AgentConfig {
    /// The controller.
    pub client: Client,
    pub name: String,
    pub interval: Duration,
    /// One reconcile pass, then exit.
    pub once: bool,
    /// Where the agent keeps its job state, job logs and checkpoint folders.
    pub state_dir: PathBuf,
    /// Time a job gets to checkpoint after SIGTERM before SIGKILL.
    pub grace: Duration,
}

fn call_status(
    cfg: &AgentConfig,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let b = body.map(|b| b.to_string());
    cfg.client.request(method, path, b.as_deref())
}

/// One instance of `model` from its label, if it is in `layout`.
fn instance_in(model: &GpuModel, layout: &Layout, label: &str) -> Option<Instance> {
    Instance::parse(model, label)
        .ok()
        .filter(|i| layout.instances().contains(i))
}

/// A job the desired state puts on an instance.
struct Wanted {
    id: String,
    inst: Instance,
    label: String,
    command: Option<String>,
}

/// Converge GPU `idx` to its desired state `d`: checkpoint → destroy/create → start.
/// Returns (layout now, error, job reports).
fn converge(
    cfg: &AgentConfig,
    ctl: &mut dyn GpuControl,
    runner: &mut Runner,
    model: &GpuModel,
    idx: u32,
    d: &Value,
    log: &mut dyn FnMut(&str),
) -> (Option<String>, Vec<Value>) {
    let mut error = None;
    let want = match gpu::parse_valid_layout(model, d["layout"].as_str().unwrap_or("")) {
        Ok(w) => w,
        Err(e) => return (Some(format!("desired layout: {e}")), Vec::new()),
    };
    let mut wanted = Vec::new();
    for (k, j) in d["jobs"].as_array().into_iter().flatten().enumerate() {
        let id = j["id"].as_str().unwrap_or_default().to_string();
        let label = j["instance"].as_str().unwrap_or_default().to_string();
        match instance_in(model, &want, &label) {
            Some(inst) => wanted.push(Wanted {
                id,
                inst,
                label: inst.label(model),
                command: j["command"].as_str().map(str::to_string),
            }),
            None => {
                error.get_or_insert(format!("desired jobs[{k}]: `{label}` is not in the layout"));
            }
        }
    }
    // 1. Checkpoint every job of ours whose instance changes (or that should stop here), all
    //    at once: one grace period for the whole GPU.
    let leaving: Vec<_> = runner
        .running()
        .iter()
        .filter(|j| j.gpu == idx && !wanted.iter().any(|w| w.id == j.id && w.label == j.instance))
        .cloned()
        .collect();
    let ids: Vec<String> = leaving.iter().map(|j| j.id.clone()).collect();
    for ((id, how), j) in runner.checkpoint(&ids).into_iter().zip(&leaving) {
        let to = wanted
            .iter()
            .find(|w| w.id == id)
            .map_or("stopped".to_string(), |w| format!("moves to {}", w.label));
        match how {
            Ok(Ended::Killed) => log(&format!(
                "job {id} on {}: no exit within the grace period after SIGTERM, killed ({to})",
                j.instance
            )),
            Ok(_) => log(&format!("job {id} on {}: checkpointed ({to})", j.instance)),
            Err(e) => log(&e),
        }
    }
    // 2. The layout.
    match control::reconcile(ctl, model, idx, &want) {
        Ok(r) => {
            if !r.destroyed.is_empty() || !r.created.is_empty() {
                log(&format!(
                    "GPU {idx}: destroyed {}, created {}",
                    r.destroyed.len(),
                    r.created.len()
                ));
            }
            if let Some((step, e)) = r.failed {
                error = Some(format!("{step}: {e}"));
            }
        }
        Err(e) => error = Some(e.to_string()),
    }
    // 3. Start (or restart) the jobs whose instance exists now.
    let now = ctl.layout(idx).unwrap_or_else(|e| {
        error.get_or_insert(e.to_string());
        Layout::empty()
    });
    for w in &wanted {
        if runner.get(&w.id).is_some() || runner.is_finished(&w.id) || runner.is_failed(&w.id) {
            continue;
        }
        let Some(cmd) = &w.command else {
            continue; // no command: the job is run by someone else
        };
        if !now.instances().contains(&w.inst)
            || runner
                .running()
                .iter()
                .any(|r| r.gpu == idx && r.instance == w.label)
        {
            continue;
        }
        let started = ctl
            .device_id(idx, Some(w.inst))
            .map_err(|e| e.to_string())
            .and_then(|dev| runner.start(&w.id, cmd, idx, &w.label, &dev).cloned());
        match started {
            Ok(r) => {
                ctl.started(idx, w.inst, r.pid);
                log(&format!(
                    "job {} started on {} (pid {}, start {})",
                    w.id, w.label, r.pid, r.starts
                ));
            }
            Err(e) => {
                log(&e);
                error.get_or_insert(e);
            }
        }
    }
    // 4. A profiling phase: run the mix under MPS on the whole-GPU instance, send the sample.
    if let Some(p) = d.get("profile").filter(|p| !p.is_null()) {
        let request = p["request"].as_str().unwrap_or_default();
        if !request.is_empty() && !runner.was_profiled(request) {
            match profile_on(cfg, ctl, runner, model, idx, &now, p, log) {
                Ok(()) => runner.profiled(request),
                Err(Retry(e)) => {
                    error.get_or_insert(e);
                }
                Err(GiveUp(e)) => {
                    runner.profiled(request);
                    error.get_or_insert(e);
                }
            }
        }
    }
    let mut jobs: Vec<Value> = runner
        .running()
        .iter()
        .filter(|r| r.gpu == idx)
        .map(|r| json!({"id": r.id, "instance": r.instance, "state": "running", "pid": r.pid, "starts": r.starts}))
        .collect();
    jobs.extend(
        wanted
            .iter()
            .filter(|w| runner.is_failed(&w.id))
            .map(|w| json!({"id": w.id, "instance": w.label, "state": "failed"})),
    );
    (error, jobs)
}

/// What a held GPU reports: the jobs of ours still running there.
fn held_jobs(runner: &Runner, idx: u32) -> Vec<Value> {
    runner
        .running()
        .iter()
        .filter(|r| r.gpu == idx)
        .map(|r| json!({"id": r.id, "instance": r.instance, "state": "running", "pid": r.pid, "starts": r.starts}))
        .collect()
}

/// Why profiling did not end with a sample at the controller.
enum ProfileError {
    /// Try again next pass (the instance is not there yet, the controller is unreachable).
    Retry(String),
    /// The profiling itself failed (a job reported nothing): not repeated for this request.
    GiveUp(String),
}
use ProfileError::{GiveUp, Retry};

/// Profile the mix of request `p` on the whole-GPU instance of `now` and send the sample.
#[allow(clippy::too_many_arguments)]
fn profile_on(
    cfg: &AgentConfig,
    ctl: &mut dyn GpuControl,
    runner: &mut Runner,
    model: &GpuModel,
    idx: u32,
    now: &Layout,
    p: &Value,
    log: &mut dyn FnMut(&str),
) -> Result<(), ProfileError> {
    let inst = match now.instances() {
        [i] if model.profiles[i.profile as usize].compute_slices == model.compute_slices => *i,
        _ => {
            return Err(Retry(format!(
                "profiling waits for the whole-GPU instance (GPU has {})",
                now.label(model)
            )))
        }
    };
    let label = inst.label(model);
    let levels: Vec<u32> = p["levels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_u64().map(|v| v as u32))
        .collect();
    let seconds = p["seconds"].as_f64().unwrap_or(10.0);
    let mut jobs = Vec::new();
    let mut ids = Vec::new();
    for j in p["jobs"].as_array().into_iter().flatten() {
        let id = j["id"].as_str().unwrap_or_default().to_string();
        let Some(command) = j["command"].as_str() else {
            return Err(GiveUp(format!("profiling: job `{id}` has no command")));
        };
        let env = runner.begin(&id, &label).map_err(GiveUp)?;
        jobs.push(ProfileJob {
            label: j["label"].as_str().unwrap_or(&id).to_string(),
            command: command.to_string(),
            key: id.clone(),
            env,
        });
        ids.push(id);
    }
    log(&format!(
        "GPU {idx}: profiling {} under MPS on {label} at {levels:?} % threads, {seconds} s each",
        ids.join(", ")
    ));
    let target = MpsTarget {
        ctl,
        gpu: idx,
        instance: Some(inst),
    };
    let rec = profile_mix(
        &jobs,
        &levels,
        seconds,
        Some(target),
        model.name,
        0,
        runner.grace,
    )
    .map_err(|e| GiveUp(format!("profiling: {e}")))?;
    let mut v = serde_json::to_value(&rec).map_err(|e| GiveUp(e.to_string()))?;
    v["jobs"] = json!(ids);
    let r = cfg
        .client
        .call("POST", "/v1/samples", Some(&v))
        .map_err(Retry)?;
    log(&format!(
        "GPU {idx}: sample {} sent; planned: {}",
        r["seq"], r["planned"]
    ));
    Ok(())
}

/// Iterations a job must report on one instance before its mean is sent as an observation.
pub const OBSERVE_MIN_ITERATIONS: u64 = 10;

/// Iteration times heard from a job on one instance.
#[derive(Default)]
struct Heard {
    sum: f64,
    n: u64,
    sent: bool,
}

/// Add what running jobs reported to their current instance's tally; send each (job,
/// instance) once it has [`OBSERVE_MIN_ITERATIONS`] (`POST /v1/jobs/{id}/observations`); forget
/// instances the job left.
fn observe(
    cfg: &AgentConfig,
    runner: &Runner,
    sink: &super::iterations::IterationSink,
    heard: &mut BTreeMap<(String, String), Heard>,
    log: &mut dyn FnMut(&str),
) {
    let got = sink.drain();
    let running: Vec<(String, String)> = runner
        .running()
        .iter()
        .map(|j| (j.id.clone(), j.instance.clone()))
        .collect();
    heard.retain(|k, _| running.contains(k));
    for key in running {
        if let Some((mean, n)) = got.get(&key.0) {
            let h = heard.entry(key).or_default();
            h.sum += mean * *n as f64;
            h.n += n;
        }
    }
    for ((id, instance), h) in heard.iter_mut() {
        if h.sent || h.n < OBSERVE_MIN_ITERATIONS {
            continue;
        }
        let profile = instance.split('@').next().unwrap_or(instance);
        let body = json!({"profile": profile, "iter_s": h.sum / h.n as f64, "iterations": h.n});
        match call_status(
            cfg,
            "POST",
            &format!("/v1/jobs/{id}/observations"),
            Some(&body),
        ) {
            Ok((code, _)) if (200..300).contains(&code) => {
                h.sent = true;
                log(&format!(
                    "job {id} on {instance}: {:.4} s per iteration over {} iterations, sent",
                    h.sum / h.n as f64,
                    h.n
                ));
            }
            // 409: never profiled (its speeds were given), 404: unknown: nothing to learn.
            Ok((409 | 404, _)) => h.sent = true,
            Ok((code, text)) => log(&format!("observation of {id}: HTTP {code}: {text}")),
            Err(e) => log(&e),
        }
    }
}

/// Register, then reconcile forever (or once).
pub fn run(
    cfg: &AgentConfig,
    ctl: &mut dyn GpuControl,
    log: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let gpus = ctl.list_gpus().map_err(|e| e.to_string())?;
    let reg: Vec<Value> = gpus
        .iter()
        .map(|g| json!({"index": g.index, "model": g.model_short.clone().unwrap_or_else(|| g.name.clone()), "uuid": g.uuid}))
        .collect();
    // A controller that is not up yet (started together with the agent, or restarting) is
    // waited for; any answer it gives, an error included, is final.
    let body = json!({"name": cfg.name, "gpus": reg});
    let mut wait = std::time::Duration::from_millis(200);
    let mut tries = 0u32;
    loop {
        match cfg.client.call("POST", "/v1/nodes", Some(&body)) {
            Err(e) if !cfg.once && e.starts_with(super::client::UNREACHABLE) => {
                if tries % 10 == 0 {
                    log(&format!("{e}; retrying until the controller answers"));
                }
                tries += 1;
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            r => {
                r?;
                break;
            }
        }
    }
    log(&format!(
        "registered {} with {} GPU(s)",
        cfg.name,
        gpus.len()
    ));
    let model_of = |idx: u32| gpus.iter().find(|g| g.index == idx).and_then(|g| g.model);
    let mut runner = Runner::open(&cfg.state_dir)?;
    runner.grace = cfg.grace;
    // Running jobs report iteration times here; enough of them on one instance become an
    // observation at the controller (learning from runs).
    let sink = super::iterations::IterationSink::start()
        .map_err(|e| format!("cannot listen for iteration reports: {e}"))?;
    runner.report_port = Some(sink.port());
    let mut heard: BTreeMap<(String, String), Heard> = BTreeMap::new();
    // Jobs a previous agent started and that still run: the driver sees them by itself; the
    // simulated GPU is told.
    for j in runner.running().to_vec() {
        if let Some(m) = model_of(j.gpu) {
            if let Ok(i) = Instance::parse(m, &j.instance) {
                ctl.started(j.gpu, i, j.pid);
                log(&format!(
                    "job {} adopted on {} (pid {})",
                    j.id, j.instance, j.pid
                ));
            }
        }
    }
    loop {
        for (j, how) in runner.reap() {
            match how {
                Ended::Finished => log(&format!("job {} finished on {}", j.id, j.instance)),
                Ended::Lost(w) if runner.is_failed(&j.id) => log(&format!(
                    "job {} lost on {} ({w}); lost too often, not restarted",
                    j.id, j.instance
                )),
                Ended::Lost(w) => log(&format!(
                    "job {} lost on {} ({w}); restarting it from its checkpoint",
                    j.id, j.instance
                )),
                _ => {}
            }
        }
        for (id, err) in runner.unreported() {
            let body = err.as_ref().map(|e| json!({"error": e}));
            match call_status(cfg, "POST", &format!("/v1/jobs/{id}/finish"), body.as_ref()) {
                // 409: it ended already; 404: the controller never knew it.
                Ok((code, _)) if (200..300).contains(&code) || code == 409 || code == 404 => {
                    runner.reported(&id)
                }
                Ok((code, text)) => log(&format!("finish {id}: HTTP {code}: {text}")),
                Err(e) => log(&e),
            }
        }
        match cfg
            .client
            .call("GET", &format!("/v1/nodes/{}/desired", cfg.name), None)
        {
            Ok(desired) => {
                let mut reports = Vec::new();
                for d in desired.as_array().cloned().unwrap_or_default() {
                    let idx = d["index"].as_u64().unwrap_or(0) as u32;
                    let Some(model) = model_of(idx) else {
                        continue;
                    };
                    // A held node keeps its layout and starts nothing: whoever holds it
                    // (`miso slurm`, an operator) releases it when the GPU may change.
                    let held = d["hold"].as_str().is_some();
                    let (mut error, jobs) = if held {
                        (None, held_jobs(&runner, idx))
                    } else {
                        converge(cfg, ctl, &mut runner, model, idx, &d, log)
                    };
                    let now = ctl.layout(idx).map(|l| l.label(model)).unwrap_or_else(|e| {
                        error.get_or_insert(e.to_string());
                        "empty".into()
                    });
                    if let Some(e) = &error {
                        log(&format!("GPU {idx}: {e}"));
                    }
                    reports.push(json!({"index": idx, "layout": now, "error": error, "jobs": jobs, "held": held}));
                }
                if let Err(e) = cfg.client.call(
                    "POST",
                    &format!("/v1/nodes/{}/report", cfg.name),
                    Some(&json!({"gpus": reports})),
                ) {
                    log(&e);
                }
            }
            Err(e) => log(&e),
        }
        observe(cfg, &runner, &sink, &mut heard, log);
        if cfg.once {
            return Ok(());
        }
        std::thread::sleep(cfg.interval);
    }
}
