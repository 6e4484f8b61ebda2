//! The controller: an HTTP API (axum on tokio) over the durable store, the optimizer and the
//! predictor's sample format. Writes need the bearer token; reads too unless configured open.
//! Binds to loopback by default; bodies are limited to 1 MiB and validated with errors that name
//! the field; an accepted write is committed to SQLite before the reply.
//!
//! Depends on everything below it; nothing depends on it.

pub mod agent;
pub mod client;
pub mod loadtest;
pub mod plan;
pub mod profile;
pub mod runner;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::gpu::{self, Layout};
use crate::optimizer::{self, JobSpec, Objective, Options};
use crate::predictor::data::SampleRecord;

pub use store::{Store, StoreError};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Settings of `miso serve`.
pub struct Config {
    pub listen: SocketAddr,
    pub db: std::path::PathBuf,
    /// Folder of model directories (`models/`); the active model is hot-swapped.
    pub models: std::path::PathBuf,
    /// Model activated at start, if present.
    pub active_model: Option<String>,
    /// Bearer token for writes (and reads unless `open_reads`); `None` only with `insecure`.
    pub token: Option<String>,
    pub open_reads: bool,
    /// One line per request on standard error.
    pub access_log: bool,
    /// A connection must send a request's headers within this time (or is closed).
    pub header_timeout: std::time::Duration,
}

struct AppState {
    store: Mutex<Store>,
    /// A read-only connection for GETs (None: reads share the writer).
    reader: Option<Mutex<Store>>,
    models_dir: std::path::PathBuf,
    /// The active predictor, swapped in place by activate/retrain (no restart).
    active: Mutex<Option<(String, crate::predictor::Predictor)>>,
    token: Option<String>,
    open_reads: bool,
    /// Replies by (route pattern, HTTP status), counted in one place (`log_access`).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Print the access log.
    access_log: bool,
    errors: AtomicU64,
    recommend_ns: AtomicU64,
    recommend_count: AtomicU64,
}

/// An error reply: status and a JSON body `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            // The controller's own failures are logged with their cause (never a token).
            eprintln!("error: {} {}", self.0.as_u16(), self.1);
        }
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

/// Authentication of every route in one place: `/healthz` is open; reads (GET, and the two
/// POSTs that compute without storing anything: `/v1/recommend`, `/v1/predict`) need the token
/// unless `--open-reads`; everything else is a write and always needs it.
async fn authorize(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if path != "/healthz" {
        let read = req.method() == axum::http::Method::GET
            || req.method() == axum::http::Method::HEAD
            || matches!(path, "/v1/recommend" | "/v1/predict");
        if let Err(e) = s.auth(req.headers(), !read) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// One line per request on standard error (method, path without the query, status, time), and
/// replies counted by status for `/metrics`. Headers, bodies and the token are never logged.
async fn log_access(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let t = std::time::Instant::now();
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    // The route pattern (`/v1/jobs/{id}/finish`), never the ids in the path.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)".to_string(), |m| m.as_str().to_string());
    // The handler runs as its own task: a panic (a bug) is a 500 for this request only.
    let resp = match tokio::spawn(next.run(req)).await {
        Ok(r) => r,
        Err(e) => {
            let why = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<&str>()
                    .map(|m| m.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "internal error while serving {method} {}: {why}",
                    path.escape_debug()
                ),
            )
            .into_response()
        }
    };
    let status = resp.status().as_u16();
    if let Ok(mut m) = s.requests.lock() {
        *m.entry((route, status)).or_insert(0) += 1;
    }
    if s.access_log {
        eprintln!(
            "access {method} {} {status} {:.2} ms",
            path.escape_debug(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    resp
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            StoreError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            StoreError::Db(e) => {
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("database: {e}"))
            }
            StoreError::Schema(m) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AppState {
    fn auth(&self, h: &HeaderMap, write: bool) -> Result<(), ApiError> {
        if !write && self.open_reads {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(()),
            _ => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
                ))
            }
        }
    }

    /// The store. A request that panicked while holding it poisoned the lock, but its SQLite
    /// transaction rolled back when it unwound, so the store is consistent: recover it instead
    /// of failing every later request. Waiting for it never blocks an async worker.
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// The read connection: the last committed state, without waiting for a writer.
    fn reader(&self) -> std::sync::MutexGuard<'_, Store> {
        match &self.reader {
            Some(r) => lock(r),
            None => self.store(),
        }
    }

    /// The active model (name, predictor), if any. Taken before the store where both are held.
    /// A model is swapped in whole, so a poisoned lock still holds a usable one.
    fn active(&self) -> std::sync::MutexGuard<'_, Option<(String, crate::predictor::Predictor)>> {
        lock(&self.active)
    }
}

/// Run blocking work (a lock wait, SQLite, the optimizer) so that the async worker running it
/// hands its other tasks to another thread first: one slow request never stalls the rest.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Lock `m` (waiting off the async workers); a lock poisoned by a panicking request is
/// recovered, its holder's SQLite transaction having rolled back.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    fn recover<'a, T>(
        m: &'a Mutex<T>,
        e: std::sync::PoisonError<std::sync::MutexGuard<'a, T>>,
    ) -> std::sync::MutexGuard<'a, T> {
        m.clear_poison();
        e.into_inner()
    }
    // Uncontended (the common case): take it at once; handing the worker's tasks over costs
    // more than the whole request.
    match m.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(e)) => recover(m, e),
        Err(std::sync::TryLockError::WouldBlock) => {
            blocking(|| m.lock().unwrap_or_else(|e| recover(m, e)))
        }
    }
}

/// A JSON value as `T`; a type error names the field's path (`gpus[0].index: ...`).
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// The parsed body, or 400 naming the problem (axum says 422 for a body of the wrong shape;
/// 422 is kept for "valid request, no layout fits"). 413 and 415 pass through.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        let status = match e.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError(status, format!("invalid body: {}", e.body_text()))
    })
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Result<String, ApiError> {
    let mut out = String::from(
        "# HELP miso_requests_total API replies by route and HTTP status.\n# TYPE miso_requests_total counter\n",
    );
    if let Ok(m) = s.requests.lock() {
        for ((r, code), n) in m.iter() {
            out.push_str(&format!(
                "miso_requests_total{{route=\"{r}\",status=\"{code}\"}} {n}\n"
            ));
        }
    }
    out.push_str(&format!(
        "# TYPE miso_request_errors_total counter\nmiso_request_errors_total {}\n",
        s.errors.load(Ordering::Relaxed)
    ));
    let (ns, n) = (
        s.recommend_ns.load(Ordering::Relaxed),
        s.recommend_count.load(Ordering::Relaxed),
    );
    out.push_str(&format!("# TYPE miso_recommend_seconds summary\nmiso_recommend_seconds_sum {}\nmiso_recommend_seconds_count {n}\n", ns as f64 / 1e9));
    let st = s.store();
    for t in ["nodes", "jobs", "samples", "decisions"] {
        out.push_str(&format!(
            "# TYPE miso_{t} gauge\nmiso_{t} {}\n",
            st.count(t)?
        ));
    }
    out.push_str("# HELP miso_jobs_state Jobs by state.\n# TYPE miso_jobs_state gauge\n");
    for (state, n) in st.jobs_by_state()? {
        out.push_str(&format!("miso_jobs_state{{state=\"{state}\"}} {n}\n"));
    }
    // GPUs whose agent reports the desired layout, and GPUs profiling a mix.
    let actual = st.actual()?;
    let desired = st.desired_all()?;
    let converged = desired
        .iter()
        .filter(|d| {
            actual.iter().any(|a| {
                a["node"] == d.node.as_str()
                    && a["index"] == d.index
                    && a["report"]["layout"] == d.layout.as_str()
            })
        })
        .count();
    let profiling = desired.iter().filter(|d| d.profile.is_some()).count();
    out.push_str(&format!(
        "# HELP miso_gpus_desired GPUs with a desired state.\n# TYPE miso_gpus_desired gauge\nmiso_gpus_desired {}\n\
         # HELP miso_gpus_converged GPUs whose reported layout is the desired one.\n# TYPE miso_gpus_converged gauge\nmiso_gpus_converged {converged}\n\
         # HELP miso_gpus_profiling GPUs in a profiling phase.\n# TYPE miso_gpus_profiling gauge\nmiso_gpus_profiling {profiling}\n",
        desired.len()
    ));
    Ok(out)
}

/// `POST /v1/nodes`: a node agent registers its GPUs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeBody {
    name: String,
    gpus: Vec<NodeGpu>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct NodeGpu {
    index: u32,
    model: String,
    #[serde(default)]
    uuid: Option<String>,
}

async fn register_node(
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

async fn list_nodes(State(s): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(s.reader().nodes()?).into_response())
}

/// Job ids and node names name folders, files, environment values and lines of exported
/// configs: 1-64 characters of letters, digits, `-`, `_`, `.`, starting with a letter or digit
/// (so never `.`, `..`, a hidden name or something that reads like a flag).
pub(crate) fn plain_name(field: &str, v: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        return Ok(());
    }
    let shown: String = v
        .chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .to_string();
    Err(bad(format!(
        "{field}: `{shown}` must be 1-64 characters of letters, digits, `-`, `_`, `.`, starting with a letter or digit"
    )))
}

/// The most GPUs one node may register, and the largest GPU index.
const MAX_NODE_GPUS: usize = 64;
const MAX_GPU_INDEX: u32 = 1023;

/// `POST /v1/jobs`: a job as in `jobs.json` (validated against an A100-40GB), with an optional
/// `command` the agent runs. Without `workload`/`speeds` the job waits for a profiling sample.
async fn submit_job(
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
        Json(json!({"id": spec.id, "state": "queued"})),
    )
        .into_response())
}

async fn list_jobs(State(s): State<Arc<AppState>>) -> ApiResult {
    Ok(Json(s.reader().jobs()?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FinishBody {
    /// Set when the job failed for good (the agent gave up restarting it).
    #[serde(default)]
    error: Option<String>,
}

/// `POST /v1/jobs/{id}/finish`: the job is done (or failed, with `{"error": ...}`). It leaves
/// its GPU, and the jobs still there are re-planned (MISO closes the idle gap at once).
async fn finish_job(
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
    let mut out = json!({"id": id, "state": state, "replanned": null});
    if let Some((node, idx)) = on {
        // A GPU still profiling its mix is planned when the sample arrives.
        let rest: Vec<String> = st
            .desired_gpu(&node, idx)?
            .filter(|d| d.profile.is_none())
            .map(|d| d.job_ids())
            .unwrap_or_default();
        if !rest.is_empty() {
            let model = node_gpu(&st, &node, idx)?;
            out["replanned"] = match plan::plan_gpu(
                &st,
                active.as_ref(),
                &node,
                idx,
                model,
                &rest,
                &Options::default(),
                None,
            ) {
                Ok((_, p)) => {
                    json!({"node": node, "index": idx, "layout": p["layout"], "decision": p["decision"]})
                }
                Err(e) => json!({"node": node, "index": idx, "error": e.1}),
            };
        }
    }
    Ok(Json(out).into_response())
}

async fn add_sample(
    State(s): State<Arc<AppState>>,
    b: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let mut raw = body(b)?;
    // `jobs`: the controller job each slot profiled (`null` for none), kept beside the sample.
    let jobs = raw.as_object_mut().and_then(|o| o.remove("jobs"));
    let rec: SampleRecord = typed(raw.clone()).map_err(|e| bad(format!("sample: {e}")))?;
    // Exactly as retraining will read it (format, 1-7 slots, positive latencies, known profile
    // kinds): a sample it could not load is never stored, since one such sample would make
    // every later retrain fail.
    crate::predictor::data::check_record(&rec, "sample").map_err(|e| bad(e.to_string()))?;
    let active = s.active();
    let st = s.store();
    if let Some(j) = &jobs {
        let a = j
            .as_array()
            .ok_or_else(|| bad("jobs: expected an array of job ids (null for none)"))?;
        if a.len() != rec.slots.len() {
            return Err(bad(format!(
                "jobs: {} ids for {} slots",
                a.len(),
                rec.slots.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (k, id) in a.iter().enumerate() {
            match id {
                Value::Null => {}
                Value::String(id) => {
                    if !seen.insert(id.as_str()) {
                        return Err(bad(format!("jobs[{k}]: `{id}` given twice")));
                    }
                    if st.job(id)?.is_none() {
                        return Err(bad(format!("jobs[{k}]: no job `{id}`")));
                    }
                }
                _ => return Err(bad(format!("jobs[{k}]: expected a job id or null"))),
            }
        }
    }
    let seq = st.add_sample(&raw, jobs.as_ref())?;
    // A GPU that was profiling this mix gets its plan now.
    let planned = if jobs.is_some() {
        plan::after_sample(&st, active.as_ref())?
    } else {
        Vec::new()
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"seq": seq, "planned": planned})),
    )
        .into_response())
}

/// `POST /v1/recommend`: jobs → layout + plan, nothing applied or stored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendBody {
    #[serde(default = "default_gpu")]
    gpu: String,
    #[serde(default)]
    current: Option<String>,
    jobs: Vec<JobSpec>,
    #[serde(default)]
    objective: Option<Objective>,
    #[serde(default)]
    spare: bool,
    #[serde(default)]
    cost_aware: bool,
}

fn default_gpu() -> String {
    "a100-40gb".into()
}

async fn recommend(
    State(s): State<Arc<AppState>>,
    b: Result<Json<RecommendBody>, JsonRejection>,
) -> ApiResult {
    let t = std::time::Instant::now();
    let r = body(b)?;
    let g = gpu::gpu(&r.gpu).map_err(|e| bad(format!("gpu: {e}")))?;
    let current = match &r.current {
        Some(c) => gpu::parse_valid_layout(g, c).map_err(|e| bad(format!("current: {e}")))?,
        None => Layout::empty(),
    };
    let jobs = r
        .jobs
        .iter()
        .enumerate()
        .map(|(k, j)| j.resolve(g, &current, k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let opts = options(r.objective, r.spare, r.cost_aware);
    let plan = optimizer::plan(g, &jobs, &current, &opts)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let d = &plan.decision;
    let layout = plan::layout_view(g, &d.layout, &d.assignment, &jobs);
    let out = json!({"gpu": g.name, "layout": layout, "objective": {"name": opts.objective.name(), "value": d.value}, "plan": plan.view(g, &jobs)});
    s.recommend_ns
        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    s.recommend_count.fetch_add(1, Ordering::Relaxed);
    Ok(Json(out).into_response())
}

async fn state(State(s): State<Arc<AppState>>) -> ApiResult {
    let st = s.reader();
    Ok(
        Json(json!({"nodes": st.nodes()?, "jobs": st.jobs()?, "samples": st.count("samples")?, "gpus": st.actual()?}))
            .into_response(),
    )
}

/// GPU `idx` of a registered node, and its model.
fn node_gpu(st: &Store, node: &str, idx: u32) -> Result<&'static gpu::GpuModel, ApiError> {
    let n = st.node(node)?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no node `{node}` (agents register with POST /v1/nodes)"),
        )
    })?;
    let model = n["gpus"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["index"] == idx))
        .and_then(|g| g["model"].as_str())
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("node `{node}` has no GPU {idx}"),
            )
        })?;
    gpu::gpu(model).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DesiredBody {
    layout: String,
    /// Which job runs on which instance; left out, assignments whose instance stays are kept.
    #[serde(default)]
    jobs: Option<Vec<Assigned>>,
}

#[derive(Deserialize, serde::Serialize, Clone)]
#[serde(deny_unknown_fields)]
struct Assigned {
    id: String,
    instance: String,
}

/// `PUT /v1/nodes/{name}/gpus/{index}/desired`: the layout an agent must converge to, and
/// optionally the job on each instance (an operator's override of the planner).
async fn put_desired(
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
    let jobs: Vec<Assigned> = match d.jobs {
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
                .map(|j| Assigned {
                    instance: label_of(&j.instance).unwrap_or_default(),
                    id: j.id,
                })
                .collect()
        }
        None => {
            let old = st
                .desired_gpu(&node, idx)?
                .map(|d| d.jobs)
                .unwrap_or(json!([]));
            serde_json::from_value::<Vec<Assigned>>(old)
                .unwrap_or_default()
                .into_iter()
                .filter(|a| label_of(&a.instance).is_some())
                .collect()
        }
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
    st.apply_plan(
        &node,
        idx,
        &l.label(model),
        &json!(jobs),
        &decision,
        &dropped,
    )?;
    Ok(
        Json(json!({"node": node, "index": idx, "layout": l.label(model), "jobs": jobs}))
            .into_response(),
    )
}

/// `GET /v1/nodes/{name}/desired`: per GPU the layout and the jobs to run, with their commands.
async fn get_desired(State(s): State<Arc<AppState>>, Path(node): Path<String>) -> ApiResult {
    let st = s.reader();
    let mut v = Vec::new();
    for d in st.desired(&node)? {
        let mut js = Vec::new();
        for j in d.jobs.as_array().into_iter().flatten() {
            let id = j["id"].as_str().unwrap_or_default();
            let command = st.job(id)?.map(|(b, _)| b["command"].clone());
            js.push(json!({"id": id, "instance": j["instance"], "command": command.unwrap_or(Value::Null)}));
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
                json!({"request": p["request"], "levels": p["levels"], "seconds": p["seconds"], "jobs": pj})
            }
        };
        v.push(json!({"index": d.index, "layout": d.layout, "jobs": js, "profile": profile}));
    }
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// mig-parted (default), gpu-operator or slurm.
    #[serde(default)]
    format: Option<String>,
}

/// `GET /v1/nodes/{name}/export?format=mig-parted|gpu-operator|slurm`: the node's desired
/// layouts for the tools a cluster already runs (config name `miso-<node>`; GPUs without a
/// desired layout get none).
async fn export_node(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
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

/// The optimizer options a request asks for.
fn options(objective: Option<Objective>, spare: bool, cost_aware: bool) -> Options {
    Options {
        objective: objective.unwrap_or_default(),
        spare,
        cost_aware,
        ..Options::default()
    }
}

/// MPS profiling settings of a request, checked.
fn profile_settings(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    /// Jobs to place, in order (left out: every queued job, oldest first).
    #[serde(default)]
    jobs: Option<Vec<String>>,
    /// fewest-jobs (MISO's rule, default) or best-gain.
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
async fn schedule(
    State(s): State<Arc<AppState>>,
    b: Result<Json<ScheduleBody>, JsonRejection>,
) -> ApiResult {
    let r = body(b)?;
    let how = match r.placement.as_deref().unwrap_or("fewest-jobs") {
        "fewest-jobs" => optimizer::Placement::FewestJobs,
        "best-gain" => optimizer::Placement::BestGain,
        p => return Err(bad(format!("placement: `{p}` (fewest-jobs or best-gain)"))),
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
    let placed = blocking(|| plan::schedule(&st, active.as_ref(), &ids, how, &opts, &prof))?;
    Ok(Json(json!({"jobs": placed})).into_response())
}

/// `POST /v1/nodes/{name}/gpus/{index}/plan`: decide layout + assignment for these jobs (least
/// disruption from the GPU's desired state) and make it the desired state the agent applies.
async fn plan_gpu(
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
    let (code, out) = blocking(|| {
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
    Ok((code, Json(out)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    gpus: Vec<GpuReport>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct GpuReport {
    index: u32,
    layout: String,
    #[serde(default)]
    error: Option<String>,
    /// The jobs the agent runs on this GPU.
    #[serde(default)]
    jobs: Vec<JobReport>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct JobReport {
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
async fn post_report(
    State(s): State<Arc<AppState>>,
    Path(node): Path<String>,
    b: Result<Json<ReportBody>, JsonRejection>,
) -> ApiResult {
    let r = body(b)?;
    let active = s.active();
    let st = s.store();
    for (k, g) in r.gpus.iter().enumerate() {
        let model =
            node_gpu(&st, &node, g.index).map_err(|e| bad(format!("gpus[{k}].index: {}", e.1)))?;
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
    Ok(Json(json!({"ok": true, "profiling_ended": expired})).into_response())
}

fn model_name_ok(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(format!(
            "model name `{name}`: use letters, digits, - and _"
        )));
    }
    Ok(())
}

/// `GET /v1/models`: model directories with their metadata, and which is active.
async fn list_models(State(s): State<Arc<AppState>>) -> ApiResult {
    let active = s.active().as_ref().map(|(n, _)| n.clone());
    let registry = s.reader().models()?;
    let entry = |name: &str, meta: &Value| {
        json!({"name": name, "active": active.as_deref() == Some(name), "arch": meta["arch"], "feature_version": meta["feature_version"],
            "mae": meta["metrics"]["mae"], "data_fingerprint": meta["data_fingerprint"], "split": meta["split"],
            "recipe": meta["recipe"], "registered": registry.get(name).map(|(b, t)| json!({"at": t, "how": b["how"]}))})
    };
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&s.models_dir) {
        let mut dirs: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("model.json").exists())
            .collect();
        dirs.sort();
        for d in dirs {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let meta: Value = std::fs::read_to_string(d.join("model.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            out.push(entry(&name, &meta));
        }
    }
    // The model compiled into the binary answers to `default` when the folder has none.
    let builtin = crate::predictor::BUILTIN_NAME;
    if !out.iter().any(|m| m["name"] == builtin) {
        if let Ok(meta) = crate::predictor::Predictor::builtin_meta() {
            let mut e = entry(builtin, &serde_json::to_value(&meta).unwrap_or(Value::Null));
            e["built_in"] = json!(true);
            out.push(e);
        }
    }
    Ok(Json(out).into_response())
}

/// Load model `name`, record it as the active one (committed first), then swap it in.
fn activate_model(s: &AppState, name: &str, how: &str) -> Result<Value, ApiError> {
    model_name_ok(name)?;
    // The error names the model, never the server's folders.
    let p = crate::predictor::Predictor::load_named(&s.models_dir, name).map_err(|e| {
        let why = e.to_string();
        let dir = s.models_dir.display().to_string();
        ApiError(
            StatusCode::NOT_FOUND,
            format!("model `{name}`: {}", why.replace(&dir, "<models>")),
        )
    })?;
    swap_in(s, name, p, how)
}

/// Record `p` as the active model in the registry, then make it the one predictions use.
fn swap_in(
    s: &AppState,
    name: &str,
    p: crate::predictor::Predictor,
    how: &str,
) -> Result<Value, ApiError> {
    let arch = p.meta.arch.name();
    let mae = p.meta.metrics.mae;
    let v = json!({"active": name, "arch": arch, "mae": mae});
    s.store().activate_model(
        name,
        &json!({"arch": arch, "mae": mae, "recipe": p.meta.recipe, "how": how}),
    )?;
    let mut a = s.active();
    *a = Some((name.to_string(), p));
    Ok(v)
}

/// `POST /v1/models/{name}/activate`: load a model and swap it in.
async fn activate(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let st = s.clone();
    let v = tokio::task::spawn_blocking(move || activate_model(&st, &name, "activated"))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrainBody {
    name: String,
    #[serde(default)]
    arch: Option<crate::predictor::Arch>,
    #[serde(default)]
    epochs: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    /// Share of the mixes held out for the metrics.
    #[serde(default)]
    val_frac: Option<f64>,
}

/// The most epochs one retrain request may ask for (the default model used 100).
const MAX_RETRAIN_EPOCHS: usize = 1000;

/// `POST /v1/models/retrain`: train on the stored samples with `miso train`'s code, save under
/// models/<name>, and activate it (hot swap).
async fn retrain(
    State(s): State<Arc<AppState>>,
    b: Result<Json<RetrainBody>, JsonRejection>,
) -> ApiResult {
    let r = body(b)?;
    model_name_ok(&r.name)?;
    if r.name == crate::predictor::BUILTIN_NAME {
        return Err(bad(format!(
            "name: `{}` is the shipped model; give the retrained one another name",
            r.name
        )));
    }
    if let Some(e) = r.epochs {
        if !(1..=MAX_RETRAIN_EPOCHS).contains(&e) {
            return Err(bad(format!("epochs: {e} (1..={MAX_RETRAIN_EPOCHS})")));
        }
    }
    let val = r.val_frac.unwrap_or(0.2);
    if !(val > 0.0 && val < 1.0) {
        return Err(bad("val_frac: must be between 0 and 1"));
    }
    let samples = s.store().samples()?;
    if samples.len() < 10 {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{} samples stored; retraining needs at least 10",
                samples.len()
            ),
        ));
    }
    let st = s.clone();
    let v = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let dir = st.models_dir.join(&r.name);
        // Parsed in memory (no temporary file another user could redirect).
        let lines: Vec<String> = samples.iter().map(|v| v.to_string()).collect();
        let ds = crate::predictor::data::samples_from_text(&lines.join("\n"), "stored sample")
            .map_err(|e| bad(format!("stored samples: {e}")))?;
        let mut cfg =
            crate::predictor::TrainConfig::new(r.arch.unwrap_or(crate::predictor::Arch::Mlp));
        cfg.name = r.name.clone();
        cfg.epochs = r.epochs;
        cfg.seed = r.seed.unwrap_or(1);
        cfg.recipe = format!(
            "POST /v1/models/retrain {{name: {}, arch: {}, epochs: {:?}, seed: {}}}",
            r.name,
            cfg.arch.name(),
            r.epochs,
            cfg.seed
        );
        let split = ds.random_split(val, cfg.seed);
        let p = crate::predictor::train(&ds, &split, &cfg, &indicatif::ProgressBar::hidden())
            .map_err(|e| bad(e.to_string()))?;
        p.save(&dir)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mae = p.meta.metrics.mae;
        swap_in(&st, &r.name, p, "retrained")?;
        Ok(json!({"active": r.name, "samples": ds.samples.len(), "mae": mae}))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `POST /v1/predict`: one sample's MPS measurements → each real job's speed per profile kind,
/// with the active model.
async fn predict(
    State(s): State<Arc<AppState>>,
    b: Result<Json<SampleRecord>, JsonRejection>,
) -> ApiResult {
    let rec = body(b)?;
    let m = plan::sample_matrix(&rec).map_err(bad)?;
    let real: Vec<bool> = rec.slots.iter().map(|sl| sl.label != "dummy").collect();
    let a = s.active();
    let (name, p) = a.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "no active model (POST /v1/models/{name}/activate)".into(),
        )
    })?;
    let table = p.predict(&m);
    let kinds = ["1g", "2g", "3g", "4g", "7g"];
    let jobs: Vec<Value> = rec
        .slots
        .iter()
        .enumerate()
        .filter(|(k, _)| real[*k])
        .map(|(k, sl)| {
            let speeds: serde_json::Map<String, Value> = table[k]
                .as_ref()
                .map(|pf| {
                    (0..5)
                        .filter_map(|i| pf.speed[i].map(|v| (kinds[i].to_string(), json!(v))))
                        .collect()
                })
                .unwrap_or_default();
            json!({"slot": k, "label": sl.label, "speeds": speeds})
        })
        .collect();
    Ok(Json(json!({"model": name, "jobs": jobs})).into_response())
}

/// The API's routes over an open store.
/// `active`: a model under `models_dir` to activate now (skipped when it does not exist).
pub fn router(
    store: Store,
    token: Option<String>,
    open_reads: bool,
    models_dir: std::path::PathBuf,
    active: Option<&str>,
    access_log: bool,
) -> Result<Router, String> {
    let reader = store.reader().map(Mutex::new);
    let s = Arc::new(AppState {
        store: Mutex::new(store),
        reader,
        models_dir,
        active: Mutex::new(None),
        token,
        open_reads,
        requests: Mutex::new(BTreeMap::new()),
        access_log,
        errors: AtomicU64::new(0),
        recommend_ns: AtomicU64::new(0),
        recommend_count: AtomicU64::new(0),
    });
    // The model active when the controller stopped wins over the start-up default (when its
    // folder is still there).
    let remembered = s.store().active_model().map_err(|e| e.to_string())?;
    let candidates = [
        (remembered.as_deref(), "active before the restart"),
        (active, "activated at start"),
    ];
    if let Some((name, how)) = candidates.iter().find_map(|(n, how)| {
        n.filter(|n| {
            *n == crate::predictor::BUILTIN_NAME || s.models_dir.join(n).join("model.json").exists()
        })
        .map(|n| (n, *how))
    }) {
        activate_model(&s, name, how)
            .map_err(|e| format!("cannot activate model `{name}`: {}", e.1))?;
    }
    Ok(Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/nodes", post(register_node).get(list_nodes))
        .route("/v1/jobs", post(submit_job).get(list_jobs))
        .route("/v1/jobs/{id}/finish", post(finish_job))
        .route("/v1/samples", post(add_sample))
        .route("/v1/recommend", post(recommend))
        .route("/v1/state", get(state))
        .route(
            "/v1/nodes/{name}/gpus/{index}/desired",
            axum::routing::put(put_desired),
        )
        .route("/v1/nodes/{name}/desired", get(get_desired))
        .route("/v1/nodes/{name}/gpus/{index}/plan", post(plan_gpu))
        .route("/v1/nodes/{name}/export", get(export_node))
        .route("/v1/schedule", post(schedule))
        .route("/v1/nodes/{name}/report", post(post_report))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}/activate", post(activate))
        .route("/v1/models/retrain", post(retrain))
        .route("/v1/predict", post(predict))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(s.clone(), authorize))
        .layer(axum::middleware::from_fn_with_state(s.clone(), log_access))
        .with_state(s))
}

/// Run the controller until SIGINT/SIGTERM. `ready` gets the bound address.
pub async fn serve(cfg: Config, ready: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let store = Store::open(&cfg.db).map_err(|e| format!("{}: {e}", cfg.db.display()))?;
    let app = router(
        store,
        cfg.token,
        cfg.open_reads,
        cfg.models.clone(),
        cfg.active_model.as_deref(),
        cfg.access_log,
    )?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    ready(addr);
    // SIGINT or SIGTERM: stop accepting, let requests in flight finish, then exit.
    let stop = async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut t) => {
                    t.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    };
    serve_connections(listener, app, cfg.header_timeout, stop).await;
    Ok(())
}

/// Accept connections until `stop`, each served by hyper's HTTP/1 with a timer, so a client
/// that opens a connection and does not finish its request headers within `header_timeout`
/// (a half-open or idle keep-alive connection included) is disconnected instead of being held
/// forever. On `stop`, connections finish their requests in flight (at most 30 s).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                // Out of file descriptors and the like: wait a little, keep serving the rest.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut quit = quit_rx.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = quit.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    let _ = quit_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller state over the database at `db`, no token, no reader connection.
    fn test_state(db: &std::path::Path) -> Arc<AppState> {
        Arc::new(AppState {
            store: Mutex::new(Store::open(db).unwrap()),
            reader: None,
            models_dir: std::env::temp_dir(),
            active: Mutex::new(None),
            token: None,
            open_reads: false,
            requests: Mutex::new(BTreeMap::new()),
            access_log: false,
            errors: AtomicU64::new(0),
            recommend_ns: AtomicU64::new(0),
            recommend_count: AtomicU64::new(0),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_is_a_500_for_that_request_only() {
        let db = std::env::temp_dir().join(format!("miso-panic-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&db);
        let s = test_state(&db);
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .route("/healthz", get(healthz))
            .layer(axum::middleware::from_fn_with_state(s.clone(), log_access))
            .with_state(s.clone());
        use tower::ServiceExt;
        let call = |path: &'static str| {
            let app = app.clone();
            async move {
                let r = app
                    .oneshot(
                        axum::http::Request::get(path)
                            .body(axum::body::Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let status = r.status();
                let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
                (status, String::from_utf8_lossy(&body).to_string())
            }
        };
        let (c, b) = call("/boom").await;
        assert_eq!(c, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(b.contains("a bug") && b.contains("/boom"), "{b}");
        assert_eq!(call("/healthz").await.0, StatusCode::OK);
        assert_eq!(
            s.requests.lock().unwrap().get(&("/boom".to_string(), 500)),
            Some(&1)
        );
        let _ = std::fs::remove_file(&db);
    }

    #[test]
    fn a_request_that_panicked_holding_the_store_does_not_break_the_next() {
        // Issue 11, item 1: a panic under the store lock used to poison it, and every later
        // request answered 500.
        let db = std::env::temp_dir().join(format!("miso-poison-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&db);
        let s = test_state(&db);
        let s2 = s.clone();
        let r = std::thread::spawn(move || {
            let _g = s2.store();
            let _m = s2.active();
            panic!("a bug in one request");
        })
        .join();
        assert!(r.is_err(), "the request panicked");
        assert!(s.store.is_poisoned() && s.active.is_poisoned());
        let st = s.store();
        assert!(st.nodes().unwrap().is_empty());
        drop(st);
        drop(s.active());
        assert!(!s.store.is_poisoned() && !s.active.is_poisoned());
        let _ = std::fs::remove_file(&db);
    }
}
