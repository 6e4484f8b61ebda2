//! Learning a site's jobs from their own runs. When a job runs on a MIG instance its iteration
//! time there is an *observation*: (workload label, the MPS sample its speeds were predicted
//! from and its slot in it, profile kind, mean seconds per iteration). One observation is a
//! partial label: it says nothing about the kinds the job never ran on, and a single kind
//! fixes no ratio. So per label, the observed kinds' latencies are fitted to the prior model's
//! prediction by one scale factor (least squares in logs) and replace the prediction where
//! observed; kinds never observed keep the prior's value. The sample then trains the next model
//! like any measured one (`merge`). `learn_from_runs` measures the whole loop on the MISO data
//! for a family the model never saw.

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gpu::{self, Layout};
use crate::optimizer::{optimize, OptJob, Options};
use crate::perf::{kind_index, KINDS, KIND_NAMES, SLOTS};

use super::data::SAMPLE_FORMAT;
use super::data::{check_record, record_sample, Label, Sample, SampleRecord, SlotRecord};
use super::eval::{renormalise, true_feasibility};
use super::{target_to_perf, train, Dataset, Metrics, Predictor, PredictorError, Split};
use super::{Target, TrainConfig};

pub const OBSERVATION_FORMAT: &str = "miso-observation/1";

/// One line of `miso-observation/1` (JSON Lines): a job of workload `label` ran on a `kind`
/// instance (`"3g"`) at `iter_s` seconds per iteration; its speeds had been predicted from
/// slot `slot` of the MPS sample `sample`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    pub format: String,
    pub label: String,
    pub sample: SampleRecord,
    pub slot: usize,
    pub kind: String,
    pub iter_s: f64,
}

/// Check an observation as `merge` will read it; `at` names it in errors.
pub fn check_observation(o: &Observation, at: &str) -> Result<(), PredictorError> {
    let bad = |field: &str, why: String| PredictorError::Data(format!("{at}: {field}: {why}"));
    if o.format != OBSERVATION_FORMAT {
        return Err(bad(
            "format",
            format!("`{}` (expected {OBSERVATION_FORMAT})", o.format),
        ));
    }
    if o.label.trim().is_empty() || o.label == "dummy" {
        return Err(bad(
            "label",
            "a workload name is required (not `dummy`)".into(),
        ));
    }
    check_record(&o.sample, &format!("{at}: sample"))?;
    match o.sample.slots.get(o.slot) {
        None => {
            return Err(bad(
                "slot",
                format!(
                    "{} is not a slot of the sample (it has {})",
                    o.slot,
                    o.sample.slots.len()
                ),
            ))
        }
        Some(s) if s.label != o.label => {
            return Err(bad(
                "slot",
                format!("slot {} holds `{}`, not `{}`", o.slot, s.label, o.label),
            ))
        }
        Some(_) => {}
    }
    if !KIND_NAMES.contains(&o.kind.as_str()) {
        return Err(bad(
            "kind",
            format!("unknown kind `{}` (allowed: 1g, 2g, 3g, 4g, 7g)", o.kind),
        ));
    }
    if !(o.iter_s.is_finite() && o.iter_s > 0.0) {
        return Err(bad(
            "iter_s",
            format!("{} is not a positive time", o.iter_s),
        ));
    }
    Ok(())
}

/// Read `miso-observation/1` lines (`file:line` in errors).
pub fn load_observations(path: &Path) -> Result<Vec<Observation>, PredictorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PredictorError::Data(format!("cannot read {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), ln + 1);
        let o: Observation =
            serde_json::from_str(line).map_err(|e| PredictorError::Data(format!("{at}: {e}")))?;
        check_observation(&o, &at)?;
        out.push(o);
    }
    Ok(out)
}

/// What `merge` learned about one label.
#[derive(Clone, Debug, Serialize)]
pub struct LearnedLabel {
    pub label: String,
    pub observations: usize,
    /// Kinds observed, with their mean seconds per iteration.
    pub observed: BTreeMap<String, f64>,
    /// The target it trains with (normalised like the data), per kind.
    pub target: BTreeMap<String, f64>,
}

/// Add the observations' samples to `ds` as new mixes, their observed slots labelled with
/// targets from the observations (filled and scaled by `prior`'s prediction); labels already
/// in `ds` with measured targets keep them. Returns the new sample indexes and the labels.
pub fn merge(
    ds: &mut Dataset,
    obs: &[Observation],
    prior: &Predictor,
) -> Result<(Vec<usize>, Vec<LearnedLabel>), PredictorError> {
    for (i, o) in obs.iter().enumerate() {
        check_observation(o, &format!("observation {i}"))?;
    }
    // Distinct samples, in first-seen order.
    let mut keys = std::collections::HashSet::new();
    let mut records: Vec<&SampleRecord> = Vec::new();
    for o in obs {
        if keys.insert(serde_json::to_string(&o.sample).unwrap_or_default()) {
            records.push(&o.sample);
        }
    }
    let mut labels = ds.labels.clone();
    let first_new = labels.len();
    let mut samples: Vec<Sample> = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        samples.push(record_sample(
            r,
            &mut labels,
            &format!("observation sample {i}"),
        )?);
    }
    // The prior's prediction of every slot of every new sample.
    let ms: Vec<_> = samples.iter().map(|s| s.mps.clone()).collect();
    let preds = prior.predict_targets(&ms);
    // Per label without measured targets: mean prior prediction over its slots, and the
    // observed latencies per kind.
    let mut learned = Vec::new();
    for (li, label) in labels.iter_mut().enumerate() {
        if label.dummy || (li < first_new && label.target.iter().any(Option::is_some)) {
            continue;
        }
        let (mut sum, mut n) = ([0.0; KINDS], [0usize; KINDS]);
        for (s, p) in samples.iter().zip(&preds) {
            for slot in 0..SLOTS {
                if s.mps.real[slot] && s.slots[slot] as usize == li {
                    let t = renormalise(&p[slot]);
                    for k in 0..KINDS {
                        if let Some(v) = t[k] {
                            sum[k] += v;
                            n[k] += 1;
                        }
                    }
                }
            }
        }
        let prior_t: Target = std::array::from_fn(|k| (n[k] > 0).then(|| sum[k] / n[k] as f64));
        let (mut osum, mut on, mut count) = ([0.0; KINDS], [0usize; KINDS], 0usize);
        for o in obs.iter().filter(|o| o.label == label.name) {
            if let Some(k) = KIND_NAMES.iter().position(|n| *n == o.kind) {
                osum[k] += o.iter_s;
                on[k] += 1;
                count += 1;
            }
        }
        let observed: Target = std::array::from_fn(|k| (on[k] > 0).then(|| osum[k] / on[k] as f64));
        let target = renormalise(&fill(&prior_t, &observed));
        label.target = target;
        learned.push(LearnedLabel {
            label: label.name.clone(),
            observations: count,
            observed: kind_values(&observed),
            target: kind_values(&target),
        });
    }
    // Slots take their label's (possibly new) target.
    let base_mix = ds.mixes();
    let first_sample = ds.samples.len();
    for (i, mut s) in samples.into_iter().enumerate() {
        s.mix = base_mix + i;
        for slot in 0..SLOTS {
            let l = &labels[s.slots[slot] as usize];
            if s.mps.real[slot] && !s.targets[slot].iter().any(Option::is_some) {
                s.targets[slot] = l.target;
            }
        }
        ds.samples.push(s);
    }
    ds.labels = labels;
    Ok(((first_sample..ds.samples.len()).collect(), learned))
}

/// The prior's target with observed kinds put in: one scale factor (mean log ratio over the
/// kinds both have) carries the observed latencies onto the prior's scale; observed kinds the
/// prior lacks are scaled alike; without an observation the prior stands.
pub fn fill(prior: &Target, observed: &Target) -> Target {
    let logs: Vec<f64> = (0..KINDS)
        .filter_map(|k| Some(prior[k]?.ln() - observed[k]?.ln()))
        .collect();
    let scale = if logs.is_empty() {
        // Nothing shared: the observed ratios alone, normalised later.
        1.0
    } else {
        (logs.iter().sum::<f64>() / logs.len() as f64).exp()
    };
    std::array::from_fn(|k| match observed[k] {
        Some(o) => Some(o * scale),
        None => prior[k],
    })
}

fn kind_values(t: &Target) -> BTreeMap<String, f64> {
    (0..KINDS)
        .filter_map(|k| Some((KIND_NAMES[k].to_string(), t[k]?)))
        .collect()
}

/// The learn-from-runs experiment for one family of the MISO data.
#[derive(Clone, Debug, Serialize)]
pub struct LearnReport {
    pub family: String,
    /// Mixes holding the family whose runs were observed, and those it is scored on.
    pub observed_mixes: usize,
    pub test_mixes: usize,
    pub observations: usize,
    pub labels: Vec<LearnedLabel>,
    /// The observations themselves (`miso evaluate --observations-out` writes them).
    #[serde(skip)]
    pub observed: Vec<Observation>,
    /// The model trained without the family, on the test mixes.
    pub before: Metrics,
    /// Retrained with the observations, on the test mixes.
    pub after: Metrics,
    /// Trained with the observed mixes fully measured (the family in distribution).
    pub in_distribution: Metrics,
}

/// Train `cfg` without `family`; run the family's jobs of half its mixes (seeded) on the A100
/// layout the optimizer picks from that model's predictions, observing each job's measured
/// iteration time on its slice; retrain with the observations; score the family's jobs of the
/// other half before, after, and with a model that saw the observed mixes fully measured.
pub fn learn_from_runs(
    ds: &Dataset,
    cfg: &TrainConfig,
    family: &str,
    seed: u64,
    bar: &dyn Fn(&str) -> ProgressBar,
) -> Result<LearnReport, PredictorError> {
    let fam_split = ds.family_split(family)?;
    let fam_labels = fam_split.score_labels.clone().unwrap_or_default();
    let mut fam_mixes: Vec<usize> = fam_split.val.iter().map(|&i| ds.samples[i].mix).collect();
    fam_mixes.sort_unstable();
    fam_mixes.dedup();
    fam_mixes.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let half = fam_mixes.len() / 2;
    let observed: std::collections::HashSet<usize> = fam_mixes[..half].iter().copied().collect();
    let (obs_idx, test): (Vec<usize>, Vec<usize>) = fam_split
        .val
        .iter()
        .partition(|&&i| observed.contains(&ds.samples[i].mix));
    let split = |name: &str, train: Vec<usize>| Split {
        name: format!(
            "{name} (family {family}, {} test mixes)",
            fam_mixes.len() - half
        ),
        train,
        val: test.clone(),
        score_labels: Some(fam_labels.clone()),
    };
    let run = |name: &str, d: &Dataset, s: &Split| -> Result<Predictor, PredictorError> {
        let b = bar(name);
        let p = train(d, s, cfg, &b);
        b.finish_and_clear();
        p
    };
    let m0 = run(
        "without the family",
        ds,
        &split("without", fam_split.train.clone()),
    )?;
    let obs = observe(ds, &m0, &obs_idx, &fam_labels)?;
    let mut ds1 = ds.clone();
    let (added, labels) = merge(&mut ds1, &obs, &m0)?;
    let obs_count = obs.len();
    let mut train1 = fam_split.train.clone();
    train1.extend(added);
    let m1 = run(
        "with observations",
        &ds1,
        &split("with observations", train1),
    )?;
    let mut train2 = fam_split.train.clone();
    train2.extend(obs_idx.iter().copied());
    let m2 = run("fully measured", ds, &split("in distribution", train2))?;
    Ok(LearnReport {
        family: family.to_string(),
        observed_mixes: half,
        test_mixes: fam_mixes.len() - half,
        observations: obs_count,
        labels,
        observed: obs,
        before: m0.meta.metrics,
        after: m1.meta.metrics,
        in_distribution: m2.meta.metrics,
    })
}

/// The observations a run of the given samples' mixes (first sample of each) would give:
/// the optimizer places the mix on an A100 from `model`'s predicted speeds (what fits from
/// the measured table), and each job of `labels` reports its measured iteration time on the
/// kind it got. Its label becomes `site-<name>` so the measured targets stay unseen.
fn observe(
    ds: &Dataset,
    model: &Predictor,
    idx: &[usize],
    labels: &[usize],
) -> Result<Vec<Observation>, PredictorError> {
    let g = gpu::gpu("a100-40gb").map_err(|e| PredictorError::Data(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let site = |l: &Label| format!("site-{}", l.name);
    for &i in idx {
        let s = &ds.samples[i];
        if !seen.insert(s.mix) {
            continue;
        }
        let preds = model.predict(&s.mps);
        let mut jobs = Vec::new();
        let mut slot_of = Vec::new();
        for slot in 0..SLOTS {
            let (true, Some(t), Some(mut p)) = (
                s.mps.real[slot],
                target_to_perf(&s.targets[slot]),
                preds[slot].clone(),
            ) else {
                continue;
            };
            true_feasibility(&mut p, &t);
            jobs.push(OptJob::new(format!("s{slot}"), p));
            slot_of.push(slot);
        }
        let Ok(d) = optimize(g, &jobs, &Layout::empty(), &Options::default()) else {
            continue;
        };
        let record = SampleRecord {
            format: SAMPLE_FORMAT.to_string(),
            gpu: "A100-SXM4-40GB".to_string(),
            mix: s.mix,
            slots: (0..SLOTS)
                .map(|slot| {
                    let l = &ds.labels[s.slots[slot] as usize];
                    SlotRecord {
                        label: if labels.contains(&(s.slots[slot] as usize)) {
                            site(l)
                        } else {
                            l.name.clone()
                        },
                        mps: [
                            s.mps.values[0][slot],
                            s.mps.values[1][slot],
                            s.mps.values[2][slot],
                        ],
                        mig: BTreeMap::new(),
                    }
                })
                .collect(),
        };
        for (j, &slot) in slot_of.iter().enumerate() {
            let li = s.slots[slot] as usize;
            if !labels.contains(&li) {
                continue;
            }
            let Some(inst) = d.instance_of(j) else {
                continue;
            };
            let cs = g.profiles[inst.profile as usize].compute_slices;
            let Some(k) = kind_index(cs) else { continue };
            let name = &ds.labels[li].name;
            let Some(iter_s) = crate::perf::workload(name).ok().and_then(|w| w.iter_s[k]) else {
                continue;
            };
            out.push(Observation {
                format: OBSERVATION_FORMAT.to_string(),
                label: site(&ds.labels[li]),
                sample: record.clone(),
                slot,
                kind: KIND_NAMES[k].to_string(),
                iter_s,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_scales_observed_ratios_onto_the_prior() {
        let prior: Target = [Some(3.0), Some(2.0), Some(1.0), Some(0.9), Some(0.6)];
        // Observed 3g and 7g in seconds: ratio 7g/3g = 0.5 (the prior says 0.6).
        let obs: Target = [None, None, Some(0.2), None, Some(0.1)];
        let t = fill(&prior, &obs);
        let r = t[4].unwrap_or(0.0) / t[2].unwrap_or(1.0);
        assert!((r - 0.5).abs() < 1e-12, "{t:?}");
        // Unobserved kinds keep the prior.
        assert_eq!(t[3], Some(0.9));
        // One observed kind: no ratio, the prior stands.
        let one = fill(&prior, &[None, None, Some(0.2), None, None]);
        assert!((one[2].unwrap_or(0.0) - 1.0).abs() < 1e-12);
    }
}
