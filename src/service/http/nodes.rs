//! Node routes: agents register their GPUs, read their desired state and report what they
//! run; operators set a GPU's layout by hand or export a node's layouts.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{api, bad, body, plain_name, ApiError, ApiResult, AppState};
use crate::gpu::{self};
use crate::service::plan;
use crate::service::plan::node_gpu;

/// `POST /v1/nodes`: a node agent registers its GPUs.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeBody {
    /// 1-64 letters, digits, `-`, `_`, `.`, starting with a letter or digit.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    name: String,
    #[schema(max_items = 64)]
    gpus: Vec<NodeGpu>,
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeGpu {
    #[schema(maximum = 1023)]
    index: u32,
    /// A GPU model miso knows (`miso gpus`), e.g. `a100-40gb`.
    #[schema(example = "a100-40gb")]
    model: String,
    #[serde(default)]
    uuid: Option<String>,
}

#[utoipa::path(post, path = "/v1/nodes", tag = "nodes", request_body = NodeBody, responses((status = 201, description = "registered (`reset_gpus`: GPUs whose model changed or that are gone; their plans were dropped)", body = Object), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody)))]
pub(super) async fn register_node(
    State(s): State<Arc<AppState>>,
    b: Result<Json<NodeBody>, JsonRejection>,
) -> ApiResult {
    let n = body(b)?;
    plain_name("name", &n.name)?;
    if n.gpus.len() > MAX_NODE_GPUS {
        return Err(bad(format!(
            "gpus: {} GPUs; a node has at most {MAX_NODE_GPUS}",
            n.gpus.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut gpus = Vec::new();
    for (k, g) in n.gpus.iter().enumerate() {
        let m = gpu::gpu(&g.model).map_err(|e| bad(format!("gpus[{k}].model: {e}")))?;
        if g.index > MAX_GPU_INDEX {
            return Err(bad(format!(
                "gpus[{k}].index: {} (at most {MAX_GPU_INDEX})",
                g.index
            )));
        }
        if !seen.insert(g.index) {
            return Err(bad(format!("gpus[{k}].index: {} given twice", g.index)));
        }
        if let Some(u) = &g.uuid {
            if u.len() > 128 || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(bad(format!(
                    "gpus[{k}].uuid: at most 128 characters, no spaces or control characters"
                )));
            }
        }
        gpus.push(json!({"index": g.index, "model": m.short, "uuid": g.uuid}));
    }
    let v = json!({"name": n.name, "gpus": gpus});
    let reset = s.store().put_node(&n.name, &v)?;
    let mut reply = v;
    if !reset.is_empty() {
        // GPUs whose model changed or that are gone: their old plans were dropped.
        reply["reset_gpus"] = json!(reset);
    }
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", responses((status = 200, description = "registered nodes and their GPUs", body = Vec<Object>), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody)))]
pub(super) async fn list_nodes(State(s): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(s.reader().nodes()?).into_response())
}

/// The most GPUs one node may register, and the largest GPU index.
pub(super) const MAX_NODE_GPUS: usize = 64;
const MAX_GPU_INDEX: u32 = 1023;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DesiredBody {
    layout: String,
    /// Which job runs on which instance; left out, assignments whose instance stays are kept.
    #[serde(default)]
    jobs: Option<Vec<Assigned>>,
}

#[derive(Deserialize, serde::Serialize, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Assigned {
    id: String,
    instance: String,
}

/// `PUT /v1/nodes/{name}/gpus/{index}/desired`: the layout an agent must converge to, and
/// optionally the job on each instance (an operator's override of the planner).
#[utoipa::path(put, path = "/v1/nodes/{name}/gpus/{index}/desired", tag = "nodes", params(("name" = String, Path, description = "node name"), ("index" = u32, Path, description = "GPU index")), request_body = DesiredBody, responses((status = 200, description = "the GPU's desired layout and assignment, committed", body = Object), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn put_desired(
    State(s): State<Arc<AppState>>,
    Path((node, idx)): Path<(String, u32)>,
    b: Result<Json<DesiredBody>, JsonRejection>,
) -> ApiResult {
    let d = body(b)?;
    let st = s.store();
    let model = node_gpu(&st, &node, idx)?;
    if d.layout.trim().is_empty() {
        return Err(bad(
            "layout: empty; write `empty` for a GPU without instances",
        ));
    }
    let l = gpu::parse_valid_layout(model, &d.layout).map_err(|e| bad(format!("layout: {e}")))?;
    let label_of = |x: &str| {
        gpu::Instance::parse(model, x)
            .ok()
            .filter(|i| l.instances().contains(i))
            .map(|i| i.label(model))
    };
    if d.jobs
        .as_ref()
        .is_some_and(|js| js.len() > l.instances().len())
    {
        return Err(bad(format!(
            "jobs: more jobs than the {} instances of {}",
            l.instances().len(),
            l.label(model)
        )));
    }
    let placed = plan::placed_elsewhere(&st, &node, idx)?;
    let jobs: Vec<crate::service::store::Assignment> = match d.jobs {
        Some(js) => {
            let mut ids = std::collections::HashSet::new();
            let mut insts = std::collections::HashSet::new();
            for (k, j) in js.iter().enumerate() {
                let f = |m: String| bad(format!("jobs[{k}].{m}"));
                if !ids.insert(j.id.as_str()) {
                    return Err(f(format!("id: `{}` given twice", j.id)));
                }
                if let Some((n, i)) = placed.get(&j.id) {
                    return Err(ApiError(
                        StatusCode::CONFLICT,
                        format!("jobs[{k}].id: job `{}` runs on GPU {i} of node `{n}`", j.id),
                    ));
                }
                match st.job(&j.id)? {
                    None => return Err(f(format!("id: no job `{}`", j.id))),
                    Some((_, state)) if state.ended() => {
                        return Err(f(format!("id: job `{}` has {state}", j.id)))
                    }
                    _ => {}
                }
                let Some(lab) = label_of(&j.instance) else {
                    return Err(f(format!(
                        "instance: `{}` is not an instance of {}",
                        j.instance,
                        l.label(model)
                    )));
                };
                if !insts.insert(lab.clone()) {
                    return Err(f(format!("instance: {lab} given twice")));
                }
            }
            js.into_iter()
                .map(|j| crate::service::store::Assignment {
                    instance: label_of(&j.instance).unwrap_or_default(),
                    id: j.id,
                })
                .collect()
        }
        None => st
            .desired_gpu(&node, idx)?
            .map(|d| d.jobs)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| label_of(&a.instance).is_some())
            .collect(),
    };
    // One transaction, as a plan: the layout and assignment, assigned jobs running, jobs that
    // lost their instance queued again.
    let old = st
        .desired_gpu(&node, idx)?
        .map(|d| d.job_ids())
        .unwrap_or_default();
    let dropped: Vec<String> = old
        .into_iter()
        .filter(|id| !jobs.iter().any(|a| &a.id == id))
        .collect();
    let decision = json!({"node": node, "index": idx, "layout": l.label(model), "jobs": jobs, "set_by": "PUT desired"});
    st.apply_plan(&node, idx, &l.label(model), &jobs, &decision, &dropped)?;
    Ok(
        Json(json!({"node": node, "index": idx, "layout": l.label(model), "jobs": jobs}))
            .into_response(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HoldBody {
    /// true: the node's agents keep the layout they have (no destroy, no create, no new job
    /// started) until released; false: release.
    hold: bool,
    /// Why (shown in `GET /v1/nodes`), at most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    reason: Option<String>,
}

/// `PUT /v1/nodes/{name}/hold`: hold or release a node. While held, its desired state can
/// still be planned and changed, but the agents do not apply it: whoever holds the node (an
/// operator during maintenance, `miso slurm` while Slurm still runs jobs on slices a new
/// layout would destroy) releases it when the GPU may change.
#[utoipa::path(put, path = "/v1/nodes/{name}/hold", tag = "nodes", params(("name" = String, Path, description = "node name")), request_body = HoldBody, responses((status = 200, description = "held or released", body = api::Held), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody)))]
pub(super) async fn put_hold(
    State(s): State<Arc<AppState>>,
    Path(node): Path<String>,
    b: Result<Json<HoldBody>, JsonRejection>,
) -> ApiResult {
    let h = body(b)?;
    let reason = match (h.hold, h.reason) {
        (false, _) => None,
        (true, None) => Some("held".to_string()),
        (true, Some(r)) => {
            if r.chars().count() > 200 || r.chars().any(char::is_control) {
                return Err(bad("reason: at most 200 characters, no control characters"));
            }
            Some(if r.trim().is_empty() {
                "held".to_string()
            } else {
                r
            })
        }
    };
    if !s.store().set_hold(&node, reason.as_deref())? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no node `{}`", node.escape_debug()),
        ));
    }
    Ok(Json(api::Held {
        node,
        hold: reason.is_some(),
        reason,
    })
    .into_response())
}

/// `GET /v1/nodes/{name}/desired`: per GPU the layout and the jobs to run, with their commands.
#[utoipa::path(get, path = "/v1/nodes/{name}/desired", tag = "nodes", params(("name" = String, Path, description = "node name")), responses((status = 200, description = "per GPU: layout, jobs with their commands, profiling phase", body = Vec<Object>), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody)))]
pub(super) async fn get_desired(
    State(s): State<Arc<AppState>>,
    Path(node): Path<String>,
) -> ApiResult {
    let st = s.reader();
    let hold = st.hold(&node)?;
    let mut v = Vec::new();
    for d in st.desired(&node)? {
        let mut js = Vec::new();
        for j in &d.jobs {
            let command = st.job(&j.id)?.map(|(b, _)| b["command"].clone());
            js.push(json!({"id": j.id, "instance": j.instance, "command": command.unwrap_or(Value::Null)}));
        }
        let profile = match &d.profile {
            None => Value::Null,
            Some(p) => {
                let mut pj = Vec::new();
                for id in d.profiled() {
                    let body = st.job(&id)?.map(|(b, _)| b).unwrap_or(Value::Null);
                    let label = body["workload"].as_str().unwrap_or(&id).to_string();
                    pj.push(json!({"id": id, "label": label, "command": body["command"]}));
                }
                json!({"request": p.request, "levels": p.levels, "seconds": p.seconds, "jobs": pj})
            }
        };
        v.push(json!({"index": d.index, "layout": d.layout, "jobs": js, "profile": profile, "hold": hold}));
    }
    Ok(Json(v).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    /// mig-parted (default), gpu-operator or slurm.
    #[serde(default)]
    format: Option<String>,
}

/// `GET /v1/nodes/{name}/export?format=mig-parted|gpu-operator|slurm`: the node's desired
/// layouts for the tools a cluster already runs (config name `miso-<node>`; GPUs without a
/// desired layout get none).
#[utoipa::path(get, path = "/v1/nodes/{name}/export", tag = "nodes", params(("name" = String, Path, description = "node name"), ExportQuery), responses((status = 200, description = "the node's desired layouts as a mig-parted config, a GPU-operator ConfigMap or Slurm gres lines", body = String, content_type = "text/plain"), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn export_node(
    State(s): State<Arc<AppState>>,
    Path(node): Path<String>,
    q: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let q = q.map_err(|e| bad(format!("query: {}", e.body_text())))?.0;
    let st = s.reader();
    let n = st
        .node(&node)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no node `{node}`")))?;
    let mut model: Option<&'static gpu::GpuModel> = None;
    let mut layouts = Vec::new();
    for g in n["gpus"].as_array().into_iter().flatten() {
        let idx = g["index"].as_u64().unwrap_or(0) as u32;
        let m = node_gpu(&st, &node, idx)?;
        if model.is_some_and(|x| x.short != m.short) {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("node `{node}` mixes GPU models; export is per model"),
            ));
        }
        model = Some(m);
        let l = st
            .desired_gpu(&node, idx)?
            .map(|d| d.layout)
            .unwrap_or_else(|| "empty".into());
        layouts.push(
            gpu::parse_valid_layout(m, &l)
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        );
    }
    let m = model
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("node `{node}` has no GPU")))?;
    let name = format!("miso-{node}");
    let text = match q.format.as_deref().unwrap_or("mig-parted") {
        "mig-parted" => gpu::migparted::export(m, &layouts, &name),
        "gpu-operator" => gpu::migparted::gpu_operator(m, &layouts, &name),
        "slurm" => gpu::migparted::slurm(m, &layouts),
        f => {
            return Err(bad(format!(
                "format: `{f}` (mig-parted, gpu-operator or slurm)"
            )))
        }
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportBody {
    gpus: Vec<GpuReport>,
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GpuReport {
    index: u32,
    layout: String,
    #[serde(default)]
    error: Option<String>,
    /// The node is held: the agent left the layout as it was.
    #[serde(default)]
    held: bool,
    /// The jobs the agent runs on this GPU.
    #[serde(default)]
    jobs: Vec<JobReport>,
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JobReport {
    id: String,
    instance: String,
    /// `running` or `failed` (the agent gave up restarting it).
    state: String,
    #[serde(default)]
    pid: Option<u32>,
    /// How often the agent started it (restarts after a checkpoint or a loss included).
    #[serde(default)]
    starts: u32,
}

/// `POST /v1/nodes/{name}/report`: what the agent's GPUs have now.
#[utoipa::path(post, path = "/v1/nodes/{name}/report", tag = "nodes", params(("name" = String, Path, description = "node name")), request_body = ReportBody, responses((status = 200, description = "stored", body = api::ReportStored), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody)))]
pub(super) async fn post_report(
    State(s): State<Arc<AppState>>,
    Path(node): Path<String>,
    b: Result<Json<ReportBody>, JsonRejection>,
) -> ApiResult {
    let r = body(b)?;
    let active = s.active();
    let st = s.store();
    for (k, g) in r.gpus.iter().enumerate() {
        let model = node_gpu(&st, &node, g.index)
            .map_err(|e| bad(format!("gpus[{k}].index: {}", e.message())))?;
        let layout = gpu::parse_valid_layout(model, &g.layout)
            .map_err(|e| bad(format!("gpus[{k}].layout: {e}")))?;
        for (n, j) in g.jobs.iter().enumerate() {
            if st.job(&j.id)?.is_none() {
                return Err(bad(format!("gpus[{k}].jobs[{n}].id: no job `{}`", j.id)));
            }
            let on_gpu = gpu::Instance::parse(model, &j.instance)
                .ok()
                .filter(|i| layout.instances().contains(i));
            if on_gpu.is_none() {
                return Err(bad(format!(
                    "gpus[{k}].jobs[{n}].instance: `{}` is not an instance of {}",
                    j.instance,
                    layout.label(model)
                )));
            }
            if j.state != "running" && j.state != "failed" {
                return Err(bad(format!(
                    "gpus[{k}].jobs[{n}].state: `{}` (running or failed)",
                    j.state
                )));
            }
        }
    }
    for g in &r.gpus {
        st.set_actual(&node, g.index, &json!(g))?;
    }
    // A profiling phase the agent gave up on, or that ran out of time, ends here.
    let errors: Vec<(u32, String)> = r
        .gpus
        .iter()
        .filter_map(|g| g.error.clone().map(|e| (g.index, e)))
        .collect();
    let expired = plan::expire_profiles(&st, active.as_ref(), &node, &errors)?;
    Ok(Json(api::ReportStored {
        ok: true,
        profiling_ended: expired,
    })
    .into_response())
}
