//! Held-out evaluation of a learned policy against miso, ours and oracle, and scripted probes
//! of how much room its decisions have.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::gpu::GpuModel;
use crate::policy::rl::{self, Choice, Decide, Greedy, Observation, PolicyModel};
use crate::predictor::{Dataset, Predictor};
use crate::sim::scenario::{self, Env};

use super::{par_map, Episode, Worker};

/// The families of `eps`, in order of first appearance.
fn families(eps: &[Episode]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in eps {
        if !out.contains(&e.family) {
            out.push(e.family.clone());
        }
    }
    out
}

/// One held-out row: a family's episodes under each policy.
#[derive(Clone, Debug, Serialize)]
pub struct EvalRow {
    pub family: String,
    pub gpus: usize,
    pub episodes: usize,
    /// Per policy (miso, ours, oracle, rl): mean and standard deviation of average JCT, s.
    pub mean_jct_s: Vec<(String, f64, f64)>,
    /// rl's average JCT relative to ours and to miso, mean over episodes (%), with its spread.
    pub rl_vs_ours_pct: (f64, f64),
    pub rl_vs_miso_pct: (f64, f64),
    /// Worst episode of rl against miso (%).
    pub rl_vs_miso_worst_pct: f64,
    /// Decisions of rl and how many fell back to the rule (outside the training range).
    pub decisions: u64,
    pub fallbacks: u64,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
    (m, sd)
}

/// Evaluate a policy on held-out episodes against miso, ours and oracle (fresh runs, as
/// `miso simulate` makes them). `tick` is called after each episode.
pub fn evaluate(
    policy: Arc<PolicyModel>,
    eps: &[Episode],
    model: &'static GpuModel,
    data: &Dataset,
    loader: &(dyn Fn() -> Result<Predictor, String> + Sync),
    threads: usize,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<EvalRow>, String> {
    let names = ["miso", "ours", "oracle", "rl"];
    let mut workers = Worker::pool(threads, data, loader);
    let per: Vec<([f64; 4], u64, u64)> = par_map(eps, &mut workers, &|w, _, e| {
        let mut out = [0.0; 4];
        let env = Env {
            seed: e.seed,
            ..Env::artifact(model, e.gpus, data, loader)
        };
        for (k, name) in names.iter().take(3).enumerate() {
            let (o, _) = scenario::run_named(name, &e.trace, &env, &mut |_| {})
                .map_err(|err| format!("{}: {err}", e.name))?;
            out[k] = o.metrics.avg_jct_s;
        }
        let r = w.run(model, e, Some(Box::new(Greedy::new(policy.clone()))))?;
        out[3] = r.avg_jct_s;
        tick();
        Ok((out, r.decisions.0, r.decisions.1))
    })?;
    let families = families(eps);
    Ok(families
        .iter()
        .map(|fam| {
            let idx: Vec<usize> = (0..eps.len()).filter(|&i| &eps[i].family == fam).collect();
            let col = |k: usize| idx.iter().map(|&i| per[i].0[k]).collect::<Vec<f64>>();
            let rel = |k: usize| {
                idx.iter()
                    .map(|&i| 100.0 * (per[i].0[3] / per[i].0[k] - 1.0))
                    .collect::<Vec<f64>>()
            };
            EvalRow {
                family: fam.clone(),
                gpus: eps[idx[0]].gpus,
                episodes: idx.len(),
                mean_jct_s: names
                    .iter()
                    .enumerate()
                    .map(|(k, n)| {
                        let (m, sd) = mean_sd(&col(k));
                        (n.to_string(), m, sd)
                    })
                    .collect(),
                rl_vs_ours_pct: mean_sd(&rel(1)),
                rl_vs_miso_pct: mean_sd(&rel(0)),
                rl_vs_miso_worst_pct: rel(0).into_iter().fold(f64::NEG_INFINITY, f64::max),
                decisions: idx.iter().map(|&i| per[i].1).sum(),
                fallbacks: idx.iter().map(|&i| per[i].2).sum(),
            }
        })
        .collect())
}

/// Scripted deviations from the rule, to measure how much room the learned decisions have:
/// each is run on traces and compared with the rule (ours) on the same trace.
pub const PROBES: [&str; 8] = [
    "second-best-gain",
    "worst-gain",
    "fewest-jobs",
    "most-attained",
    "wait-if-3-jobs",
    "wait-always",
    "repartition-always",
    "repartition-deferred",
];

/// A scripted decider (see [`PROBES`]); counts its decisions and its deviations from the rule.
pub(super) struct Scripted {
    pub(super) probe: &'static str,
    pub(super) counts: Arc<Mutex<(u64, u64)>>,
}

impl Decide for Scripted {
    fn decide(&mut self, o: &Observation, _now: f64) -> Choice {
        let rule = rl::rule(o);
        let n = o.candidates.len();
        let c = if o.kind == rl::Kind::Repartition {
            match self.probe {
                "repartition-always" => Choice::Apply,
                // Deferred while the rule would apply: a GPU is re-partitioned only when a new
                // job arrives on it.
                "repartition-deferred" => Choice::Defer,
                _ => rule,
            }
        } else if n == 0 {
            rule
        } else {
            let by = |key: &dyn Fn(usize) -> f64| {
                (0..n)
                    .min_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)))
                    .unwrap_or(0)
            };
            match self.probe {
                "second-best-gain" => Choice::Join(1.min(n - 1)),
                "worst-gain" => Choice::Join(n - 1),
                "fewest-jobs" => Choice::Join(by(&|i| o.candidates[i].jobs as f64)),
                "most-attained" => Choice::Join(by(&|i| -o.candidates[i].mean_attained_s)),
                "wait-if-3-jobs" if o.wait_allowed && o.candidates[0].jobs >= 3 => Choice::Wait,
                "wait-always" if o.wait_allowed => Choice::Wait,
                _ => rule,
            }
        };
        if let Ok(mut k) = self.counts.lock() {
            k.0 += 1;
            k.1 += u64::from(c != rule);
        }
        c
    }
}

/// One probe's result: per family, its average JCT against the rule's (%, mean over traces).
#[derive(Clone, Debug, Serialize)]
pub struct ProbeRow {
    pub probe: String,
    pub vs_ours_pct: Vec<(String, f64)>,
    /// Its best and worst trace against the rule (%).
    pub best_pct: f64,
    pub worst_pct: f64,
    pub deviations: u64,
    pub decisions: u64,
}

/// Run every probe and the rule on `eps`. `tick` after each (probe, trace).
pub fn probe(
    eps: &[Episode],
    model: &'static GpuModel,
    data: &Dataset,
    loader: &(dyn Fn() -> Result<Predictor, String> + Sync),
    threads: usize,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<ProbeRow>, String> {
    let mut workers = Worker::pool(threads, data, loader);
    let rule: Vec<f64> = par_map(eps, &mut workers, &|w, _, e| {
        let r = w.run(model, e, None).map(|r| r.avg_jct_s);
        tick();
        r
    })?;
    let families = families(eps);
    let mut rows = Vec::new();
    for p in PROBES {
        let counts = Arc::new(Mutex::new((0u64, 0u64)));
        let jct: Vec<f64> = par_map(eps, &mut workers, &|w, _, e| {
            let d = Scripted {
                probe: p,
                counts: counts.clone(),
            };
            let r = w.run(model, e, Some(Box::new(d))).map(|r| r.avg_jct_s);
            tick();
            r
        })?;
        let rel: Vec<f64> = jct
            .iter()
            .zip(&rule)
            .map(|(j, r)| 100.0 * (j / r.max(1e-9) - 1.0))
            .collect();
        let (decisions, deviations) = counts.lock().map(|c| *c).unwrap_or((0, 0));
        rows.push(ProbeRow {
            probe: p.into(),
            vs_ours_pct: families
                .iter()
                .map(|f| {
                    let v: Vec<f64> = eps
                        .iter()
                        .zip(&rel)
                        .filter(|(e, _)| &e.family == f)
                        .map(|(_, r)| *r)
                        .collect();
                    (f.clone(), mean_sd(&v).0)
                })
                .collect(),
            best_pct: rel.iter().copied().fold(f64::INFINITY, f64::min),
            worst_pct: rel.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            deviations,
            decisions,
        });
    }
    Ok(rows)
}
