//! The controller's HTTP layer, the only part of the service that knows HTTP: the router,
//! authentication, errors as status codes, the access log and metrics, TLS and the connection
//! loop. Handlers live per resource (`nodes`, `jobs`, `models`, `ops`) and call the domain
//! (`service::plan`, `service::store`), which answers in domain types and [`Refusal`]s.

mod api;
mod jobs;
mod models;
mod nodes;
mod ops;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::error::Refusal;
use super::store::{Store, StoreError};

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
    /// Longest time a request may take (but retraining), else 503.
    pub request_timeout: std::time::Duration,
    /// TLS certificate chain and key (PEM); plain HTTP when `None`.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// A connection must send a request's headers within this time (or is closed).
    pub header_timeout: std::time::Duration,
    /// What the active model gives the planner as a profiled job's speeds.
    pub estimate: crate::predictor::Estimate,
    /// The learned scheduling policy `/v1/schedule` uses by default (`--scheduler rl`).
    pub scheduler: Option<Arc<crate::policy::rl::PolicyModel>>,
}

pub(super) struct AppState {
    store: Mutex<Store>,
    /// A read-only connection for GETs (None: reads share the writer).
    reader: Option<Mutex<Store>>,
    models_dir: std::path::PathBuf,
    /// The active predictor, swapped in place by activate/retrain (no restart).
    active: Mutex<Option<(String, crate::predictor::Predictor)>>,
    /// The speed estimate every activated model is set to answer with.
    estimate: crate::predictor::Estimate,
    /// The learned scheduling policy (`--scheduler rl`), else the rules.
    scheduler: Option<Arc<crate::policy::rl::PolicyModel>>,
    token: Option<String>,
    open_reads: bool,
    /// Replies by (route pattern, HTTP status), counted in one place (`observe`).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    errors: AtomicU64,
    recommend_ns: AtomicU64,
    recommend_count: AtomicU64,
}

/// An error reply: status and a JSON body `{"error": "..."}`.
pub struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            // The controller's own failures are logged with their cause (never a token), inside
            // the request's span (method and route).
            tracing::error!(status = self.0.as_u16(), "{}", self.1);
        }
        (self.0, Json(api::ErrorBody { error: self.1 })).into_response()
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

/// The access log and the metrics, in one place around every request: one `tracing` event per
/// reply (target `miso::access`: method, path without the query, route, status, milliseconds;
/// headers, bodies and the token are never logged), and the reply counted by route pattern and
/// status for `/metrics`. A timed-out request (an empty 503 from the timeout layer) gets a JSON
/// error body here.
async fn observe(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let t = std::time::Instant::now();
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(200).collect();
    let route = route_of(&req);
    let mut resp = next.run(req).await;
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status().as_u16() >= 400 && !json {
        // Every error is `{"error": ...}`, also those of the layers (413 of the body limit, 503
        // of the timeout) and of routing (404, 405 with its Allow header kept).
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        let msg = match status {
            StatusCode::SERVICE_UNAVAILABLE => format!(
                "{method} {} took longer than the request timeout (--request-timeout-s); \
                 a write may still complete: read the state before retrying",
                path.escape_debug()
            ),
            StatusCode::NOT_FOUND => format!("no route {method} {}", path.escape_debug()),
            StatusCode::METHOD_NOT_ALLOWED => {
                format!("{method} is not allowed on {}", path.escape_debug())
            }
            StatusCode::PAYLOAD_TOO_LARGE => format!("body: larger than {MAX_BODY} bytes"),
            _ if !text.is_empty() => String::from_utf8_lossy(&text).to_string(),
            _ => status.canonical_reason().unwrap_or("error").to_string(),
        };
        let mut r = ApiError(status, msg).into_response();
        if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
            r.headers_mut()
                .insert(axum::http::header::ALLOW, allow.clone());
        }
        resp = r;
    }
    let status = resp.status().as_u16();
    if let Ok(mut m) = s.requests.lock() {
        *m.entry((route.clone(), status)).or_insert(0) += 1;
    }
    tracing::info!(
        target: "miso::access",
        method = %method,
        path = %path.escape_debug(),
        route = %route,
        status,
        ms = format_args!("{:.2}", t.elapsed().as_secs_f64() * 1e3),
        "access"
    );
    resp
}

/// The route pattern of a request (`/v1/jobs/{id}/finish`), never the ids in its path;
/// `(no route)` when none matched.
fn route_of<B>(req: &axum::http::Request<B>) -> String {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)".to_string(), |m| m.as_str().to_string())
}

/// Each handler runs as its own task: a client that disconnects or a request that times out
/// never cancels a write half-way (it completes and commits; only its reply is lost), and a
/// slow handler never holds the connection task's worker.
async fn isolate(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let what = format!("{} {}", req.method(), req.uri().path().escape_debug());
    match tokio::spawn(next.run(req)).await {
        Ok(r) => r,
        Err(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error while serving {what}: {e}"),
        )
        .into_response(),
    }
}

/// The reply to a handler that panicked (a bug): a 500 for that request only, with the panic's
/// message, logged; the other requests go on.
fn panic_reply(p: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let why = p
        .downcast_ref::<&str>()
        .map(|m| m.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {why}"),
    )
    .into_response()
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let code = match &r {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::Unfit(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, r.message().to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        Refusal::from(e).into()
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) fn bad(msg: impl Into<String>) -> ApiError {
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
pub(super) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Lock `m` (waiting off the async workers); a lock poisoned by a panicking request is
/// recovered, its holder's SQLite transaction having rolled back.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
pub(super) fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
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
pub(super) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        let status = match e.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError(status, format!("invalid body: {}", e.body_text()))
    })
}

/// Job ids and node names name folders, files, environment values and lines of exported
/// configs: 1-64 characters of letters, digits, `-`, `_`, `.`, starting with a letter or digit
/// (so never `.`, `..`, a hidden name or something that reads like a flag).
pub(super) fn plain_name(field: &str, v: &str) -> Result<(), ApiError> {
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

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// The API document's fixed parts; the paths and schemas come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "miso controller API",
        version = "1",
        description = "The controller started by `miso serve`. Writes need `Authorization: Bearer <token>` \
(the token in --token-file); reads too unless the server runs with --open-reads. Bodies are JSON, at most \
1 MiB; unknown fields are refused. Errors are `{\"error\": \"...\"}` naming the field. An accepted write \
is committed to SQLite (WAL, synchronous=FULL) before the reply. Generated from the server's own types \
(GET /openapi.json)."
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags(
        (name = "nodes", description = "agents register, read their desired state, report"),
        (name = "jobs", description = "submit, finish, schedule, plan a GPU"),
        (name = "models", description = "samples, models, predictions, recommendations"),
        (name = "ops", description = "liveness, metrics, state")
    )
)]
struct ApiDoc;

/// The bearer-token security scheme every route but /healthz uses.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The routes and the OpenAPI document, built from the same annotated handlers (so the document
/// cannot list a route the server lacks, or miss one). Requests here are bounded by the request
/// timeout; `retrain` (minutes of training) is not.
fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<AppState>> {
    use utoipa::OpenApi;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::state))
        .routes(routes!(nodes::register_node, nodes::list_nodes))
        .routes(routes!(nodes::put_desired))
        .routes(routes!(nodes::get_desired))
        .routes(routes!(nodes::put_hold))
        .routes(routes!(nodes::export_node))
        .routes(routes!(nodes::post_report))
        .routes(routes!(jobs::submit_job, jobs::list_jobs))
        .routes(routes!(jobs::finish_job))
        .routes(routes!(jobs::add_observation))
        .routes(routes!(jobs::schedule))
        .routes(routes!(jobs::plan_gpu))
        .routes(routes!(models::add_sample))
        .routes(routes!(models::recommend))
        .routes(routes!(models::list_models))
        .routes(routes!(models::activate))
        .routes(routes!(models::predict))
}

/// Routes without the request timeout.
fn untimed_routes() -> utoipa_axum::router::OpenApiRouter<Arc<AppState>> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(models::retrain))
}

/// The routes with and without the request timeout, and the OpenAPI document of both.
fn parts() -> (
    Router<Arc<AppState>>,
    Router<Arc<AppState>>,
    utoipa::openapi::OpenApi,
) {
    let (timed, mut doc) = routes().split_for_parts();
    let (untimed, more) = untimed_routes().split_for_parts();
    doc.merge(more);
    (timed, untimed, doc)
}

/// The generated OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().2
}

/// Per route, inside out: a panic is a 500 (caught in the handler's own task), and the handler
/// runs as its own task.
fn guarded<S: Clone + Send + Sync + 'static>(r: Router<S>) -> Router<S> {
    r.route_layer(tower_http::catch_panic::CatchPanicLayer::custom(
        panic_reply,
    ))
    .route_layer(axum::middleware::from_fn(isolate))
}

/// [`guarded`], and the reply comes within `timeout` (else a 503; the handler still ends).
fn timed<S: Clone + Send + Sync + 'static>(
    r: Router<S>,
    timeout: std::time::Duration,
) -> Router<S> {
    guarded(r).route_layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        timeout,
    ))
}

/// The API's routes over an open store, with the settings of `cfg` (token, open reads, models,
/// the model to activate, the request timeout).
pub fn router(store: Store, cfg: &Config) -> Result<Router, String> {
    let reader = store.reader().map(Mutex::new);
    let s = Arc::new(AppState {
        store: Mutex::new(store),
        reader,
        models_dir: cfg.models.clone(),
        active: Mutex::new(None),
        estimate: cfg.estimate,
        scheduler: cfg.scheduler.clone(),
        token: cfg.token.clone(),
        open_reads: cfg.open_reads,
        requests: Mutex::new(BTreeMap::new()),
        errors: AtomicU64::new(0),
        recommend_ns: AtomicU64::new(0),
        recommend_count: AtomicU64::new(0),
    });
    // The model active when the controller stopped wins over the start-up default (when its
    // folder is still there).
    let remembered = s.store().active_model().map_err(|e| e.to_string())?;
    let candidates = [
        (remembered.as_deref(), "active before the restart"),
        (cfg.active_model.as_deref(), "activated at start"),
    ];
    if let Some((name, how)) = candidates.iter().find_map(|(n, how)| {
        n.filter(|n| {
            *n == crate::predictor::BUILTIN_NAME || s.models_dir.join(n).join("model.json").exists()
        })
        .map(|n| (n, *how))
    }) {
        models::activate_model(&s, name, how)
            .map_err(|e| format!("cannot activate model `{name}`: {}", e.1))?;
    }
    let (with_timeout, without, doc) = parts();
    // The document is the same for every request: serialised once.
    let doc = axum::body::Bytes::from(serde_json::to_vec(&doc).map_err(|e| e.to_string())?);
    Ok(timed(with_timeout, cfg.request_timeout)
        .merge(guarded(without))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        // Around every route, inside out: body limits (413 before a byte of a too-long body is
        // read), the token, a tracing span per request, then the access log and metrics.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(s.clone(), authorize))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::info_span!("request", method = %req.method(), route = %route_of(req))
                })
                .on_request(())
                .on_response(())
                .on_failure(()),
        )
        .layer(axum::middleware::from_fn_with_state(s.clone(), observe))
        .with_state(s))
}

/// Run the controller until SIGINT/SIGTERM. `ready` gets the bound address.
pub async fn serve(cfg: Config, ready: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let store = Store::open(&cfg.db).map_err(|e| format!("{}: {e}", cfg.db.display()))?;
    let app = router(store, &cfg)?;
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
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
    serve_connections(listener, app, tls, cfg.header_timeout, stop).await;
    Ok(())
}

/// Accept connections until `stop`, each served by hyper's HTTP/1 with a timer, so a client
/// that opens a connection and does not finish its request headers within `header_timeout`
/// (a half-open or idle keep-alive connection included) is disconnected instead of being held
/// forever. On `stop`, connections finish their requests in flight (at most 30 s).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
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
        let quit = quit_rx.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            match tls {
                None => serve_one(stream, svc, header_timeout, quit).await,
                // The handshake counts against the header timeout: a client that connects and
                // never speaks TLS is dropped like one that never sends its headers.
                Some(acc) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(header_timeout, acc.accept(stream)).await
                    {
                        serve_one(s, svc, header_timeout, quit).await
                    }
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

/// Serve one connection (plain TCP or TLS) with hyper's HTTP/1 until it closes or `quit`.
async fn serve_one<I>(
    io: I,
    svc: hyper_util::service::TowerToHyperService<Router>,
    header_timeout: std::time::Duration,
    mut quit: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = quit.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
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
            estimate: crate::predictor::Estimate::Point,
            scheduler: None,
            token: None,
            open_reads: false,
            requests: Mutex::new(BTreeMap::new()),
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
        let app = Router::<Arc<AppState>>::new()
            .route("/boom", get(boom))
            .route("/healthz", get(ops::healthz));
        let app: Router = guarded(app)
            .layer(axum::middleware::from_fn_with_state(s.clone(), observe))
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
        assert!(b.contains("a bug"), "{b}");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_request_is_a_503_and_its_write_still_completes() {
        let db = std::env::temp_dir().join(format!("miso-timeout-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&db);
        let s = test_state(&db);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let slow = move || {
            let d = d.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                d.store(true, Ordering::SeqCst);
                "late"
            }
        };
        let app = Router::<Arc<AppState>>::new().route("/slow", get(slow));
        let app: Router = timed(app, std::time::Duration::from_millis(100))
            .layer(axum::middleware::from_fn_with_state(s.clone(), observe))
            .with_state(s.clone());
        use tower::ServiceExt;
        let r = app
            .oneshot(
                axum::http::Request::get("/slow")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("request timeout"),
            "{v}"
        );
        assert!(
            !done.load(Ordering::SeqCst),
            "replied before the handler finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        assert!(done.load(Ordering::SeqCst), "the handler ran to its end");
        let _ = std::fs::remove_file(&db);
    }
}
