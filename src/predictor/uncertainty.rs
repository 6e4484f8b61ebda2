//! Knowing when the predictor does not know: a band per job and profile kind, calibrated into
//! an interval by split conformal prediction on leave-one-family-out (LOFO) residuals, the
//! coverage of those intervals on families the model never saw, and the decision objectives
//! that use them (expected slowdown, worst case of the interval) with their regret.
//!
//! Conformalised quantile bands (Romano et al., 2019): a model's raw band is `[lo, hi]` (for
//! the workload classifier, quantiles `q` and `1 - q` of its mixture over training workloads;
//! for a regression, its point), the conformity score of a job is `max(lo - y, y - hi)`, and
//! the margin added on both sides is the `ceil((n + 1) level) / n` empirical quantile of the
//! scores of jobs from held-out families. Coverage is measured nested: the interval of family
//! F's jobs uses the margin calibrated on the other families only.

use std::collections::BTreeMap;
use std::str::FromStr;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::perf::{JobPerf, KINDS, KIND_NAMES, SLOTS};

use super::data::{Label, Split};
use super::eval::{decision_quality, ROWS};
use super::{target_to_perf, train, Dataset, DecisionQuality, Metrics, PredictorError, Target};
use super::{Predictor, TrainConfig};

/// Default mixture quantile of a raw band (5 % and 95 %).
pub const BAND_QUANTILE: f64 = 0.05;
/// Default interval level.
pub const LEVEL: f64 = 0.9;

/// One job's prediction on every kind, renormalised like the targets: the point, a raw band
/// and the expected slowdown (latency on a kind over latency on 7g) under the model's
/// predictive distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub point: Target,
    pub lo: Target,
    pub hi: Target,
    pub slowdown: [Option<f64>; KINDS],
}

impl Band {
    /// A band of width zero at `point` (regression models).
    pub fn at(point: Target) -> Band {
        let mut slowdown = [None; KINDS];
        if let Some(w) = point[KINDS - 1].filter(|w| *w > 0.0) {
            for k in 0..KINDS {
                slowdown[k] = point[k].map(|v| v / w);
            }
        }
        Band {
            point,
            lo: point,
            hi: point,
            slowdown,
        }
    }
}

/// What the optimizer is given as a job's speeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Estimate {
    /// The point prediction (MISO's way).
    Point,
    /// The expected slowdown under the predictive distribution: the optimizer's objective is a
    /// sum of slowdowns, so this minimises the expected objective.
    Expected,
    /// The worst case of the calibrated interval (latency at its top, 7g at its bottom): the
    /// best layout for the worst speeds the interval allows.
    Worst,
}

impl Estimate {
    pub const ALL: [Estimate; 3] = [Estimate::Point, Estimate::Expected, Estimate::Worst];

    pub fn name(self) -> &'static str {
        match self {
            Estimate::Point => "point",
            Estimate::Expected => "expected",
            Estimate::Worst => "worst",
        }
    }
}

impl FromStr for Estimate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Estimate::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| format!("unknown estimate `{s}` (allowed: point, expected, worst)"))
    }
}

/// Calibrated intervals of a model (in `model.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    /// Intended coverage (0.9: nine jobs in ten have their true value inside).
    pub level: f64,
    /// The mixture quantile of the raw band (`q`, `1 - q`).
    pub band_quantile: f64,
    /// Margin added below the band and above it, per kind (`"7g"`).
    pub margin: BTreeMap<String, f64>,
    /// What the margins were calibrated on.
    pub calibrated_on: String,
    /// Coverage measured on held-out families (nested: each family's interval calibrated
    /// without it), per kind and `"rows"` (7g/4g/3g pooled).
    pub lofo_coverage: BTreeMap<String, f64>,
}

impl Intervals {
    /// The interval `(lo, hi)` of a band.
    pub fn apply(&self, b: &Band) -> (Target, Target) {
        apply_margin(b, &self.margin_array())
    }

    fn margin_array(&self) -> [f64; KINDS] {
        std::array::from_fn(|k| self.margin.get(KIND_NAMES[k]).copied().unwrap_or(0.0))
    }
}

fn apply_margin(b: &Band, m: &[f64; KINDS]) -> (Target, Target) {
    let lo = std::array::from_fn(|k| b.lo[k].map(|v| (v - m[k]).max(1e-3)));
    let hi = std::array::from_fn(|k| b.hi[k].map(|v| v + m[k]));
    (lo, hi)
}

/// Per kind, the `q`-quantile of the classes' values weighted by `p` (classes without a value
/// for the kind left out); `None` where less than half the probability has a value.
pub fn mixture_quantile(p: &[f32], classes: &[Label], q: f64) -> Target {
    let mut out = [None; KINDS];
    for (k, o) in out.iter_mut().enumerate() {
        let mut vals: Vec<(f64, f64)> = classes
            .iter()
            .zip(p)
            .filter_map(|(c, &w)| c.target[k].map(|v| (v, w as f64)))
            .collect();
        let mass: f64 = vals.iter().map(|x| x.1).sum();
        if mass < 0.5 || vals.is_empty() {
            continue;
        }
        vals.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let mut acc = 0.0;
        for (v, w) in &vals {
            acc += w;
            if acc >= mass * q {
                *o = Some(*v);
                break;
            }
        }
        if o.is_none() {
            *o = vals.last().map(|x| x.0);
        }
    }
    out
}

/// Per kind, the expected slowdown (latency over 7g latency) under the class mixture `p`.
pub fn mixture_slowdown(p: &[f32], classes: &[Label]) -> [Option<f64>; KINDS] {
    let mut out = [None; KINDS];
    for (k, o) in out.iter_mut().enumerate() {
        let (mut mass, mut sum) = (0.0, 0.0);
        for (c, &w) in classes.iter().zip(p) {
            if let (Some(v), Some(w7)) = (c.target[k], c.target[KINDS - 1]) {
                if w7 > 0.0 {
                    mass += w as f64;
                    sum += w as f64 * v / w7;
                }
            }
        }
        if mass >= 0.5 {
            *o = Some(sum / mass);
        }
    }
    out
}

/// The speeds a band gives the optimizer under `objective` (`Worst` without intervals: the
/// point).
pub fn speeds(b: &Band, objective: Estimate, iv: Option<&Intervals>) -> Option<JobPerf> {
    match (objective, iv) {
        (Estimate::Point, _) | (Estimate::Worst, None) => target_to_perf(&b.point),
        (Estimate::Expected, _) => slowdown_perf(&b.slowdown).or_else(|| target_to_perf(&b.point)),
        (Estimate::Worst, Some(iv)) => worst_perf(b, &iv.margin_array()),
    }
}

fn slowdown_perf(sd: &[Option<f64>; KINDS]) -> Option<JobPerf> {
    sd[KINDS - 1]?;
    let speed = std::array::from_fn(|k| sd[k].filter(|v| *v > 0.0).map(|v| 1.0 / v));
    Some(JobPerf {
        speed,
        memory_mb: None,
    })
}

fn worst_perf(b: &Band, m: &[f64; KINDS]) -> Option<JobPerf> {
    let (lo, hi) = apply_margin(b, m);
    let l7 = lo[KINDS - 1]?;
    let mut sd: [Option<f64>; KINDS] = std::array::from_fn(|k| hi[k].map(|v| v / l7));
    sd[KINDS - 1] = Some(1.0);
    slowdown_perf(&sd)
}

/// One leave-one-family-out fold: the model trained without `family`, its metrics on the
/// family's jobs, and its bands on every validation sample of the split.
pub struct Fold {
    pub family: String,
    pub metrics: Metrics,
    pub split: Split,
    pub bands: Vec<[Band; SLOTS]>,
}

/// Train `cfg` once per family of `ds` without it; keep each fold's bands (quantile `q`).
/// `bar(name, len)` makes the progress bar of one fold.
pub fn lofo(
    ds: &Dataset,
    cfg: &TrainConfig,
    q: f64,
    bar: &dyn Fn(&str) -> ProgressBar,
) -> Result<Vec<Fold>, PredictorError> {
    let mut folds = Vec::new();
    for fam in ds.families() {
        let split = ds.family_split(&fam)?;
        let b = bar(&fam);
        let p: Predictor = train(ds, &split, cfg, &b)?;
        b.finish_and_clear();
        let ms = ds.matrices(&split.val);
        let bands = p.predict_bands(&ms, q);
        folds.push(Fold {
            family: fam,
            metrics: p.meta.metrics,
            split,
            bands,
        });
    }
    Ok(folds)
}

/// The scored jobs of a fold: (validation index, slot).
fn scored(ds: &Dataset, f: &Fold) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (vi, &i) in f.split.val.iter().enumerate() {
        let s = &ds.samples[i];
        for slot in 0..SLOTS {
            if s.mps.real[slot] && f.split.scores(s.slots[slot]) {
                out.push((vi, slot));
            }
        }
    }
    out
}

/// Conformity scores per kind of a fold's scored jobs.
fn scores(ds: &Dataset, f: &Fold) -> [Vec<f64>; KINDS] {
    let mut out: [Vec<f64>; KINDS] = Default::default();
    for (vi, slot) in scored(ds, f) {
        let y = ds.samples[f.split.val[vi]].targets[slot];
        let b = &f.bands[vi][slot];
        for k in 0..KINDS {
            if let (Some(y), Some(lo), Some(hi)) = (y[k], b.lo[k], b.hi[k]) {
                out[k].push((lo - y).max(y - hi));
            }
        }
    }
    out
}

/// The split-conformal quantile: the `ceil((n + 1) level)`-th smallest score (the largest
/// when that exceeds n; 0 without scores).
fn conformal_quantile(mut s: Vec<f64>, level: f64) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = s.len();
    let r = (((n + 1) as f64) * level).ceil() as usize;
    s[r.clamp(1, n) - 1].max(0.0)
}

fn margins(per_fold: &[[Vec<f64>; KINDS]], skip: Option<usize>, level: f64) -> [f64; KINDS] {
    std::array::from_fn(|k| {
        let pooled: Vec<f64> = per_fold
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .flat_map(|(_, s)| s[k].iter().copied())
            .collect();
        conformal_quantile(pooled, level)
    })
}

/// One fold of the LOFO report.
#[derive(Clone, Debug, Serialize)]
pub struct FoldReport {
    pub family: String,
    pub metrics: Metrics,
    /// Share of the family's jobs inside the interval calibrated without the family, per
    /// kind and `"rows"` (7g/4g/3g).
    pub coverage: BTreeMap<String, f64>,
    /// Mean interval width per kind.
    pub width: BTreeMap<String, f64>,
    /// Layout decisions on the family's mixes, per objective.
    pub decisions: BTreeMap<String, DecisionQuality>,
}

/// Leave-one-family-out: per-family error, interval coverage and decision regret per
/// objective, and the intervals calibrated on all families.
#[derive(Clone, Debug, Serialize)]
pub struct LofoReport {
    pub folds: Vec<FoldReport>,
    pub intervals: Intervals,
}

/// Calibrate on all folds and measure each fold with margins calibrated without it.
pub fn report(ds: &Dataset, folds: Vec<Fold>, level: f64, q: f64) -> LofoReport {
    let per_fold: Vec<[Vec<f64>; KINDS]> = folds.iter().map(|f| scores(ds, f)).collect();
    let mut reports = Vec::new();
    let (mut rows_in, mut rows_n) = (0usize, 0usize);
    let (mut kind_in, mut kind_n) = ([0usize; KINDS], [0usize; KINDS]);
    for (fi, f) in folds.iter().enumerate() {
        let m = margins(&per_fold, Some(fi), level);
        let (mut cov, mut width) = (BTreeMap::new(), BTreeMap::new());
        let (mut fr_in, mut fr_n) = (0usize, 0usize);
        for k in 0..KINDS {
            let s = &per_fold[fi][k];
            if s.is_empty() {
                continue;
            }
            let inside = s.iter().filter(|v| **v <= m[k]).count();
            cov.insert(KIND_NAMES[k].to_string(), inside as f64 / s.len() as f64);
            kind_in[k] += inside;
            kind_n[k] += s.len();
            if ROWS.contains(&k) {
                fr_in += inside;
                fr_n += s.len();
            }
        }
        rows_in += fr_in;
        rows_n += fr_n;
        cov.insert("rows".to_string(), fr_in as f64 / fr_n.max(1) as f64);
        let jobs = scored(ds, f);
        for k in 0..KINDS {
            let w: Vec<f64> = jobs
                .iter()
                .filter_map(|&(vi, slot)| {
                    let (lo, hi) = apply_margin(&f.bands[vi][slot], &m);
                    Some(hi[k]? - lo[k]?)
                })
                .collect();
            if !w.is_empty() {
                width.insert(
                    KIND_NAMES[k].to_string(),
                    w.iter().sum::<f64>() / w.len() as f64,
                );
            }
        }
        let iv = Intervals {
            level,
            band_quantile: q,
            margin: kind_map(&m),
            calibrated_on: String::new(),
            lofo_coverage: BTreeMap::new(),
        };
        let decisions = Estimate::ALL
            .into_iter()
            .map(|o| {
                let dq = decision_quality(ds, &f.split, &|vi, slot| {
                    speeds(&f.bands[vi][slot], o, Some(&iv))
                });
                (o.name().to_string(), dq)
            })
            .collect();
        reports.push(FoldReport {
            family: f.family.clone(),
            metrics: f.metrics.clone(),
            coverage: cov,
            width,
            decisions,
        });
    }
    let m = margins(&per_fold, None, level);
    let mut lofo_coverage: BTreeMap<String, f64> = (0..KINDS)
        .filter(|&k| kind_n[k] > 0)
        .map(|k| {
            (
                KIND_NAMES[k].to_string(),
                kind_in[k] as f64 / kind_n[k] as f64,
            )
        })
        .collect();
    lofo_coverage.insert("rows".to_string(), rows_in as f64 / rows_n.max(1) as f64);
    let jobs: usize = per_fold.iter().map(|s| s[KINDS - 1].len()).sum();
    LofoReport {
        folds: reports,
        intervals: Intervals {
            level,
            band_quantile: q,
            margin: kind_map(&m),
            calibrated_on: format!(
                "leave-one-family-out on {} ({} folds, {jobs} held-out jobs)",
                ds.source,
                folds.len()
            ),
            lofo_coverage,
        },
    }
}

fn kind_map(m: &[f64; KINDS]) -> BTreeMap<String, f64> {
    (0..KINDS)
        .map(|k| (KIND_NAMES[k].to_string(), m[k]))
        .collect()
}

/// Coverage of a model's calibrated intervals on the validation part of `split` (per kind and
/// `"rows"`); `None` when the model has no intervals.
pub fn coverage(p: &Predictor, ds: &Dataset, split: &Split) -> Option<BTreeMap<String, f64>> {
    let iv = p.meta.intervals.as_ref()?;
    let ms = ds.matrices(&split.val);
    let bands = p.predict_bands(&ms, iv.band_quantile);
    let (mut n_in, mut n) = ([0usize; KINDS], [0usize; KINDS]);
    for (vi, &i) in split.val.iter().enumerate() {
        let s = &ds.samples[i];
        for slot in 0..SLOTS {
            if !s.mps.real[slot] {
                continue;
            }
            let (lo, hi) = iv.apply(&bands[vi][slot]);
            for k in 0..KINDS {
                if let (Some(y), Some(l), Some(h)) = (s.targets[slot][k], lo[k], hi[k]) {
                    n[k] += 1;
                    if l <= y && y <= h {
                        n_in[k] += 1;
                    }
                }
            }
        }
    }
    let mut out: BTreeMap<String, f64> = (0..KINDS)
        .filter(|&k| n[k] > 0)
        .map(|k| (KIND_NAMES[k].to_string(), n_in[k] as f64 / n[k] as f64))
        .collect();
    let (a, b) = ROWS
        .iter()
        .fold((0, 0), |(a, b), &k| (a + n_in[k], b + n[k]));
    out.insert("rows".to_string(), a as f64 / b.max(1) as f64);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformal_quantile_is_the_finite_sample_rank() {
        let s: Vec<f64> = (1..=9).map(|v| v as f64).collect();
        // n = 9, level 0.9: rank ceil(10 * 0.9) = 9 -> the largest.
        assert_eq!(conformal_quantile(s.clone(), 0.9), 9.0);
        // level 0.5: rank 5.
        assert_eq!(conformal_quantile(s, 0.5), 5.0);
        assert_eq!(conformal_quantile(Vec::new(), 0.9), 0.0);
        // Negative scores (inside the band) give no margin.
        assert_eq!(conformal_quantile(vec![-0.2, -0.1], 0.9), 0.0);
    }

    fn label(t: [f64; KINDS]) -> Label {
        Label {
            name: "x".into(),
            family: "x".into(),
            dummy: false,
            target: t.map(Some),
        }
    }

    #[test]
    fn mixture_quantiles_and_expected_slowdown() {
        let classes = vec![
            label([3.0, 2.0, 1.0, 0.9, 0.5]),
            label([3.0, 2.0, 1.0, 0.8, 0.8]),
        ];
        let p = [0.75f32, 0.25];
        let med = mixture_quantile(&p, &classes, 0.5);
        assert_eq!(med[4], Some(0.5));
        assert_eq!(mixture_quantile(&p, &classes, 0.05)[4], Some(0.5));
        assert_eq!(mixture_quantile(&p, &classes, 0.95)[4], Some(0.8));
        let sd = mixture_slowdown(&p, &classes);
        // 3g: 0.75 * 1/0.5 + 0.25 * 1/0.8
        assert!((sd[2].unwrap_or(0.0) - (1.5 + 0.3125)).abs() < 1e-9);
        assert!((sd[4].unwrap_or(0.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn worst_case_speeds_are_never_faster_than_the_point() {
        let point = [Some(3.0), Some(2.0), Some(1.0), Some(0.9), Some(0.6)];
        let b = Band {
            point,
            lo: [Some(2.8), Some(1.9), Some(1.0), Some(0.85), Some(0.5)],
            hi: [Some(3.2), Some(2.1), Some(1.0), Some(0.95), Some(0.7)],
            slowdown: Band::at(point).slowdown,
        };
        let iv = Intervals {
            level: 0.9,
            band_quantile: 0.05,
            margin: kind_map(&[0.1; KINDS]),
            calibrated_on: String::new(),
            lofo_coverage: BTreeMap::new(),
        };
        let pt = speeds(&b, Estimate::Point, Some(&iv)).unwrap_or_else(|| panic!("point"));
        let w = speeds(&b, Estimate::Worst, Some(&iv)).unwrap_or_else(|| panic!("worst"));
        for k in 0..KINDS - 1 {
            assert!(w.speed[k] < pt.speed[k], "kind {k}: {:?} vs {:?}", w, pt);
        }
        assert_eq!(w.speed[KINDS - 1], Some(1.0));
        // Expected on a point band is the point.
        let e = speeds(&Band::at(point), Estimate::Expected, None).unwrap_or_else(|| panic!());
        for k in 0..KINDS {
            let (a, b) = (e.speed[k].unwrap_or(0.0), pt.speed[k].unwrap_or(0.0));
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!("worst".parse::<Estimate>(), Ok(Estimate::Worst));
        assert!("best".parse::<Estimate>().is_err());
    }
}
