//! `miso recommend`: the optimizer on one GPU: layout, placement, assignment, and the plan
//! that gets there from the current layout.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use miso::gpu;
use miso::optimizer::{self, Objective, Options};

use super::{at_least, print_json, read_input, GpuArg};

#[derive(Args)]
#[command(after_help = "Examples:
  miso recommend --jobs examples/jobs.json
  miso recommend --jobs examples/jobs.json --current 7g.40gb@0 --objective throughput
  echo '[{\"id\":\"a\",\"workload\":\"bert_train8\"}]' | miso recommend --jobs - --json

jobs.json is an array of jobs, each either
  {\"id\": \"a\", \"workload\": \"bert_train8\"}  (a measured MISO workload, <model>_train<batch>)
or
  {\"id\": \"b\", \"speeds\": {\"3g.20gb\": 0.55, \"7g.40gb\": 1.0}, \"memory_mb\": 9000}
optionally with \"remaining_s\" (work left, seconds on a whole GPU), \"instance\" (where it runs
now, e.g. \"3g.20gb@4\"; must be in --current) and \"restart_s\" (checkpoint + restart seconds).
In the table, speed is the job's speed on its instance relative to a whole GPU (1.0).")]
pub struct RecommendArgs {
    #[command(flatten)]
    gpu: GpuArg,
    /// The jobs on this GPU (JSON file; `-` reads standard input).
    #[arg(long)]
    jobs: std::path::PathBuf,
    /// The GPU's current layout (default: no instance).
    #[arg(long, default_value = "empty")]
    current: String,
    /// What to optimise.
    #[arg(long, value_enum, default_value = "mean-slowdown")]
    objective: ObjectiveArg,
    /// Also consider layouts with spare (empty) instances beyond one per job.
    #[arg(long)]
    spare: bool,
    /// Relative tolerance within which layouts count as equal; among them the one that keeps
    /// the most running jobs in place wins.
    #[arg(long, default_value_t = 1e-9, value_parser = at_least(0.0))]
    tolerance: f64,
    /// Re-partition only when the gain over the jobs' remaining work exceeds the restart cost.
    #[arg(long)]
    cost_aware: bool,
    /// Seconds a reconfiguration stalls each moved job, on top of its restart.
    #[arg(long, default_value_t = 0.0, value_parser = at_least(0.0))]
    reconfig_s: f64,
    /// Print JSON: {"gpu", "layout", "objective", "kept_jobs", "plan"}.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ObjectiveArg {
    /// MISO's: minimise the mean of time-on-slice / time-on-whole-GPU.
    MeanSlowdown,
    /// Maximise the sum of the jobs' speeds.
    Throughput,
    /// Minimise the sum of expected completion times (needs remaining_s).
    CompletionTime,
}

impl From<ObjectiveArg> for Objective {
    fn from(o: ObjectiveArg) -> Objective {
        match o {
            ObjectiveArg::MeanSlowdown => Objective::MeanSlowdown,
            ObjectiveArg::Throughput => Objective::Throughput,
            ObjectiveArg::CompletionTime => Objective::CompletionTime,
        }
    }
}

pub fn run(a: RecommendArgs) -> Result<()> {
    let g = a.gpu.model()?;
    let current = gpu::parse_valid_layout(g, &a.current).context("--current")?;
    let text = read_input(&a.jobs)?;
    let jobs =
        optimizer::parse_jobs(g, &current, &text).with_context(|| a.jobs.display().to_string())?;
    let opts = Options {
        objective: a.objective.into(),
        spare: a.spare,
        tolerance: a.tolerance,
        cost_aware: a.cost_aware,
        reconfig_s: a.reconfig_s,
    };
    let plan = optimizer::plan(g, &jobs, &current, &opts)?;
    let d = &plan.decision;
    let rows: Vec<_> = d
        .layout
        .instances()
        .iter()
        .zip(&d.assignment)
        .map(|(inst, job)| {
            let v = inst.view(g);
            let speed = job.and_then(|j| jobs[j].perf.speed_on(g, inst.profile as usize));
            (v, job.map(|j| jobs[j].id.clone()), speed)
        })
        .collect();
    if a.json {
        let layout: Vec<_> = rows
            .iter()
            .map(|(v, job, speed)| json!({"profile": v.profile, "start": v.start, "size": v.size, "job": job, "speed": speed}))
            .collect();
        return print_json(&json!({
            "gpu": g.name,
            "layout": layout,
            "objective": {"name": opts.objective.name(), "value": d.value},
            "kept_jobs": d.kept_jobs,
            "plan": plan.view(g, &jobs),
        }));
    }
    println!("{} layout {}", g.name, d.layout.label(g));
    println!(
        "  {:<12} {:>5}  {:<16} {:>7}",
        "instance", "start", "job", "speed"
    );
    for (v, job, speed) in &rows {
        println!(
            "  {:<12} {:>5}  {:<16} {:>7}",
            v.profile,
            v.start,
            job.as_deref().unwrap_or("(spare)"),
            speed.map(|s| format!("{s:.3}")).unwrap_or_default()
        );
    }
    println!("objective {} = {:.4}", opts.objective.name(), d.value);
    let pv = plan.view(g, &jobs);
    if plan.is_noop() {
        match plan.skipped_gain_s {
            Some(gain) => println!("plan: keep the current layout (the best move would gain {gain:.1} s net, not worth it)"),
            None => println!("plan: nothing to change"),
        }
    } else {
        if pv.untouched.is_empty() {
            println!("plan:");
        } else {
            println!("plan (left running: {}):", pv.untouched.join(", "));
        }
        for (k, s) in pv.steps.iter().enumerate() {
            let line = match s {
                optimizer::StepView::Checkpoint { job } => format!("checkpoint {job}"),
                optimizer::StepView::Destroy { instance } => {
                    format!("destroy {}@{}", instance.profile, instance.start)
                }
                optimizer::StepView::Create { instance } => {
                    format!("create {}@{}", instance.profile, instance.start)
                }
                optimizer::StepView::Start {
                    job,
                    instance,
                    restart,
                } => format!(
                    "{} {job} on {}@{}",
                    if *restart { "restart" } else { "start" },
                    instance.profile,
                    instance.start
                ),
            };
            println!("  {}. {line}", k + 1);
        }
    }
    Ok(())
}
