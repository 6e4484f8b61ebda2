//! Building the policies of a simulation run: which predictor and which measured data MISO-family
//! and MPS policies use, and the "optimal static" search over every maximal layout.

use crate::gpu::{maximal, GpuModel};
use crate::optimizer::{Objective, Options, Placement};
use crate::policy::{Miso, MpsOnly, MpsSource, NoPart, Overheads, Policy, Speeds, Static};
use crate::predictor::{Dataset, Predictor};

use super::{run, Outcome, SimError, TraceJob};

/// The policies `miso simulate --policy` knows, in report order.
pub const POLICIES: [&str; 6] = ["nopart", "static", "mps", "miso", "oracle", "ours"];

/// What the data-driven policies need.
pub struct Env<'a> {
    pub model: &'static GpuModel,
    pub gpus: usize,
    pub seed: u64,
    /// The MISO measurements (MPS matrices for profiling, solo thread scaling for MPS).
    pub data: &'a Dataset,
    /// Loads the predictor MISO and Ours use (called once per policy run).
    pub predictor: &'a dyn Fn() -> Result<Predictor, String>,
    pub overheads: Overheads,
    /// Most jobs per GPU under MPS-only (the artifact's baseline: 3).
    pub mps_max_jobs: usize,
}

/// Errors building or running a policy.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("unknown policy `{0}` (allowed: all, nopart, static, mps, miso, oracle, ours)")]
    UnknownPolicy(String),
    #[error("predictor: {0}")]
    Predictor(String),
    #[error(transparent)]
    Sim(#[from] SimError),
}

fn miso(env: &Env, label: &str, speeds: Speeds, ours: bool) -> Miso {
    Miso {
        label: label.to_string(),
        speeds,
        options: if ours {
            // Ours: among layouts within 2 % of the best, keep running jobs in place; re-partition
            // only when the estimated gain beats the restart cost.
            Options {
                objective: Objective::MeanSlowdown,
                tolerance: 0.02,
                cost_aware: true,
                reconfig_s: env.overheads.reconfig_s,
                ..Options::default()
            }
        } else {
            Options::default()
        },
        placement: if ours {
            Placement::BestGain
        } else {
            Placement::FewestJobs
        },
        overheads: env.overheads.clone(),
        estimate_remaining: ours,
    }
}

/// Run one named policy; `tick(done)` reports progress. Static runs every maximal layout and
/// returns the best by average JCT, naming the layout in `detail`.
pub fn run_named(
    name: &str,
    trace: &[TraceJob],
    env: &Env,
    tick: &mut dyn FnMut(usize),
) -> Result<(Outcome, Option<String>), ScenarioError> {
    let predicted = || -> Result<Speeds, ScenarioError> {
        let p = (env.predictor)().map_err(ScenarioError::Predictor)?;
        Ok(Speeds::Predicted {
            predictor: Box::new(p),
            source: MpsSource::new(env.data, env.seed),
        })
    };
    let mut policy: Box<dyn Policy> = match name {
        "nopart" => Box::new(NoPart),
        "mps" => Box::new(MpsOnly {
            max_jobs: env.mps_max_jobs,
            source: MpsSource::new(env.data, env.seed),
        }),
        "miso" => Box::new(miso(env, "miso", predicted()?, false)),
        "oracle" => Box::new(miso(env, "oracle", Speeds::True, false)),
        "ours" => Box::new(miso(env, "ours", predicted()?, true)),
        "static" => {
            let mut best: Option<(Outcome, String)> = None;
            for l in maximal(env.model, &env.model.profile_set(false)) {
                let mut p = Static { layout: l.clone() };
                let o = match run(&mut p, trace, env.model, env.gpus, tick) {
                    Ok(o) => o,
                    Err(SimError::Stuck { .. }) => continue, // some job fits no slice of it
                    Err(e) => return Err(e.into()),
                };
                if best
                    .as_ref()
                    .is_none_or(|(b, _)| o.metrics.avg_jct_s < b.metrics.avg_jct_s)
                {
                    best = Some((o, l.label(env.model)));
                }
            }
            return best
                .map(|(o, l)| (o, Some(format!("best static layout {l}"))))
                .ok_or_else(|| {
                    ScenarioError::Sim(SimError::Stuck {
                        job: "(some job)".into(),
                        policy: "static (every layout)".into(),
                    })
                });
        }
        other => return Err(ScenarioError::UnknownPolicy(other.to_string())),
    };
    Ok((
        run(policy.as_mut(), trace, env.model, env.gpus, tick)?,
        None,
    ))
}
