//! `miso simulate`: flags, loading the trace, running the policies (one seed, several seeds, or
//! the ablation of the modelling switches), printing tables or JSON, writing the report.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use miso::policy::{MpsPlacement, MpsSpeeds, Overheads};
use miso::predictor;
use miso::sim::{self, scenario, trace};

use super::{at_least, data_dir, positive, print_json, progress, range, GpuArg};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// The MISO artifact's trace_100.json (+ job_models.json beside it).
    Miso,
    /// Any CSV through --columns.
    Csv,
    /// The Philly CSV (= csv with id=job_id,arrival=submit_time,work=duration,gpus=num_gpus).
    Philly,
    /// The Alibaba openb pod list (= csv with id=name,arrival=creation_time,
    /// start=scheduled_time,end=deletion_time,gpus=num_gpu,gpu_milli=gpu_milli,qos=qos,
    /// phase=pod_phase).
    Openb,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ArrivalOrder {
    /// A seeded random order of the jobs (exp_full.py's random.sample).
    Shuffled,
    /// Job-id order (trace_100.json is sorted by run time: shortest first).
    ById,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MpsSpeedsArg {
    /// The measured MISO mixes: each job's latency with its actual co-runners.
    Mixes,
    /// Solo thread scaling, 15 % slower per co-runner (the artifact's only MPS model).
    Penalty,
    /// Solo thread scaling, no interference.
    Solo,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MpsPlacementArg {
    /// Lowest-numbered GPU with room, --mps-level-pct threads per job (the artifact).
    FirstFit,
    /// Least-loaded GPU, threads split equally.
    LeastLoaded,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Restarts {
    /// Every job of a re-partitioned GPU restarts (the artifact's MISO and Oracle).
    All,
    /// Only jobs whose instance changes.
    Moved,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProfilingArg {
    /// Only a job joining busy jobs is profiled; everyone keeps training under MPS meanwhile.
    Artifact,
    /// Every join is profiled, even on an idle GPU, and all jobs of the GPU stall meanwhile.
    StallAll,
}

#[derive(Args)]
#[command(after_help = "Examples:
  miso simulate                                   # the MISO paper's setup, seed 1
  miso simulate --seeds 1-10                      # the paper's table over ten seeds
  miso simulate --ablation --seeds 1-10           # what each modelling switch is worth
  miso simulate --trace ../shared/datasets/traces/philly_week_20171127_1gpu.csv --format philly --gpus 64
  miso simulate --trace t.csv --format csv --columns arrival=submit,work=runtime,gpus=ngpu
  miso simulate --synthetic 500 --mean-interarrival-s 30 --policy nopart,miso,ours --json

Lower is better for JCT, JRT and queueing times; higher for throughput and STP.")]
pub struct SimulateArgs {
    /// Trace file [default: the MISO artifact's 100-job trace, built in]
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
    /// Trace format.
    #[arg(long, value_enum, default_value = "miso")]
    format: FormatArg,
    /// CSV column mapping (with --format csv): arrival=COL and work=COL (or start=COL,end=COL),
    /// optionally gpus, gpu_fraction or gpu_milli, workload, id, qos, phase. Arrival in seconds
    /// or as a UTC datetime (2017-10-09 07:01:55).
    #[arg(long)]
    columns: Option<String>,
    /// QoS classes to keep when the trace has a qos column (e.g. LS,BE; default all).
    #[arg(long, value_delimiter = ',')]
    qos: Vec<String>,
    /// Instead of a file: a synthetic trace of this many jobs (at most 10,000,000).
    #[arg(long, conflicts_with = "trace", value_parser = range(1usize, 10_000_000))]
    synthetic: Option<usize>,
    /// Mean inter-arrival seconds (MISO and synthetic traces; MISO: first third twice as fast).
    #[arg(long, default_value_t = 60.0, value_parser = positive)]
    mean_interarrival_s: f64,
    /// MISO trace: arrival order of the jobs.
    #[arg(long, value_enum, default_value = "shuffled")]
    arrival_order: ArrivalOrder,
    /// Multiply CSV job durations by this (e.g. to load a small cluster less).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    time_scale: f64,
    /// Keep only the first N jobs of the trace (by arrival).
    #[arg(long, value_parser = range(1usize, 100_000_000))]
    limit: Option<usize>,
    /// Write the jobs of the trace as loaded (seed, order, --limit applied) to this CSV and
    /// exit: name, arrival_s, work_s (seconds on a whole GPU), workload and its measured speed
    /// on each profile kind (speed_1g ... speed_7g, empty where it does not fit). The same jobs
    /// can then be replayed elsewhere (scripts/slurm-replay runs them through Slurm).
    #[arg(long)]
    export_jobs: Option<std::path::PathBuf>,
    /// GPUs in the cluster.
    #[arg(long, default_value_t = 8, value_parser = range(1usize, 100_000))]
    gpus: usize,
    #[command(flatten)]
    gpu: GpuArg,
    /// Policies to run: all, or a comma list of nopart, static, static-best, mps, miso, oracle,
    /// ours.
    #[arg(long, default_value = "all")]
    policy: String,
    /// Seed of arrivals, workload mapping and MPS sample choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Several seeds (e.g. 1-10 or 1,2,5): per-seed averages and their mean.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<String>,
    /// Run the artifact's setup, then each modelling switch flipped, over --seeds: average JCT
    /// of each policy per row.
    #[arg(long)]
    ablation: bool,
    /// The predictor MISO and Ours use [default: the built-in model, a copy of models/default]
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// The speeds MISO and Ours give the optimizer (the robust objective): the point
    /// prediction, the expected slowdown under the model's predictive distribution (minimises
    /// the expected mean slowdown), or the worst case of its calibrated interval.
    #[arg(long, default_value = "point", value_parser = ["point", "expected", "worst"])]
    estimate: String,
    /// MISO and Ours learn from runs: each finished job's measured speed on the slices it ran
    /// on corrects the predictions for later jobs of its workload.
    #[arg(long)]
    learn_online: bool,
    /// Also report this model family's jobs apart (e.g. bert): their average JCT, and by
    /// thirds of their arrivals (does a cost fade as they are learned?).
    #[arg(long)]
    family: Option<String>,
    /// The MISO measurements (MPS matrices for profiling; MPS speeds)
    /// [default: ../shared/datasets/miso-a100, or $MISO_DATA]
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Seconds between scheduling rounds (the artifact's loop: 10); 0: react at every event.
    #[arg(long, default_value_t = 10.0, value_parser = at_least(0.0))]
    tick_s: f64,
    /// MPS profiling seconds when a job joins busy jobs.
    #[arg(long, default_value_t = 30.0, value_parser = at_least(0.0))]
    profiling_s: f64,
    /// How profiling is modelled.
    #[arg(long, value_enum, default_value = "artifact")]
    profiling: ProfilingArg,
    /// MIG reconfiguration seconds before jobs start on new instances.
    #[arg(long, default_value_t = 2.0, value_parser = at_least(0.0))]
    reconfig_s: f64,
    /// Restore cost of a checkpointed job: the artifact's measured per-model times (bert 18 s,
    /// cyclegan 44, deepspeech2 14, embedding 4, gnn 5, mobilenet 7, resnet 9, transformer 5),
    /// or this many seconds for every job.
    #[arg(long, value_parser = at_least(0.0))]
    restart_s: Option<f64>,
    /// Which jobs MISO and Oracle restart when they re-partition a GPU.
    #[arg(long, value_enum, default_value = "all")]
    miso_restarts: Restarts,
    /// MPS speeds of co-located jobs (MPS baseline, profiling phase).
    #[arg(long, value_enum, default_value = "mixes")]
    mps_speeds: MpsSpeedsArg,
    /// MPS baseline placement.
    #[arg(long, value_enum, default_value = "first-fit")]
    mps_placement: MpsPlacementArg,
    /// Jobs per GPU under the MPS baseline (1-7).
    #[arg(long, default_value_t = 3, value_parser = range(1usize, 7))]
    mps_max_jobs: usize,
    /// Active-thread percentage per job under the MPS baseline (the artifact: 33).
    #[arg(long, default_value_t = 33.0, value_parser = range(1.0, 100.0))]
    mps_level_pct: f64,
    /// The static baseline's layout (default: the artifact's 2g.10gb@0,2g.10gb@2,3g.20gb@4).
    #[arg(long)]
    static_layout: Option<String>,
    /// The static baseline does not promote jobs to larger idle instances.
    #[arg(long)]
    no_promotion: bool,
    /// Write an HTML/SVG report (JCT CDF, throughput over time, per-GPU occupancy) here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u64, u64) = (
                a.trim().parse().context("--seeds: not a number")?,
                b.trim().parse().context("--seeds: not a number")?,
            );
            if b < a || b - a > 1000 {
                bail!("--seeds: `{part}` is not a range of at most 1,000 seeds");
            }
            v.extend(a..=b);
        } else {
            v.push(
                part.parse()
                    .with_context(|| format!("--seeds: `{part}` is not a number"))?,
            );
        }
    }
    if v.is_empty() {
        bail!("--seeds: no seed given");
    }
    Ok(v)
}

struct Setup {
    model: &'static miso::gpu::GpuModel,
    policies: Vec<String>,
    data: predictor::Dataset,
    static_layout: Option<miso::gpu::Layout>,
}

fn check(a: &SimulateArgs) -> Result<()> {
    // Numbers are range-checked by their value parsers; what is left relates flags.
    if a.columns.is_some() != (a.format == FormatArg::Csv) {
        bail!("--columns: give it exactly when --format csv");
    }
    Ok(())
}

fn load_trace(
    a: &SimulateArgs,
    seed: u64,
    shuffle: bool,
) -> Result<(Vec<trace::TraceJob>, String, trace::Skipped)> {
    let opts = trace::LoadOptions {
        seed,
        time_scale: a.time_scale,
        mean_interarrival_s: a.mean_interarrival_s,
        shuffle,
        qos: a.qos.clone(),
    };
    let (mut jobs, source, skipped) = match (&a.synthetic, &a.trace) {
        (Some(n), _) => (
            trace::synthetic(*n, a.mean_interarrival_s, 600.0, 4.0 * 3600.0, seed),
            format!("synthetic ({n} jobs)"),
            trace::Skipped::default(),
        ),
        (None, None) if a.format == FormatArg::Miso => (
            trace::builtin_miso(&opts),
            "the MISO artifact's trace_100.json (built in)".to_string(),
            trace::Skipped::default(),
        ),
        (None, None) => bail!("--trace: a file is needed with --format other than miso"),
        (None, Some(path)) => {
            let path = path.clone();
            let format = match a.format {
                FormatArg::Miso => trace::Format::Miso,
                FormatArg::Philly => trace::Format::philly(),
                FormatArg::Openb => trace::Format::openb(),
                FormatArg::Csv => trace::Format::Csv(trace::Columns::parse(
                    a.columns.as_deref().unwrap_or_default(),
                )?),
            };
            let t = trace::load(&path, &format, &opts).context("--trace")?;
            (t.jobs, path.display().to_string(), t.skipped)
        }
    };
    if let Some(n) = a.limit {
        jobs.sort_by(|x, y| x.arrival_s.total_cmp(&y.arrival_s));
        jobs.truncate(n);
    }
    Ok((jobs, source, skipped))
}

/// `--export-jobs`: the trace's jobs with their workload's measured speeds, as CSV.
fn export_jobs(a: &SimulateArgs, path: &std::path::Path) -> Result<()> {
    let seed = a.seed;
    let (jobs, source, _) = load_trace(a, seed, a.arrival_order == ArrivalOrder::Shuffled)?;
    let cat = miso::perf::catalog();
    let mut w = csv::Writer::from_path(path)
        .with_context(|| format!("--export-jobs {}", path.display()))?;
    w.write_record([
        "name",
        "arrival_s",
        "work_s",
        "workload",
        "speed_1g",
        "speed_2g",
        "speed_3g",
        "speed_4g",
        "speed_7g",
    ])?;
    for j in &jobs {
        let wl = cat.get(j.workload).with_context(|| {
            format!(
                "job {}: workload #{} is not in the catalog",
                j.name, j.workload
            )
        })?;
        let mut rec = vec![
            j.name.clone(),
            format!("{:.3}", j.arrival_s),
            format!("{:.3}", j.work_s),
            wl.name.clone(),
        ];
        rec.extend(
            wl.perf()
                .speed
                .iter()
                .map(|s| s.map(|v| format!("{v:.4}")).unwrap_or_default()),
        );
        w.write_record(&rec)?;
    }
    w.flush()?;
    eprintln!(
        "{} jobs of {source} (seed {seed}) written to {}",
        jobs.len(),
        path.display()
    );
    Ok(())
}

fn fidelity(a: &SimulateArgs) -> scenario::Fidelity {
    scenario::Fidelity {
        tick_s: a.tick_s,
        mps_speeds: match a.mps_speeds {
            MpsSpeedsArg::Mixes => MpsSpeeds::Mixes,
            MpsSpeedsArg::Penalty => MpsSpeeds::Penalty,
            MpsSpeedsArg::Solo => MpsSpeeds::Solo,
        },
        mps_placement: match a.mps_placement {
            MpsPlacementArg::FirstFit => MpsPlacement::FirstFitFixed,
            MpsPlacementArg::LeastLoaded => MpsPlacement::LeastLoadedEqual,
        },
        restart_all: a.miso_restarts == Restarts::All,
        stall_profiling: a.profiling == ProfilingArg::StallAll,
        static_promotion: !a.no_promotion,
    }
}

fn overheads(a: &SimulateArgs) -> Overheads {
    Overheads {
        profiling_s: a.profiling_s,
        reconfig_s: a.reconfig_s,
        per_model_restart: a.restart_s.is_none(),
        restart_s: a.restart_s.unwrap_or(30.0),
        ..Overheads::default()
    }
}

/// Run the policies on one seed with these switches; (policy, outcome, detail) in order.
fn run_seed(
    a: &SimulateArgs,
    s: &Setup,
    seed: u64,
    fid: &scenario::Fidelity,
    oh: &Overheads,
    shuffle: Option<bool>,
    quiet: bool,
) -> Result<Run> {
    let shuffle = shuffle.unwrap_or(a.arrival_order == ArrivalOrder::Shuffled);
    let (jobs, source, skipped) = load_trace(a, seed, shuffle)?;
    let model_dir = a.model.clone();
    let load = move || match &model_dir {
        Some(d) => predictor::Predictor::load(d).map_err(|e| e.to_string()),
        None => predictor::Predictor::builtin().map_err(|e| e.to_string()),
    };
    let env = scenario::Env {
        seed,
        overheads: oh.clone(),
        mps_max_jobs: a.mps_max_jobs,
        mps_level_pct: a.mps_level_pct,
        static_layout: s.static_layout.clone(),
        fidelity: fid.clone(),
        objective: a.estimate.parse().map_err(anyhow::Error::msg)?,
        learn_online: a.learn_online,
        ..scenario::Env::artifact(s.model, a.gpus, &s.data, &load)
    };
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for p in &s.policies {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            progress(jobs.len() as u64, p, "jobs")
        };
        let r = scenario::run_named(p, &jobs, &env, &mut |d| bar.set_position(d as u64));
        bar.finish_and_clear();
        match r {
            Ok(r) => out.push(r),
            // A policy under which some job can never run is reported, the others still run.
            Err(scenario::ScenarioError::Sim(e @ sim::SimError::Stuck { .. })) if !quiet => {
                failed.push((p.clone(), e.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let families = jobs
        .iter()
        .map(|j| miso::perf::catalog()[j.workload].model)
        .collect();
    Ok(Run {
        outcomes: out,
        failed,
        families,
        jobs: jobs.len(),
        source,
        skipped,
    })
}

/// What one seed produced.
struct Run {
    outcomes: Vec<(sim::Outcome, Option<String>)>,
    /// Policies under which some job could never run, with the reason.
    failed: Vec<(String, String)>,
    /// Each job's model family, in trace order.
    families: Vec<&'static str>,
    jobs: usize,
    source: String,
    skipped: trace::Skipped,
}

pub fn run(a: SimulateArgs) -> Result<()> {
    check(&a)?;
    let model = a.gpu.model()?;
    let policies: Vec<String> = if a.policy == "all" {
        scenario::POLICIES.iter().map(|s| s.to_string()).collect()
    } else {
        a.policy.split(',').map(|s| s.trim().to_string()).collect()
    };
    for p in &policies {
        if p == "rl" || p.starts_with("rl:") {
            // Loaded now, so a bad folder is an error before anything runs.
            miso::policy::rl::PolicyModel::from_spec(p).context("--policy")?;
            continue;
        }
        if !scenario::POLICIES.contains(&p.as_str()) {
            bail!(
                "--policy: unknown policy `{p}` (allowed: all, {}, rl, rl:DIR)",
                scenario::POLICIES.join(", ")
            );
        }
    }
    let static_layout = match &a.static_layout {
        Some(l) => Some(miso::gpu::parse_valid_layout(model, l).context("--static-layout")?),
        None => None,
    };
    if let Some(path) = &a.export_jobs {
        return export_jobs(&a, path);
    }
    let data =
        predictor::data::load(&data_dir(&a.data)?).context("--data (the MISO measurements)")?;
    let setup = Setup {
        model,
        policies,
        data,
        static_layout,
    };
    if a.ablation {
        return ablation(&a, &setup);
    }
    if let Some(spec) = &a.seeds {
        return many_seeds(&a, &setup, &parse_seeds(spec)?);
    }
    let Run {
        outcomes,
        failed,
        families,
        jobs: njobs,
        source,
        skipped,
    } = run_seed(
        &a,
        &setup,
        a.seed,
        &fidelity(&a),
        &overheads(&a),
        None,
        false,
    )?;
    let mut results = serde_json::Map::new();
    for (o, detail) in &outcomes {
        let mut m = serde_json::to_value(&o.metrics)?;
        if let (Some(d), Some(obj)) = (detail, m.as_object_mut()) {
            obj.insert("detail".into(), json!(d));
        }
        if let (Some(f), Some(obj)) = (&a.family, m.as_object_mut()) {
            obj.insert("family".into(), json!(family_jct(o, &families, f)));
        }
        results.insert(o.policy.clone(), m);
    }
    for (p, e) in &failed {
        results.insert(p.clone(), json!({ "error": e }));
    }
    let title = format!("{njobs} jobs from {source} on {} × {}", a.gpus, model.name);
    let params = params(&a, &skipped);
    if let Some(dir) = &a.report {
        let os: Vec<sim::Outcome> = outcomes.iter().map(|(o, _)| o.clone()).collect();
        let details: Vec<String> = outcomes
            .iter()
            .filter_map(|(o, d)| d.as_ref().map(|d| format!("{}: {d}", o.policy)))
            .collect();
        // A learned policy's learning curve (stored with it) goes into the report too.
        let mut figures = Vec::new();
        for p in setup
            .policies
            .iter()
            .filter(|p| *p == "rl" || p.starts_with("rl:"))
        {
            let m = miso::policy::rl::PolicyModel::from_spec(p)?;
            let curve: Vec<miso::rl::CurvePoint> =
                serde_json::from_value(m.meta.metrics["curve"].clone()).unwrap_or_default();
            if !curve.is_empty() {
                figures.push(sim::report::Figure {
                    heading: format!("Learning curve of {p} ({})", m.meta.name),
                    file: format!("curve_{}.svg", figures.len()),
                    svg: miso::rl::curve_svg(&curve).map_err(anyhow::Error::msg)?,
                });
            }
        }
        sim::report::write(dir, &title, &params, &details, &os, a.gpus, &figures)
            .with_context(|| format!("cannot write the report to {}", dir.display()))?;
    }
    if a.json {
        return print_json(&json!({
            "scenario": {"trace": source, "jobs": njobs, "gpus": a.gpus, "gpu": model.name, "seed": a.seed,
                         "parameters": params, "skipped": skipped},
            "policies": results,
        }));
    }
    println!("{title} (seed {})", a.seed);
    print_table(&outcomes);
    if let Some(f) = &a.family {
        println!("jobs of family {f}: average JCT (s), all and by thirds of their arrivals");
        for (o, _) in &outcomes {
            let fj = family_jct(o, &families, f);
            let thirds: Vec<String> = fj.thirds.iter().map(|v| format!("{v:.0}")).collect();
            println!(
                "  {:<11} {:>4} jobs {:>9.0}   thirds {}",
                o.policy,
                fj.jobs,
                fj.avg_jct_s,
                thirds.join(" / ")
            );
        }
    }
    for (p, e) in &failed {
        println!("{p}: not run to the end: {e}");
    }
    if let Some(dir) = &a.report {
        println!("report: {}", dir.join("index.html").display());
    }
    Ok(())
}

fn params(a: &SimulateArgs, skipped: &trace::Skipped) -> serde_json::Value {
    json!({
        "seed": a.seed, "gpus": a.gpus, "gpu": a.gpu.gpu, "policy": a.policy,
        "model": a.model.as_ref().map_or("built-in (models/default)".to_string(), |m| m.display().to_string()),
        "static_layout": a.static_layout.clone().unwrap_or_else(|| a.gpu.model()
            .map(|m| scenario::default_static_layout(m).label(m)).unwrap_or_default()),
        "tick_s": a.tick_s, "mean_interarrival_s": a.mean_interarrival_s,
        "arrival_order": if a.arrival_order == ArrivalOrder::Shuffled { "shuffled" } else { "by-id" },
        "profiling": if a.profiling == ProfilingArg::Artifact { "artifact" } else { "stall-all" },
        "profiling_s": a.profiling_s, "reconfig_s": a.reconfig_s,
        "restart": a.restart_s.map_or("per-model".to_string(), |s| format!("{s} s")),
        "miso_restarts": if a.miso_restarts == Restarts::All { "all" } else { "moved" },
        "mps_speeds": format!("{:?}", fidelity(a).mps_speeds).to_lowercase(),
        "mps_placement": if a.mps_placement == MpsPlacementArg::FirstFit { "first-fit" } else { "least-loaded" },
        "mps_max_jobs": a.mps_max_jobs, "mps_level_pct": a.mps_level_pct,
        "time_scale": a.time_scale, "skipped_rows": skipped,
        "estimate": a.estimate, "learn_online": a.learn_online,
    })
}

fn print_table(outcomes: &[(sim::Outcome, Option<String>)]) {
    println!(
        "{:<11} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>6} {:>5} {:>8} {:>8} {:>7}",
        "policy",
        "avg JCT",
        "median",
        "p95",
        "JRT",
        "queue",
        "makespan",
        "STP",
        "util",
        "reconfig",
        "restarts",
        "prof s"
    );
    for (o, _) in outcomes {
        let m = &o.metrics;
        println!(
            "{:<11} {:>9.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>10.0} {:>6.2} {:>4.0}% {:>8} {:>8.2} {:>7.1}",
            o.policy,
            m.avg_jct_s,
            m.median_jct_s,
            m.p95_jct_s,
            m.avg_jrt_s,
            m.avg_queue_s,
            m.makespan_s,
            m.avg_stp,
            100.0 * m.gpu_utilization,
            m.reconfigurations,
            m.restarts_per_job,
            m.profiling_s_per_job
        );
    }
    println!(
        "seconds; lower is better except STP (mean summed speed of running jobs, higher is better).\n\
         JCT = completion − arrival, JRT = completion − start, queue = start − arrival; makespan from\n\
         the experiment start; reconfig = MIG layout changes; restarts = checkpoint/restarts per job;\n\
         prof s = seconds per job in MPS profiling."
    );
    for (o, d) in outcomes {
        if let Some(d) = d {
            println!("{}: {d}", o.policy);
        }
        if let Some(g) = &o.metrics.groups {
            for (name, gm) in g {
                println!(
                    "{}: {name}: {} jobs, avg JCT {:.0}, p95 {:.0}, queue {:.0}",
                    o.policy, gm.jobs, gm.avg_jct_s, gm.p95_jct_s, gm.avg_queue_s
                );
            }
        }
    }
    let avg = |n: &str| {
        outcomes
            .iter()
            .find(|(o, _)| o.policy == n)
            .map(|(o, _)| o.metrics.avg_jct_s)
    };
    for (p, base) in [
        ("miso", "nopart"),
        ("miso", "static"),
        ("ours", "miso"),
        ("ours", "nopart"),
    ] {
        if let (Some(b), Some(x)) = (avg(base), avg(p)) {
            println!("{p} vs {base}: average JCT {:+.1}%", 100.0 * (x - b) / b);
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn many_seeds(a: &SimulateArgs, s: &Setup, seeds: &[u64]) -> Result<()> {
    let (fid, oh) = (fidelity(a), overheads(a));
    let bar = progress(seeds.len() as u64, "seeds", "seeds");
    let mut rows: Vec<(u64, Vec<(String, sim::Metrics)>)> = Vec::new();
    // With --family: per seed, per policy, the family's JCT.
    let mut fam: Vec<Vec<(String, FamilyJct)>> = Vec::new();
    for &seed in seeds {
        let r = run_seed(a, s, seed, &fid, &oh, None, true)?;
        if let Some(f) = &a.family {
            fam.push(
                r.outcomes
                    .iter()
                    .map(|(o, _)| (o.policy.clone(), family_jct(o, &r.families, f)))
                    .collect(),
            );
        }
        rows.push((
            seed,
            r.outcomes
                .into_iter()
                .map(|(o, _)| (o.policy, o.metrics))
                .collect(),
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let names: Vec<String> = rows[0].1.iter().map(|(p, _)| p.clone()).collect();
    let col = |p: &str, f: &dyn Fn(&sim::Metrics) -> f64| -> Vec<f64> {
        rows.iter()
            .filter_map(|(_, r)| r.iter().find(|(n, _)| n == p).map(|(_, m)| f(m)))
            .collect()
    };
    // The family's JCT averaged over seeds: (avg, thirds) per policy.
    let fam_mean = |p: &str| -> Option<(f64, Vec<f64>)> {
        let v: Vec<&FamilyJct> = fam
            .iter()
            .filter_map(|r| r.iter().find(|(n, _)| n == p).map(|(_, f)| f))
            .collect();
        if v.is_empty() {
            return None;
        }
        let avg = mean(&v.iter().map(|f| f.avg_jct_s).collect::<Vec<_>>());
        let thirds = (0..3)
            .map(|t| mean(&v.iter().map(|f| f.thirds[t]).collect::<Vec<_>>()))
            .collect();
        Some((avg, thirds))
    };
    if a.json {
        let per: Vec<_> = rows
            .iter()
            .map(|(seed, r)| {
                let m: serde_json::Map<String, serde_json::Value> = r
                    .iter()
                    .map(|(p, m)| (p.clone(), serde_json::to_value(m).unwrap_or_default()))
                    .collect();
                json!({"seed": seed, "policies": m})
            })
            .collect();
        let means: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    json!({
                        "avg_jct_s": mean(&col(p, &|m| m.avg_jct_s)),
                        "p95_jct_s": mean(&col(p, &|m| m.p95_jct_s)),
                        "avg_queue_s": mean(&col(p, &|m| m.avg_queue_s)),
                        "makespan_s": mean(&col(p, &|m| m.makespan_s)),
                        "family": fam_mean(p).map(|(avg, thirds)| json!({"avg_jct_s": avg, "thirds": thirds})),
                    }),
                )
            })
            .collect();
        return print_json(&json!({"seeds": per, "mean": means}));
    }
    print!("{:<6}", "seed");
    for p in &names {
        print!(" {p:>11}");
    }
    println!();
    for (seed, r) in &rows {
        print!("{seed:<6}");
        for (_, m) in r {
            print!(" {:>11.0}", m.avg_jct_s);
        }
        println!();
    }
    for (label, f) in [
        (
            "mean",
            &(|m: &sim::Metrics| m.avg_jct_s) as &dyn Fn(&sim::Metrics) -> f64,
        ),
        ("p95", &|m: &sim::Metrics| m.p95_jct_s),
    ] {
        print!("{label:<6}");
        for p in &names {
            print!(" {:>11.0}", mean(&col(p, f)));
        }
        println!();
    }
    println!(
        "average JCT in seconds per seed (lower is better); p95 row: mean of the per-seed p95 JCT."
    );
    if let Some(f) = &a.family {
        println!(
            "jobs of family {f}, mean over seeds: average JCT (s), and by thirds of their arrivals"
        );
        for p in &names {
            if let Some((avg, thirds)) = fam_mean(p) {
                let t: Vec<String> = thirds.iter().map(|v| format!("{v:.0}")).collect();
                println!("  {p:<11} {avg:>9.0}   thirds {}", t.join(" / "));
            }
        }
    }
    let m = |p: &str| mean(&col(p, &|m| m.avg_jct_s));
    for (p, base) in [
        ("miso", "nopart"),
        ("miso", "static"),
        ("ours", "miso"),
        ("oracle", "nopart"),
    ] {
        if names.iter().any(|n| n == p) && names.iter().any(|n| n == base) {
            println!("{p} vs {base}: {:+.1}%", 100.0 * (m(p) - m(base)) / m(base));
        }
    }
    Ok(())
}

/// The artifact's setup, then each switch flipped alone.
fn ablation(a: &SimulateArgs, s: &Setup) -> Result<()> {
    let seeds = parse_seeds(a.seeds.as_deref().unwrap_or("1-10"))?;
    let base_f = scenario::Fidelity::default();
    let base_o = Overheads::default();
    type Row = (&'static str, scenario::Fidelity, Overheads, Option<bool>);
    let mut rows: Vec<Row> = vec![(
        "artifact (default)",
        base_f.clone(),
        base_o.clone(),
        Some(true),
    )];
    let mut f = base_f.clone();
    f.tick_s = 0.0;
    rows.push((
        "rounds at every event (--tick-s 0)",
        f,
        base_o.clone(),
        Some(true),
    ));
    rows.push((
        "arrivals in job-id order (--arrival-order by-id)",
        base_f.clone(),
        base_o.clone(),
        Some(false),
    ));
    let mut f = base_f.clone();
    f.stall_profiling = true;
    rows.push((
        "profiling stalls all, even alone (--profiling stall-all)",
        f,
        base_o.clone(),
        Some(true),
    ));
    let mut o = base_o.clone();
    o.per_model_restart = false;
    o.restart_s = 30.0;
    rows.push((
        "flat 30 s restore (--restart-s 30)",
        base_f.clone(),
        o,
        Some(true),
    ));
    let mut f = base_f.clone();
    f.restart_all = false;
    rows.push((
        "MISO restarts moved jobs only (--miso-restarts moved)",
        f,
        base_o.clone(),
        Some(true),
    ));
    for (label, sp) in [
        (
            "MPS speeds: 15 % per co-runner (--mps-speeds penalty)",
            MpsSpeeds::Penalty,
        ),
        (
            "MPS speeds: solo, no interference (--mps-speeds solo)",
            MpsSpeeds::Solo,
        ),
    ] {
        let mut f = base_f.clone();
        f.mps_speeds = sp;
        rows.push((label, f, base_o.clone(), Some(true)));
    }
    let mut f = base_f.clone();
    f.mps_placement = MpsPlacement::LeastLoadedEqual;
    rows.push((
        "MPS least-loaded, equal share (--mps-placement least-loaded)",
        f,
        base_o.clone(),
        Some(true),
    ));
    let mut f = base_f.clone();
    f.static_promotion = false;
    rows.push((
        "static without promotion (--no-promotion)",
        f,
        base_o.clone(),
        Some(true),
    ));
    let bar = progress((rows.len() * seeds.len()) as u64, "ablation", "runs");
    let mut table: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for (label, f, o, shuffle) in &rows {
        let mut sums: Vec<(String, Vec<f64>)> = Vec::new();
        for &seed in &seeds {
            let r = run_seed(a, s, seed, f, o, *shuffle, true)?;
            for (oc, _) in r.outcomes {
                match sums.iter_mut().find(|(p, _)| *p == oc.policy) {
                    Some((_, v)) => v.push(oc.metrics.avg_jct_s),
                    None => sums.push((oc.policy.clone(), vec![oc.metrics.avg_jct_s])),
                }
            }
            bar.inc(1);
        }
        table.push((
            label.to_string(),
            sums.into_iter().map(|(p, v)| (p, mean(&v))).collect(),
        ));
    }
    bar.finish_and_clear();
    if a.json {
        let v: Vec<_> = table
            .iter()
            .map(|(l, r)| {
                let m: serde_json::Map<String, serde_json::Value> =
                    r.iter().map(|(p, x)| (p.clone(), json!(x))).collect();
                json!({"switch": l, "avg_jct_s": m})
            })
            .collect();
        return print_json(&json!({"seeds": seeds, "rows": v}));
    }
    print!("| switch |");
    for (p, _) in &table[0].1 {
        print!(" {p} |");
    }
    println!();
    print!("|---|");
    for _ in &table[0].1 {
        print!("---|");
    }
    println!();
    for (l, r) in &table {
        print!("| {l} |");
        for (_, x) in r {
            print!(" {x:.0} |");
        }
        println!();
    }
    println!(
        "\naverage JCT in seconds, mean over seeds {:?} (lower is better); each row flips one switch of the artifact's setup.",
        seeds
    );
    Ok(())
}

/// JCT of one family's jobs under a policy.
#[derive(serde::Serialize)]
struct FamilyJct {
    jobs: usize,
    avg_jct_s: f64,
    /// Average JCT of the first, middle and last third of the family's jobs (trace order).
    thirds: Vec<f64>,
}

fn family_jct(o: &sim::Outcome, families: &[&str], family: &str) -> FamilyJct {
    let js: Vec<f64> = o
        .jct_s
        .iter()
        .zip(families)
        .filter(|(_, f)| **f == family)
        .map(|(j, _)| *j)
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let n = js.len();
    let thirds = (0..3)
        .map(|t| mean(&js[t * n / 3..(t + 1) * n / 3]))
        .collect();
    FamilyJct {
        jobs: n,
        avg_jct_s: mean(&js),
        thirds,
    }
}
