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
  miso evaluate --model models/default --lofo --calibrate   # and store 90% intervals in it

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
    /// Learn-from-runs experiment for a family (or `all`): train this model's recipe without
    /// it, observe its jobs on the slices the optimizer gave them in half of its mixes,
    /// retrain with those observations, and score the other half before and after.
    #[arg(long, value_name = "FAMILY", conflicts_with_all = ["features", "targets", "lofo"])]
    learn_from_runs: Option<String>,
    /// With --learn-from-runs FAMILY: also write the observations (miso-observation/1 lines)
    /// to this file, for `miso train --observations`.
    #[arg(long, requires = "learn_from_runs")]
    observations_out: Option<std::path::PathBuf>,
    /// With --lofo: write the calibrated intervals into the model's model.json (a model
    /// directory; the built-in model is read-only: pass --model models/default).
    #[arg(long, requires = "lofo")]
    calibrate: bool,
    /// Interval level for --lofo (share of true values the interval should hold).
    #[arg(long, default_value_t = 0.9, value_parser = range(0.5, 0.995))]
    level: f64,
    /// Share of the mixes held out (as the model was trained with).
    #[arg(long, default_value_t = 0.2, value_parser = range(0.01, 0.99))]
    val_frac: f64,
    /// Print JSON: {"model", "arch", "metrics"}.
    #[arg(long)]
    json: bool,
}

pub fn run(a: EvaluateArgs) -> Result<()> {
    let p = load_model(&a.model)?;
    if let Some(fam) = &a.learn_from_runs {
        let ds = predictor::data::load(&data_dir(&a.data)?)?;
        let cfg = recipe(&p);
        let fams = if fam == "all" {
            ds.families()
        } else {
            vec![fam.clone()]
        };
        let mut reports = Vec::new();
        for f in &fams {
            let r = predictor::observe::learn_from_runs(&ds, &cfg, f, p.meta.seed, &|what| {
                super::progress(cfg.epochs() as u64, &format!("{f}: {what}"), "epochs")
            })?;
            reports.push(r);
        }
        if let Some(path) = &a.observations_out {
            let mut text = String::new();
            for o in reports.iter().flat_map(|r| &r.observed) {
                text.push_str(&serde_json::to_string(o)?);
                text.push('\n');
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        return print_learn(&p.meta.name, &reports, a.json);
    }
    if a.lofo {
        let ds = predictor::data::load(&data_dir(&a.data)?)?;
        let cfg = recipe(&p);
        let dir = match (&a.model, a.calibrate) {
            (None, true) => anyhow::bail!(
                "--calibrate writes into a model directory; the built-in model is read-only: \
                 pass --model models/default (or another model directory)"
            ),
            (dir, _) => dir.clone(),
        };
        let r = super::train::lofo(&ds, &cfg, a.level)?;
        super::train::print_lofo(p.meta.arch.name(), Some(&p.meta.name), &r, a.json)?;
        if let (Some(dir), true) = (dir, a.calibrate) {
            let mut p = p;
            p.meta.intervals = Some(r.intervals.clone());
            p.save_meta(&dir)?;
            if !a.json {
                println!(
                    "wrote the intervals into {}",
                    dir.join("model.json").display()
                );
            }
        }
        return Ok(());
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
    let coverage = predictor::uncertainty::coverage(&p, &ds, &split);
    if a.json {
        return print_json(
            &json!({"model": p.meta.name, "arch": p.meta.arch, "metrics": m, "interval_coverage": coverage}),
        );
    }
    print_metrics(&format!("{} ({})", p.meta.name, p.meta.arch.name()), &m);
    if let (Some(c), Some(iv)) = (coverage, &p.meta.intervals) {
        println!(
            "  {:.0}% intervals (calibrated on families never seen) cover {:.1}% of the 7g/4g/3g values here",
            iv.level * 100.0,
            100.0 * c.get("rows").copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// The training settings a model was made with (architecture, widths, epochs, ensemble, seed).
fn recipe(p: &predictor::Predictor) -> predictor::TrainConfig {
    let mut cfg = predictor::TrainConfig::new(p.meta.arch);
    cfg.epochs = Some(p.meta.epochs);
    cfg.seed = p.meta.seed;
    if !p.meta.hidden.is_empty() {
        cfg.hidden = p.meta.hidden.clone();
    }
    cfg.ensemble = p.meta.ensemble.max(1);
    cfg
}

fn print_learn(model: &str, rs: &[predictor::observe::LearnReport], json_out: bool) -> Result<()> {
    if json_out {
        return print_json(&json!({"model": model, "learn_from_runs": rs}));
    }
    println!("learning a family from its runs ({model}'s recipe): MAE on 7g/4g/3g (7g row) of the family's jobs in held-out mixes");
    println!(
        "  {:<12} {:>9} {:>6} {:>16} {:>16} {:>16}   kinds seen per workload",
        "family", "obs/mixes", "test", "never seen", "after its runs", "fully measured"
    );
    let cell = |m: &predictor::Metrics| {
        format!(
            "{:.4} ({:.4})",
            m.mae,
            m.mae_by_kind.get("7g").copied().unwrap_or(f64::NAN)
        )
    };
    for r in rs {
        let kinds: Vec<String> = r
            .labels
            .iter()
            .map(|l| l.observed.len().to_string())
            .collect();
        println!(
            "  {:<12} {:>9} {:>6} {:>16} {:>16} {:>16}   {}",
            r.family,
            format!("{}/{}", r.observations, r.observed_mixes),
            r.test_mixes,
            cell(&r.before),
            cell(&r.after),
            cell(&r.in_distribution),
            kinds.join(",")
        );
    }
    Ok(())
}
