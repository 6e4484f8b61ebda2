//! Choosing a MIG layout, the placement of its instances and the job→instance assignment for
//! one GPU, and a GPU for each job across a cluster; turning a choice into a least-disruption
//! reconfiguration plan.
//!
//! Knows `gpu` and `perf`; never reads a clock, never touches a GPU: given the same jobs it
//! always gives the same answer.

mod cluster;
mod input;
mod plan;
mod search;

pub use cluster::{choose_gpu, placement_gains, GpuState, Placement};
pub use input::{parse_jobs, JobSpec};
pub use plan::{plan, Plan, PlanView, StepView};
pub use search::{brute_force, optimize, Decision};

use crate::gpu::{GpuModel, Instance};
use crate::perf::JobPerf;

/// What the search minimises or maximises.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// MISO's objective: minimise the mean slowdown (time on slice / time on the whole GPU).
    #[default]
    MeanSlowdown,
    /// Maximise system throughput: the sum of the jobs' speeds.
    Throughput,
    /// Minimise the sum of expected completion times (remaining work / speed); needs each
    /// job's `remaining_s`.
    CompletionTime,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::MeanSlowdown => "mean-slowdown",
            Objective::Throughput => "throughput",
            Objective::CompletionTime => "completion-time",
        }
    }

    /// Additive cost of running a job at `speed`: the search minimises the sum.
    fn cost(self, speed: f64, remaining_s: f64) -> f64 {
        match self {
            Objective::MeanSlowdown => 1.0 / speed,
            Objective::Throughput => -speed,
            Objective::CompletionTime => remaining_s / speed,
        }
    }

    /// The reported value of a summed cost over `n` jobs.
    pub fn value(self, cost: f64, n: usize) -> f64 {
        match self {
            Objective::MeanSlowdown if n > 0 => cost / n as f64,
            Objective::MeanSlowdown => 0.0,
            Objective::Throughput => -cost,
            Objective::CompletionTime => cost,
        }
    }
}

/// One job as the optimizer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct OptJob {
    pub id: String,
    pub perf: JobPerf,
    /// Remaining work in seconds on a whole GPU (needed by `CompletionTime` and cost-aware
    /// re-partitioning).
    pub remaining_s: Option<f64>,
    /// The instance the job runs on now, if it runs.
    pub current: Option<Instance>,
    /// Seconds lost when the job is checkpointed and restarted elsewhere.
    pub restart_s: f64,
}

impl OptJob {
    /// A job with the given speeds and nothing else known.
    pub fn new(id: impl Into<String>, perf: JobPerf) -> OptJob {
        OptJob {
            id: id.into(),
            perf,
            remaining_s: None,
            current: None,
            restart_s: DEFAULT_RESTART_S,
        }
    }
}

/// Checkpoint + restart seconds when a job's own figure is unknown: the mean of the MISO
/// artifact's measured per-model times (bert 18, cyclegan 44, deepspeech2 14, embedding 4,
/// gnn 5, mobilenet 7, resnet 9, transformer 5 s).
pub const DEFAULT_RESTART_S: f64 = 13.25;

/// Measured checkpoint-restore seconds per model family (MISO artifact, see datasets README).
pub fn restart_s_for_model(model: &str) -> f64 {
    match model {
        "bert" => 18.0,
        "cyclegan" => 44.0,
        "deepspeech2" => 14.0,
        "embedding" => 4.0,
        "gnn" => 5.0,
        "mobilenet" => 7.0,
        "resnet" => 9.0,
        "transformer" => 5.0,
        _ => DEFAULT_RESTART_S,
    }
}

/// Search options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub objective: Objective,
    /// Also consider layouts with more instances than jobs (spare instances stay empty).
    pub spare: bool,
    /// Relative tolerance within which layouts count as equally good; among those the one that
    /// keeps the most running jobs in place wins.
    pub tolerance: f64,
    /// Re-partition only when the predicted gain over the remaining work exceeds the time the
    /// moved jobs lose (checkpoint + restart + `reconfig_s`).
    pub cost_aware: bool,
    /// Seconds a MIG reconfiguration stalls each moved job, on top of its restart.
    pub reconfig_s: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            objective: Objective::MeanSlowdown,
            spare: false,
            tolerance: 1e-9,
            cost_aware: false,
            reconfig_s: 0.0,
        }
    }
}

/// Why no decision could be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptError {
    #[error("{jobs} jobs cannot share one {gpu}: at most {max} instances fit")]
    TooManyJobs {
        jobs: usize,
        gpu: String,
        max: usize,
    },
    #[error("no layout of {gpu} fits these jobs{detail}")]
    NoFit { gpu: String, detail: String },
    #[error("objective completion-time needs remaining_s for job `{job}`")]
    MissingRemaining { job: String },
    #[error("{field}: {reason}")]
    Input { field: String, reason: String },
}

/// Cost of job `j` on each profile of `gpu` (infinite where it does not fit).
fn cost_row(gpu: &GpuModel, job: &OptJob, objective: Objective) -> Result<Vec<f64>, OptError> {
    let rem = match (objective, job.remaining_s) {
        (Objective::CompletionTime, None) => {
            return Err(OptError::MissingRemaining {
                job: job.id.clone(),
            })
        }
        (_, r) => r.unwrap_or(1.0),
    };
    Ok((0..gpu.profiles.len())
        .map(|p| match job.perf.speed_on(gpu, p) {
            Some(s) => objective.cost(s, rem),
            None => f64::INFINITY,
        })
        .collect())
}

#[cfg(test)]
mod tests;
