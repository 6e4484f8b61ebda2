//! Operations routes: liveness, Prometheus metrics, the whole state.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::{api, ApiError, ApiResult, AppState};
use std::sync::atomic::Ordering;

#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, description = "the controller is up", body = api::Health)))]
pub(super) async fn healthz() -> Json<super::api::Health> {
    Json(super::api::Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text exposition: replies by route and status, auth errors, recommend latency, rows, jobs by state, GPUs desired / converged / profiling", body = String, content_type = "text/plain"), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody)))]
pub(super) async fn metrics(State(s): State<Arc<AppState>>) -> Result<String, ApiError> {
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

#[utoipa::path(get, path = "/v1/state", tag = "ops", responses((status = 200, description = "nodes, jobs, sample count, and what each agent reports per GPU", body = Object), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody)))]
pub(super) async fn state(State(s): State<Arc<AppState>>) -> ApiResult {
    let st = s.reader();
    Ok(
        Json(json!({"nodes": st.nodes()?, "jobs": st.jobs()?, "samples": st.count("samples")?, "observations": st.count("observations")?, "gpus": st.actual()?}))
            .into_response(),
    )
}
