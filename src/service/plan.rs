//! The controller's decisions for one GPU of a node: the stored jobs it should run are resolved
//! to optimizer jobs (their own `workload`/`speeds`, or speeds the active model predicts from
//! the newest MPS sample that profiled them), planned against the GPU's desired layout with
//! least disruption, and committed as the new desired layout + job assignment in one
//! transaction. The node's agent converges to it (checkpoint → destroy/create → restart).
//!
//! When a job has no speeds yet, the GPU first goes through a profiling phase, as in MISO: its
//! desired layout becomes the whole-GPU instance, and the agent runs the whole mix there under
//! MPS at each thread level and sends the sample; the sample's arrival triggers the plan.

use serde_json::{json, Value};

use crate::gpu::{self, GpuModel, Layout};
use crate::optimizer::{self, JobSpec, OptJob, Options};
use crate::perf::{MpsMatrix, SLOTS};
use crate::predictor::data::SampleRecord;
use crate::predictor::Predictor;

use super::error::Refusal;
use super::store::{Assignment, Desired, PlanOptions, ProfileRequest};
use super::Store;

/// Every job the desired state puts on a GPU other than GPU `idx` of `node`, with that GPU: a
/// job is never placed on two GPUs.
pub(crate) fn placed_elsewhere(
    st: &Store,
    node: &str,
    idx: u32,
) -> Result<std::collections::HashMap<String, (String, u32)>, Refusal> {
    let mut placed = std::collections::HashMap::new();
    for d in st.desired_all()? {
        if d.node != node || d.index != idx {
            for id in d.job_ids() {
                placed.insert(id, (d.node.clone(), d.index));
            }
        }
    }
    Ok(placed)
}

/// The most jobs one `POST /v1/schedule` places.
pub(super) const MAX_SCHEDULE_JOBS: usize = 10_000;

/// The most jobs one GPU of this model can hold at once (one per smallest instance).
fn gpu_capacity(model: &crate::gpu::GpuModel) -> usize {
    model.compute_slices as usize
}

fn conflict(msg: String) -> Refusal {
    Refusal::Conflict(msg)
}

/// How the agent profiles a mix under MPS.
#[derive(Clone, Debug)]
pub(crate) struct ProfileSettings {
    pub levels: [u32; 3],
    pub seconds: f64,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        ProfileSettings {
            levels: [100, 50, 14],
            seconds: 10.0,
        }
    }
}

/// The whole-GPU profile of `model` (its index).
fn whole_profile(model: &GpuModel) -> Result<usize, Refusal> {
    model
        .profiles
        .iter()
        .rposition(|p| p.standard && p.compute_slices == model.compute_slices)
        .ok_or_else(|| Refusal::Internal(format!("{} has no whole-GPU profile", model.name)))
}

/// The whole-GPU instance of `model` (MISO profiles there under MPS).
fn whole_gpu(model: &GpuModel) -> Result<Layout, Refusal> {
    Ok(Layout::new(vec![gpu::Instance::new(
        whole_profile(model)?,
        0,
    )]))
}

/// The MPS matrix of a sample (slots beyond its jobs are idle dummies), checking every latency.
pub(crate) fn sample_matrix(rec: &SampleRecord) -> Result<MpsMatrix, String> {
    if rec.slots.is_empty() || rec.slots.len() > SLOTS {
        return Err(format!("slots: {} given, 1..=7 allowed", rec.slots.len()));
    }
    let mut lat = [[1.0; SLOTS]; 3];
    let mut real = [false; SLOTS];
    for (k, sl) in rec.slots.iter().enumerate() {
        for (l, v) in sl.mps.iter().enumerate() {
            if !(v.is_finite() && *v > 0.0) {
                return Err(format!(
                    "slots[{k}].mps[{l}]: {v} is not a positive latency"
                ));
            }
            lat[l][k] = *v;
        }
        real[k] = sl.label != "dummy";
    }
    Ok(MpsMatrix::from_latencies(lat, real))
}

fn stored_spec(id: &str, body: Value) -> Result<JobSpec, Refusal> {
    serde_json::from_value(body).map_err(|e| Refusal::Internal(format!("stored job `{id}`: {e}")))
}

/// One stored job as the optimizer sees it on `model` with `current` layout; `on`: the
/// instance it is assigned to now. Returns the job and where its speeds came from.
fn resolve(
    st: &Store,
    active: Option<&(String, Predictor)>,
    model: &GpuModel,
    current: &Layout,
    id: &str,
    on: Option<String>,
    k: usize,
) -> Result<(OptJob, Value), Refusal> {
    let (body, state) = st
        .job(id)?
        .ok_or_else(|| Refusal::NotFound(format!("jobs[{k}]: no job `{id}`")))?;
    if state.ended() {
        return Err(conflict(format!("jobs[{k}]: job `{id}` has {state}")));
    }
    let mut spec = stored_spec(id, body)?;
    spec.instance = on;
    if spec.workload.is_some() || spec.speeds.is_some() {
        let j = spec
            .resolve(model, current, k)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        return Ok((j, json!({"given": true})));
    }
    // Speeds from profiling: the newest sample of this job through the active model.
    let (seq, sample, slot) = st.latest_sample_for(id)?.ok_or_else(|| {
        conflict(format!(
            "jobs[{k}]: job `{id}` has no speeds: give `workload` or `speeds`, or profile it \
             (miso profile --for-jobs {id} …)"
        ))
    })?;
    let (name, p) = active.ok_or_else(|| {
        conflict(
            "no active model to predict profiled jobs (POST /v1/models/{name}/activate)".into(),
        )
    })?;
    let rec: SampleRecord = serde_json::from_value(sample)
        .map_err(|e| Refusal::Internal(format!("stored sample {seq}: {e}")))?;
    let m =
        sample_matrix(&rec).map_err(|e| Refusal::Internal(format!("stored sample {seq}: {e}")))?;
    let mut perf = p.predict(&m)[slot].clone().ok_or_else(|| {
        conflict(format!(
            "jobs[{k}]: model `{name}` predicts nothing for slot {slot} of sample {seq}"
        ))
    })?;
    perf.memory_mb = spec.memory_mb;
    // The other fields (memory, remaining work, restart cost, instance) are checked as usual
    // with a stand-in speed, then the predicted speeds replace it.
    let whole = model.profiles[whole_profile(model)?].name.to_string();
    spec.speeds = Some([(whole, 1.0)].into_iter().collect());
    let mut j = spec
        .resolve(model, current, k)
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    j.perf = perf;
    Ok((j, json!({"model": name, "sample": seq, "slot": slot})))
}

/// What planning a GPU did.
#[derive(Debug)]
pub enum Planned {
    /// A layout and assignment were decided and committed as the GPU's desired state.
    Committed(Value),
    /// Some job had no speeds: a profiling phase was committed instead; the plan follows the
    /// sample.
    Profiling(Value),
}

impl Planned {
    /// The reply: node, index, layout (with jobs), objective, plan steps, decision number.
    pub fn reply(&self) -> &Value {
        match self {
            Planned::Committed(v) | Planned::Profiling(v) => v,
        }
    }

    pub fn is_profiling(&self) -> bool {
        matches!(self, Planned::Profiling(_))
    }
}

/// Plan GPU `idx` of `node` (a `model`) to run exactly the jobs `ids`, and commit it. When some
/// job has no speeds yet and `profile` is given, a profiling phase is committed instead (202).
/// Returns the status and the reply: layout with jobs, objective, plan steps, decision number.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_gpu(
    st: &Store,
    active: Option<&(String, Predictor)>,
    node: &str,
    idx: u32,
    model: &'static GpuModel,
    ids: &[String],
    opts: &Options,
    profile: Option<&ProfileSettings>,
) -> Result<Planned, Refusal> {
    let desired = st.desired_gpu(node, idx)?.unwrap_or(Desired {
        node: node.into(),
        index: idx,
        layout: "empty".into(),
        jobs: Vec::new(),
        profile: None,
    });
    let current = gpu::parse_valid_layout(model, &desired.layout)
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    let on = |id: &str| {
        desired
            .jobs
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.instance.clone())
    };
    if ids.len() > gpu_capacity(model) {
        return Err(Refusal::Invalid(format!(
            "jobs: {} jobs; one {} holds at most {}",
            ids.len(),
            model.name,
            gpu_capacity(model)
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, id) in ids.iter().enumerate() {
        if !seen.insert(id.as_str()) {
            return Err(Refusal::Invalid(format!("jobs[{k}]: `{id}` given twice")));
        }
    }
    let elsewhere = placed_elsewhere(st, node, idx)?;
    if let Some((k, id, (n, i))) = ids
        .iter()
        .enumerate()
        .find_map(|(k, id)| elsewhere.get(id).map(|at| (k, id, at)))
    {
        return Err(conflict(format!(
            "jobs[{k}]: job `{id}` runs on GPU {i} of node `{n}`"
        )));
    }
    let dropped: Vec<String> = desired
        .job_ids()
        .into_iter()
        .filter(|id| !ids.contains(id))
        .collect();
    // Jobs with neither given speeds nor a sample: profile the mix first.
    let mut unknown = Vec::new();
    let mut commands = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let (body, state) = st
            .job(id)?
            .ok_or_else(|| Refusal::NotFound(format!("jobs[{k}]: no job `{id}`")))?;
        if state.ended() {
            return Err(conflict(format!("jobs[{k}]: job `{id}` has {state}")));
        }
        let spec = stored_spec(id, body)?;
        if spec.workload.is_none() && spec.speeds.is_none() && st.latest_sample_for(id)?.is_none() {
            unknown.push(id.clone());
        }
        commands.push(spec.command.is_some());
    }
    if let (Some(p), false) = (profile, unknown.is_empty()) {
        if let Some(k) = commands.iter().position(|c| !c) {
            return Err(conflict(format!(
                "jobs[{k}]: job `{}` has no `command`, so the agent cannot profile the mix \
                 with {}; give it speeds or profile it yourself (miso profile --for-jobs)",
                ids[k],
                unknown.join(", ")
            )));
        }
        if ids.len() > SLOTS {
            return Err(Refusal::Unfit(format!(
                "{} jobs: a GPU runs at most {SLOTS}",
                ids.len()
            )));
        }
        let whole = whole_gpu(model)?.label(model);
        let request = format!(
            "{node}/{idx}/{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let prof = ProfileRequest {
            request,
            started_at: unix_now(),
            jobs: ids.to_vec(),
            levels: p.levels,
            seconds: p.seconds,
            after_sample: st.last_sample_seq()?,
            options: PlanOptions {
                objective: Some(opts.objective),
                spare: opts.spare,
                cost_aware: opts.cost_aware,
            },
        };
        let seq = st.start_profile(node, idx, &whole, &prof, &dropped)?;
        return Ok(Planned::Profiling(
            json!({"node": node, "index": idx, "gpu": model.name, "layout": whole, "profiling": prof, "unknown": unknown, "decision": seq}),
        ));
    }
    let mut jobs = Vec::new();
    let mut sources = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let (j, src) = resolve(st, active, model, &current, id, on(id), k)?;
        jobs.push(j);
        sources.push(src);
    }
    let plan =
        optimizer::plan(model, &jobs, &current, opts).map_err(|e| Refusal::Unfit(e.to_string()))?;
    let d = &plan.decision;
    let assignment: Vec<Assignment> = d
        .layout
        .instances()
        .iter()
        .zip(&d.assignment)
        .filter_map(|(i, a)| {
            a.map(|j| Assignment {
                id: jobs[j].id.clone(),
                instance: i.label(model),
            })
        })
        .collect();
    let target = d.layout.label(model);
    let mut out = json!({
        "node": node,
        "index": idx,
        "gpu": model.name,
        "layout": layout_view(model, &d.layout, &d.assignment, &jobs),
        "objective": {"name": opts.objective.name(), "value": d.value},
        "plan": plan.view(model, &jobs),
        "speeds": ids.iter().zip(&sources).map(|(id, s)| json!({"id": id, "source": s})).collect::<Vec<_>>(),
    });
    let seq = st.apply_plan(node, idx, &target, &assignment, &out, &dropped)?;
    out["decision"] = json!(seq);
    Ok(Planned::Committed(out))
}

/// After a sample arrived: every GPU whose profiling phase now has a newer sample for each of
/// its jobs is planned with the options it was asked with. A plan that fails ends the phase
/// (the GPU keeps its layout, with no job) and says why.
pub(crate) fn after_sample(
    st: &Store,
    active: Option<&(String, Predictor)>,
) -> Result<Vec<Value>, Refusal> {
    let mut out = Vec::new();
    for d in st.desired_all()? {
        let Some(p) = &d.profile else { continue };
        let after = p.after_sample;
        let ids = d.profiled();
        let mut ready = true;
        for id in &ids {
            ready &= st
                .latest_sample_for(id)?
                .is_some_and(|(seq, _, _)| seq > after);
        }
        if !ready {
            continue;
        }
        let opts = options(p.options.objective, p.options.spare, p.options.cost_aware);
        let model = node_gpu(st, &d.node, d.index)?;
        match plan_gpu(st, active, &d.node, d.index, model, &ids, &opts, None) {
            Ok(p) => {
                let v = p.reply();
                out.push(json!({"node": d.node, "index": d.index, "layout": v["layout"], "decision": v["decision"]}))
            }
            Err(e) => {
                st.set_desired(&d.node, d.index, &d.layout, &[])?;
                out.push(json!({"node": d.node, "index": d.index, "error": e.message()}));
            }
        }
    }
    Ok(out)
}

/// Seconds a profiling phase may run beyond its levels × seconds before it is given up.
pub(crate) const PROFILE_SLACK_S: f64 = 60.0;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// End the profiling phases of `node` that can no longer end with a sample: the agent gave up
/// (`errors`: its reported error per GPU index, `profiling: ...`), or the phase ran past its
/// levels × seconds + [`PROFILE_SLACK_S`]. The jobs of the mix whose speeds are still unknown
/// fail with the reason (shown by `miso status`); the rest of the mix is planned without them.
pub(crate) fn expire_profiles(
    st: &Store,
    active: Option<&(String, Predictor)>,
    node: &str,
    errors: &[(u32, String)],
) -> Result<Vec<Value>, Refusal> {
    let now = unix_now();
    let mut out = Vec::new();
    for d in st.desired(node)? {
        let Some(p) = &d.profile else { continue };
        let levels = p.levels.len() as f64;
        let seconds = p.seconds;
        let gave_up = errors
            .iter()
            .find(|(i, e)| *i == d.index && e.starts_with("profiling: "));
        let t0 = p.started_at;
        let reason = match gave_up {
            Some((_, e)) => e.clone(),
            None if now > t0 + levels * seconds + PROFILE_SLACK_S => format!(
                "profiling: no sample {:.0} s after the phase began (each job must report its \
                 iterations over the line protocol)",
                now - t0
            ),
            _ => continue,
        };
        let ids = d.profiled();
        let mut known = Vec::new();
        for id in &ids {
            let Some((body, _)) = st.job(id)? else {
                continue;
            };
            let spec = stored_spec(id, body)?;
            if spec.workload.is_none()
                && spec.speeds.is_none()
                && st.latest_sample_for(id)?.is_none()
            {
                st.finish_job(id, Some(&reason))?;
            } else {
                known.push(id.clone());
            }
        }
        let mut v = json!({"node": d.node, "index": d.index, "profiling_failed": reason});
        if !known.is_empty() {
            let opts = options(p.options.objective, p.options.spare, p.options.cost_aware);
            let model = node_gpu(st, &d.node, d.index)?;
            match plan_gpu(st, active, &d.node, d.index, model, &known, &opts, None) {
                Ok(p) => v["decision"] = p.reply()["decision"].clone(),
                Err(e) => v["error"] = json!(e.message()),
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// `[{"profile", "start", "size", "job"}]` of a decided layout.
pub(crate) fn layout_view(
    model: &GpuModel,
    layout: &Layout,
    assignment: &[Option<usize>],
    jobs: &[OptJob],
) -> Vec<Value> {
    layout
        .instances()
        .iter()
        .zip(assignment)
        .map(|(i, a)| {
            let v = i.view(model);
            json!({"profile": v.profile, "start": v.start, "size": v.size, "job": a.map(|j| jobs[j].id.clone())})
        })
        .collect()
}

/// Place queued jobs on the cluster's GPUs, in order, with the optimizer's placement rule (the
/// simulator's MISO policy uses the same `choose_gpu`), then plan each chosen GPU. A job whose
/// speeds are unknown joins the GPU with the fewest jobs and that GPU profiles its mix. GPUs in
/// a profiling phase or running 7 jobs take no new job. Returns one entry per job.
#[allow(clippy::too_many_arguments)]
pub(crate) fn schedule(
    st: &Store,
    active: Option<&(String, Predictor)>,
    ids: &[String],
    how: optimizer::Placement,
    learned: Option<&crate::policy::rl::PolicyModel>,
    opts: &Options,
    profile: &ProfileSettings,
) -> Result<Vec<Value>, Refusal> {
    if ids.len() > MAX_SCHEDULE_JOBS {
        return Err(Refusal::Invalid(format!(
            "jobs: {} jobs; at most {MAX_SCHEDULE_JOBS} per request",
            ids.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, id) in ids.iter().enumerate() {
        if !seen.insert(id.as_str()) {
            return Err(Refusal::Invalid(format!("jobs[{k}]: `{id}` given twice")));
        }
        if st.job(id)?.is_none() {
            return Err(Refusal::NotFound(format!("jobs[{k}]: no job `{id}`")));
        }
    }
    let mut out = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let Some((body, state)) = st.job(id)? else {
            continue;
        };
        if state != super::store::JobState::Queued {
            out.push(json!({"id": id, "skipped": format!("job is {state}")}));
            continue;
        }
        // The cluster now: every registered GPU that can take a job, as the optimizer sees it.
        let mut gpus: Vec<(String, u32, optimizer::GpuState)> = Vec::new();
        for n in st.nodes()? {
            let node = n["name"].as_str().unwrap_or_default().to_string();
            for g in n["gpus"].as_array().into_iter().flatten() {
                let idx = g["index"].as_u64().unwrap_or(0) as u32;
                let model = node_gpu(st, &node, idx)?;
                let d = st.desired_gpu(&node, idx)?;
                if d.as_ref().is_some_and(|d| d.profile.is_some()) {
                    continue;
                }
                let (layout, assigned) = d
                    .map(|d| (d.layout, d.jobs))
                    .unwrap_or_else(|| ("empty".into(), Vec::new()));
                let Ok(current) = gpu::parse_valid_layout(model, &layout) else {
                    continue;
                };
                let mut jobs = Vec::new();
                let mut ok = true;
                for (k, a) in assigned.iter().enumerate() {
                    let on = Some(a.instance.clone());
                    match resolve(st, active, model, &current, &a.id, on, k) {
                        Ok((j, _)) => jobs.push(j),
                        Err(_) => ok = false,
                    }
                }
                if ok && jobs.len() < SLOTS {
                    gpus.push((
                        node.clone(),
                        idx,
                        optimizer::GpuState {
                            gpu: model,
                            layout: current,
                            jobs,
                        },
                    ));
                }
            }
        }
        let spec = stored_spec(id, body)?;
        let known =
            spec.workload.is_some() || spec.speeds.is_some() || st.latest_sample_for(id)?.is_some();
        let chosen = if known {
            let model = gpus.first().map(|(_, _, g)| g.gpu);
            match model.map(|m| resolve(st, active, m, &Layout::empty(), id, None, 0)) {
                Some(Ok((j, _))) => {
                    let states: Vec<optimizer::GpuState> =
                        gpus.iter().map(|(_, _, g)| g.clone()).collect();
                    match learned {
                        Some(p) => match learned_choice(p, &states, &j, opts, ids.len() - k) {
                            Some(g) => Some(g),
                            None => {
                                out.push(json!({"id": id, "queued": "the learned policy waits for a better moment"}));
                                continue;
                            }
                        },
                        None => optimizer::choose_gpu(&states, &j, how, opts),
                    }
                }
                Some(Err(e)) => {
                    out.push(json!({"id": id, "queued": e.message()}));
                    continue;
                }
                None => None,
            }
        } else {
            // Unknown speeds: MISO's rule, the GPU with the fewest jobs (lowest first on a tie).
            (0..gpus.len()).min_by_key(|&g| gpus[g].2.jobs.len())
        };
        let Some(g) = chosen else {
            out.push(json!({"id": id, "queued": "no GPU can take it now"}));
            continue;
        };
        let (node, idx, state) = &gpus[g];
        let mut mix: Vec<String> = state.jobs.iter().map(|j| j.id.clone()).collect();
        mix.push(id.clone());
        match plan_gpu(st, active, node, *idx, state.gpu, &mix, opts, Some(profile)) {
            Ok(p) => {
                let v = p.reply();
                out.push(json!({"id": id, "node": node, "index": idx, "profiling": p.is_profiling(), "layout": v["layout"], "decision": v["decision"]}))
            }
            Err(e) => out.push(json!({"id": id, "queued": e.message()})),
        }
    }
    Ok(out)
}

/// The learned policy's GPU for job `j` among `states` (its shortlist: the [`SHORTLIST`]
/// least-loaded GPUs that can take it; the simulator takes the least-loaded available GPUs in
/// groups of that size, the first group with a GPU that can take it), `None` when it waits; the
/// rule (best gain) when the observation is outside the policy's training range.
fn learned_choice(
    p: &crate::policy::rl::PolicyModel,
    states: &[optimizer::GpuState],
    j: &OptJob,
    opts: &Options,
    waiting: usize,
) -> Option<usize> {
    use crate::policy::rl;
    let mut order: Vec<usize> = (0..states.len()).collect();
    order.sort_by_key(|&g| (states[g].jobs.len(), g));
    // Least loaded first, the first SHORTLIST that can take the job; each GPU's gain is
    // computed once (it is also the feasibility test). Candidates are numbered in that order.
    let short: Vec<(usize, f64)> = order
        .into_iter()
        .filter_map(|g| {
            let one = std::slice::from_ref(&states[g]);
            Some((g, optimizer::placement_gains(one, j, opts).pop()?.1))
        })
        .take(SHORTLIST)
        .collect();
    let cands = short
        .iter()
        .enumerate()
        .map(|(k, &(g, gain))| rl::candidate(k, &states[g], gain, None))
        .collect();
    let q = rl::QueueView {
        waiting: waiting.max(1),
        head_min_kind: crate::policy::min_kind(&j.perf).unwrap_or(0),
        head_wait_s: 0.0,
        idle_gpus: states.iter().filter(|s| s.jobs.is_empty()).count(),
        gpus: states.len(),
        running: states.iter().map(|s| s.jobs.len()).sum(),
    };
    let obs = rl::Observation::new(&q, cands);
    match p.decide(&obs).0 {
        rl::Choice::Join(i) => obs.candidates.get(i).map(|c| short[c.gpu].0),
        _ => None,
    }
}

/// Candidate GPUs the learned policy chooses among (the simulator's shortlist).
const SHORTLIST: usize = crate::policy::rl::TOP_K;

/// GPU `idx` of a registered node, and its model.
pub(crate) fn node_gpu(
    st: &Store,
    node: &str,
    idx: u32,
) -> Result<&'static gpu::GpuModel, Refusal> {
    let n = st.node(node)?.ok_or_else(|| {
        Refusal::NotFound(format!(
            "no node `{node}` (agents register with POST /v1/nodes)"
        ))
    })?;
    let model = n["gpus"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["index"] == idx))
        .and_then(|g| g["model"].as_str())
        .ok_or_else(|| Refusal::NotFound(format!("node `{node}` has no GPU {idx}")))?;
    gpu::gpu(model).map_err(|e| Refusal::Internal(e.to_string()))
}

/// The optimizer options a request asks for.
pub(crate) fn options(
    objective: Option<crate::optimizer::Objective>,
    spare: bool,
    cost_aware: bool,
) -> Options {
    Options {
        objective: objective.unwrap_or_default(),
        spare,
        cost_aware,
        ..Options::default()
    }
}
