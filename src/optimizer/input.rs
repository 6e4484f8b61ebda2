//! Jobs as users write them (`jobs.json` for `miso recommend`, request bodies later): a catalog
//! workload or explicit speeds, validated with errors that name the field.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::gpu::{GpuModel, Instance, Layout};
use crate::perf::{self, kind_index, JobPerf, KINDS};

use super::{restart_s_for_model, OptError, OptJob, DEFAULT_RESTART_S};

/// One job of `jobs.json`: `{"id": "a", "workload": "bert_train8"}` or
/// `{"id": "b", "speeds": {"3g.20gb": 0.55, "7g.40gb": 1.0}, "memory_mb": 9000}`, with optional
/// `remaining_s`, `instance` (where it runs now, e.g. `3g.20gb@4`) and `restart_s`. `command`
/// is how the node agent runs the job (`sh -c`); the optimizer ignores it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// 1-64 letters, digits, `-`, `_`, `.`, starting with a letter or digit.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub id: String,
    #[serde(default)]
    pub workload: Option<String>,
    /// Speed relative to the whole GPU, by profile name of the GPU in question. Profiles left
    /// out are taken as not fitting.
    #[serde(default)]
    pub speeds: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
    #[serde(default)]
    pub remaining_s: Option<f64>,
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub restart_s: Option<f64>,
    #[serde(default)]
    pub command: Option<String>,
}

fn bad(field: String, reason: impl Into<String>) -> OptError {
    OptError::Input {
        field,
        reason: reason.into(),
    }
}

impl JobSpec {
    /// Resolve against one GPU model (profile names, memory); `k` is the job's array index.
    pub fn resolve(&self, gpu: &GpuModel, current: &Layout, k: usize) -> Result<OptJob, OptError> {
        let f = |name: &str| format!("jobs[{k}].{name}");
        if self.id.trim().is_empty() {
            return Err(bad(f("id"), "must not be empty"));
        }
        let (perf, restart) =
            match (&self.workload, &self.speeds) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        f("workload"),
                        "give either `workload` or `speeds`, not both",
                    ))
                }
                (None, None) => return Err(bad(
                    format!("jobs[{k}]"),
                    "needs `workload` (e.g. bert_train8) or `speeds` (e.g. {\"3g.20gb\": 0.55})",
                )),
                (Some(w), None) => {
                    let w = perf::workload(w).map_err(|e| bad(f("workload"), e.to_string()))?;
                    let mut p = w.perf();
                    p.memory_mb = self.memory_mb;
                    (p, restart_s_for_model(w.model))
                }
                (None, Some(speeds)) => {
                    let mut speed = [None; KINDS];
                    for (name, &v) in speeds {
                        let (_, p) = gpu.profile(name).ok_or_else(|| {
                            bad(
                                f(&format!("speeds.{name}")),
                                format!(
                                    "unknown profile for {} (allowed: {})",
                                    gpu.name,
                                    gpu.profile_names().join(", ")
                                ),
                            )
                        })?;
                        if !(v.is_finite() && v > 0.0) {
                            return Err(bad(
                                f(&format!("speeds.{name}")),
                                format!("{v} is not a positive finite speed"),
                            ));
                        }
                        if !p.standard {
                            return Err(bad(
                                f(&format!("speeds.{name}")),
                                "the optimizer partitions with the standard profiles only",
                            ));
                        }
                        if let Some(ki) = kind_index(p.compute_slices) {
                            speed[ki] = Some(v);
                        }
                    }
                    let p = JobPerf {
                        speed,
                        memory_mb: self.memory_mb,
                    };
                    p.validate(&format!("jobs[{k}]"))
                        .map_err(|e| bad(f("speeds"), e.to_string()))?;
                    (p, DEFAULT_RESTART_S)
                }
            };
        if let Some(m) = self.memory_mb {
            if m > gpu.memory_mb {
                return Err(bad(
                    f("memory_mb"),
                    format!(
                        "{m} MB exceeds the {} MB of a whole {}",
                        gpu.memory_mb, gpu.name
                    ),
                ));
            }
        }
        if let Some(r) = self.remaining_s {
            if !(r.is_finite() && r >= 0.0) {
                return Err(bad(
                    f("remaining_s"),
                    format!("{r} is not a non-negative number of seconds"),
                ));
            }
        }
        if let Some(r) = self.restart_s {
            if !(r.is_finite() && r >= 0.0) {
                return Err(bad(
                    f("restart_s"),
                    format!("{r} is not a non-negative number of seconds"),
                ));
            }
        }
        let cur = match &self.instance {
            None => None,
            Some(s) => {
                let i = Instance::parse(gpu, s).map_err(|e| bad(f("instance"), e.to_string()))?;
                if !current.instances().contains(&i) {
                    return Err(bad(
                        f("instance"),
                        format!("{s} is not in the current layout {}", current.label(gpu)),
                    ));
                }
                Some(i)
            }
        };
        Ok(OptJob {
            id: self.id.clone(),
            perf,
            remaining_s: self.remaining_s,
            current: cur,
            restart_s: self.restart_s.unwrap_or(restart),
        })
    }
}

/// Parse and resolve a `jobs.json` array for one GPU whose layout is `current`.
pub fn parse_jobs(gpu: &GpuModel, current: &Layout, json: &str) -> Result<Vec<OptJob>, OptError> {
    let specs: Vec<JobSpec> =
        serde_json::from_str(json).map_err(|e| bad("jobs".to_string(), e.to_string()))?;
    let jobs = specs
        .iter()
        .enumerate()
        .map(|(k, s)| s.resolve(gpu, current, k))
        .collect::<Result<Vec<_>, _>>()?;
    for (k, j) in jobs.iter().enumerate() {
        if jobs[..k].iter().any(|o| o.id == j.id) {
            return Err(bad(
                format!("jobs[{k}].id"),
                format!("`{}` is used twice", j.id),
            ));
        }
        if let Some(c) = j.current {
            if let Some(o) = jobs[..k].iter().find(|o| o.current == Some(c)) {
                return Err(bad(
                    format!("jobs[{k}].instance"),
                    format!("{} already runs `{}`", c.label(gpu), o.id),
                ));
            }
        }
    }
    Ok(jobs)
}
