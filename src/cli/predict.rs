//! `miso predict`: MIG latencies of MPS feature matrices, as .npy.

use anyhow::{Context, Result};
use clap::Args;

use miso::predictor;

use super::load_model;

#[derive(Args)]
#[command(after_help = "Examples:
  miso predict --features ../shared/datasets/miso-a100/mps_features.npy --out pred.npy \\
      --dummy-from ../shared/datasets/miso-a100/mig_targets.npy
  miso predict --features x.npy --jobs 3 --out all.npy --all-profiles --model models/mine
  miso predict --features x.npy --jobs 2 --out p.npy --intervals   # + p.lo.npy, p.hi.npy

Rows of the output: [7g, 4g, 3g] latency normalised like mig_targets.npy (each slot's largest
value is 1.0; lower is faster); with --all-profiles [1g, 2g, 3g, 4g, 7g].")]
pub struct PredictArgs {
    /// The model directory [default: the built-in model, a copy of models/default]
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// MPS features, float64 N×3×7 (rows 100/50/14 %, columns = slots).
    #[arg(long)]
    features: std::path::PathBuf,
    /// Output .npy: N×3×7 [7g, 4g, 3g] normalised like mig_targets.npy; with
    /// --all-profiles N×5×7 [1g, 2g, 3g, 4g, 7g] (NaN where the job does not fit).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Predict all five profile kinds (N×5×7) instead of the artifact's three rows.
    #[arg(long)]
    all_profiles: bool,
    /// Which slots are real jobs, one of three ways (required: predicting filler slots as jobs
    /// made the held-out error 2.4× worse). Targets whose dummy columns mark the fillers:
    #[arg(long, group = "slots")]
    dummy_from: Option<std::path::PathBuf>,
    /// ...or: every sample's first N slots are real jobs, the rest fillers (1-7).
    #[arg(long, group = "slots", value_parser = super::range(1usize, 7))]
    jobs: Option<usize>,
    /// ...or: every slot of every sample is a real job.
    #[arg(long, group = "slots")]
    all_real: bool,
    /// Also write the model's calibrated intervals beside --out: OUT.lo.npy and OUT.hi.npy,
    /// same shape (each job's true value lies inside for the model's level, e.g. 90 %, of jobs
    /// of families it never saw; `miso evaluate --lofo --calibrate` makes them).
    #[arg(long)]
    intervals: bool,
}

pub fn run(a: PredictArgs) -> Result<()> {
    use miso::perf::{MpsMatrix, SLOTS};
    let p = load_model(&a.model)?;
    let (x, _) = predictor::data::read_arrays(&a.features, None)?;
    let n = x.shape()[0];
    let real: Vec<[bool; SLOTS]> = match (&a.dummy_from, a.jobs, a.all_real) {
        (Some(t), _, _) => {
            let (_, y) = predictor::data::read_arrays(&a.features, Some(t))?;
            let y = y.context("--dummy-from")?;
            let ds = predictor::data::from_arrays(&x, &y, &t.display().to_string(), 0)?;
            ds.samples.iter().map(|s| s.mps.real).collect()
        }
        (None, Some(k), _) => vec![std::array::from_fn(|s| s < k); n],
        (None, None, true) => vec![[true; SLOTS]; n],
        (None, None, false) => anyhow::bail!(
            "say which slots are real jobs: --dummy-from TARGETS.npy, --jobs N (the first N \
             slots), or --all-real (filler slots predicted as jobs made the held-out error 2.4× worse)"
        ),
    };
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let mut values = [[0.0; SLOTS]; 3];
        for (l, row) in values.iter_mut().enumerate() {
            for (s, v) in row.iter_mut().enumerate() {
                *v = x[[i, l, s]];
            }
        }
        let m = MpsMatrix {
            values,
            real: real[i],
        };
        m.validate(&format!("{}: sample {i}", a.features.display()))
            .map_err(anyhow::Error::msg)?;
        ms.push(m);
    }
    let preds = p.predict_targets(&ms);
    let bounds = if a.intervals {
        let iv = p.predict_intervals(&ms).with_context(|| {
            format!(
                "model {} has no calibrated intervals: run `miso evaluate --model DIR --lofo --calibrate` on it",
                p.meta.name
            )
        })?;
        let lo: Vec<_> = iv.iter().map(|b| b.map(|x| x.0)).collect();
        let hi: Vec<_> = iv.iter().map(|b| b.map(|x| x.1)).collect();
        Some((lo, hi))
    } else {
        None
    };
    let out = to_array(&preds, a.all_profiles, true);
    write_npy(&a.out, &out)?;
    if let Some((lo, hi)) = bounds {
        for (tag, b) in [("lo", lo), ("hi", hi)] {
            let path = a.out.with_extension(format!("{tag}.npy"));
            write_npy(&path, &to_array(&b, a.all_profiles, false))?;
            eprintln!("wrote {} ({tag} end of the intervals)", path.display());
        }
    }
    eprintln!(
        "wrote {} ({} × {} × 7) with model {}",
        a.out.display(),
        n,
        if a.all_profiles { 5 } else { 3 },
        p.meta.name
    );
    Ok(())
}

fn write_npy(path: &std::path::Path, a: &ndarray::Array3<f64>) -> Result<()> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    ndarray_npy::WriteNpyExt::write_npy(a, std::io::BufWriter::new(f))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Predictions as N×3×7 [7g, 4g, 3g] (or N×5×7 with all profiles); `renorm`: divide each
/// slot by its largest 7g/4g/3g value (interval ends are already on the point's scale).
fn to_array(
    preds: &[[predictor::Target; miso::perf::SLOTS]],
    all_profiles: bool,
    renorm: bool,
) -> ndarray::Array3<f64> {
    use miso::perf::SLOTS;
    let n = preds.len();
    let norm = |t: &predictor::Target| {
        if renorm {
            predictor::renormalise(t)
        } else {
            *t
        }
    };
    if all_profiles {
        let mut o = ndarray::Array3::<f64>::from_elem((n, 5, SLOTS), f64::NAN);
        for (i, pr) in preds.iter().enumerate() {
            for s in 0..SLOTS {
                let t = norm(&pr[s]);
                for k in 0..5 {
                    if let Some(v) = t[k] {
                        o[[i, k, s]] = v;
                    }
                }
            }
        }
        o
    } else {
        let mut o = ndarray::Array3::<f64>::zeros((n, 3, SLOTS));
        for (i, pr) in preds.iter().enumerate() {
            for s in 0..SLOTS {
                let t = norm(&pr[s]);
                for (r, k) in [4usize, 3, 2].iter().enumerate() {
                    o[[i, r, s]] = t[*k].unwrap_or(f64::NAN);
                }
            }
        }
        o
    }
}
