//! Scoring a predictor on held-out samples: MAE and MAPE per profile kind (real jobs only), and
//! decision quality: does the layout chosen with predicted speeds equal the one chosen with
//! true speeds, and how much mean slowdown is lost when it does not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gpu::{self, Layout};
use crate::optimizer::{optimize, OptJob, Options};
use crate::perf::{JobPerf, KINDS, KIND_NAMES, SLOTS};

use super::{data::Split, target_to_perf, Dataset, Predictor, Target};

/// The kinds of `mig_targets.npy` (7g, 4g, 3g), as indexes into a [`Target`].
pub(crate) const ROWS: [usize; 3] = [4, 3, 2];

/// How good a model is on one split.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub split: String,
    /// Real jobs scored (samples × real slots).
    pub jobs: usize,
    /// Mean absolute error on the 7g/4g/3g rows (the MISO targets' normalisation).
    pub mae: f64,
    pub mae_by_kind: BTreeMap<String, f64>,
    pub mape_pct_by_kind: BTreeMap<String, f64>,
    /// Mean absolute percentage error on the 7g/4g/3g rows.
    pub mape_pct: f64,
    #[serde(default)]
    pub decision: Option<DecisionQuality>,
}

/// Layout decisions made with predicted vs. true speeds (one per held-out mix).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DecisionQuality {
    pub mixes: usize,
    /// Held-out mixes left out because their jobs do not fit one A100 together under the
    /// measured memory limits (the data's mixes were built to a 38,912 MiB nvidia-smi budget).
    #[serde(default)]
    pub infeasible_mixes: usize,
    /// Share of mixes where the predicted speeds lead to the same placed layout.
    pub same_layout_pct: f64,
    /// Mean extra mean-slowdown (true speeds) of the decision made with predicted speeds.
    pub mean_regret: f64,
    /// The same, over the mixes where the layouts differ.
    pub mean_regret_when_different: f64,
}

/// Renormalise a prediction like the targets: divide by the largest of its 7g/4g/3g values.
pub fn renormalise(t: &Target) -> Target {
    let m = divisor(t);
    t.map(|v| v.map(|x| x / m))
}

/// What [`renormalise`] divides by: the largest 7g/4g/3g value (1 when there is none).
pub(crate) fn divisor(t: &Target) -> f64 {
    let m = ROWS.iter().filter_map(|&k| t[k]).fold(0.0f64, f64::max);
    if m <= 0.0 {
        1.0
    } else {
        m
    }
}

/// Score `p` on the validation part of `split`.
pub fn evaluate(p: &Predictor, ds: &Dataset, split: &Split) -> Metrics {
    let ms = ds.matrices(&split.val);
    let preds = p.predict_targets(&ms);
    let (mut ae, mut ape, mut cnt) = ([0.0; KINDS], [0.0; KINDS], [0usize; KINDS]);
    let mut jobs = 0;
    for (vi, &i) in split.val.iter().enumerate() {
        let s = &ds.samples[i];
        for slot in 0..SLOTS {
            if !s.mps.real[slot] || !split.scores(s.slots[slot]) {
                continue;
            }
            jobs += 1;
            let pr = renormalise(&preds[vi][slot]);
            for k in 0..KINDS {
                if let (Some(t), Some(v)) = (s.targets[slot][k], pr[k]) {
                    ae[k] += (v - t).abs();
                    ape[k] += (v - t).abs() / t.abs().max(1e-9);
                    cnt[k] += 1;
                }
            }
        }
    }
    let by = |a: &[f64; KINDS], scale: f64| -> BTreeMap<String, f64> {
        (0..KINDS)
            .filter(|&k| cnt[k] > 0)
            .map(|k| (KIND_NAMES[k].to_string(), scale * a[k] / cnt[k] as f64))
            .collect()
    };
    let rows = |a: &[f64; KINDS]| {
        let n: usize = ROWS.iter().map(|&k| cnt[k]).sum();
        ROWS.iter().map(|&k| a[k]).sum::<f64>() / n.max(1) as f64
    };
    Metrics {
        split: split.name.clone(),
        jobs,
        mae: rows(&ae),
        mae_by_kind: by(&ae, 1.0),
        mape_pct_by_kind: by(&ape, 100.0),
        mape_pct: 100.0 * rows(&ape),
        decision: Some(decision_quality(ds, split, &|vi, slot| {
            target_to_perf(&renormalise(&preds[vi][slot]))
        })),
    }
}

/// Feasibility from the truth (a site knows what fits: memory), speeds from the prediction: a
/// kind the job fits but the prediction lacks gets a token speed.
pub(crate) fn true_feasibility(p: &mut JobPerf, truth: &JobPerf) {
    for k in 0..KINDS {
        p.speed[k] = match (truth.speed[k], p.speed[k]) {
            (Some(_), Some(v)) => Some(v),
            (Some(_), None) => Some(1e-3),
            (None, _) => None,
        };
    }
}

/// For the first sample of each held-out mix: optimise an A100 with true and with predicted
/// speeds (feasibility from the truth: a site knows what fits), compare.
/// `speeds(vi, slot)`: the speeds the decision is made with for the job in `slot` of the
/// `vi`-th validation sample.
pub fn decision_quality(
    ds: &Dataset,
    split: &Split,
    speeds: &dyn Fn(usize, usize) -> Option<JobPerf>,
) -> DecisionQuality {
    let g = match gpu::gpu("a100-40gb") {
        Ok(g) => g,
        Err(_) => return DecisionQuality::default(),
    };
    let opts = Options::default();
    let mut seen = std::collections::HashSet::new();
    let (mut mixes, mut same, mut regret, mut regret_diff) = (0usize, 0usize, 0.0, 0.0);
    let mut infeasible = 0usize;
    for (vi, &i) in split.val.iter().enumerate() {
        let s = &ds.samples[i];
        if !seen.insert(s.mix) {
            continue;
        }
        let mut truth = Vec::new();
        let mut guess = Vec::new();
        for slot in 0..SLOTS {
            if !s.mps.real[slot] {
                continue;
            }
            let (Some(t), Some(mut p)) = (target_to_perf(&s.targets[slot]), speeds(vi, slot))
            else {
                continue;
            };
            true_feasibility(&mut p, &t);
            truth.push(OptJob::new(format!("s{slot}"), t));
            guess.push(OptJob::new(format!("s{slot}"), p));
        }
        let (Ok(dt), Ok(dp)) = (
            optimize(g, &truth, &Layout::empty(), &opts),
            optimize(g, &guess, &Layout::empty(), &opts),
        ) else {
            infeasible += 1;
            continue;
        };
        // The predicted decision's mean slowdown under the true speeds.
        let mut cost = 0.0;
        for (j, job) in truth.iter().enumerate() {
            if let Some(inst) = dp.instance_of(j) {
                cost += 1.0 / job.perf.speed_on(g, inst.profile as usize).unwrap_or(1e-3);
            }
        }
        let r = (cost / truth.len() as f64 - dt.value).max(0.0);
        mixes += 1;
        regret += r;
        if dp.layout == dt.layout {
            same += 1;
        } else {
            regret_diff += r;
        }
    }
    DecisionQuality {
        mixes,
        infeasible_mixes: infeasible,
        same_layout_pct: 100.0 * same as f64 / mixes.max(1) as f64,
        mean_regret: regret / mixes.max(1) as f64,
        mean_regret_when_different: regret_diff / (mixes - same).max(1) as f64,
    }
}
