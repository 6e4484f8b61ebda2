//! Predictor routes: MPS samples in, models listed, activated and retrained, speeds predicted,
//! layouts recommended without storing anything.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{api, bad, body, typed, ApiError, ApiResult, AppState};
use crate::gpu::{self, Layout};
use crate::optimizer::{self, JobSpec, Objective};
use crate::predictor::data::SampleRecord;
use crate::service::plan;
use crate::service::plan::options;
use std::sync::atomic::Ordering;

/// `POST /v1/samples`'s body: a sample, and optionally the controller job each slot profiled.
/// Only its schema is used (the handler takes `jobs` out, then reads the rest strictly as a
/// `SampleRecord`: serde cannot flatten into a struct that refuses unknown fields).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct SampleUpload {
    #[serde(flatten)]
    sample: SampleRecord,
    /// The controller job each slot profiled (null for none), one per slot; stored beside the
    /// sample, and the controller predicts these jobs' speeds from it.
    #[serde(default)]
    jobs: Option<Vec<Option<String>>>,
}

#[utoipa::path(post, path = "/v1/samples", tag = "models", request_body = SampleUpload, responses((status = 201, description = "stored (and GPUs waiting for it planned)", body = api::SampleStored), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody), (status = 422, description = "valid, but no layout fits", body = api::ErrorBody)))]
pub(super) async fn add_sample(
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
        Json(api::SampleStored { seq, planned }),
    )
        .into_response())
}

/// `POST /v1/recommend`: jobs → layout + plan, nothing applied or stored.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecommendBody {
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

pub(super) fn default_gpu() -> String {
    "a100-40gb".into()
}

#[utoipa::path(post, path = "/v1/recommend", tag = "models", request_body = RecommendBody, responses((status = 200, description = "layout with jobs, objective, plan steps; nothing stored", body = Object), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 422, description = "valid, but no layout fits", body = api::ErrorBody)))]
pub(super) async fn recommend(
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

pub(super) fn model_name_ok(name: &str) -> Result<(), ApiError> {
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
#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, description = "model folders and the built-in default, with metadata and which is active", body = Vec<Object>), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody)))]
pub(super) async fn list_models(State(s): State<Arc<AppState>>) -> ApiResult {
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
pub(super) fn activate_model(
    s: &AppState,
    name: &str,
    how: &str,
) -> Result<api::Activated, ApiError> {
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
pub(super) fn swap_in(
    s: &AppState,
    name: &str,
    p: crate::predictor::Predictor,
    how: &str,
) -> Result<api::Activated, ApiError> {
    let arch = p.meta.arch.name();
    let mae = p.meta.metrics.mae;
    let v = api::Activated {
        active: name.to_string(),
        arch: arch.to_string(),
        mae,
    };
    s.store().activate_model(
        name,
        &json!({"arch": arch, "mae": mae, "recipe": p.meta.recipe, "how": how}),
    )?;
    let mut p = p;
    p.estimate = s.estimate;
    let mut a = s.active();
    *a = Some((name.to_string(), p));
    Ok(v)
}

/// `POST /v1/models/{name}/activate`: load a model and swap it in.
#[utoipa::path(post, path = "/v1/models/{name}/activate", tag = "models", params(("name" = String, Path, description = "model folder name, or `default`")), responses((status = 200, description = "the model now used for predictions", body = api::Activated), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 404, description = "no such node, GPU, job or model", body = api::ErrorBody)))]
pub(super) async fn activate(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult {
    let st = s.clone();
    let v = tokio::task::spawn_blocking(move || activate_model(&st, &name, "activated"))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(v).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetrainBody {
    /// Folder name under --models (not `default`, the shipped model).
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    name: String,
    #[serde(default)]
    arch: Option<crate::predictor::Arch>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    epochs: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    /// Share of the mixes held out for the metrics.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    val_frac: Option<f64>,
}

/// The most epochs one retrain request may ask for (the default model used 100).
pub(super) const MAX_RETRAIN_EPOCHS: usize = 1000;

/// `POST /v1/models/retrain`: train on the stored samples with `miso train`'s code, save under
/// models/<name>, and activate it (hot swap).
#[utoipa::path(post, path = "/v1/models/retrain", tag = "models", request_body = RetrainBody, responses((status = 201, description = "trained on the stored samples, saved and active", body = api::Retrained), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn retrain(
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
    let observations = s.store().observations()?;
    let st = s.clone();
    let v = tokio::task::spawn_blocking(move || -> Result<api::Retrained, ApiError> {
        let dir = st.models_dir.join(&r.name);
        // Parsed in memory (no temporary file another user could redirect).
        let lines: Vec<String> = samples.iter().map(|v| v.to_string()).collect();
        let mut ds = crate::predictor::data::samples_from_text(&lines.join("\n"), "stored sample")
            .map_err(|e| bad(format!("stored samples: {e}")))?;
        // Observations: partial labels of the jobs' workloads, filled by the active model.
        let obs: Vec<crate::predictor::observe::Observation> = observations
            .into_iter()
            .enumerate()
            .map(|(i, v)| typed(v).map_err(|e| bad(format!("stored observation {i}: {e}"))))
            .collect::<Result<_, _>>()?;
        let mut learned = Vec::new();
        if !obs.is_empty() {
            let active = st.active();
            let builtin;
            let prior = match active.as_ref() {
                Some((_, p)) => p,
                None => {
                    builtin = crate::predictor::Predictor::builtin()
                        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                    &builtin
                }
            };
            learned = crate::predictor::observe::merge(&mut ds, &obs, prior)
                .map_err(|e| bad(format!("stored observations: {e}")))?
                .0;
        }
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
        let mut split = ds.random_split(val, cfg.seed);
        split.always_train(&learned);
        let p = crate::predictor::train(&ds, &split, &cfg, &indicatif::ProgressBar::hidden())
            .map_err(|e| bad(e.to_string()))?;
        p.save(&dir)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mae = p.meta.metrics.mae;
        swap_in(&st, &r.name, p, "retrained")?;
        Ok(api::Retrained {
            active: r.name,
            samples: ds.samples.len() - learned.len(),
            observations: obs.len(),
            mae,
        })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `POST /v1/predict`: one sample's MPS measurements → each real job's speed per profile kind,
/// with the active model.
#[utoipa::path(post, path = "/v1/predict", tag = "models", request_body = SampleRecord, responses((status = 200, description = "each real job's speed per profile kind, with the active model", body = api::Prediction), (status = 400, description = "a field is wrong (the message names it)", body = api::ErrorBody), (status = 401, description = "no or wrong bearer token", body = api::ErrorBody), (status = 409, description = "conflicts with the stored state", body = api::ErrorBody)))]
pub(super) async fn predict(
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
    let ranges = p.predict_intervals(std::slice::from_ref(&m));
    let kinds = crate::perf::KIND_NAMES;
    let jobs: Vec<api::PredictedJob> = rec
        .slots
        .iter()
        .enumerate()
        .filter(|(k, _)| real[*k])
        .map(|(k, sl)| {
            let speeds = table[k]
                .as_ref()
                .map(|pf| {
                    (0..5)
                        .filter_map(|i| pf.speed[i].map(|v| (kinds[i].to_string(), v)))
                        .collect()
                })
                .unwrap_or_default();
            let speed_range = ranges.as_ref().and_then(|r| r.first()).map(|r| {
                let (lo, hi) = &r[k];
                (0..5)
                    .filter_map(|i| {
                        let (l7, h7) = (lo[4]?, hi[4]?);
                        let (l, h) = (lo[i]?, hi[i]?);
                        let range = if i == 4 {
                            [1.0, 1.0]
                        } else {
                            [l7 / h, (h7 / l).max(l7 / h)]
                        };
                        Some((kinds[i].to_string(), range))
                    })
                    .collect()
            });
            api::PredictedJob {
                slot: k,
                label: sl.label.clone(),
                speeds,
                speed_range,
            }
        })
        .collect();
    Ok(Json(api::Prediction {
        model: name.clone(),
        jobs,
    })
    .into_response())
}
