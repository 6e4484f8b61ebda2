//! Training data: the MISO arrays (`mps_features.npy`, `mig_targets.npy` and the per-workload
//! CSV) or the project's own sample files, turned into mixes with per-slot targets on all five
//! A100 profile kinds, and the splits (by mix, never by sample; by model family).

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::Array3;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::perf::{self, MpsMatrix, KINDS, KIND_NAMES, SLOTS};

use super::PredictorError;

/// Samples per mix in the MISO arrays: the original order and 4 column permutations.
pub const PERMUTATIONS: usize = 5;
/// The dummy filler job's targets on [7g, 4g, 3g] (datasets README).
const DUMMY_TARGET: [f64; 3] = [0.889, 1.0, 0.889];
/// Largest distance between a target column and the workload it is matched to (the artifact
/// rounded its targets to 4 decimals; the largest seen distance is 0.0069).
const MATCH_TOL: f64 = 0.01;

/// Target of one slot: normalised latency on each kind (1g, 2g, 3g, 4g, 7g), divided by the
/// largest of the 7g/4g/3g latencies as in `mig_targets.npy`; `None`: does not fit (OOM).
pub type Target = [Option<f64>; KINDS];

/// One job kind seen in the data: a catalog workload or the dummy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    /// Model family (`bert`), for leave-one-family-out splits.
    pub family: String,
    pub dummy: bool,
    pub target: Target,
}

/// One measured mix.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Which mix this sample is a permutation of (splits keep a mix on one side).
    pub mix: usize,
    pub mps: MpsMatrix,
    /// Per slot, the index into [`Dataset::labels`].
    pub slots: [u16; SLOTS],
    /// Per slot, the target as given by the data (the 7g/4g/3g values of `mig_targets.npy`
    /// verbatim, 1g/2g from the CSV).
    pub targets: [Target; SLOTS],
}

/// A loaded data set.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub labels: Vec<Label>,
    pub samples: Vec<Sample>,
    /// Where it came from.
    pub source: String,
    /// FNV-1a 64 of the input files' bytes, hex.
    pub fingerprint: String,
}

/// Kind order of [`Target`] (1g, 2g, 3g, 4g, 7g) → the row order of `mig_targets.npy`.
pub const NPY_ROWS: [usize; 3] = [4, 3, 2];

pub(crate) fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn read(path: &Path) -> Result<Vec<u8>, PredictorError> {
    std::fs::read(path)
        .map_err(|e| PredictorError::Data(format!("cannot read {}: {e}", path.display())))
}

fn read_npy(path: &Path) -> Result<Array3<f64>, PredictorError> {
    let bytes = read(path)?;
    let a: Array3<f64> = ndarray_npy::ReadNpyExt::read_npy(&bytes[..]).map_err(|e| {
        PredictorError::Data(format!(
            "{}: not a float64 array of 3 dimensions: {e}",
            path.display()
        ))
    })?;
    Ok(a)
}

/// Read features (and targets, when given) shaped `(N, 3, 7)`; check shape and values.
pub fn read_arrays(
    features: &Path,
    targets: Option<&Path>,
) -> Result<(Array3<f64>, Option<Array3<f64>>), PredictorError> {
    let x = read_npy(features)?;
    let check = |a: &Array3<f64>, p: &Path| -> Result<(), PredictorError> {
        let s = a.shape();
        if s[1] != 3 || s[2] != SLOTS || s[0] == 0 {
            return Err(PredictorError::Data(format!(
                "{}: shape {:?}, expected (N, 3, 7): rows = MPS levels 100/50/14 %, columns = 7 job slots",
                p.display(),
                s
            )));
        }
        if let Some((i, v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(PredictorError::Data(format!(
                "{}: value {v} at {:?} is not finite",
                p.display(),
                i
            )));
        }
        Ok(())
    };
    check(&x, features)?;
    let y = match targets {
        Some(t) => {
            let y = read_npy(t)?;
            check(&y, t)?;
            if y.shape()[0] != x.shape()[0] {
                return Err(PredictorError::Data(format!(
                    "{} has {} samples but {} has {}",
                    features.display(),
                    x.shape()[0],
                    t.display(),
                    y.shape()[0]
                )));
            }
            Some(y)
        }
        None => None,
    };
    Ok((x, y))
}

/// The catalog workloads and the dummy as labels with their targets from the CSV table.
pub fn catalog_labels() -> Vec<Label> {
    let mut labels: Vec<Label> = perf::catalog()
        .iter()
        .map(|w| {
            let norm = [w.iter_s[4], w.iter_s[3], w.iter_s[2]]
                .iter()
                .flatten()
                .cloned()
                .fold(f64::MIN, f64::max);
            let mut target = [None; KINDS];
            for k in 0..KINDS {
                target[k] = w.iter_s[k].map(|t| t / norm);
            }
            Label {
                name: w.name.clone(),
                family: w.model.to_string(),
                dummy: false,
                target,
            }
        })
        .collect();
    labels.push(Label {
        name: "dummy".to_string(),
        family: "dummy".to_string(),
        dummy: true,
        target: [
            None,
            None,
            Some(DUMMY_TARGET[2]),
            Some(DUMMY_TARGET[1]),
            Some(DUMMY_TARGET[0]),
        ],
    });
    labels
}

/// The dummy filler job's target.
pub fn dummy_target() -> Target {
    [
        None,
        None,
        Some(DUMMY_TARGET[2]),
        Some(DUMMY_TARGET[1]),
        Some(DUMMY_TARGET[0]),
    ]
}

/// The label whose 7g/4g/3g target is nearest to `col` (max-abs distance), if within tolerance.
fn match_label(labels: &[Label], col: [f64; 3]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, l) in labels.iter().enumerate() {
        let mut d: f64 = 0.0;
        for (r, &k) in NPY_ROWS.iter().enumerate() {
            match l.target[k] {
                Some(t) => d = d.max((t - col[r]).abs()),
                None => d = f64::INFINITY,
            }
        }
        if best.is_none_or(|(_, b)| d < b) {
            best = Some((i, d));
        }
    }
    best.filter(|(_, d)| *d <= MATCH_TOL)
}

/// Load the MISO arrays from a directory holding `mps_features.npy` and `mig_targets.npy`.
/// Every target column is matched to its workload (or the dummy); a column that matches none
/// is an error, and so are two different columns matching the same workload.
pub fn load_miso_dir(dir: &Path) -> Result<Dataset, PredictorError> {
    let fx = dir.join("mps_features.npy");
    let fy = dir.join("mig_targets.npy");
    let (x, y) = read_arrays(&fx, Some(&fy))?;
    let y = y.ok_or_else(|| PredictorError::Data("targets missing".to_string()))?;
    let fp = fnv1a(&read(&fy)?, fnv1a(&read(&fx)?, FNV_START));
    from_arrays(&x, &y, &format!("{}", dir.display()), fp)
}

/// Build a data set from feature and target arrays of shape `(N, 3, 7)`.
pub fn from_arrays(
    x: &Array3<f64>,
    y: &Array3<f64>,
    source: &str,
    fp: u64,
) -> Result<Dataset, PredictorError> {
    let labels = catalog_labels();
    let n = x.shape()[0];
    let mut samples = Vec::with_capacity(n);
    // Distinct target column (rounded) → label, to check that the matching is one-to-one.
    let mut seen: BTreeMap<[i64; 3], usize> = BTreeMap::new();
    for i in 0..n {
        let mut values = [[0.0; SLOTS]; 3];
        let mut real = [false; SLOTS];
        let mut slots = [0u16; SLOTS];
        let mut targets = [[None; KINDS]; SLOTS];
        for s in 0..SLOTS {
            let col = [y[[i, 0, s]], y[[i, 1, s]], y[[i, 2, s]]];
            let (li, _) = match_label(&labels, col).ok_or_else(|| {
                PredictorError::Data(format!(
                    "{source}: sample {i}, slot {s}: target column {col:?} matches no workload of the catalog (nor the dummy)"
                ))
            })?;
            let key = col.map(|v| (v * 1e4).round() as i64);
            if let Some(&other) = seen.get(&key) {
                if other != li {
                    return Err(PredictorError::Data(format!(
                        "{source}: target column {col:?} matched two workloads"
                    )));
                }
            } else if let Some((k, _)) = seen.iter().find(|(_, &l)| l == li) {
                return Err(PredictorError::Data(format!(
                    "{source}: columns {col:?} and {k:?} both match {}; the matching is ambiguous",
                    labels[li].name
                )));
            } else {
                seen.insert(key, li);
            }
            slots[s] = li as u16;
            real[s] = !labels[li].dummy;
            let mut t = labels[li].target;
            for (r, &k) in NPY_ROWS.iter().enumerate() {
                t[k] = Some(col[r]);
            }
            targets[s] = t;
            for l in 0..3 {
                values[l][s] = x[[i, l, s]];
            }
        }
        let mps = MpsMatrix { values, real };
        mps.validate(&format!("{source}: sample {i}"))
            .map_err(PredictorError::Data)?;
        samples.push(Sample {
            mix: i / PERMUTATIONS,
            mps,
            slots,
            targets,
        });
    }
    Ok(Dataset {
        labels,
        samples,
        source: source.to_string(),
        fingerprint: format!("{fp:016x}"),
    })
}

/// A split: sample indices for training and validation, and which labels to score.
#[derive(Clone, Debug)]
pub struct Split {
    pub name: String,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    /// Score only jobs of these labels (all real jobs when `None`).
    pub score_labels: Option<Vec<usize>>,
}

impl Split {
    /// Whether a job of `label` is scored.
    pub fn scores(&self, label: u16) -> bool {
        match &self.score_labels {
            Some(ls) => ls.contains(&(label as usize)),
            None => true,
        }
    }

    /// Samples that always train (learned from runs: their labels are partly a prior model's
    /// guess, so they are never scored): out of validation, into training.
    pub fn always_train(&mut self, idx: &[usize]) {
        self.val.retain(|i| !idx.contains(i));
        for &i in idx {
            if !self.train.contains(&i) {
                self.train.push(i);
            }
        }
    }
}

impl Dataset {
    /// The MPS matrices of samples `idx`, in that order.
    pub fn matrices(&self, idx: &[usize]) -> Vec<MpsMatrix> {
        idx.iter().map(|&i| self.samples[i].mps.clone()).collect()
    }

    pub fn mixes(&self) -> usize {
        self.samples.iter().map(|s| s.mix + 1).max().unwrap_or(0)
    }

    /// A seeded random split by mix: `val_frac` of the mixes, with all their permutations,
    /// go to validation.
    pub fn random_split(&self, val_frac: f64, seed: u64) -> Split {
        let mut mixes: Vec<usize> = (0..self.mixes()).collect();
        mixes.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let nval = ((mixes.len() as f64) * val_frac).round() as usize;
        let mut is_val = vec![false; self.mixes()];
        for &m in &mixes[..nval] {
            is_val[m] = true;
        }
        let (val, train): (Vec<usize>, Vec<usize>) =
            (0..self.samples.len()).partition(|&i| is_val[self.samples[i].mix]);
        Split {
            name: format!(
                "random-by-mix (seed {seed}, {:.0}% of mixes held out)",
                val_frac * 100.0
            ),
            train,
            val,
            score_labels: None,
        }
    }

    /// Hold out a whole model family: train on the mixes without it, score its jobs in the
    /// mixes with it.
    pub fn family_split(&self, family: &str) -> Result<Split, PredictorError> {
        let fam: Vec<usize> = (0..self.labels.len())
            .filter(|&l| self.labels[l].family == family && !self.labels[l].dummy)
            .collect();
        if fam.is_empty() {
            let fams = self.families();
            return Err(PredictorError::Data(format!(
                "unknown family `{family}` (allowed: {})",
                fams.join(", ")
            )));
        }
        let (val, train): (Vec<usize>, Vec<usize>) = (0..self.samples.len()).partition(|&i| {
            self.samples[i]
                .slots
                .iter()
                .any(|l| fam.contains(&(*l as usize)))
        });
        Ok(Split {
            name: format!("leave-out-family {family}"),
            train,
            val,
            score_labels: Some(fam),
        })
    }

    /// Model families of the real labels.
    pub fn families(&self) -> Vec<String> {
        let mut f: Vec<String> = Vec::new();
        for l in &self.labels {
            if !l.dummy && !f.contains(&l.family) {
                f.push(l.family.clone());
            }
        }
        f
    }
}

/// One line of the project's own sample format (`miso-mps-sample/1`, JSON Lines): one measured
/// mix. `mps` holds each slot's mean iteration latency at MPS 100/50/14 % (any unit; normalised
/// per slot on load); `mig`, where measured, its latency on each profile kind (`1g`…`7g`) in
/// the same unit; `label` names the workload (`dummy` for filler slots).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleRecord {
    pub format: String,
    pub gpu: String,
    pub mix: usize,
    pub slots: Vec<SlotRecord>,
}

/// One slot of a [`SampleRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotRecord {
    pub label: String,
    pub mps: [f64; 3],
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mig: BTreeMap<String, f64>,
}

pub const SAMPLE_FORMAT: &str = "miso-mps-sample/1";

impl Dataset {
    /// Write every sample in the project's sample format (one JSON object per line).
    pub fn to_records(&self) -> Vec<SampleRecord> {
        self.samples
            .iter()
            .map(|s| SampleRecord {
                format: SAMPLE_FORMAT.to_string(),
                gpu: "A100-SXM4-40GB".to_string(),
                mix: s.mix,
                slots: (0..SLOTS)
                    .map(|k| SlotRecord {
                        label: self.labels[s.slots[k] as usize].name.clone(),
                        mps: [s.mps.values[0][k], s.mps.values[1][k], s.mps.values[2][k]],
                        mig: (0..KINDS)
                            .filter_map(|p| s.targets[k][p].map(|v| (KIND_NAMES[p].to_string(), v)))
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Read a JSON Lines file of [`SampleRecord`]s (e.g. collected by the service).
pub fn load_samples(path: &Path) -> Result<Dataset, PredictorError> {
    let bytes = read(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| PredictorError::Data(format!("{}: not UTF-8", path.display())))?;
    samples_from_text(&text, &path.display().to_string())
}

/// [`load_samples`] from text in memory (one JSON [`SampleRecord`] per line); `source` names it
/// in errors (`source:line`).
pub fn samples_from_text(text: &str, source: &str) -> Result<Dataset, PredictorError> {
    let bytes = text.as_bytes();
    let mut labels = catalog_labels();
    let mut samples = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{source}:{}", ln + 1);
        let r: SampleRecord =
            serde_json::from_str(line).map_err(|e| PredictorError::Data(format!("{at}: {e}")))?;
        samples.push(record_sample(&r, &mut labels, &at)?);
    }
    if samples.is_empty() {
        return Err(PredictorError::Data(format!("{source}: no samples")));
    }
    Ok(Dataset {
        labels,
        samples,
        source: source.to_string(),
        fingerprint: format!("{:016x}", fnv1a(bytes, FNV_START)),
    })
}

/// One record as training reads it (`at` names it in errors): its format, 1-7 slots, positive
/// latencies, known profile kinds; labels it introduces are added to `labels`.
pub(crate) fn record_sample(
    r: &SampleRecord,
    labels: &mut Vec<Label>,
    at: &str,
) -> Result<Sample, PredictorError> {
    if r.format != SAMPLE_FORMAT {
        return Err(PredictorError::Data(format!(
            "{at}: format `{}` (expected {SAMPLE_FORMAT})",
            r.format
        )));
    }
    if r.slots.is_empty() || r.slots.len() > SLOTS {
        return Err(PredictorError::Data(format!(
            "{at}: slots: {} given, 1..=7 allowed",
            r.slots.len()
        )));
    }
    let mut lat = [[1.0; SLOTS]; 3];
    let mut real = [false; SLOTS];
    let mut slots = [0u16; SLOTS];
    let mut targets = [[None; KINDS]; SLOTS];
    let dummy = labels.iter().position(|l| l.dummy).unwrap_or(0);
    for k in 0..SLOTS {
        let Some(sr) = r.slots.get(k) else {
            slots[k] = dummy as u16;
            targets[k] = labels[dummy].target;
            continue;
        };
        for (l, v) in sr.mps.iter().enumerate() {
            if !(v.is_finite() && *v > 0.0) {
                return Err(PredictorError::Data(format!(
                    "{at}: slots[{k}].mps[{l}]: {v} is not a positive latency"
                )));
            }
            lat[l][k] = *v;
        }
        let mut t = [None; KINDS];
        for (name, v) in &sr.mig {
            let p = KIND_NAMES.iter().position(|n| n == name).ok_or_else(|| {
                PredictorError::Data(format!(
                    "{at}: slots[{k}].mig.{name}: unknown kind (allowed: 1g, 2g, 3g, 4g, 7g)"
                ))
            })?;
            if !(v.is_finite() && *v > 0.0) {
                return Err(PredictorError::Data(format!(
                    "{at}: slots[{k}].mig.{name}: {v} is not a positive latency"
                )));
            }
            t[p] = Some(*v);
        }
        let norm = [t[4], t[3], t[2]]
            .iter()
            .flatten()
            .cloned()
            .fold(f64::MIN, f64::max);
        if norm > 0.0 {
            for v in t.iter_mut().flatten() {
                *v /= norm;
            }
        }
        let li = match labels.iter().position(|l| l.name == sr.label) {
            Some(i) => i,
            None => {
                labels.push(Label {
                    name: sr.label.clone(),
                    family: sr.label.split('_').next().unwrap_or(&sr.label).to_string(),
                    dummy: sr.label == "dummy",
                    target: t,
                });
                labels.len() - 1
            }
        };
        slots[k] = li as u16;
        real[k] = !labels[li].dummy;
        targets[k] = if t.iter().any(Option::is_some) {
            t
        } else {
            labels[li].target
        };
    }
    let mps = MpsMatrix::from_latencies(lat, real);
    mps.validate(at).map_err(PredictorError::Data)?;
    Ok(Sample {
        mix: r.mix,
        mps,
        slots,
        targets,
    })
}

/// Check a record exactly as training will read it, so a sample it could not load is refused
/// before it is stored.
pub fn check_record(r: &SampleRecord, at: &str) -> Result<(), PredictorError> {
    record_sample(r, &mut catalog_labels(), at).map(|_| ())
}

/// Load training data from a MISO directory (with the .npy files) or a samples file.
pub fn load(path: &Path) -> Result<Dataset, PredictorError> {
    if path.is_dir() {
        load_miso_dir(path)
    } else if path.exists() {
        load_samples(path)
    } else {
        Err(PredictorError::Data(format!(
            "{}: no such file or directory (give the MISO data directory or a .jsonl samples file)",
            path.display()
        )))
    }
}
