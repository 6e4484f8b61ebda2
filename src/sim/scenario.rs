//! Building the policies of a simulation run: which predictor and which measured data MISO-family
//! and MPS policies use, the modelling switches (what the MISO artifact did, or an alternative),
//! and the hindsight-best static layout search.

use crate::gpu::{maximal, parse_valid_layout, GpuModel, Layout};
use crate::optimizer::{Objective, Options, Placement};
use crate::policy::{
    Miso, MisoMode, MpsOnly, MpsPlacement, MpsSource, MpsSpeeds, NoPart, Overheads, Policy, Speeds,
    Static, StaticBest,
};
use crate::predictor::{Dataset, Estimate, Predictor};

use super::{run, EngineOptions, Outcome, SimError, TraceJob};

/// The policies `miso simulate --policy` knows, in report order.
pub const POLICIES: [&str; 7] = [
    "nopart",
    "static",
    "static-best",
    "mps",
    "miso",
    "oracle",
    "ours",
];

/// Modelling switches. `Fidelity::default()` is the MISO artifact as its drivers ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Fidelity {
    /// Scheduling rounds every `tick_s` (the artifact: 10 s); 0 = at every event.
    pub tick_s: f64,
    /// MPS speeds of co-located jobs (MPS baseline, MISO's profiling phase).
    pub mps_speeds: MpsSpeeds,
    /// The MPS baseline's placement and thread share.
    pub mps_placement: MpsPlacement,
    /// MISO and Oracle restart every job of a re-partitioned GPU (the artifact).
    pub restart_all: bool,
    /// The earlier model: profiling stalls all jobs of the GPU, even a lone job.
    pub stall_profiling: bool,
    /// Static promotes running jobs to larger idle instances (the artifact).
    pub static_promotion: bool,
}

impl Default for Fidelity {
    fn default() -> Fidelity {
        Fidelity {
            tick_s: 10.0,
            mps_speeds: MpsSpeeds::Mixes,
            mps_placement: MpsPlacement::FirstFitFixed,
            restart_all: true,
            stall_profiling: false,
            static_promotion: true,
        }
    }
}

/// What the data-driven policies need.
pub struct Env<'a> {
    pub model: &'static GpuModel,
    pub gpus: usize,
    pub seed: u64,
    /// The MISO measurements (MPS matrices for profiling and MPS speeds).
    pub data: &'a Dataset,
    /// Loads the predictor MISO and Ours use (called once per policy run).
    pub predictor: &'a dyn Fn() -> Result<Predictor, String>,
    pub overheads: Overheads,
    /// Most jobs per GPU under the MPS baseline (the artifact: 3).
    pub mps_max_jobs: usize,
    /// Active-thread percentage per job under the MPS baseline (the artifact: 33).
    pub mps_level_pct: f64,
    /// The static baseline's fixed layout (the artifact: 3g+2g+2g).
    pub static_layout: Option<Layout>,
    pub fidelity: Fidelity,
    /// What MISO and Ours give the optimizer as predicted speeds.
    pub objective: Estimate,
    /// MISO and Ours learn from runs (finished jobs' measured speeds per workload).
    pub learn_online: bool,
}

impl<'a> Env<'a> {
    /// The MISO artifact's setup on `gpus` GPUs of `model`, seed 1: its overheads, 3 jobs at
    /// 33 % per GPU under MPS, the 2g+2g+3g static layout, every fidelity switch at its default.
    pub fn artifact(
        model: &'static GpuModel,
        gpus: usize,
        data: &'a Dataset,
        predictor: &'a dyn Fn() -> Result<Predictor, String>,
    ) -> Env<'a> {
        Env {
            model,
            gpus,
            seed: 1,
            data,
            predictor,
            overheads: Overheads::default(),
            mps_max_jobs: 3,
            mps_level_pct: 33.0,
            static_layout: None,
            fidelity: Fidelity::default(),
            objective: Estimate::Point,
            learn_online: false,
        }
    }
}

/// Errors building or running a policy.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "unknown policy `{0}` (allowed: all, nopart, static, static-best, mps, miso, oracle, ours, rl, rl:DIR)"
    )]
    UnknownPolicy(String),
    #[error("predictor: {0}")]
    Predictor(String),
    #[error("learned policy: {0}")]
    Policy(String),
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// The artifact's static layout on an A100 (`exp_static.py`: partition code 6 = 3g+2g+2g), or
/// the largest-first maximal layout with three instances elsewhere.
pub fn default_static_layout(model: &'static GpuModel) -> Layout {
    if let Ok(l) = parse_valid_layout(model, "2g.10gb@0,2g.10gb@2,3g.20gb@4") {
        return l;
    }
    let set = model.profile_set(false);
    let all = maximal(model, &set);
    all.iter()
        .find(|l| l.len() == 3)
        .or_else(|| all.first())
        .cloned()
        .unwrap_or_default()
}

/// MISO (`ours` false), Oracle (true speeds) or Ours (`ours` true) with the run's settings.
pub fn miso(env: &Env, label: &str, speeds: Speeds, ours: bool) -> Miso {
    let f = &env.fidelity;
    let options = if ours {
        Options {
            objective: Objective::MeanSlowdown,
            tolerance: 0.02,
            cost_aware: true,
            reconfig_s: env.overheads.reconfig_s,
            ..Options::default()
        }
    } else {
        Options::default()
    };
    let mut m = Miso::new(
        label,
        speeds,
        if ours {
            MisoMode::Ours
        } else {
            MisoMode::Artifact
        },
        options,
        if ours {
            Placement::BestGain
        } else {
            Placement::FewestJobs
        },
        env.overheads.clone(),
        MpsSource::new(env.data, env.seed),
        f.mps_speeds,
    );
    m.restart_all = !ours && f.restart_all;
    m.stall_profiling = f.stall_profiling;
    m.objective = env.objective;
    m.learn_online = env.learn_online;
    m
}

/// Run one named policy; `tick(done)` reports progress. `static-best` runs every maximal layout
/// and returns the best by average JCT, naming the layout in `detail`.
pub fn run_named(
    name: &str,
    trace: &[TraceJob],
    env: &Env,
    tick: &mut dyn FnMut(usize),
) -> Result<(Outcome, Option<String>), ScenarioError> {
    let eng = EngineOptions {
        tick_s: env.fidelity.tick_s,
    };
    let predicted = || -> Result<Speeds, ScenarioError> {
        let p = (env.predictor)().map_err(ScenarioError::Predictor)?;
        Ok(Speeds::Predicted {
            predictor: Box::new(p),
        })
    };
    let mut policy: Box<dyn Policy> = match name {
        "nopart" => Box::new(NoPart),
        "static" => {
            let layout = env
                .static_layout
                .clone()
                .unwrap_or_else(|| default_static_layout(env.model));
            let label = layout.label(env.model);
            let mut p = Static {
                layout,
                overheads: env.overheads.clone(),
                promote: env.fidelity.static_promotion,
            };
            let o = run(&mut p, trace, env.model, env.gpus, &eng, tick)?;
            return Ok((o, Some(format!("layout {label}"))));
        }
        "mps" => Box::new(MpsOnly {
            max_jobs: env.mps_max_jobs,
            level_pct: env.mps_level_pct,
            placement: env.fidelity.mps_placement,
            speeds: env.fidelity.mps_speeds,
            source: MpsSource::new(env.data, env.seed),
        }),
        "miso" => Box::new(miso(env, "miso", predicted()?, false)),
        "oracle" => Box::new(miso(env, "oracle", Speeds::True, false)),
        "ours" => Box::new(miso(env, "ours", predicted()?, true)),
        spec if spec == "rl" || spec.starts_with("rl:") => {
            // Ours with the learned decision (the rule outside its training range).
            let model = crate::policy::rl::PolicyModel::from_spec(spec)
                .map_err(|e| ScenarioError::Policy(e.to_string()))?;
            let mut m = miso(env, spec, predicted()?, true);
            m.decider = Some(Box::new(crate::policy::rl::Greedy::new(
                std::sync::Arc::new(model),
            )));
            Box::new(m)
        }
        "static-best" => {
            let mut best: Option<(Outcome, String)> = None;
            for l in maximal(env.model, &env.model.profile_set(false)) {
                let mut p = StaticBest::new(l.clone());
                let o = match run(&mut p, trace, env.model, env.gpus, &eng, tick) {
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
                .map(|(mut o, l)| {
                    o.policy = "static-best".into();
                    (o, Some(format!("best static layout {l}")))
                })
                .ok_or_else(|| {
                    ScenarioError::Sim(SimError::Stuck {
                        job: "(some job)".into(),
                        policy: "static-best (every layout)".into(),
                    })
                });
        }
        other => return Err(ScenarioError::UnknownPolicy(other.to_string())),
    };
    Ok((
        run(policy.as_mut(), trace, env.model, env.gpus, &eng, tick)?,
        None,
    ))
}
