//! The controller's decisions for one GPU of a node: the stored jobs it should run are resolved
//! to optimizer jobs (their own `workload`/`speeds`, or speeds the active model predicts from
//! the newest MPS sample that profiled them), planned against the GPU's desired layout with
//! least disruption, and committed as the new desired layout + job assignment in one
//! transaction. The node's agent converges to it (checkpoint → destroy/create → restart).

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::gpu::{self, GpuModel, Layout};
use crate::optimizer::{self, JobSpec, OptJob, Options};
use crate::perf::{MpsMatrix, SLOTS};
use crate::predictor::data::SampleRecord;
use crate::predictor::Predictor;

use super::{bad, ApiError, Store};

fn conflict(msg: String) -> ApiError {
    ApiError(StatusCode::CONFLICT, msg)
}

/// The MPS matrix of a sample (slots beyond its jobs are idle dummies), checking every latency.
pub(super) fn sample_matrix(rec: &SampleRecord) -> Result<MpsMatrix, String> {
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

/// The desired layout of GPU `idx` of `node` and its job → instance assignment.
fn desired_of(st: &Store, node: &str, idx: u32) -> Result<(String, Value), ApiError> {
    Ok(st
        .desired(node)?
        .into_iter()
        .find(|(i, _, _)| *i == idx)
        .map(|(_, l, j)| (l, j))
        .unwrap_or_else(|| ("empty".into(), json!([]))))
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
) -> Result<(OptJob, Value), ApiError> {
    let (body, state) = st
        .job(id)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("jobs[{k}]: no job `{id}`")))?;
    if state == "finished" || state == "failed" {
        return Err(conflict(format!("jobs[{k}]: job `{id}` has {state}")));
    }
    let mut spec: JobSpec = serde_json::from_value(body).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored job `{id}`: {e}"),
        )
    })?;
    spec.instance = on;
    if spec.workload.is_some() || spec.speeds.is_some() {
        let j = spec
            .resolve(model, current, k)
            .map_err(|e| bad(e.to_string()))?;
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
    let rec: SampleRecord = serde_json::from_value(sample).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored sample {seq}: {e}"),
        )
    })?;
    let m = sample_matrix(&rec).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored sample {seq}: {e}"),
        )
    })?;
    let mut perf = p.predict(&m)[slot].clone().ok_or_else(|| {
        conflict(format!(
            "jobs[{k}]: model `{name}` predicts nothing for slot {slot} of sample {seq}"
        ))
    })?;
    perf.memory_mb = spec.memory_mb;
    // The other fields (memory, remaining work, restart cost, instance) are checked as usual
    // with a stand-in speed, then the predicted speeds replace it.
    let whole = model
        .profiles
        .iter()
        .rev()
        .find(|p| p.standard && p.compute_slices == model.compute_slices)
        .map(|p| p.name.to_string())
        .unwrap_or_default();
    spec.speeds = Some([(whole, 1.0)].into_iter().collect());
    let mut j = spec
        .resolve(model, current, k)
        .map_err(|e| bad(e.to_string()))?;
    j.perf = perf;
    Ok((j, json!({"model": name, "sample": seq, "slot": slot})))
}

/// Plan GPU `idx` of `node` (a `model`) to run exactly the jobs `ids`, and commit it. Returns
/// the reply: layout with jobs, objective, plan steps, decision number.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_gpu(
    st: &Store,
    active: Option<&(String, Predictor)>,
    node: &str,
    idx: u32,
    model: &'static GpuModel,
    ids: &[String],
    opts: &Options,
) -> Result<Value, ApiError> {
    let (label, assigned) = desired_of(st, node, idx)?;
    let current = gpu::parse_valid_layout(model, &label)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let on = |id: &str| {
        assigned.as_array().and_then(|a| {
            a.iter()
                .find(|j| j["id"] == id)
                .and_then(|j| j["instance"].as_str().map(str::to_string))
        })
    };
    for (k, id) in ids.iter().enumerate() {
        if ids[..k].contains(id) {
            return Err(bad(format!("jobs[{k}]: `{id}` given twice")));
        }
    }
    for (n, i, _, jobs) in st.desired_all()? {
        if n == node && i == idx {
            continue;
        }
        for (k, id) in ids.iter().enumerate() {
            if jobs
                .as_array()
                .is_some_and(|a| a.iter().any(|j| j["id"] == *id))
            {
                return Err(conflict(format!(
                    "jobs[{k}]: job `{id}` runs on GPU {i} of node `{n}`"
                )));
            }
        }
    }
    let mut jobs = Vec::new();
    let mut sources = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let (j, src) = resolve(st, active, model, &current, id, on(id), k)?;
        jobs.push(j);
        sources.push(src);
    }
    let plan = optimizer::plan(model, &jobs, &current, opts)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let d = &plan.decision;
    let assignment: Vec<Value> = d
        .layout
        .instances()
        .iter()
        .zip(&d.assignment)
        .filter_map(|(i, a)| a.map(|j| json!({"id": jobs[j].id, "instance": i.label(model)})))
        .collect();
    let dropped: Vec<String> = assigned
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_str())
        .filter(|id| !ids.iter().any(|i| i == id))
        .map(str::to_string)
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
    let seq = st.apply_plan(node, idx, &target, &json!(assignment), &out, &dropped)?;
    out["decision"] = json!(seq);
    Ok(out)
}

/// `[{"profile", "start", "size", "job"}]` of a decided layout.
pub(super) fn layout_view(
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
