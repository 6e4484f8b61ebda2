//! The learned heart of miso: from the MPS measurement of a co-located mix to each job's
//! latency (hence speed) on every MIG profile kind. Data loading and splits (`data`), the
//! networks on burn (`nets`), linfa baselines (`classic`), training, evaluation and model files
//! under `models/<name>/` (`model.json` + weights).
//!
//! Depends on `perf` (matrices, features, speed vectors) and, for decision-quality metrics, on
//! `optimizer`. Never reads a clock except to report training time.

pub mod classic;
pub mod data;
mod eval;
pub mod nets;
pub mod observe;
mod train;
pub mod uncertainty;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::perf::{JobPerf, MpsMatrix, FEATURE_VERSION, JOB_FEATURES, KINDS, SLOTS};

pub use data::{Dataset, Label, Split, Target};
pub use eval::{evaluate, renormalise, DecisionQuality, Metrics};
pub use train::{train, TrainConfig};
pub use uncertainty::{Band, Estimate, Intervals};

/// Model file format version.
pub const MODEL_FORMAT: &str = "miso-model/1";
/// Where the shipped default model lives (relative to the repository root).
pub const DEFAULT_MODEL: &str = "models/default";

/// Errors of the predictor: bad data, bad model files.
#[derive(Debug, thiserror::Error)]
pub enum PredictorError {
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Model(String),
}

/// The model architectures `miso train --arch` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// MISO's U-Net over the whole 3×7 MPS matrix (regression, all five kinds).
    Unet,
    /// Per-job MLP identifying the workload from its own MPS column and its co-runners'.
    Mlp,
    /// Ordinary least squares per kind on the per-job features (linfa).
    Linear,
    /// Decision tree identifying the workload (linfa).
    Tree,
    /// k nearest neighbours on the job's own column and co-runner summaries (a baseline).
    Knn,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Unet => "unet",
            Arch::Mlp => "mlp",
            Arch::Linear => "linear",
            Arch::Tree => "tree",
            Arch::Knn => "knn",
        }
    }
}

/// Feature standardisation (per feature mean and standard deviation of the training rows).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Scaler {
    pub fn fit(x: &[f64], d: usize) -> Scaler {
        let n = (x.len() / d).max(1) as f64;
        let mut mean = vec![0.0; d];
        let mut var = vec![0.0; d];
        for row in x.chunks(d) {
            for j in 0..d {
                mean[j] += row[j] / n;
            }
        }
        for row in x.chunks(d) {
            for j in 0..d {
                var[j] += (row[j] - mean[j]).powi(2) / n;
            }
        }
        Scaler {
            mean,
            std: var.iter().map(|v| v.sqrt().max(1e-6)).collect(),
        }
    }

    pub fn apply(&self, x: &[f64]) -> Vec<f32> {
        let d = self.mean.len();
        x.iter()
            .enumerate()
            .map(|(i, v)| ((v - self.mean[i % d]) / self.std[i % d]) as f32)
            .collect()
    }
}

/// `models/<name>/model.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format: String,
    pub name: String,
    pub arch: Arch,
    pub feature_version: u32,
    /// GPU model the targets were measured on.
    pub gpu: String,
    pub data_source: String,
    pub data_fingerprint: String,
    pub split: String,
    pub seed: u64,
    pub epochs: usize,
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Networks averaged (mlp).
    #[serde(default = "one")]
    pub ensemble: usize,
    pub params: usize,
    pub train_seconds: f64,
    /// The command that made the model.
    pub recipe: String,
    pub metrics: Metrics,
    /// Workload classes (mlp, tree): each class's measured targets.
    #[serde(default)]
    pub classes: Vec<Label>,
    #[serde(default)]
    pub scaler: Option<Scaler>,
    #[serde(default)]
    pub linear: Option<classic::LinearModel>,
    /// Calibrated prediction intervals (`miso evaluate --lofo --calibrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Intervals>,
}

fn one() -> usize {
    1
}

enum Inner {
    /// An ensemble: class probabilities are averaged.
    Mlp(Vec<nets::Mlp>),
    Unet(nets::Unet),
    Linear(classic::LinearModel),
    Tree(Box<classic::TreeModel>),
    Knn(classic::KnnModel),
}

/// A trained model, ready to predict.
pub struct Predictor {
    pub meta: ModelMeta,
    inner: Inner,
    /// What [`Predictor::predict`] answers with (a setting of its user, not of the model):
    /// the point prediction unless set otherwise (`miso serve --estimate`).
    pub estimate: Estimate,
}

/// Per slot of one matrix, the predicted target (normalised latency per kind).
pub type SlotPredictions = [Target; SLOTS];

/// Predicted speeds of the real jobs of a mix, by slot (`None` for dummy slots).
pub type SpeedTable = [Option<JobPerf>; SLOTS];

/// Turn a predicted target into speeds relative to the whole (7g) GPU.
pub fn target_to_perf(t: &Target) -> Option<JobPerf> {
    let whole = t[KINDS - 1]?;
    let mut speed = [None; KINDS];
    for k in 0..KINDS {
        speed[k] = t[k].filter(|v| *v > 0.0).map(|v| whole / v);
    }
    Some(JobPerf {
        speed,
        memory_mb: None,
    })
}

/// Choose, per kind, the value minimising the expected absolute error under class
/// probabilities `p` (the weighted median of the classes' values); a kind is feasible when
/// classes holding at least half of the probability fit it.
pub fn bayes_decode(p: &[f32], classes: &[Label]) -> Target {
    uncertainty::mixture_quantile(p, classes, 0.5)
}

fn features_f64(ms: &[MpsMatrix]) -> Vec<f64> {
    let mut x = Vec::with_capacity(ms.len() * SLOTS * JOB_FEATURES);
    for m in ms {
        for s in 0..SLOTS {
            x.extend_from_slice(&m.job_features(s));
        }
    }
    x
}

/// U-Net input for matrices: `[N, 2, 3, 7]` (values, real-job mask), flattened.
pub(crate) fn unet_input(ms: &[MpsMatrix]) -> Vec<f32> {
    let mut x = Vec::with_capacity(ms.len() * 2 * 3 * SLOTS);
    for m in ms {
        for row in &m.values {
            x.extend(row.iter().map(|v| *v as f32));
        }
        for _ in 0..3 {
            x.extend(m.real.iter().map(|r| if *r { 1.0f32 } else { 0.0 }));
        }
    }
    x
}

impl Predictor {
    /// Predicted normalised latency on every kind for every slot of each matrix (filler slots
    /// get the dummy job's measured target).
    pub fn predict_targets(&self, ms: &[MpsMatrix]) -> Vec<SlotPredictions> {
        with_fillers(self.predict_raw(ms), ms)
    }

    /// The classifier's point predictions from its class probabilities (see `predict_raw`).
    fn decode(&self, probs: &[Vec<f32>], n: usize) -> Vec<SlotPredictions> {
        per_slot(n, |i| bayes_decode(&probs[i], &self.meta.classes))
    }

    fn predict_raw(&self, ms: &[MpsMatrix]) -> Vec<SlotPredictions> {
        match &self.inner {
            Inner::Unet(u) => {
                let out = nets::unet_predict(u, &unet_input(ms));
                (0..ms.len())
                    .map(|i| {
                        let mut p = [[None; KINDS]; SLOTS];
                        for (s, ps) in p.iter_mut().enumerate() {
                            for (k, v) in ps.iter_mut().enumerate() {
                                *v = out
                                    .get(i * KINDS * SLOTS + k * SLOTS + s)
                                    .map(|x| (*x as f64).max(1e-3));
                            }
                        }
                        p
                    })
                    .collect()
            }
            Inner::Mlp(m) => {
                let probs = self.ensemble_probs(m, ms);
                self.decode(&probs, ms.len())
            }
            Inner::Linear(l) => {
                let x = features_f64(ms);
                per_slot(ms.len(), |i| {
                    l.predict(&x[i * JOB_FEATURES..(i + 1) * JOB_FEATURES])
                        .map(|v| Some(v.max(1e-3)))
                })
            }
            Inner::Knn(k) => {
                let x = features_f64(ms);
                per_slot(ms.len(), |i| {
                    k.predict(&x[i * JOB_FEATURES..(i + 1) * JOB_FEATURES])
                })
            }
            Inner::Tree(t) => {
                let x = features_f64(ms);
                let cls = classic::tree_predict(t, &x, JOB_FEATURES);
                per_slot(ms.len(), |i| {
                    cls.get(i)
                        .and_then(|c| self.meta.classes.get(*c))
                        .map(|c| c.target)
                        .unwrap_or([None; KINDS])
                })
            }
        }
    }

    /// Class probabilities of every slot of `ms`, averaged over the ensemble's networks.
    fn ensemble_probs(&self, m: &[nets::Mlp], ms: &[MpsMatrix]) -> Vec<Vec<f32>> {
        let x = features_f64(ms);
        let xs = match self.meta.scaler.as_ref() {
            Some(s) => s.apply(&x),
            None => x.iter().map(|v| *v as f32).collect(),
        };
        let Some(first) = m.first() else {
            return Vec::new();
        };
        let mut probs = nets::mlp_probs(first, &xs, JOB_FEATURES);
        for other in &m[1..] {
            for (acc, p) in probs
                .iter_mut()
                .zip(nets::mlp_probs(other, &xs, JOB_FEATURES))
            {
                for (a, b) in acc.iter_mut().zip(p) {
                    *a += b;
                }
            }
        }
        let k = m.len() as f32;
        for row in probs.iter_mut() {
            for v in row.iter_mut() {
                *v /= k;
            }
        }
        probs
    }

    /// Point prediction and raw band of every slot (see [`Band`]): a classifier's band is the
    /// `q` and `1 - q` quantiles of its workload mixture and its expected slowdown the
    /// mixture's mean; a regression's band is its point. Renormalised like the targets (the
    /// band by the point's divisor). Filler slots get the dummy's target.
    pub fn predict_bands(&self, ms: &[MpsMatrix], q: f64) -> Vec<[Band; SLOTS]> {
        // A classifier's networks run once: its point is decoded from the same probabilities.
        let probs = match &self.inner {
            Inner::Mlp(m) => Some(self.ensemble_probs(m, ms)),
            _ => None,
        };
        let points = match &probs {
            Some(p) => with_fillers(self.decode(p, ms.len()), ms),
            None => self.predict_targets(ms),
        };
        points
            .iter()
            .enumerate()
            .map(|(i, pt)| {
                std::array::from_fn(|s| {
                    let raw = pt[s];
                    let d = eval::divisor(&raw);
                    let scale = |t: Target| t.map(|v| v.map(|x| x / d));
                    let point = scale(raw);
                    match (&probs, ms[i].real[s]) {
                        (Some(p), true) => {
                            let p = &p[i * SLOTS + s];
                            let classes = &self.meta.classes;
                            Band {
                                point,
                                lo: scale(uncertainty::mixture_quantile(p, classes, q)),
                                hi: scale(uncertainty::mixture_quantile(p, classes, 1.0 - q)),
                                slowdown: uncertainty::mixture_slowdown(p, classes),
                            }
                        }
                        _ => Band::at(point),
                    }
                })
            })
            .collect()
    }

    /// Calibrated intervals of every slot at the model's level (`None`: the model has none;
    /// `miso evaluate --lofo --calibrate` makes them): `(lo, hi)` per kind.
    pub fn predict_intervals(&self, ms: &[MpsMatrix]) -> Option<Vec<[(Target, Target); SLOTS]>> {
        let iv = self.meta.intervals.as_ref()?;
        let bands = self.predict_bands(ms, iv.band_quantile);
        Some(
            bands
                .iter()
                .map(|b| std::array::from_fn(|s| iv.apply(&b[s])))
                .collect(),
        )
    }

    /// Predicted speeds of the real jobs of one mix for the optimizer's `objective`: the point
    /// prediction, the expected slowdown under the model's predictive distribution, or the
    /// worst case of its calibrated interval (point when the model has none).
    pub fn predict_for(&self, m: &MpsMatrix, objective: Estimate) -> SpeedTable {
        if objective == Estimate::Point {
            return self.predict_point(m);
        }
        let q = self
            .meta
            .intervals
            .as_ref()
            .map(|iv| iv.band_quantile)
            .unwrap_or(uncertainty::BAND_QUANTILE);
        let bands = self.predict_bands(std::slice::from_ref(m), q);
        let mut out: SpeedTable = Default::default();
        if let Some(b) = bands.first() {
            for s in 0..SLOTS {
                if m.real[s] {
                    out[s] = uncertainty::speeds(&b[s], objective, self.meta.intervals.as_ref());
                }
            }
        }
        out
    }

    /// Predicted speeds of the real jobs of one mix (the library API the policies use), under
    /// the predictor's [`Estimate`] setting.
    pub fn predict(&self, m: &MpsMatrix) -> SpeedTable {
        self.predict_for(m, self.estimate)
    }

    /// Point-predicted speeds of the real jobs of one mix.
    fn predict_point(&self, m: &MpsMatrix) -> SpeedTable {
        let p = self.predict_targets(std::slice::from_ref(m));
        let mut out: SpeedTable = Default::default();
        if let Some(p) = p.first() {
            for s in 0..SLOTS {
                if m.real[s] {
                    out[s] = target_to_perf(&p[s]);
                }
            }
        }
        out
    }

    /// Save to `dir` (`model.json` + weights).
    pub fn save(&self, dir: &Path) -> Result<(), PredictorError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PredictorError::Model(format!("cannot create {}: {e}", dir.display())))?;
        match &self.inner {
            Inner::Mlp(ms) => {
                for (i, m) in ms.iter().enumerate() {
                    nets::save(m, &dir.join(format!("weights-{i}.safetensors")))?;
                }
            }
            Inner::Unet(u) => nets::save(u, &dir.join("weights.safetensors"))?,
            Inner::Linear(_) => {}
            Inner::Knn(k) => {
                let j =
                    serde_json::to_string(k).map_err(|e| PredictorError::Model(e.to_string()))?;
                std::fs::write(dir.join("knn.json"), j)
                    .map_err(|e| PredictorError::Model(format!("cannot write knn.json: {e}")))?;
            }
            Inner::Tree(t) => {
                let j =
                    serde_json::to_string(t).map_err(|e| PredictorError::Model(e.to_string()))?;
                std::fs::write(dir.join("tree.json"), j)
                    .map_err(|e| PredictorError::Model(format!("cannot write tree.json: {e}")))?;
            }
        }
        self.save_meta(dir)
    }

    /// Rewrite only `dir/model.json` (the weights stay): e.g. after calibrating intervals.
    pub fn save_meta(&self, dir: &Path) -> Result<(), PredictorError> {
        let j = serde_json::to_string_pretty(&self.meta)
            .map_err(|e| PredictorError::Model(e.to_string()))?;
        std::fs::write(dir.join("model.json"), j + "\n")
            .map_err(|e| PredictorError::Model(format!("cannot write model.json: {e}")))
    }

    /// Load a model directory; refuses another feature version or format.
    pub fn load(dir: &Path) -> Result<Predictor, PredictorError> {
        Predictor::from_files(&Files::Dir(dir))
    }

    /// The default model compiled into the binary (the files of `models/default` when it was
    /// built): `miso` predicts from any folder without the repository.
    pub fn builtin() -> Result<Predictor, PredictorError> {
        Predictor::from_files(&Files::Builtin)
    }

    /// The metadata (`model.json`) of the built-in model, without loading its weights.
    pub fn builtin_meta() -> Result<ModelMeta, PredictorError> {
        let files = Files::Builtin;
        serde_json::from_slice(&files.read("model.json")?)
            .map_err(|e| PredictorError::Model(format!("{}: {e}", files.label("model.json"))))
    }

    /// Model `name` under `models_dir`; `default` falls back to the built-in model when the
    /// folder has none.
    pub fn load_named(models_dir: &Path, name: &str) -> Result<Predictor, PredictorError> {
        let dir = models_dir.join(name);
        if name == BUILTIN_NAME && !dir.join("model.json").exists() {
            return Predictor::builtin();
        }
        Predictor::load(&dir)
    }

    fn from_files(files: &Files) -> Result<Predictor, PredictorError> {
        let mp = files.label("model.json");
        let text = String::from_utf8(files.read("model.json")?)
            .map_err(|_| PredictorError::Model(format!("{mp}: not UTF-8 text")))?;
        let meta: ModelMeta =
            serde_json::from_str(&text).map_err(|e| PredictorError::Model(format!("{mp}: {e}")))?;
        if meta.format != MODEL_FORMAT {
            return Err(PredictorError::Model(format!(
                "{mp}: format `{}`, expected {MODEL_FORMAT}",
                meta.format
            )));
        }
        if meta.feature_version != FEATURE_VERSION {
            return Err(PredictorError::Model(format!(
                "{mp}: made for feature version {}, this miso computes version {FEATURE_VERSION}: retrain it with `miso train`",
                meta.feature_version
            )));
        }
        let json_file = |name: &str| -> Result<String, PredictorError> {
            String::from_utf8(files.read(name)?).map_err(|_| {
                PredictorError::Model(format!("{}: not UTF-8 text", files.label(name)))
            })
        };
        let inner = match meta.arch {
            Arch::Mlp => {
                if meta.classes.is_empty() || meta.ensemble == 0 {
                    return Err(PredictorError::Model(format!("{mp}: mlp without classes")));
                }
                let mut ms = Vec::new();
                for i in 0..meta.ensemble {
                    let m = nets::Mlp::new(
                        JOB_FEATURES,
                        &meta.hidden,
                        meta.classes.len(),
                        &nets::device(false),
                    );
                    let name = format!("weights-{i}.safetensors");
                    ms.push(nets::load(m, files.read(&name)?, &files.label(&name))?);
                }
                Inner::Mlp(ms)
            }
            Arch::Unet => {
                let name = "weights.safetensors";
                Inner::Unet(nets::load(
                    nets::Unet::new(&nets::device(false)),
                    files.read(name)?,
                    &files.label(name),
                )?)
            }
            Arch::Linear => Inner::Linear(meta.linear.clone().ok_or_else(|| {
                PredictorError::Model(format!("{mp}: linear model without coefficients"))
            })?),
            Arch::Knn => {
                Inner::Knn(serde_json::from_str(&json_file("knn.json")?).map_err(|e| {
                    PredictorError::Model(format!("{}: {e}", files.label("knn.json")))
                })?)
            }
            Arch::Tree => Inner::Tree(Box::new(
                serde_json::from_str(&json_file("tree.json")?).map_err(|e| {
                    PredictorError::Model(format!("{}: {e}", files.label("tree.json")))
                })?,
            )),
        };
        Ok(Predictor {
            meta,
            inner,
            estimate: Estimate::Point,
        })
    }
}

/// The name under which the built-in model is listed and activated.
pub const BUILTIN_NAME: &str = "default";

/// The files of `models/default`, compiled in (a test checks they equal the folder's).
static BUILTIN_FILES: &[(&str, &[u8])] = &[
    (
        "model.json",
        include_bytes!("../../models/default/model.json"),
    ),
    (
        "weights-0.safetensors",
        include_bytes!("../../models/default/weights-0.safetensors"),
    ),
    (
        "weights-1.safetensors",
        include_bytes!("../../models/default/weights-1.safetensors"),
    ),
    (
        "weights-2.safetensors",
        include_bytes!("../../models/default/weights-2.safetensors"),
    ),
    (
        "weights-3.safetensors",
        include_bytes!("../../models/default/weights-3.safetensors"),
    ),
    (
        "weights-4.safetensors",
        include_bytes!("../../models/default/weights-4.safetensors"),
    ),
];

/// Where a model's files are read from.
enum Files<'a> {
    Dir(&'a Path),
    Builtin,
}

impl Files<'_> {
    fn label(&self, name: &str) -> String {
        match self {
            Files::Dir(d) => d.join(name).display().to_string(),
            Files::Builtin => format!("(built-in model) {name}"),
        }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, PredictorError> {
        match self {
            Files::Dir(d) => std::fs::read(d.join(name)).map_err(|e| {
                PredictorError::Model(format!(
                    "cannot read {}: {e} (is it a model directory made by `miso train`?)",
                    self.label(name)
                ))
            }),
            Files::Builtin => BUILTIN_FILES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| {
                    PredictorError::Model(format!(
                        "{}: not compiled in (models/default changed shape: list its files in BUILTIN_FILES)",
                        self.label(name)
                    ))
                }),
        }
    }
}

/// Filler slots get the dummy job's measured target.
fn with_fillers(mut out: Vec<SlotPredictions>, ms: &[MpsMatrix]) -> Vec<SlotPredictions> {
    let dummy = data::dummy_target();
    for (p, m) in out.iter_mut().zip(ms) {
        for s in 0..SLOTS {
            if !m.real[s] {
                p[s] = dummy;
            }
        }
    }
    out
}

fn per_slot(n: usize, mut f: impl FnMut(usize) -> Target) -> Vec<SlotPredictions> {
    (0..n)
        .map(|i| {
            let mut p = [[None; KINDS]; SLOTS];
            for (s, ps) in p.iter_mut().enumerate() {
                *ps = f(i * SLOTS + s);
            }
            p
        })
        .collect()
}

/// Metrics keyed by profile kind name, for JSON.
pub type ByKind = BTreeMap<String, f64>;

#[cfg(test)]
mod tests;
