//! `miso train-policy`: train the learned scheduling decision with PPO in the simulator, save
//! it as a policy folder with its learning curve, and evaluate it on held-out traces against
//! miso, ours and oracle (`--evaluate DIR` evaluates a policy without training).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use miso::gpu;
use miso::policy::rl::PolicyModel;
use miso::predictor::{self, Predictor};
use miso::rl::{self, Episode, EvalRow, TraceFiles, TrainConfig};

use super::{at_least, data_dir, print_json, progress, range};

#[derive(Args)]
#[command(after_help = "Examples:
  miso train-policy --out models/policy-mine                  # every trace family, ~10 min
  miso train-policy --out /tmp/p --families miso --iterations 5 --episodes 4
  miso train-policy --evaluate models/policy-default          # held-out table only
  miso train-policy --evaluate rl --json
  miso train-policy --probe                                   # how much room the decisions leave

The policy decides, at each arrival and completion, which of the best four GPUs (ranked by the
optimizer's gain) the job at the head of the queue joins, or whether it waits, and whether a
GPU's pending re-partition (a job left) is applied now or deferred; layouts and assignments stay
the exact optimizer's (ours' mechanism otherwise). Episodes are traces:
MISO-trace seeds 101-130 at 45/60/75 s mean inter-arrival and synthetic traces on 8 GPUs,
Philly days 0-2 on 24 GPUs, openb days 0-24 on 12 GPUs. Validation (which iteration is kept):
MISO seeds 131-132 and Philly day 3. Held out: MISO seeds 1-10 at 60 s, seeds 1-5 at 30 s and
100 s (loads outside training), Philly days 4-6, openb days 24-40.
The folder gets model.json (recipe, data fingerprint, seed, input ranges, metrics with the
held-out table), weights.json, curve.csv and curve.svg (the learning curve).")]
pub struct TrainPolicyArgs {
    /// Folder to write the trained policy to.
    #[arg(long, required_unless_present_any = ["evaluate", "probe"], conflicts_with = "evaluate")]
    out: Option<PathBuf>,
    /// Evaluate this policy folder (or `rl`, the built-in one) on the held-out traces; no
    /// training.
    #[arg(long)]
    evaluate: Option<String>,
    /// Trace families to train and evaluate on (miso, synthetic, philly, openb).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "miso,synthetic,philly,openb"
    )]
    families: Vec<String>,
    /// PPO iterations (each: episodes sampled from the training traces, then an update).
    #[arg(long, default_value_t = 40, value_parser = range(1usize, 10_000))]
    iterations: usize,
    /// Episodes (traces) per iteration.
    #[arg(long, default_value_t = 16, value_parser = range(1usize, 1_000))]
    episodes: usize,
    /// Hidden units of each of the two tanh layers.
    #[arg(long, default_value_t = 32, value_parser = range(1usize, 1_024))]
    hidden: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 3e-5, value_parser = range(1e-7, 1.0))]
    lr: f64,
    /// PPO epochs over each iteration's samples.
    #[arg(long, default_value_t = 2, value_parser = range(1usize, 100))]
    epochs: usize,
    /// Entropy bonus.
    #[arg(long, default_value_t = 0.0, value_parser = at_least(0.0))]
    entropy: f64,
    /// Epochs of cloning the rule (best gain) before PPO; 0 starts from random weights.
    #[arg(long, default_value_t = 20, value_parser = range(0usize, 1_000))]
    clone_epochs: usize,
    /// Share of the cloned rule's target spread over every valid action (exploration).
    #[arg(long, default_value_t = 0.1, value_parser = range(0.0, 1.0))]
    clone_smoothing: f64,
    /// Seed of everything random in training (same seed, same policy).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads for episodes (the result does not depend on it).
    #[arg(long, default_value_t = 2, value_parser = range(1usize, 256))]
    threads: usize,
    /// Advantages from the episode's JCT against the rule's on the same trace (paired
    /// baseline) instead of GAE over the critic.
    #[arg(long)]
    paired: bool,
    /// No training: run scripted deviations from the rule (second-best gain, fewest jobs,
    /// waiting, re-partitioning always or later, ...) on the training traces and print how
    /// each compares with the rule — the room the learned decisions have.
    #[arg(long, conflicts_with_all = ["out", "evaluate"])]
    probe: bool,
    /// Skip the held-out evaluation after training.
    #[arg(long)]
    no_evaluate: bool,
    /// The MISO measurements (MPS profiling in the simulator).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Predictor folder (default: the built-in model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The Philly week trace (default: traces/ beside the data folder).
    #[arg(long)]
    philly: Option<PathBuf>,
    /// The openb pod list (default: traces/ beside the data folder).
    #[arg(long)]
    openb: Option<PathBuf>,
    /// Print JSON: {"policy", "curve", "heldout"}.
    #[arg(long)]
    json: bool,
}

const FAMILIES: [&str; 4] = ["miso", "synthetic", "philly", "openb"];

pub fn run(a: TrainPolicyArgs) -> Result<()> {
    for f in &a.families {
        if !FAMILIES.contains(&f.as_str()) {
            bail!(
                "--families: unknown family `{f}` (allowed: {})",
                FAMILIES.join(", ")
            );
        }
    }
    let data_path = data_dir(&a.data)?;
    let data = predictor::data::load(&data_path)
        .with_context(|| format!("--data {}", data_path.display()))?;
    let traces = data_path
        .parent()
        .map(|p| p.join("traces"))
        .unwrap_or_default();
    let files = TraceFiles {
        philly: a.families.iter().any(|f| f == "philly").then(|| {
            a.philly
                .clone()
                .unwrap_or_else(|| traces.join("philly_week_20171127_1gpu.csv"))
        }),
        openb: a.families.iter().any(|f| f == "openb").then(|| {
            a.openb
                .clone()
                .unwrap_or_else(|| traces.join("openb_pod_list_default.csv"))
        }),
    };
    for (flag, p) in [("--philly", &files.philly), ("--openb", &files.openb)] {
        if let Some(p) = p {
            if !p.exists() {
                bail!(
                    "{flag}: {} does not exist (or leave its family out with --families)",
                    p.display()
                );
            }
        }
    }
    let mut sets = rl::episodes(&files).map_err(anyhow::Error::msg)?;
    let keep = |e: &Episode| {
        a.families
            .iter()
            .any(|f| e.family == *f || (f == "miso" && e.family.starts_with("miso")))
    };
    sets.train.retain(keep);
    sets.validate.retain(keep);
    sets.heldout.retain(keep);
    let model_dir = a.model.clone();
    let loader = move || match &model_dir {
        Some(d) => Predictor::load(d).map_err(|e| e.to_string()),
        None => Predictor::builtin().map_err(|e| e.to_string()),
    };
    let model = gpu::gpu("A100-40GB").map_err(anyhow::Error::msg)?;
    if a.probe {
        let eps = sets.train.clone();
        let bar = if a.json {
            indicatif::ProgressBar::hidden()
        } else {
            progress((eps.len() * (rl::PROBES.len() + 1)) as u64, "probe", "runs")
        };
        let b = bar.clone();
        let rows = rl::probe(&eps, model, &data, &loader, a.threads, &move || b.inc(1))
            .map_err(anyhow::Error::msg)?;
        bar.finish_and_clear();
        if a.json {
            return print_json(&serde_json::json!({ "probes": rows }));
        }
        let fams: Vec<String> = rows
            .first()
            .map(|r| r.vs_ours_pct.iter().map(|(f, _)| f.clone()).collect())
            .unwrap_or_default();
        print!("{:<22}", "probe (vs ours)");
        for f in &fams {
            print!(" {f:>10}");
        }
        println!(" {:>9} {:>9} {:>16}", "best", "worst", "deviations");
        for r in &rows {
            print!("{:<22}", r.probe);
            for (_, v) in &r.vs_ours_pct {
                print!(" {:>9.2}%", v);
            }
            println!(
                " {:>8.2}% {:>8.2}% {:>16}",
                r.best_pct,
                r.worst_pct,
                format!("{}/{}", r.deviations, r.decisions)
            );
        }
        println!("average JCT of each scripted policy against the rule (ours) on the same training trace, mean per family (negative = better); best/worst: its best and worst trace; deviations: decisions unlike the rule's / all.");
        return Ok(());
    }

    let (policy, curve, dir) = if let Some(spec) = &a.evaluate {
        let spec = if spec == "rl" {
            "rl".to_string()
        } else {
            format!("rl:{spec}")
        };
        let p = PolicyModel::from_spec(&spec)?;
        (p, Vec::new(), None)
    } else {
        let out = a.out.clone().context("--out: required")?;
        let cfg = TrainConfig {
            iterations: a.iterations,
            episodes: a.episodes,
            hidden: a.hidden,
            lr: a.lr,
            epochs: a.epochs,
            entropy: a.entropy,
            clone_epochs: a.clone_epochs,
            clone_smoothing: a.clone_smoothing,
            seed: a.seed,
            threads: a.threads,
            paired: a.paired,
            ..TrainConfig::default()
        };
        let bar = if a.json {
            indicatif::ProgressBar::hidden()
        } else {
            progress(a.iterations as u64 + 1, "train", "iterations")
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "policy".into());
        let t = rl::train(&cfg, &sets, model, &data, &loader, &name, &mut |p| {
            bar.set_message(format!(
                "validation vs ours {:+.2} %, reward {:.4}",
                p.validation_vs_ours_pct, p.reward
            ));
            bar.inc(1);
        })
        .map_err(anyhow::Error::msg)?;
        bar.finish_and_clear();
        t.model.save(&out)?;
        std::fs::write(out.join("curve.csv"), rl::curve_csv(&t.curve))
            .with_context(|| format!("cannot write {}", out.join("curve.csv").display()))?;
        let svg = rl::curve_svg(&t.curve).map_err(anyhow::Error::msg)?;
        std::fs::write(out.join("curve.svg"), svg)
            .with_context(|| format!("cannot write {}", out.join("curve.svg").display()))?;
        if !a.json {
            println!(
                "trained {} iterations on {} episodes; kept iteration {} (validation {:+.2} % vs ours); saved {}",
                a.iterations,
                sets.train.len(),
                t.best_iteration,
                t.curve.get(t.best_iteration).map_or(0.0, |p| p.validation_vs_ours_pct),
                out.display()
            );
        }
        (t.model, t.curve, Some(out))
    };

    let rows = if a.no_evaluate || sets.heldout.is_empty() {
        Vec::new()
    } else {
        let bar = if a.json {
            indicatif::ProgressBar::hidden()
        } else {
            progress(sets.heldout.len() as u64, "held-out", "traces")
        };
        let b = bar.clone();
        let rows = rl::evaluate(
            Arc::new(policy.clone()),
            &sets.heldout,
            model,
            &data,
            &loader,
            a.threads,
            &move || b.inc(1),
        )
        .map_err(anyhow::Error::msg)?;
        bar.finish_and_clear();
        rows
    };
    if let Some(dir) = &dir {
        if !rows.is_empty() {
            let mut p = policy.clone();
            if let Some(m) = p.meta.metrics.as_object_mut() {
                m.insert("heldout".into(), serde_json::to_value(&rows)?);
            }
            p.save(dir)?;
        }
    }
    if a.json {
        return print_json(&serde_json::json!({
            "policy": policy.meta,
            "curve": curve,
            "heldout": rows,
        }));
    }
    if !rows.is_empty() {
        print_table(&rows);
    }
    Ok(())
}

fn print_table(rows: &[EvalRow]) {
    println!(
        "{:<16} {:>4} {:>4} {:>14} {:>14} {:>14} {:>14} {:>13} {:>13} {:>10} {:>9}",
        "held-out",
        "GPUs",
        "runs",
        "miso",
        "ours",
        "oracle",
        "rl",
        "rl vs ours",
        "rl vs miso",
        "worst/miso",
        "fallback"
    );
    for r in rows {
        let cell = |k: usize| {
            r.mean_jct_s
                .get(k)
                .map_or(String::new(), |(_, m, sd)| format!("{m:.0} ± {sd:.0}"))
        };
        println!(
            "{:<16} {:>4} {:>4} {:>14} {:>14} {:>14} {:>14} {:>13} {:>13} {:>10} {:>9}",
            r.family,
            r.gpus,
            r.episodes,
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            format!("{:+.2} ± {:.2} %", r.rl_vs_ours_pct.0, r.rl_vs_ours_pct.1),
            format!("{:+.2} ± {:.2} %", r.rl_vs_miso_pct.0, r.rl_vs_miso_pct.1),
            format!("{:+.2} %", r.rl_vs_miso_worst_pct),
            format!("{}/{}", r.fallbacks, r.decisions),
        );
    }
    println!("average JCT in seconds, mean ± standard deviation over the family's traces; rl vs X: per-trace relative difference (negative = rl better); worst/miso: rl's worst trace against miso; fallback: decisions the rule took (observation outside the training range) / all.");
}
