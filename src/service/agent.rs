//! The node agent: registers its GPUs with the controller, then level-triggered: on start and
//! every interval it reads the desired layout of each GPU, reconciles the real GPU towards it
//! through its `GpuControl` backend, and reports what the GPU has. A crash mid-plan leaves a
//! valid layout (every step of a diff is valid), and the next pass converges from it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::control::{self, GpuControl};
use crate::gpu;

use super::client::request;

/// Settings of `miso agent`.
pub struct AgentConfig {
    /// Controller `host:port`.
    pub host: String,
    pub token: Option<String>,
    pub name: String,
    pub interval: Duration,
    /// One reconcile pass, then exit.
    pub once: bool,
}

fn call(
    cfg: &AgentConfig,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let b = body.map(|b| b.to_string());
    let (code, text) = request(&cfg.host, method, path, cfg.token.as_deref(), b.as_deref())?;
    if !(200..300).contains(&code) {
        return Err(format!("{method} {path}: HTTP {code}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}"))
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
    call(
        cfg,
        "POST",
        "/v1/nodes",
        Some(&json!({"name": cfg.name, "gpus": reg})),
    )?;
    log(&format!(
        "registered {} with {} GPU(s)",
        cfg.name,
        gpus.len()
    ));
    loop {
        match call(cfg, "GET", &format!("/v1/nodes/{}/desired", cfg.name), None) {
            Ok(desired) => {
                let mut reports = Vec::new();
                for d in desired.as_array().cloned().unwrap_or_default() {
                    let idx = d["index"].as_u64().unwrap_or(0) as u32;
                    let Some(model) = gpus.iter().find(|g| g.index == idx).and_then(|g| g.model)
                    else {
                        continue;
                    };
                    let mut error = None;
                    match gpu::parse_valid_layout(model, d["layout"].as_str().unwrap_or("")) {
                        Ok(want) => match control::reconcile(ctl, model, idx, &want) {
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
                        },
                        Err(e) => error = Some(e.to_string()),
                    }
                    let now = ctl.layout(idx).map(|l| l.label(model)).unwrap_or_else(|e| {
                        error.get_or_insert(e.to_string());
                        "empty".into()
                    });
                    if let Some(e) = &error {
                        log(&format!("GPU {idx}: {e}"));
                    }
                    reports.push(json!({"index": idx, "layout": now, "error": error}));
                }
                if let Err(e) = call(
                    cfg,
                    "POST",
                    &format!("/v1/nodes/{}/report", cfg.name),
                    Some(&json!({"gpus": reports})),
                ) {
                    log(&e);
                }
            }
            Err(e) => log(&e),
        }
        if cfg.once {
            return Ok(());
        }
        std::thread::sleep(cfg.interval);
    }
}
