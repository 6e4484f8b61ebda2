//! `miso train`: fit a predictor on the MISO measurements or a site's own samples, report its
//! held-out metrics (or leave-one-family-out), save it as a model directory.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use miso::predictor;

use super::{data_dir, positive, print_json, progress, range};

#[derive(Args)]
#[command(after_help = "Examples:
  miso train --out models/mine                       # the default recipe (mlp, 5 seeds)
  miso train --arch unet --epochs 40 --out models/unet
  miso train --lofo --json                           # error on each family never seen
  miso train --data samples.jsonl --out models/site  # a site's own miso-mps-sample/1 lines
  miso train --observations runs.jsonl --out models/learned   # + what jobs showed on their slices

Metrics: MAE of the normalised latency on the 7g/4g/3g rows of held-out mixes (lower is better);
decision regret compares the layout chosen with predicted speeds to the one with true speeds.")]
pub struct TrainArgs {
    /// Training data: the MISO data directory (mps_features.npy + mig_targets.npy) or a
    /// miso-mps-sample/1 JSON Lines file [default: ../shared/datasets/miso-a100, or $MISO_DATA]
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Model architecture.
    #[arg(long, value_enum, default_value = "mlp")]
    arch: ArchArg,
    /// Passes over the training data (default: 100 for mlp, 40 for unet).
    #[arg(long, value_parser = range(1usize, 100_000))]
    epochs: Option<usize>,
    /// Seed of the split, the initial weights and the batch order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of the mixes held out for validation (whole mixes: all permutations together).
    #[arg(long, default_value_t = 0.2, value_parser = range(0.01, 0.99))]
    val_frac: f64,
    /// Hold out one model family (e.g. bert) instead of random mixes.
    #[arg(long)]
    holdout_family: Option<String>,
    /// Train once per model family, each held out in turn, and report each (saves nothing).
    #[arg(long, conflicts_with_all = ["holdout_family", "out"])]
    lofo: bool,
    /// Hidden layer widths of the MLP (each 1-65,536).
    #[arg(long, value_delimiter = ',', default_value = "256,256", value_parser = range(1usize, 65_536))]
    hidden: Vec<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 256, value_parser = range(1usize, 1_000_000))]
    batch: usize,
    /// MLPs trained with consecutive seeds and averaged.
    #[arg(long, default_value_t = 5, value_parser = range(1usize, 100))]
    ensemble: usize,
    /// Learning rate (Adam).
    #[arg(long, default_value_t = 1e-3, value_parser = positive)]
    lr: f64,
    /// Also learn from runs: miso-observation/1 lines (a job's measured iteration time on the
    /// profile it ran on, with the MPS sample its speeds were predicted from). Their samples
    /// join the training data, labelled by the observations scaled onto --prior's prediction.
    #[arg(long)]
    observations: Option<std::path::PathBuf>,
    /// The model whose predictions fill what the observations do not say [default: the
    /// built-in model].
    #[arg(long, requires = "observations")]
    prior: Option<std::path::PathBuf>,
    /// Where to save the model (a directory; created).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Print the model's metadata (or the LOFO rows) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ArchArg {
    /// MISO's U-Net over the whole 3×7 MPS matrix.
    Unet,
    /// Per-job MLP on the job's MPS column and its co-runners' (the default model).
    Mlp,
    /// Linear regression per profile (linfa).
    Linear,
    /// Decision tree over workloads (linfa).
    Tree,
    /// 5 nearest neighbours on the job's column and co-runner summaries (baseline).
    Knn,
}

impl From<ArchArg> for predictor::Arch {
    fn from(a: ArchArg) -> Self {
        use predictor::Arch;
        match a {
            ArchArg::Unet => Arch::Unet,
            ArchArg::Mlp => Arch::Mlp,
            ArchArg::Linear => Arch::Linear,
            ArchArg::Tree => Arch::Tree,
            ArchArg::Knn => Arch::Knn,
        }
    }
}

pub fn print_metrics(title: &str, m: &predictor::Metrics) {
    println!("{title}: {} ({} real jobs)", m.split, m.jobs);
    println!(
        "  MAE on 7g/4g/3g rows: {:.4}   MAPE {:.2}%",
        m.mae, m.mape_pct
    );
    let kinds: Vec<String> = m
        .mae_by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    println!("  MAE by profile: {}", kinds.join("  "));
    let kinds: Vec<String> = m
        .mape_pct_by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}%"))
        .collect();
    println!("  MAPE by profile: {}", kinds.join("  "));
    if let Some(d) = &m.decision {
        println!(
            "  decisions over {} mixes: same layout as with true speeds {:.1}%, mean slowdown regret {:.4} ({:.4} where different)",
            d.mixes, d.same_layout_pct, d.mean_regret, d.mean_regret_when_different
        );
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let mut ds = predictor::data::load(&data_dir(&a.data)?)?;
    let mut added = Vec::new();
    if let Some(path) = &a.observations {
        let obs = predictor::observe::load_observations(path)?;
        let prior = super::load_model(&a.prior)?;
        let (idx, learned) = predictor::observe::merge(&mut ds, &obs, &prior)?;
        eprintln!(
            "learning from {} observations of {} workloads ({} samples) in {}",
            obs.len(),
            learned.len(),
            idx.len(),
            path.display()
        );
        added = idx;
    }
    let mut cfg = predictor::TrainConfig::new(a.arch.into());
    cfg.epochs = a.epochs;
    cfg.seed = a.seed;
    cfg.hidden = a.hidden.clone();
    cfg.lr = a.lr;
    cfg.ensemble = a.ensemble;
    cfg.batch = a.batch;
    cfg.recipe = std::env::args().collect::<Vec<_>>().join(" ");
    if let Some(out) = &a.out {
        cfg.name = out
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into());
    }
    if a.lofo {
        let r = lofo(&ds, &cfg, predictor::uncertainty::LEVEL)?;
        return print_lofo(cfg.arch.name(), None, &r, a.json);
    }
    let mut split = match &a.holdout_family {
        Some(f) => ds.family_split(f)?,
        None => ds.random_split(a.val_frac, a.seed),
    };
    split.always_train(&added);
    let bar = progress(cfg.epochs() as u64, cfg.arch.name(), "epochs");
    let p = predictor::train(&ds, &split, &cfg, &bar)?;
    bar.finish_and_clear();
    if let Some(out) = &a.out {
        p.save(out)?;
    }
    if a.json {
        return print_json(&p.meta);
    }
    println!(
        "{} trained in {:.1} s on {} ({} parameters)",
        cfg.arch.name(),
        p.meta.train_seconds,
        ds.source,
        p.meta.params
    );
    print_metrics("held out", &p.meta.metrics);
    if let Some(out) = &a.out {
        println!("saved to {}", out.display());
    }
    Ok(())
}

/// Leave-one-family-out: train `cfg` once per model family of `ds` with that family held out;
/// score the held-out family, measure interval coverage (nested) and decision regret per
/// objective, and calibrate intervals at `level` on all families.
pub fn lofo(
    ds: &predictor::Dataset,
    cfg: &predictor::TrainConfig,
    level: f64,
) -> Result<predictor::uncertainty::LofoReport> {
    use predictor::uncertainty;
    let q = uncertainty::BAND_QUANTILE;
    let folds = uncertainty::lofo(ds, cfg, q, &|fam| {
        progress(
            cfg.epochs() as u64,
            &format!("{} without {fam}", cfg.arch.name()),
            "epochs",
        )
    })?;
    Ok(uncertainty::report(ds, folds, level, q))
}

/// The per-family LOFO table (or JSON): MAE on the 7g/4g/3g rows, the 7g row, MAPE, interval
/// coverage, and decision regret per objective; the mean over families.
pub fn print_lofo(
    arch: &str,
    model: Option<&str>,
    r: &predictor::uncertainty::LofoReport,
    json_out: bool,
) -> Result<()> {
    if json_out {
        return print_json(
            &json!({"arch": arch, "model": model, "lofo": r.folds, "intervals": r.intervals}),
        );
    }
    let row7 = |m: &predictor::Metrics| m.mae_by_kind.get("7g").copied().unwrap_or(f64::NAN);
    let cov = |f: &predictor::uncertainty::FoldReport| {
        f.coverage.get("rows").copied().unwrap_or(f64::NAN)
    };
    let regret = |f: &predictor::uncertainty::FoldReport, o: &str| {
        f.decisions
            .get(o)
            .map(|d| d.mean_regret)
            .unwrap_or(f64::NAN)
    };
    let level = r.intervals.level * 100.0;
    println!(
        "leave-one-family-out, {arch}{}: each family scored by a model trained without it",
        model
            .map(|m| format!(" (recipe of {m})"))
            .unwrap_or_default()
    );
    println!(
        "  {:<12} {:>6} {:>8} {:>8} {:>8} {:>9} | {:>9} {:>9} {:>9}",
        "family",
        "jobs",
        "MAE",
        "7g row",
        "MAPE",
        format!("cov {level:.0}%"),
        "regret pt",
        "expected",
        "worst"
    );
    for f in &r.folds {
        let m = &f.metrics;
        println!(
            "  {:<12} {:>6} {:>8.4} {:>8.4} {:>7.2}% {:>8.1}% | {:>9.4} {:>9.4} {:>9.4}",
            f.family,
            m.jobs,
            m.mae,
            row7(m),
            m.mape_pct,
            100.0 * cov(f),
            regret(f, "point"),
            regret(f, "expected"),
            regret(f, "worst")
        );
    }
    let n = r.folds.len().max(1) as f64;
    let mean = |g: &dyn Fn(&predictor::uncertainty::FoldReport) -> f64| {
        r.folds.iter().map(g).sum::<f64>() / n
    };
    println!(
        "  {:<12} {:>6} {:>8.4} {:>8.4} {:>7.2}% {:>8.1}% | {:>9.4} {:>9.4} {:>9.4}",
        "mean",
        "",
        mean(&|f| f.metrics.mae),
        mean(&|f| row7(&f.metrics)),
        mean(&|f| f.metrics.mape_pct),
        100.0 * mean(&cov),
        mean(&|f| regret(f, "point")),
        mean(&|f| regret(f, "expected")),
        mean(&|f| regret(f, "worst"))
    );
    let margins: Vec<String> = r
        .intervals
        .margin
        .iter()
        .map(|(k, v)| format!("{k} ±{v:.3}"))
        .collect();
    println!(
        "MAE of the normalised latency on held-out jobs (lower is better). cov: share of the \
         family's 7g/4g/3g values inside the {level:.0}% interval calibrated without the family \
         (all families: {:.1}%). regret: mean slowdown lost by the layout chosen from the point \
         prediction, the expected slowdown, or the interval's worst case, vs. true speeds.",
        100.0
            * r.intervals
                .lofo_coverage
                .get("rows")
                .copied()
                .unwrap_or(f64::NAN)
    );
    println!("calibrated margins around the band: {}", margins.join("  "));
    Ok(())
}
