//! `miso evaluate`: score a model on held-out data (its own split of the MISO data, or given
//! arrays).

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use miso::predictor;

use super::train::print_metrics;
use super::{data_dir, load_model, print_json, range};

#[derive(Args)]
#[command(after_help = "Examples:
  miso evaluate                                   # the built-in model on its held-out mixes
  miso evaluate --model models/mine --json
  miso evaluate --features x.npy --targets y.npy  # every sample of these arrays
  miso evaluate --model models/linear --lofo      # per-family error on families never seen

Lower MAE/MAPE is better; see `miso train --help` for what they measure.")]
pub struct EvaluateArgs {
    /// The model directory [default: the built-in model, a copy of models/default]
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Data to score on (its held-out split, re-made from the model's seed and --val-frac)
    /// [default: ../shared/datasets/miso-a100, or $MISO_DATA]
    #[arg(long, conflicts_with_all = ["features", "targets"])]
    data: Option<std::path::PathBuf>,
    /// Score every sample of these MPS features (.npy, N×3×7) instead (all held out).
    #[arg(long, requires = "targets")]
    features: Option<std::path::PathBuf>,
    /// The MIG targets (.npy, N×3×7) of --features.
    #[arg(long, requires = "features")]
    targets: Option<std::path::PathBuf>,
    /// Leave-one-family-out with this model's recipe (architecture, widths, epochs, ensemble,
    /// seed): retrain once per family without it and print the per-family table.
    #[arg(long, conflicts_with_all = ["features", "targets"])]
    lofo: bool,
    /// Share of the mixes held out (as the model was trained with).
    #[arg(long, default_value_t = 0.2, value_parser = range(0.01, 0.99))]
    val_frac: f64,
    /// Print JSON: {"model", "arch", "metrics"}.
    #[arg(long)]
    json: bool,
}

pub fn run(a: EvaluateArgs) -> Result<()> {
    let p = load_model(&a.model)?;
    if a.lofo {
        let ds = predictor::data::load(&data_dir(&a.data)?)?;
        let mut cfg = predictor::TrainConfig::new(p.meta.arch);
        cfg.epochs = Some(p.meta.epochs);
        cfg.seed = p.meta.seed;
        if !p.meta.hidden.is_empty() {
            cfg.hidden = p.meta.hidden.clone();
        }
        cfg.ensemble = p.meta.ensemble.max(1);
        let rows = super::train::lofo(&ds, &cfg)?;
        return super::train::print_lofo(p.meta.arch.name(), Some(&p.meta.name), &rows, a.json);
    }
    let (ds, split) = match (&a.features, &a.targets) {
        (Some(f), Some(t)) => {
            let (x, y) = predictor::data::read_arrays(f, Some(t))?;
            let y = y.context("--targets")?;
            let ds = predictor::data::from_arrays(&x, &y, &f.display().to_string(), 0)?;
            let split = predictor::Split {
                name: format!("all of {}", f.display()),
                train: Vec::new(),
                val: (0..ds.samples.len()).collect(),
                score_labels: None,
            };
            (ds, split)
        }
        _ => {
            let ds = predictor::data::load(&data_dir(&a.data)?)?;
            let split = ds.random_split(a.val_frac, p.meta.seed);
            (ds, split)
        }
    };
    let m = predictor::evaluate(&p, &ds, &split);
    if a.json {
        return print_json(&json!({"model": p.meta.name, "arch": p.meta.arch, "metrics": m}));
    }
    print_metrics(&format!("{} ({})", p.meta.name, p.meta.arch.name()), &m);
    Ok(())
}
