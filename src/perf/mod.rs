//! Per-job performance on MIG slices: speed vectors (speed on each profile kind relative to the
//! whole GPU) and the catalog of measured MISO workloads.
//!
//! Speeds are kept per profile *kind* (1g, 2g, 3g, 4g, 7g: the compute-slice count), so one
//! measurement serves every GPU model; [`JobPerf::speed_on`] resolves a kind to one GPU's
//! profile and renormalises to that GPU's whole-GPU profile (on an A30 the whole GPU is 4g).
//! Knows `gpu`, nothing of time, policies or I/O.

mod mps;
mod table;

pub use mps::{MpsMatrix, FEATURE_VERSION, JOB_FEATURES, MPS_LEVELS_PCT, SLOTS};

use std::sync::OnceLock;

use crate::gpu::GpuModel;

/// Profile kinds by compute slices, in the order of every `[_; KINDS]` array here.
pub const KIND_SLICES: [u8; KINDS] = [1, 2, 3, 4, 7];
pub const KINDS: usize = 5;
/// The kinds' names, in [`KIND_SLICES`] order (`"3g"`: any 3-slice profile).
pub const KIND_NAMES: [&str; KINDS] = ["1g", "2g", "3g", "4g", "7g"];
/// The A100-40GB profile each kind was measured on (MISO data).
pub const A100_PROFILES: [&str; KINDS] = ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"];

/// Errors about job performance input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PerfError {
    #[error("unknown workload `{name}` (allowed: <model>_train<batch> with models {models}; e.g. bert_train8)")]
    UnknownWorkload { name: String, models: String },
    #[error("{field}: speed {value} is not a positive finite number")]
    BadSpeed { field: String, value: f64 },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// Index of a compute-slice count in [`KIND_SLICES`].
pub fn kind_index(compute_slices: u8) -> Option<usize> {
    KIND_SLICES.iter().position(|&c| c == compute_slices)
}

/// How fast one job runs on each profile kind, relative to the whole (7g) GPU; `None` where
/// the job does not fit (memory) or was never measured.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPerf {
    pub speed: [Option<f64>; KINDS],
    /// Memory the job needs, when known: profiles with less memory are infeasible. Catalog
    /// workloads leave it `None`: their measured table already marks what does not fit.
    pub memory_mb: Option<u32>,
}

impl JobPerf {
    /// Check that every speed is positive and finite, and some profile is feasible.
    pub fn validate(&self, field: &str) -> Result<(), PerfError> {
        for (k, s) in self.speed.iter().enumerate() {
            if let Some(v) = *s {
                if !(v.is_finite() && v > 0.0) {
                    return Err(PerfError::BadSpeed {
                        field: format!("{field}.speeds.{}g", KIND_SLICES[k]),
                        value: v,
                    });
                }
            }
        }
        if self.speed.iter().all(Option::is_none) {
            return Err(PerfError::Invalid {
                field: format!("{field}.speeds"),
                reason: "no profile has a speed".to_string(),
            });
        }
        Ok(())
    }

    /// Speed of the job on profile `profile` (index into `gpu.profiles`), relative to the
    /// whole GPU of that model; `None` when it does not fit there.
    pub fn speed_on(&self, gpu: &GpuModel, profile: usize) -> Option<f64> {
        let p = &gpu.profiles[profile];
        if let Some(need) = self.memory_mb {
            if p.memory_mb < need {
                return None;
            }
        }
        let s = self.speed[kind_index(p.compute_slices)?]?;
        let whole = kind_index(gpu.compute_slices).and_then(|k| self.speed[k]);
        Some(match whole {
            Some(w) => s / w,
            None => s,
        })
    }
}

/// One measured workload of the MISO artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `<model>_train<batch>`, as in the MISO data: `bert_train8`.
    pub name: String,
    pub model: &'static str,
    pub batch: u32,
    /// GPU memory nvidia-smi read on the whole GPU (overstates the need: frameworks cache).
    pub nvsmi_memory_mb: u32,
    /// Mean seconds per iteration on each kind's A100-40GB profile; `None`: out of memory.
    pub iter_s: [Option<f64>; KINDS],
}

impl Workload {
    /// Speeds relative to the whole A100 (7g.40gb).
    pub fn perf(&self) -> JobPerf {
        let whole = self.iter_s[KINDS - 1];
        let mut speed = [None; KINDS];
        for k in 0..KINDS {
            speed[k] = match (self.iter_s[k], whole) {
                (Some(t), Some(w)) if t > 0.0 => Some(w / t),
                _ => None,
            };
        }
        JobPerf {
            speed,
            memory_mb: None,
        }
    }
}

/// The 32 measured MISO workloads (8 models × 4 batch sizes); the `dummy` filler job of the
/// MPS data has no MIG measurement and is not in it.
pub fn catalog() -> &'static [Workload] {
    static CAT: OnceLock<Vec<Workload>> = OnceLock::new();
    CAT.get_or_init(|| {
        table::A100_ITER_S
            .iter()
            .filter(|r| r.3.iter().any(Option::is_some))
            .map(|&(model, batch, mem, iter_s)| Workload {
                name: format!("{model}_train{batch}"),
                model,
                batch,
                nvsmi_memory_mb: mem,
                iter_s,
            })
            .collect()
    })
}

/// The model families of the catalog, in catalog order.
pub fn models() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for w in catalog() {
        if !v.contains(&w.model) {
            v.push(w.model);
        }
    }
    v
}

/// Look a workload up by `<model>_train<batch>` (or `<model>_<batch>`).
pub fn workload(name: &str) -> Result<&'static Workload, PerfError> {
    let n = name.trim();
    catalog()
        .iter()
        .find(|w| w.name == n || format!("{}_{}", w.model, w.batch) == n)
        .ok_or_else(|| PerfError::UnknownWorkload {
            name: n.to_string(),
            models: models().join(", "),
        })
}

#[cfg(test)]
mod tests;
