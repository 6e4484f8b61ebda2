//! Job routes: submit, list, finish; place queued jobs on the cluster (schedule) and plan one
//! GPU.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{api, bad, blocking, body, plain_name, typed, ApiError, ApiResult, AppState};
use crate::gpu::{self, Layout};
use crate::optimizer::{self, JobSpec, Objective, Options};
use crate::service::plan::{node_gpu, options};
use crate::service::{plan, store};

/// `POST /v1/jobs`: a job as in `jobs.json` (validated against an A100-40GB), with an optional
/// `command` the agent runs. Without `workload`/`speeds` the job waits for a profiling sample.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobSpec, responses((status = 201, description = "stored and queued", body = api::JobCreated), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn submit_job(
    State(s): State<Arc<AppState>>,
    b: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let raw = body(b)?;
    let spec: JobSpec = typed(raw.clone()).map_err(|e| bad(format!("job: {e}")))?;
    plain_name("id", &spec.id)?;
    if spec.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(bad("command: must not be empty"));
    }
    if spec.instance.is_some() {
        return Err(bad(
            "instance: the controller places jobs (POST /v1/nodes/{name}/gpus/{index}/plan)",
        ));
    }
    let g = gpu::gpu("a100-40gb").map_err(|e| bad(e.to_string()))?;
    let mut check = spec.clone();
    if check.workload.is_none() && check.speeds.is_none() {
        // Speeds come later from profiling; check the other fields now.
        check.speeds = Some([("7g.40gb".to_string(), 1.0)].into_iter().collect());
    }
    check
        .resolve(g, &Layout::empty(), 0)
        .map_err(|e| bad(e.to_string().replace("jobs[0].", "")))?;
    s.store().add_job(&spec.id, &raw)?;
    Ok((
        StatusCode::CREATED,
        Json(api::JobCreated {
            id: spec.id,
            state: store::JobState::Queued.to_string(),
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses((status = 200, description = "every job as submitted, with its `state` (and `error` when it failed)", body = Vec<Object>), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody)))]
pub(super) async fn list_jobs(State(s): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(s.reader().jobs()?).into_response())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FinishBody {
    /// Set when the job failed for good (the agent gave up restarting it).
    #[serde(default)]
    error: Option<String>,
}

/// `POST /v1/jobs/{id}/finish`: the job is done (or failed, with `{"error": ...}`). It leaves
/// its GPU, and the jobs still there are re-planned (MISO closes the idle gap at once).
#[utoipa::path(post, path = "/v1/jobs/{id}/finish", tag = "jobs", params(("id" = String, Path, description = "job id")), request_body(content = Option<FinishBody>, description = "empty, or `{\"error\": ...}` when the job failed for good"), responses((status = 200, description = "ended; the jobs left on its GPU re-planned", body = api::Finished), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn finish_job(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> ApiResult {
    let fb: FinishBody = if raw.iter().all(|b| b.is_ascii_whitespace()) {
        FinishBody::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| bad(format!("body: {e}")))?
    };
    let active = s.active();
    let st = s.store();
    let on = st.finish_job(&id, fb.error.as_deref())?;
    let state = if fb.error.is_some() {
        store::JobState::Failed
    } else {
        store::JobState::Finished
    };
    let mut out = api::Finished {
        id: id.clone(),
        state: state.to_string(),
        replanned: None,
    };
    if let Some((node, idx)) = on {
        // A GPU still profiling its mix is planned when the sample arrives.
        let rest: Vec<String> = st
            .desired_gpu(&node, idx)?
            .filter(|d| d.profile.is_none())
            .map(|d| d.job_ids())
            .unwrap_or_default();
        if !rest.is_empty() {
            let model = node_gpu(&st, &node, idx)?;
            out.replanned = Some(
                match plan::plan_gpu(
                    &st,
                    active.as_ref(),
                    &node,
                    idx,
                    model,
                    &rest,
                    &Options::default(),
                    None,
                ) {
                    Ok(p) => {
                        let p = p.reply();
                        json!({"node": node, "index": idx, "layout": p["layout"], "decision": p["decision"]})
                    }
                    Err(e) => json!({"node": node, "index": idx, "error": e.message()}),
                },
            );
        }
    }
    Ok(Json(out).into_response())
}

/// `POST /v1/jobs/{id}/observations`'s body: what the job showed on the instance it ran on.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ObservationBody {
    /// The profile it ran on (`3g.20gb`), or its kind (`3g`).
    profile: String,
    /// Mean seconds per iteration there.
    #[schema(exclusive_minimum = 0.0)]
    iter_s: f64,
    /// How many iterations the mean is over (accepted for the sender's record; not stored).
    #[serde(default)]
    iterations: Option<u64>,
}

/// `POST /v1/jobs/{id}/observations`: the job ran on `profile` at `iter_s` seconds per
/// iteration (agents send it). Stored as a `miso-observation/1` line with the MPS sample the
/// job's speeds were predicted from, its slot and workload label: retraining learns the job's
/// workload from it (`POST /v1/models/retrain`).
#[utoipa::path(post, path = "/v1/jobs/{id}/observations", tag = "jobs", params(("id" = String, Path, description = "job id")), request_body = ObservationBody, responses((status = 201, description = "stored", body = api::ObservationStored), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn add_observation(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    b: Result<Json<ObservationBody>, JsonRejection>,
) -> ApiResult {
    use crate::predictor::observe::{check_observation, Observation, OBSERVATION_FORMAT};
    let o = body(b)?;
    if !(o.iter_s.is_finite() && o.iter_s > 0.0) {
        return Err(bad(format!("iter_s: {} is not a positive time", o.iter_s)));
    }
    let kind = o
        .profile
        .split('.')
        .next()
        .filter(|k| crate::perf::KIND_NAMES.contains(k))
        .ok_or_else(|| {
            bad(format!(
                "profile: `{}` is not a MIG profile (e.g. 3g.20gb) or kind (1g, 2g, 3g, 4g, 7g)",
                o.profile.escape_debug()
            ))
        })?
        .to_string();
    let _ = o.iterations;
    blocking(|| {
        let st = s.store();
        if st.job(&id)?.is_none() {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no job `{}`", id.escape_debug()),
            ));
        }
        let (seq, sample, slot) = st.latest_sample_for(&id)?.ok_or_else(|| {
            ApiError(
                StatusCode::CONFLICT,
                format!(
                    "job `{}` was never profiled (its speeds were given): no MPS sample to learn from",
                    id.escape_debug()
                ),
            )
        })?;
        let sample: crate::predictor::data::SampleRecord =
            typed(sample).map_err(|e| bad(format!("stored sample {seq}: {e}")))?;
        let label = sample
            .slots
            .get(slot)
            .map(|s| s.label.clone())
            .unwrap_or_default();
        let ob = Observation {
            format: OBSERVATION_FORMAT.to_string(),
            label: label.clone(),
            sample,
            slot,
            kind: kind.clone(),
            iter_s: o.iter_s,
        };
        check_observation(&ob, "observation").map_err(|e| bad(e.to_string()))?;
        let v = serde_json::to_value(&ob)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let seq = st.add_observation(&id, &v)?;
        Ok((
            StatusCode::CREATED,
            Json(api::ObservationStored {
                seq,
                job: id.clone(),
                label,
                kind,
            }),
        )
            .into_response())
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanBody {
    /// The jobs the GPU should run after the plan (left out: the ones it runs now).
    #[serde(default)]
    jobs: Option<Vec<String>>,
    #[serde(default)]
    objective: Option<Objective>,
    #[serde(default)]
    spare: bool,
    #[serde(default)]
    cost_aware: bool,
    /// Seconds per MPS level when the mix must be profiled first (default 10).
    #[serde(default)]
    profile_seconds: Option<f64>,
    /// The three MPS active-thread percentages (default 100, 50, 14).
    #[serde(default)]
    profile_levels: Option<[u32; 3]>,
}

/// MPS profiling settings of a request, checked.
pub(super) fn profile_settings(
    seconds: Option<f64>,
    levels: Option<[u32; 3]>,
) -> Result<plan::ProfileSettings, ApiError> {
    let mut prof = plan::ProfileSettings::default();
    if let Some(sec) = seconds {
        if !(sec.is_finite() && sec > 0.0 && sec <= 600.0) {
            return Err(bad(format!("profile_seconds: {sec} (0 < seconds <= 600)")));
        }
        prof.seconds = sec;
    }
    if let Some(l) = levels {
        if let Some(k) = l.iter().position(|v| *v == 0 || *v > 100) {
            return Err(bad(format!("profile_levels[{k}]: {} (1..=100)", l[k])));
        }
        prof.levels = l;
    }
    Ok(prof)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleBody {
    /// Jobs to place, in order (left out: every queued job, oldest first).
    #[serde(default)]
    jobs: Option<Vec<String>>,
    /// fewest-jobs (MISO's rule, the default), best-gain, or rl (the learned policy; the
    /// default when the controller runs with `--scheduler rl`).
    #[serde(default)]
    placement: Option<String>,
    #[serde(default)]
    objective: Option<Objective>,
    #[serde(default)]
    spare: bool,
    #[serde(default)]
    cost_aware: bool,
    #[serde(default)]
    profile_seconds: Option<f64>,
    #[serde(default)]
    profile_levels: Option<[u32; 3]>,
}

/// `POST /v1/schedule`: place queued jobs on the cluster's GPUs (the optimizer's placement,
/// as in the simulator) and plan each GPU that takes one.
#[utoipa::path(post, path = "/v1/schedule", tag = "jobs", request_body = ScheduleBody, responses((status = 200, description = "where each job went, or why it stays queued", body = api::Scheduled), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn schedule(
    State(s): State<Arc<AppState>>,
    b: Result<Json<ScheduleBody>, JsonRejection>,
) -> ApiResult {
    let r = body(b)?;
    let default = if s.scheduler.is_some() {
        "rl"
    } else {
        "fewest-jobs"
    };
    let (how, learned) =
        match r.placement.as_deref().unwrap_or(default) {
            "fewest-jobs" => (optimizer::Placement::FewestJobs, None),
            "best-gain" => (optimizer::Placement::BestGain, None),
            "rl" => match &s.scheduler {
                Some(p) => (optimizer::Placement::BestGain, Some(p.clone())),
                None => return Err(bad(
                    "placement: `rl` needs a controller started with `miso serve --scheduler rl`"
                        .to_string(),
                )),
            },
            p => {
                return Err(bad(format!(
                    "placement: `{p}` (fewest-jobs, best-gain or rl)"
                )))
            }
        };
    let prof = profile_settings(r.profile_seconds, r.profile_levels)?;
    let opts = options(r.objective, r.spare, r.cost_aware);
    let active = s.active();
    let st = s.store();
    let ids = match r.jobs {
        Some(j) => j,
        None => st
            .jobs()?
            .iter()
            .filter(|j| j["state"] == "queued")
            .filter_map(|j| j["id"].as_str().map(str::to_string))
            .collect(),
    };
    let placed = blocking(|| {
        plan::schedule(
            &st,
            active.as_ref(),
            &ids,
            how,
            learned.as_deref(),
            &opts,
            &prof,
        )
    })?;
    Ok(Json(api::Scheduled { jobs: placed }).into_response())
}

/// `POST /v1/nodes/{name}/gpus/{index}/plan`: decide layout + assignment for these jobs (least
/// disruption from the GPU's desired state) and make it the desired state the agent applies.
#[utoipa::path(post, path = "/v1/nodes/{name}/gpus/{index}/plan", tag = "jobs", params(("name" = String, Path, description = "node name"), ("index" = u32, Path, description = "GPU index")), request_body = PlanBody, responses((status = 201, description = "layout, assignment, objective and plan steps, committed as the desired state", body = Object), (status = 202, description = "some job has no speeds: the mix is profiled first under MPS; the plan follows the sample", body = Object), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody), (status = 422, description = "valid, but no layout fits", body = api::ErrorBody)))]
pub(super) async fn plan_gpu(
    State(s): State<Arc<AppState>>,
    Path((node, idx)): Path<(String, u32)>,
    b: Result<Json<PlanBody>, JsonRejection>,
) -> ApiResult {
    let r = body(b)?;
    let active = s.active();
    let st = s.store();
    let model = node_gpu(&st, &node, idx)?;
    let ids = match r.jobs {
        Some(j) => j,
        None => st
            .desired_gpu(&node, idx)?
            .map(|d| d.job_ids())
            .unwrap_or_default(),
    };
    let prof = profile_settings(r.profile_seconds, r.profile_levels)?;
    let opts = options(r.objective, r.spare, r.cost_aware);
    let planned = blocking(|| {
        plan::plan_gpu(
            &st,
            active.as_ref(),
            &node,
            idx,
            model,
            &ids,
            &opts,
            Some(&prof),
        )
    })?;
    Ok(match planned {
        plan::Planned::Committed(v) => (StatusCode::CREATED, Json(v)),
        plan::Planned::Profiling(v) => (StatusCode::ACCEPTED, Json(v)),
    }
    .into_response())
}
