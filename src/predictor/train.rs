//! `miso train`: fit one architecture on a split of a data set, score it on the held-out part.

use std::time::Instant;

use indicatif::ProgressBar;

use crate::perf::{FEATURE_VERSION, JOB_FEATURES, KINDS, SLOTS};

use super::{
    classic, data::Split, evaluate, nets, Arch, Dataset, Inner, ModelMeta, Predictor,
    PredictorError, Scaler, MODEL_FORMAT,
};

/// Settings of a training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub arch: Arch,
    pub name: String,
    /// Passes over the training data; `None`: the architecture's default.
    pub epochs: Option<usize>,
    pub seed: u64,
    pub hidden: Vec<usize>,
    pub batch: usize,
    pub lr: f64,
    pub max_depth: usize,
    /// MLPs trained with seeds seed, seed+1, … and averaged.
    pub ensemble: usize,
    /// The command line that made the model, recorded in model.json.
    pub recipe: String,
}

impl TrainConfig {
    pub fn new(arch: Arch) -> TrainConfig {
        TrainConfig {
            arch,
            name: arch.name().to_string(),
            epochs: None,
            seed: 1,
            hidden: vec![256, 256],
            batch: 256,
            lr: 1e-3,
            max_depth: 14,
            ensemble: 5,
            recipe: String::new(),
        }
    }

    /// Epochs used: per-job models see each mix once per epoch (the 5 permutations of a mix
    /// give the same per-job rows), the U-Net sees every permutation.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(match self.arch {
            Arch::Mlp => 100,
            Arch::Unet => 40,
            Arch::Linear | Arch::Tree | Arch::Knn => 1,
        })
    }
}

/// Per-job rows of the first permutation of each training mix: features, targets, labels.
fn job_rows(ds: &Dataset, idx: &[usize]) -> (Vec<f64>, Vec<[Option<f64>; KINDS]>, Vec<usize>) {
    let mut seen = std::collections::HashSet::new();
    let (mut x, mut t, mut y) = (Vec::new(), Vec::new(), Vec::new());
    for &i in idx {
        let s = &ds.samples[i];
        if !seen.insert(s.mix) {
            continue;
        }
        for k in 0..SLOTS {
            if s.mps.real[k] {
                x.extend_from_slice(&s.mps.job_features(k));
                t.push(s.targets[k]);
                y.push(s.slots[k] as usize);
            }
        }
    }
    (x, t, y)
}

/// Train `cfg.arch` on `split.train`, evaluate on `split.val`.
pub fn train(
    ds: &Dataset,
    split: &Split,
    cfg: &TrainConfig,
    bar: &ProgressBar,
) -> Result<Predictor, PredictorError> {
    if split.train.is_empty() {
        return Err(PredictorError::Data(format!(
            "split `{}` leaves no training sample",
            split.name
        )));
    }
    let epochs = cfg.epochs();
    let runs = if cfg.arch == Arch::Mlp {
        cfg.ensemble.max(1)
    } else {
        1
    };
    bar.set_length((epochs * runs) as u64);
    let start = Instant::now();
    let mut meta = ModelMeta {
        format: MODEL_FORMAT.to_string(),
        name: cfg.name.clone(),
        arch: cfg.arch,
        feature_version: FEATURE_VERSION,
        gpu: "A100-SXM4-40GB".to_string(),
        data_source: ds.source.clone(),
        data_fingerprint: ds.fingerprint.clone(),
        split: split.name.clone(),
        seed: cfg.seed,
        epochs,
        hidden: Vec::new(),
        ensemble: 1,
        params: 0,
        train_seconds: 0.0,
        recipe: cfg.recipe.clone(),
        metrics: Default::default(),
        classes: Vec::new(),
        scaler: None,
        linear: None,
        intervals: None,
    };
    let net = nets::NetTrain {
        epochs,
        batch: cfg.batch,
        lr: cfg.lr,
        seed: cfg.seed,
    };
    let inner = match cfg.arch {
        Arch::Mlp | Arch::Tree => {
            let (x, _, labels) = job_rows(ds, &split.train);
            // Classes: the labels seen in training, in label order.
            let mut class_of = vec![usize::MAX; ds.labels.len()];
            for &l in &labels {
                class_of[l] = 0;
            }
            let mut classes = Vec::new();
            for (l, c) in class_of.iter_mut().enumerate() {
                if *c == 0 {
                    *c = classes.len();
                    classes.push(ds.labels[l].clone());
                }
            }
            let y: Vec<usize> = labels.iter().map(|&l| class_of[l]).collect();
            meta.classes = classes;
            if cfg.arch == Arch::Mlp {
                let scaler = Scaler::fit(&x, JOB_FEATURES);
                let xs = scaler.apply(&x);
                let yi: Vec<i64> = y.iter().map(|&c| c as i64).collect();
                let ms: Vec<nets::Mlp> = (0..runs)
                    .map(|r| {
                        let net = nets::NetTrain {
                            seed: cfg.seed + r as u64,
                            ..net.clone()
                        };
                        nets::train_mlp(
                            &xs,
                            JOB_FEATURES,
                            &yi,
                            meta.classes.len(),
                            &cfg.hidden,
                            &net,
                            bar,
                        )
                    })
                    .collect();
                meta.hidden = cfg.hidden.clone();
                meta.ensemble = runs;
                meta.scaler = Some(scaler);
                meta.params = ms.iter().map(burn::module::Module::num_params).sum();
                Inner::Mlp(ms)
            } else {
                let t = classic::fit_tree(&x, JOB_FEATURES, &y, cfg.max_depth)?;
                bar.inc(1);
                meta.params = serde_json::to_string(&t).map(|s| s.len() / 8).unwrap_or(0);
                Inner::Tree(Box::new(t))
            }
        }
        Arch::Linear => {
            let (x, t, _) = job_rows(ds, &split.train);
            let l = classic::fit_linear(&x, JOB_FEATURES, &t)?;
            bar.inc(1);
            meta.params = KINDS * (JOB_FEATURES + 1);
            meta.linear = Some(l.clone());
            Inner::Linear(l)
        }
        Arch::Knn => {
            let (x, t, _) = job_rows(ds, &split.train);
            let k = classic::fit_knn(&x, JOB_FEATURES, &t, 5);
            bar.inc(1);
            meta.params = k.rows.len() + k.targets.len() * KINDS;
            Inner::Knn(k)
        }
        Arch::Unet => {
            let ms = ds.matrices(&split.train);
            let x = super::unet_input(&ms);
            let (mut t, mut m) = (Vec::new(), Vec::new());
            for &i in &split.train {
                let s = &ds.samples[i];
                for k in 0..KINDS {
                    for slot in 0..SLOTS {
                        let v = s.targets[slot][k];
                        t.push(v.unwrap_or(0.0) as f32);
                        m.push(if v.is_some() { 1.0 } else { 0.0 });
                    }
                }
            }
            let u = nets::train_unet(&x, &t, &m, &net, bar);
            meta.params = burn::module::Module::num_params(&u);
            Inner::Unet(u)
        }
    };
    meta.train_seconds = start.elapsed().as_secs_f64();
    let mut p = Predictor {
        meta,
        inner,
        estimate: super::Estimate::Point,
    };
    p.meta.metrics = evaluate(&p, ds, split);
    Ok(p)
}
