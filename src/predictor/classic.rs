//! Classical baselines with linfa: ordinary least squares per profile kind on the per-job
//! features, and a decision tree that identifies the workload from its features (linfa's trees
//! classify only; the class's measured latencies are the prediction).

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use linfa_trees::DecisionTree;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::perf::KINDS;

use super::PredictorError;

/// One linear model per profile kind: `latency = intercept + coef · features`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinearModel {
    pub coef: Vec<Vec<f64>>,
    pub intercept: Vec<f64>,
}

/// Fit on rows of `d` features; `t[i][k]` is the target of row `i` on kind `k` (rows without
/// a target on a kind are left out of that kind's fit).
pub fn fit_linear(
    x: &[f64],
    d: usize,
    t: &[[Option<f64>; KINDS]],
) -> Result<LinearModel, PredictorError> {
    let mut coef = Vec::new();
    let mut intercept = Vec::new();
    for k in 0..KINDS {
        let rows: Vec<usize> = (0..t.len()).filter(|&i| t[i][k].is_some()).collect();
        if rows.len() <= d {
            coef.push(vec![0.0; d]);
            intercept
                .push(rows.iter().filter_map(|&i| t[i][k]).sum::<f64>() / rows.len().max(1) as f64);
            continue;
        }
        // Leave out features that are constant on these rows (small data sets have some,
        // e.g. an always-empty co-runner column), which would make the system singular.
        let keep: Vec<usize> = (0..d)
            .filter(|&j| {
                let first = x[rows[0] * d + j];
                rows.iter().any(|&i| (x[i * d + j] - first).abs() > 1e-12)
            })
            .collect();
        let mut xa = Array2::<f64>::zeros((rows.len(), keep.len()));
        let mut ya = Array1::<f64>::zeros(rows.len());
        for (r, &i) in rows.iter().enumerate() {
            for (c, &j) in keep.iter().enumerate() {
                xa[[r, c]] = x[i * d + j];
            }
            ya[r] = t[i][k].unwrap_or(0.0);
        }
        let mean = ya.mean().unwrap_or(0.0);
        let mut full = vec![0.0; d];
        match LinearRegression::default().fit(&linfa::Dataset::new(xa, ya)) {
            Ok(fitted) => {
                for (c, &j) in keep.iter().enumerate() {
                    full[j] = fitted.params()[c];
                }
                coef.push(full);
                intercept.push(fitted.intercept());
            }
            // Still singular (collinear features): the mean is the least-squares constant.
            Err(_) => {
                coef.push(full);
                intercept.push(mean);
            }
        }
    }
    Ok(LinearModel { coef, intercept })
}

impl LinearModel {
    pub fn predict(&self, f: &[f64]) -> [f64; KINDS] {
        let mut out = [0.0; KINDS];
        for k in 0..KINDS {
            out[k] =
                self.intercept[k] + self.coef[k].iter().zip(f).map(|(a, b)| a * b).sum::<f64>();
        }
        out
    }
}

/// A decision tree over workload classes.
pub type TreeModel = DecisionTree<f64, usize>;

/// Fit a classification tree on rows of `d` features with class labels `y`.
pub fn fit_tree(
    x: &[f64],
    d: usize,
    y: &[usize],
    max_depth: usize,
) -> Result<TreeModel, PredictorError> {
    let xa = Array2::from_shape_vec((y.len(), d), x.to_vec())
        .map_err(|e| PredictorError::Model(e.to_string()))?;
    let ya = Array1::from_vec(y.to_vec());
    DecisionTree::params()
        .max_depth(Some(max_depth))
        .min_weight_leaf(2.0)
        .fit(&linfa::Dataset::new(xa, ya))
        .map_err(|e| PredictorError::Model(format!("decision tree: {e}")))
}

/// Predicted class of each row.
pub fn tree_predict(model: &TreeModel, x: &[f64], d: usize) -> Vec<usize> {
    let n = x.len() / d;
    match Array2::from_shape_vec((n, d), x.to_vec()) {
        Ok(xa) => model.predict(&xa).to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Nearest neighbours on the job's own MPS column and its co-runners' summaries (the first
/// [`KNN_FEATURES`] per-job features, standardised): the prediction is, per kind, the median of
/// the `k` nearest training jobs' targets. A baseline: it memorises its training rows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KnnModel {
    pub k: usize,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Standardised training rows, `KNN_FEATURES` each.
    pub rows: Vec<f64>,
    pub targets: Vec<[Option<f64>; KINDS]>,
}

/// Own column (3), co-runner count (1), co-runner mean/min/max per level (9), dummy mean (3).
pub const KNN_FEATURES: usize = 16;

pub fn fit_knn(x: &[f64], d: usize, t: &[[Option<f64>; KINDS]], k: usize) -> KnnModel {
    let sub: Vec<f64> = x
        .chunks(d)
        .flat_map(|r| r[..KNN_FEATURES].to_vec())
        .collect();
    let sc = super::Scaler::fit(&sub, KNN_FEATURES);
    let rows = sub
        .chunks(KNN_FEATURES)
        .flat_map(|r| {
            (0..KNN_FEATURES)
                .map(|j| (r[j] - sc.mean[j]) / sc.std[j])
                .collect::<Vec<_>>()
        })
        .collect();
    KnnModel {
        k: k.max(1),
        mean: sc.mean,
        std: sc.std,
        rows,
        targets: t.to_vec(),
    }
}

impl KnnModel {
    pub fn predict(&self, f: &[f64]) -> [Option<f64>; KINDS] {
        let q: Vec<f64> = (0..KNN_FEATURES)
            .map(|j| (f[j] - self.mean[j]) / self.std[j])
            .collect();
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(self.k + 1);
        for (i, r) in self.rows.chunks(KNN_FEATURES).enumerate() {
            let d: f64 = r.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
            if best.len() < self.k || d < best[best.len() - 1].0 {
                let pos = best.partition_point(|x| x.0 <= d);
                best.insert(pos, (d, i));
                best.truncate(self.k);
            }
        }
        let mut out = [None; KINDS];
        for (kind, o) in out.iter_mut().enumerate() {
            let mut v: Vec<f64> = best
                .iter()
                .filter_map(|&(_, i)| self.targets[i][kind])
                .collect();
            if v.len() * 2 < best.len() {
                continue;
            }
            v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            *o = v.get(v.len() / 2).copied();
        }
        out
    }
}
