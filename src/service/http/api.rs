//! The API's reply types: what the OpenAPI document (`GET /openapi.json`) describes and the
//! handlers send. Request bodies live beside their handlers; a stored document (a job as
//! submitted, a decision, an agent's report) is passed through as JSON.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Every error reply: the message names the field or object at fault.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `POST /v1/jobs`: the job is stored and queued.
#[derive(Serialize, ToSchema)]
pub struct JobCreated {
    pub id: String,
    #[schema(example = "queued")]
    pub state: String,
}

/// `POST /v1/jobs/{id}/finish`: the job's end state, and the plan of the GPU it left (its other
/// jobs re-planned at once; null when none ran beside it).
#[derive(Serialize, ToSchema)]
pub struct Finished {
    pub id: String,
    #[schema(example = "finished")]
    pub state: String,
    pub replanned: Option<Value>,
}

/// `POST /v1/samples`: the sample's number, and the GPUs planned now that their profiling
/// phase has its sample.
#[derive(Serialize, ToSchema)]
pub struct SampleStored {
    pub seq: i64,
    pub planned: Vec<Value>,
}

/// `POST /v1/jobs/{id}/observations`: the observation's number, and what it teaches: the
/// job's workload label and the profile kind.
#[derive(Serialize, ToSchema)]
pub struct ObservationStored {
    pub seq: i64,
    pub job: String,
    pub label: String,
    pub kind: String,
}

/// `POST /v1/schedule`: per job, where it was placed (`node`, `index`, `layout`, `decision`,
/// `profiling`) or why it stays queued (`queued`).
#[derive(Serialize, ToSchema)]
pub struct Scheduled {
    pub jobs: Vec<Value>,
}

/// `POST /v1/nodes/{name}/report`: stored; profiling phases this report ended.
#[derive(Serialize, ToSchema)]
pub struct ReportStored {
    pub ok: bool,
    pub profiling_ended: Vec<Value>,
}

/// `PUT /v1/nodes/{name}/hold`: whether the node is held now, and why.
#[derive(Serialize, ToSchema)]
pub struct Held {
    pub node: String,
    pub hold: bool,
    pub reason: Option<String>,
}

/// `POST /v1/models/{name}/activate`: the model now used for predictions.
#[derive(Serialize, ToSchema)]
pub struct Activated {
    pub active: String,
    pub arch: String,
    pub mae: f64,
}

/// `POST /v1/models/retrain`: the new model, trained on the stored samples and active.
#[derive(Serialize, ToSchema)]
pub struct Retrained {
    pub active: String,
    pub samples: usize,
    /// Observations of jobs on their instances learned from (their workloads' labels).
    pub observations: usize,
    pub mae: f64,
}

/// One real job of a `POST /v1/predict` sample: its speed per profile kind (`1g`…`7g`).
#[derive(Serialize, ToSchema)]
pub struct PredictedJob {
    pub slot: usize,
    pub label: String,
    pub speeds: std::collections::BTreeMap<String, f64>,
    /// With a calibrated model: per kind, the slowest and fastest speed its interval allows
    /// (`[min, max]`; 7g is `[1, 1]` by definition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_range: Option<std::collections::BTreeMap<String, [f64; 2]>>,
}

/// `POST /v1/predict`.
#[derive(Serialize, ToSchema)]
pub struct Prediction {
    pub model: String,
    pub jobs: Vec<PredictedJob>,
}
