//! The `miso` command line: parse, call the library, print. No logic of its own lives here.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use miso::gpu::{self, migparted, GpuModel, Layout, LayoutDiff};
use miso::optimizer::{self, Objective, Options};
use miso::predictor;

mod cli;

#[derive(Parser)]
#[command(
    name = "miso",
    version,
    about = "Share NVIDIA datacenter GPUs among deep-learning jobs with MIG, guided by MPS profiling",
    long_about = "miso partitions MIG-capable GPUs (A100, A30, H100, H200) among training jobs. \
Jobs are profiled briefly under MPS, a learned model predicts their speed on every MIG slice, \
and an exact search picks the layout, placement and assignment.\n\n\
Layouts on the command line are written as <profile>@<start>[,...], e.g. 4g.20gb@0,3g.20gb@4, \
where start is the placement in memory slices (see `miso layouts`). Errors exit with code 2."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU models miso knows, with their MIG profiles.
    Gpus {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enumerate the valid placed MIG layouts of a GPU (default: the maximal layouts of the
    /// standard profiles).
    Layouts {
        #[command(flatten)]
        gpu: GpuArg,
        /// Include the non-standard profiles (+me, 1g with two memory slices).
        #[arg(long)]
        all_profiles: bool,
        /// Only layouts to which no further instance can be added (the default).
        #[arg(long, conflicts_with = "all")]
        maximal: bool,
        /// Every valid non-empty layout, not only the maximal ones.
        #[arg(long)]
        all: bool,
        /// Print a JSON array of layouts, each an array of {"profile","start","size"}.
        #[arg(long)]
        json: bool,
    },
    /// Check, diff, export or import one layout.
    #[command(subcommand)]
    Layout(LayoutCmd),
    /// Recommend a MIG layout, placement and job assignment for one GPU, with the plan that
    /// gets there from the current layout.
    #[command(after_help = "jobs.json is an array of jobs, each either\n  \
{\"id\": \"a\", \"workload\": \"bert_train8\"}  (a measured MISO workload, <model>_train<batch>)\nor\n  \
{\"id\": \"b\", \"speeds\": {\"3g.20gb\": 0.55, \"7g.40gb\": 1.0}, \"memory_mb\": 9000}\n\
optionally with \"remaining_s\" (work left, seconds on a whole GPU), \"instance\" (where it runs\n\
now, e.g. \"3g.20gb@4\"; must be in --current) and \"restart_s\" (checkpoint + restart seconds).")]
    Recommend(RecommendArgs),
    /// Train a predictor (MPS measurements → speed on each MIG profile) and save it under
    /// models/<name>/ with its metrics.
    Train(TrainArgs),
    /// Score a trained model on held-out data: MAE/MAPE per profile, decision quality.
    Evaluate(EvaluateArgs),
    /// Predict MIG latencies for MPS feature matrices (.npy, shape N×3×7).
    Predict(PredictArgs),
    /// Read the GPUs of this host through NVML: model, MIG mode, current placed layout.
    Nvml {
        #[arg(long)]
        json: bool,
    },
    /// Change one GPU's MIG layout with the least disruption (instances present in both
    /// layouts are left alone). `--dry-run` prints the exact NVML calls instead.
    Reconfigure(ReconfigureArgs),
    /// Run the controller: HTTP API for nodes, jobs, profiling samples, recommendations.
    Serve(ServeArgs),
    /// Run the node agent: register this host's GPUs with the controller, then keep each GPU
    /// converged to its desired state (level-triggered): checkpoint the jobs whose instance
    /// changes (SIGTERM), reconcile the MIG layout, start the jobs on their instances, profile
    /// a mix under MPS when the controller asks, report.
    ///
    /// A job runs as `sh -c COMMAND` in its own process group with CUDA_VISIBLE_DEVICES (its MIG
    /// device), MISO_JOB, MISO_INSTANCE, MISO_CHECKPOINT_DIR and MISO_RESTART. On SIGTERM it
    /// saves to MISO_CHECKPOINT_DIR and exits; it resumes from there when started again.
    Agent(AgentArgs),
    /// What a controller knows: each GPU's desired and reported layout, the jobs on its
    /// instances, profiling phases, and every job's state.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:7450")]
        controller: String,
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// The same as JSON: {"gpus": [...], "jobs": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Load-test a controller's recommendation endpoint (loopback only): paced requests for a
    /// fixed time; prints throughput and latency percentiles.
    Loadtest {
        #[arg(long, default_value = "http://127.0.0.1:7450")]
        url: String,
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// Requests per second.
        #[arg(long, default_value_t = 1000.0)]
        rps: f64,
        /// Seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent client threads.
        #[arg(long, default_value_t = 16)]
        workers: usize,
        #[arg(long)]
        json: bool,
    },
    /// Profile a mix of jobs under MPS at each active-thread level and record the sample
    /// (miso-mps-sample/1); jobs report iteration times over the line protocol (README).
    Profile(ProfileArgs),
    /// Replay a job trace on a simulated MIG cluster under several policies and compare JCT,
    /// makespan, throughput (default: the MISO paper's setup, 8 A100s, 100 jobs).
    Simulate(cli::simulate::SimulateArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:7450")]
    listen: std::net::SocketAddr,
    /// SQLite database file (created; WAL mode).
    #[arg(long, default_value = "miso.db")]
    db: std::path::PathBuf,
    /// File holding the bearer token that writes (and reads) need.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Allow reads without the token.
    #[arg(long)]
    open_reads: bool,
    /// Run without any token (local experiments only).
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_auth: bool,
    /// Folder of model directories (list/activate/retrain through the API).
    #[arg(long, default_value = "models")]
    models: std::path::PathBuf,
    /// Model to activate at start when none was active before (skipped when absent); the
    /// model activated through the API survives restarts.
    #[arg(long, default_value = "default")]
    model: String,
}

#[derive(Args)]
struct AgentArgs {
    /// The controller's URL.
    #[arg(long, default_value = "http://127.0.0.1:7450")]
    controller: String,
    /// File holding the controller's bearer token.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// How GPUs are driven: nvml (real), simulated (in memory, for tests and demos), dry-run
    /// (simulated placement rules, NVML calls printed).
    #[arg(long, value_enum, default_value = "nvml")]
    backend: BackendArg,
    /// Simulated/dry-run backends: number of GPUs.
    #[arg(long, default_value_t = 1)]
    sim_gpus: usize,
    /// Simulated/dry-run backends: the GPU model.
    #[arg(long, default_value = "a100-40gb")]
    gpu: String,
    /// Simulated backend: persist the GPUs' layouts in this file.
    #[arg(long)]
    sim_state: Option<std::path::PathBuf>,
    /// Simulated backend: milliseconds each create/destroy takes.
    #[arg(long, default_value_t = 0)]
    step_delay_ms: u64,
    /// Simulated backend: inject a fault at the k-th create/destroy of this run:
    /// fail:K (NVML error), hang:K (timeout), crash:K (the agent dies right after the call,
    /// like a SIGKILL). Repeatable.
    #[arg(long = "sim-fault")]
    sim_faults: Vec<String>,
    /// Where the agent keeps its job state, job logs and checkpoint folders.
    #[arg(long, default_value = "miso-agent")]
    state_dir: std::path::PathBuf,
    /// Seconds a job gets to checkpoint after SIGTERM before it is killed.
    #[arg(long, default_value_t = 30.0)]
    checkpoint_grace_s: f64,
    /// Milliseconds between reconcile passes.
    #[arg(long, default_value_t = 2000)]
    interval_ms: u64,
    /// One pass, then exit.
    #[arg(long)]
    once: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Nvml,
    Simulated,
    DryRun,
}

#[derive(Args)]
struct ProfileArgs {
    /// A job of the mix as LABEL=COMMAND (run with `sh -c`), e.g.
    /// --job 'bert_train8=python3 train.py --batch 8'. Up to 7.
    #[arg(long = "job", required = true)]
    jobs: Vec<String>,
    /// MPS active-thread percentages, three of them.
    #[arg(long, value_delimiter = ',', default_value = "100,50,14")]
    levels: Vec<u32>,
    /// Seconds each level runs.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// GPU index (CUDA_VISIBLE_DEVICES of the MPS daemon).
    #[arg(long, default_value_t = 0)]
    gpu_index: u32,
    /// GPU model name recorded in the sample when NVML cannot tell.
    #[arg(long, default_value = "a100-40gb")]
    gpu: String,
    /// With MIG on: the instance the mix runs on under MPS, e.g. 7g.40gb@0 (MISO profiles on
    /// the whole-GPU instance). Without it the daemon serves the whole GPU (MIG off).
    #[arg(long)]
    instance: Option<String>,
    /// Run the jobs without starting an MPS daemon (tests without a GPU).
    #[arg(long)]
    no_mps: bool,
    /// The controller's ids of the profiled jobs, one per --job in order (`-` for a slot that
    /// is no controller job). The sample is then stored with them, and the controller predicts
    /// these jobs' MIG speeds from it when it plans their GPU.
    #[arg(long, value_delimiter = ',')]
    for_jobs: Vec<String>,
    /// Mix number recorded in the sample.
    #[arg(long, default_value_t = 0)]
    mix: usize,
    /// Send the sample to this controller (POST /v1/samples).
    #[arg(long)]
    controller: Option<String>,
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Also write the sample (JSON) here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct ReconfigureArgs {
    /// GPU index on this host.
    #[arg(long, default_value_t = 0)]
    index: u32,
    /// The target layout, e.g. 3g.20gb@0,2g.10gb@4,1g.5gb@6.
    #[arg(long)]
    to: String,
    /// Print the NVML calls, change nothing. With --from (and --gpu) no GPU is needed;
    /// without --from the current layout is read through NVML.
    #[arg(long)]
    dry_run: bool,
    /// The current layout for a dry run without a GPU.
    #[arg(long, requires = "dry_run")]
    from: Option<String>,
    /// GPU model for a dry run with --from.
    #[arg(long, default_value = "a100-40gb")]
    gpu: String,
    /// Really reconfigure (without it, only --dry-run is allowed).
    #[arg(long, conflicts_with = "dry_run")]
    yes: bool,
}

const DEFAULT_DATA: &str = "../shared/datasets/miso-a100";

#[derive(Args)]
struct TrainArgs {
    /// Training data: the MISO data directory (mps_features.npy + mig_targets.npy) or a
    /// miso-mps-sample/1 JSON Lines file.
    #[arg(long, default_value = DEFAULT_DATA)]
    data: std::path::PathBuf,
    /// Model architecture.
    #[arg(long, value_enum, default_value = "mlp")]
    arch: ArchArg,
    /// Passes over the training data (default: 100 for mlp, 40 for unet).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of the split, the initial weights and the batch order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of the mixes held out for validation (whole mixes: all permutations together).
    #[arg(long, default_value_t = 0.2)]
    val_frac: f64,
    /// Hold out one model family (e.g. bert) instead of random mixes.
    #[arg(long)]
    holdout_family: Option<String>,
    /// Train once per model family, each held out in turn, and report each (saves nothing).
    #[arg(long, conflicts_with_all = ["holdout_family", "out"])]
    lofo: bool,
    /// Hidden layer widths of the MLP.
    #[arg(long, value_delimiter = ',', default_value = "256,256")]
    hidden: Vec<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// MLPs trained with consecutive seeds and averaged.
    #[arg(long, default_value_t = 5)]
    ensemble: usize,
    /// Learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Where to save the model (a directory; created).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ArchArg {
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

impl From<ArchArg> for miso::predictor::Arch {
    fn from(a: ArchArg) -> Self {
        use miso::predictor::Arch;
        match a {
            ArchArg::Unet => Arch::Unet,
            ArchArg::Mlp => Arch::Mlp,
            ArchArg::Linear => Arch::Linear,
            ArchArg::Tree => Arch::Tree,
            ArchArg::Knn => Arch::Knn,
        }
    }
}

#[derive(Args)]
struct EvaluateArgs {
    /// The model directory.
    #[arg(long, default_value = miso::predictor::DEFAULT_MODEL)]
    model: std::path::PathBuf,
    /// Data to score on (its held-out split, re-made from the model's seed and --val-frac).
    #[arg(long, conflicts_with_all = ["features", "targets"])]
    data: Option<std::path::PathBuf>,
    /// Score every sample of these arrays instead (all held out).
    #[arg(long, requires = "targets")]
    features: Option<std::path::PathBuf>,
    #[arg(long, requires = "features")]
    targets: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 0.2)]
    val_frac: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PredictArgs {
    /// The model directory (default: the shipped default model).
    #[arg(long, default_value = miso::predictor::DEFAULT_MODEL)]
    model: std::path::PathBuf,
    /// MPS features, float64 N×3×7 (rows 100/50/14 %, columns = slots).
    #[arg(long)]
    features: std::path::PathBuf,
    /// Output .npy: N×3×7 [7g, 4g, 3g] normalised like mig_targets.npy; with
    /// --all-profiles N×5×7 [1g, 2g, 3g, 4g, 7g] (NaN where the job does not fit).
    #[arg(long)]
    out: std::path::PathBuf,
    #[arg(long)]
    all_profiles: bool,
    /// Targets whose dummy columns mark the filler slots (otherwise every slot is a real job).
    #[arg(long)]
    dummy_from: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct RecommendArgs {
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
    #[arg(long, default_value_t = 1e-9)]
    tolerance: f64,
    /// Re-partition only when the gain over the jobs' remaining work exceeds the restart cost.
    #[arg(long)]
    cost_aware: bool,
    /// Seconds a reconfiguration stalls each moved job, on top of its restart.
    #[arg(long, default_value_t = 0.0)]
    reconfig_s: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ObjectiveArg {
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

#[derive(Args)]
struct GpuArg {
    /// GPU model: a short name (a100-40gb, a100-80gb, a30-24gb, h100-80gb, h100-94gb,
    /// h200-141gb) or the name NVML reports (e.g. "NVIDIA H100 80GB HBM3").
    #[arg(long, default_value = "a100-40gb")]
    gpu: String,
}

impl GpuArg {
    fn model(&self) -> Result<&'static GpuModel> {
        Ok(gpu::gpu(&self.gpu)?)
    }
}

#[derive(Subcommand)]
enum LayoutCmd {
    /// Check a layout against the placement rules; the error names the instance and the rule.
    Check {
        #[command(flatten)]
        gpu: GpuArg,
        /// The layout, e.g. 4g.20gb@0,3g.20gb@4.
        layout: String,
        #[arg(long)]
        json: bool,
    },
    /// Which instances a re-partition keeps, destroys and creates (creation order: largest
    /// first). Use `empty` for a GPU with no instance.
    Diff {
        #[command(flatten)]
        gpu: GpuArg,
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Export layouts (one per GPU, in index order) as a config for another tool.
    Export {
        #[command(flatten)]
        gpu: GpuArg,
        /// One layout per GPU; a single layout applies to all GPUs.
        #[arg(required = true)]
        layouts: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "mig-parted")]
        format: ExportFormat,
        /// Name of the config inside the file.
        #[arg(long, default_value = "miso")]
        name: String,
    },
    /// Read a mig-parted config and show each GPU group's placed layout.
    Import {
        #[command(flatten)]
        gpu: GpuArg,
        /// The mig-parted YAML file.
        file: std::path::PathBuf,
        /// Which config of the file (needed when it has several).
        #[arg(long)]
        config: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// NVIDIA mig-parted YAML (version v1).
    MigParted,
    /// A ConfigMap for the NVIDIA GPU operator and the `nvidia.com/mig.config` node label.
    GpuOperator,
    /// Slurm gres.conf / slurm.conf lines.
    Slurm,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gpus { json } => cmd_gpus(json),
        Command::Layouts {
            gpu,
            all_profiles,
            maximal: _,
            all,
            json,
        } => cmd_layouts(gpu.model()?, all_profiles, all, json),
        Command::Recommend(a) => cmd_recommend(a),
        Command::Train(a) => cmd_train(a),
        Command::Evaluate(a) => cmd_evaluate(a),
        Command::Predict(a) => cmd_predict(a),
        Command::Simulate(a) => cli::simulate::run(a),
        Command::Nvml { json } => cmd_nvml(json),
        Command::Serve(a) => cmd_serve(a),
        Command::Agent(a) => cmd_agent(a),
        Command::Status {
            controller,
            token_file,
            json,
        } => cmd_status(&controller, &token_file, json),
        Command::Profile(a) => cmd_profile(a),
        Command::Loadtest {
            url,
            token_file,
            rps,
            seconds,
            workers,
            json,
        } => {
            let token = read_token(&token_file)?;
            let host = miso::service::client::host_of(&url).map_err(anyhow::Error::msg)?;
            let body = r#"{"gpu":"a100-40gb","jobs":[{"id":"a","workload":"bert_train8"},{"id":"b","workload":"resnet_train64"},{"id":"c","workload":"gnn_train128"},{"id":"d","workload":"mobilenet_train64"},{"id":"e","workload":"transformer_train16"}]}"#;
            let r = miso::service::loadtest::run(
                &host,
                "/v1/recommend",
                token.as_deref(),
                body,
                rps,
                seconds,
                workers,
            )
            .map_err(anyhow::Error::msg)?;
            if json {
                return print_json(&r);
            }
            println!("{} requests at {:.0}/s target: {:.0}/s achieved, {} errors; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.requests, r.target_rps, r.achieved_rps, r.errors, r.p50_ms, r.p99_ms, r.max_ms);
            Ok(())
        }
        Command::Reconfigure(a) => cmd_reconfigure(a),
        Command::Layout(c) => match c {
            LayoutCmd::Check { gpu, layout, json } => {
                let g = gpu.model()?;
                let l = gpu::parse_valid_layout(g, &layout)?;
                if json {
                    print_json(&json!({"valid": true, "gpu": g.name, "layout": l.views(g),
                        "compute_slices": l.compute_slices(g), "maximal": l.is_maximal(g, &g.profile_set(true))}))
                } else {
                    println!(
                        "valid: {} on {} ({} of {} compute slices{})",
                        l.label(g),
                        g.name,
                        l.compute_slices(g),
                        g.compute_slices,
                        if l.is_maximal(g, &g.profile_set(true)) {
                            ", maximal"
                        } else {
                            ""
                        }
                    );
                    Ok(())
                }
            }
            LayoutCmd::Diff {
                gpu,
                from,
                to,
                json,
            } => {
                let g = gpu.model()?;
                let from = gpu::parse_valid_layout(g, &from).context("<from>")?;
                let to = gpu::parse_valid_layout(g, &to).context("<to>")?;
                let d = LayoutDiff::between(g, &from, &to);
                if json {
                    return print_json(&d.view(g));
                }
                let lab = |xs: &[gpu::Instance]| {
                    if xs.is_empty() {
                        "-".to_string()
                    } else {
                        xs.iter().map(|i| i.label(g)).collect::<Vec<_>>().join(", ")
                    }
                };
                println!("keep     {}", lab(&d.keep));
                println!("destroy  {}", lab(&d.destroy));
                println!("create   {}", lab(&d.create));
                Ok(())
            }
            LayoutCmd::Export {
                gpu,
                layouts,
                format,
                name,
            } => {
                let g = gpu.model()?;
                let ls = layouts
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        gpu::parse_valid_layout(g, s).with_context(|| format!("layout {}", i + 1))
                    })
                    .collect::<Result<Vec<Layout>>>()?;
                match format {
                    ExportFormat::MigParted => print!("{}", migparted::export(g, &ls, &name)),
                    ExportFormat::GpuOperator => {
                        print!("{}", migparted::gpu_operator(g, &ls, &name))
                    }
                    ExportFormat::Slurm => print!("{}", migparted::slurm(g, &ls)),
                }
                Ok(())
            }
            LayoutCmd::Import {
                gpu,
                file,
                config,
                json,
            } => {
                let g = gpu.model()?;
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let got = migparted::import(g, &text, config.as_deref())
                    .with_context(|| file.display().to_string())?;
                if json {
                    let v: Vec<_> = got
                        .iter()
                        .map(|i| json!({"devices": i.devices, "mig_enabled": i.mig_enabled, "layout": i.layout.views(g)}))
                        .collect();
                    return print_json(&v);
                }
                for i in &got {
                    let dev = match &i.devices {
                        migparted::DeviceSel::All => "all".to_string(),
                        migparted::DeviceSel::List(v) => format!("{v:?}"),
                    };
                    let lay = if i.mig_enabled {
                        i.layout.label(g)
                    } else {
                        "MIG disabled".to_string()
                    };
                    println!("devices {dev:<10} {lay}");
                }
                Ok(())
            }
        },
    }
}

fn read_input(path: &std::path::Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn cmd_recommend(a: RecommendArgs) -> Result<()> {
    let g = a.gpu.model()?;
    let current = gpu::parse_valid_layout(g, &a.current).context("--current")?;
    if !(a.tolerance.is_finite() && a.tolerance >= 0.0) {
        anyhow::bail!("--tolerance: {} is not a non-negative number", a.tolerance);
    }
    if !(a.reconfig_s.is_finite() && a.reconfig_s >= 0.0) {
        anyhow::bail!(
            "--reconfig-s: {} is not a non-negative number",
            a.reconfig_s
        );
    }
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

/// The bearer token in `--token-file`, if one was given.
fn read_token(f: &Option<std::path::PathBuf>) -> Result<Option<String>> {
    match f {
        Some(f) => Ok(Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("--token-file: cannot read {}", f.display()))?
                .trim()
                .to_string(),
        )),
        None => Ok(None),
    }
}

/// A progress bar counting `unit`s (epochs, jobs).
fn progress(len: u64, what: &str, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{prefix:>7}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}} {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

fn print_metrics(title: &str, m: &predictor::Metrics) {
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

fn cmd_train(a: TrainArgs) -> Result<()> {
    if !(a.val_frac > 0.0 && a.val_frac < 1.0) {
        anyhow::bail!("--val-frac: {} is not between 0 and 1", a.val_frac);
    }
    if a.hidden.is_empty() || a.hidden.contains(&0) {
        anyhow::bail!("--hidden: widths must be positive, e.g. 256,256");
    }
    let ds = predictor::data::load(&a.data)?;
    let mut cfg = predictor::TrainConfig::new(a.arch.into());
    cfg.epochs = a.epochs;
    cfg.seed = a.seed;
    cfg.hidden = a.hidden.clone();
    cfg.lr = a.lr;
    cfg.ensemble = a.ensemble;
    if a.batch == 0 {
        anyhow::bail!("--batch: must be at least 1");
    }
    cfg.batch = a.batch;
    cfg.recipe = std::env::args().collect::<Vec<_>>().join(" ");
    if let Some(out) = &a.out {
        cfg.name = out
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into());
    }
    if a.lofo {
        let mut rows = Vec::new();
        for fam in ds.families() {
            let split = ds.family_split(&fam)?;
            let bar = progress(
                cfg.epochs() as u64,
                &format!("{} without {fam}", cfg.arch.name()),
                "epochs",
            );
            let p = predictor::train(&ds, &split, &cfg, &bar)?;
            bar.finish_and_clear();
            if !a.json {
                print_metrics(&format!("{fam} held out"), &p.meta.metrics);
            }
            rows.push(json!({"family": fam, "metrics": p.meta.metrics}));
        }
        if a.json {
            return print_json(&json!({"arch": cfg.arch.name(), "lofo": rows}));
        }
        return Ok(());
    }
    let split = match &a.holdout_family {
        Some(f) => ds.family_split(f)?,
        None => ds.random_split(a.val_frac, a.seed),
    };
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

fn cmd_evaluate(a: EvaluateArgs) -> Result<()> {
    let p = predictor::Predictor::load(&a.model)?;
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
            let data = a.data.clone().unwrap_or_else(|| DEFAULT_DATA.into());
            let ds = predictor::data::load(&data)?;
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

fn cmd_predict(a: PredictArgs) -> Result<()> {
    use miso::perf::{MpsMatrix, SLOTS};
    let p = predictor::Predictor::load(&a.model)?;
    let (x, _) = predictor::data::read_arrays(&a.features, None)?;
    let n = x.shape()[0];
    let real: Vec<[bool; SLOTS]> = match &a.dummy_from {
        Some(t) => {
            let (_, y) = predictor::data::read_arrays(&a.features, Some(t))?;
            let y = y.context("--dummy-from")?;
            let ds = predictor::data::from_arrays(&x, &y, &t.display().to_string(), 0)?;
            ds.samples.iter().map(|s| s.mps.real).collect()
        }
        None => vec![[true; SLOTS]; n],
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
    let out = if a.all_profiles {
        let mut o = ndarray::Array3::<f64>::from_elem((n, 5, SLOTS), f64::NAN);
        for (i, pr) in preds.iter().enumerate() {
            for s in 0..SLOTS {
                let t = predictor::renormalise(&pr[s]);
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
                let t = predictor::renormalise(&pr[s]);
                for (r, k) in [4usize, 3, 2].iter().enumerate() {
                    o[[i, r, s]] = t[*k].unwrap_or(f64::NAN);
                }
            }
        }
        o
    };
    let f = std::fs::File::create(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    ndarray_npy::WriteNpyExt::write_npy(&out, std::io::BufWriter::new(f))
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    eprintln!(
        "wrote {} ({} × {} × 7) with model {}",
        a.out.display(),
        n,
        if a.all_profiles { 5 } else { 3 },
        p.meta.name
    );
    Ok(())
}

fn cmd_serve(a: ServeArgs) -> Result<()> {
    let token = match (&a.token_file, a.insecure_no_auth) {
        (Some(f), _) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("--token-file: cannot read {}", f.display()))?;
            let t = t.trim().to_string();
            if t.len() < 16 {
                anyhow::bail!("--token-file: the token must have at least 16 characters");
            }
            Some(t)
        }
        (None, true) => None,
        (None, false) => {
            anyhow::bail!("--token-file is required (or --insecure-no-auth for local experiments)")
        }
    };
    let cfg = miso::service::Config {
        listen: a.listen,
        db: a.db.clone(),
        models: a.models.clone(),
        active_model: Some(a.model.clone()),
        token,
        open_reads: a.open_reads,
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(miso::service::serve(cfg, |addr| {
        // The token is never printed.
        println!(
            "miso controller listening on http://{addr} (db {})",
            a.db.display()
        );
    }))
    .map_err(anyhow::Error::msg)
}

fn cmd_agent(a: AgentArgs) -> Result<()> {
    use miso::control::{dryrun::DryRun, nvml::NvmlControl, simulated::SimulatedGpus, GpuControl};
    let token = read_token(&a.token_file)?;
    let name = a.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "node".into())
    });
    let model = gpu::gpu(&a.gpu)?;
    let mut ctl: Box<dyn GpuControl> = match a.backend {
        BackendArg::Nvml => Box::new(NvmlControl::new()?),
        BackendArg::Simulated => {
            let mut s = match &a.sim_state {
                Some(p) => SimulatedGpus::persistent(model, a.sim_gpus, p)?,
                None => SimulatedGpus::new(model, a.sim_gpus),
            };
            s.step_delay = std::time::Duration::from_millis(a.step_delay_ms);
            for f in &a.sim_faults {
                s.faults
                    .push(parse_fault(f).with_context(|| format!("--sim-fault {f}"))?);
            }
            Box::new(s)
        }
        BackendArg::DryRun => {
            let mut d = DryRun::new(model, vec![Layout::empty(); a.sim_gpus]);
            d.echo = true;
            Box::new(d)
        }
    };
    let cfg = miso::service::agent::AgentConfig {
        host: miso::service::client::host_of(&a.controller)
            .map_err(anyhow::Error::msg)
            .context("--controller")?,
        token,
        name,
        interval: std::time::Duration::from_millis(a.interval_ms.max(10)),
        once: a.once,
        state_dir: a.state_dir.clone(),
        grace: std::time::Duration::try_from_secs_f64(a.checkpoint_grace_s)
            .map_err(|_| anyhow::anyhow!("--checkpoint-grace-s: must be a non-negative number"))?,
    };
    miso::service::agent::run(&cfg, ctl.as_mut(), &mut |m| eprintln!("agent: {m}"))
        .map_err(anyhow::Error::msg)
}

fn cmd_status(url: &str, token_file: &Option<std::path::PathBuf>, json_out: bool) -> Result<()> {
    use miso::service::client::{host_of, request};
    let host = host_of(url)
        .map_err(anyhow::Error::msg)
        .context("--controller")?;
    let token = read_token(token_file)?;
    let get = |path: &str| -> Result<serde_json::Value> {
        let (code, body) =
            request(&host, "GET", path, token.as_deref(), None).map_err(anyhow::Error::msg)?;
        if code != 200 {
            anyhow::bail!("GET {path}: HTTP {code}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON"))
    };
    let state = get("/v1/state")?;
    let mut gpus = Vec::new();
    for n in state["nodes"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().unwrap_or_default();
        let desired = get(&format!("/v1/nodes/{name}/desired"))?;
        for g in n["gpus"].as_array().into_iter().flatten() {
            let d = desired
                .as_array()
                .and_then(|a| a.iter().find(|d| d["index"] == g["index"]))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let r = state["gpus"]
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|x| x["node"] == name && x["index"] == g["index"])
                })
                .map(|x| x["report"].clone())
                .unwrap_or(serde_json::Value::Null);
            gpus.push(
                json!({"node": name, "index": g["index"], "model": g["model"],
                "desired": d["layout"], "reported": r["layout"], "error": r["error"],
                "converged": !d["layout"].is_null() && d["layout"] == r["layout"],
                "profiling": !d["profile"].is_null(), "assigned": d["jobs"], "running": r["jobs"]}),
            );
        }
    }
    if json_out {
        return print_json(&json!({"gpus": gpus, "jobs": state["jobs"]}));
    }
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    println!(
        "{:<12} {:>3} {:<11} {:<34} {:<10} jobs (instance: id)",
        "NODE", "GPU", "MODEL", "DESIRED", "STATE"
    );
    for g in &gpus {
        let st = if g["profiling"] == true {
            "profiling"
        } else if g["converged"] == true {
            "converged"
        } else if g["desired"].is_null() {
            "-"
        } else {
            "converging"
        };
        let jobs: Vec<String> = g["assigned"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| format!("{}: {}", s(&j["instance"]), s(&j["id"])))
            .collect();
        println!(
            "{:<12} {:>3} {:<11} {:<34} {:<10} {}",
            s(&g["node"]),
            g["index"],
            s(&g["model"]),
            s(&g["desired"]),
            st,
            jobs.join(", ")
        );
        if let Some(e) = g["error"].as_str() {
            println!("{:>16} last error: {e}", "");
        }
    }
    println!("\n{:<20} {:<9} {}", "JOB", "STATE", "SPEEDS");
    for j in state["jobs"].as_array().into_iter().flatten() {
        let speeds = if let Some(w) = j["workload"].as_str() {
            w.to_string()
        } else if !j["speeds"].is_null() {
            "given".into()
        } else {
            "from profiling".into()
        };
        println!("{:<20} {:<9} {}", s(&j["id"]), s(&j["state"]), speeds);
    }
    Ok(())
}

/// `fail:K`, `hang:K` or `crash:K`.
fn parse_fault(f: &str) -> Result<miso::control::simulated::Fault> {
    use miso::control::simulated::Fault;
    let (kind, k) = f.split_once(':').context("expected KIND:K, e.g. crash:3")?;
    let k: u64 = k
        .parse()
        .ok()
        .filter(|k| *k > 0)
        .context("K: expected a call number from 1")?;
    Ok(match kind {
        "fail" => Fault::FailCall(k),
        "hang" => Fault::HangCall(k),
        "crash" => Fault::Crash(k),
        _ => anyhow::bail!("KIND: `{kind}` (fail, hang or crash)"),
    })
}

fn cmd_profile(a: ProfileArgs) -> Result<()> {
    use miso::service::profile::{profile_mix, ProfileJob};
    let jobs = a
        .jobs
        .iter()
        .enumerate()
        .map(|(k, j)| {
            let (l, c) = j
                .split_once('=')
                .with_context(|| format!("--job {}: expected LABEL=COMMAND", k + 1))?;
            if l.trim().is_empty() || c.trim().is_empty() {
                anyhow::bail!("--job {}: expected LABEL=COMMAND", k + 1);
            }
            Ok(ProfileJob {
                label: l.trim().to_string(),
                command: c.to_string(),
                key: k.to_string(),
                env: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if !(a.seconds.is_finite() && a.seconds > 0.0) {
        anyhow::bail!("--seconds: must be positive");
    }
    let gpu_name = match miso::control::nvml::NvmlControl::new()
        .and_then(|mut n| miso::control::GpuControl::list_gpus(&mut n))
    {
        Ok(g) => g
            .iter()
            .find(|g| g.index == a.gpu_index)
            .map(|g| g.name.clone())
            .unwrap_or_else(|| a.gpu.clone()),
        Err(_) => gpu::gpu(&a.gpu)?.name.to_string(),
    };
    if !a.for_jobs.is_empty() && a.for_jobs.len() != jobs.len() {
        anyhow::bail!(
            "--for-jobs: {} ids for {} --job options (one per job, `-` for none)",
            a.for_jobs.len(),
            jobs.len()
        );
    }
    let mut nvml = if a.no_mps {
        None
    } else {
        Some(miso::control::nvml::NvmlControl::new()?)
    };
    let instance = match &a.instance {
        None => None,
        Some(l) => {
            let model = gpu::gpu(&a.gpu)?;
            Some(gpu::Instance::parse(model, l).context("--instance")?)
        }
    };
    let target = nvml.as_mut().map(|n| miso::service::profile::MpsTarget {
        ctl: n,
        gpu: a.gpu_index,
        instance,
    });
    let grace = std::time::Duration::from_secs(5);
    let rec = profile_mix(&jobs, &a.levels, a.seconds, target, &gpu_name, a.mix, grace)
        .map_err(anyhow::Error::msg)?;
    let text = serde_json::to_string(&rec)?;
    if let Some(o) = &a.out {
        std::fs::write(o, &text).with_context(|| format!("cannot write {}", o.display()))?;
    }
    if let Some(url) = &a.controller {
        let host = miso::service::client::host_of(url).map_err(anyhow::Error::msg)?;
        let token = read_token(&a.token_file)?;
        let mut v = serde_json::to_value(&rec)?;
        if !a.for_jobs.is_empty() {
            let ids: Vec<serde_json::Value> = a
                .for_jobs
                .iter()
                .map(|j| {
                    if j == "-" {
                        serde_json::Value::Null
                    } else {
                        json!(j)
                    }
                })
                .collect();
            v["jobs"] = json!(ids);
        }
        let (code, body) = miso::service::client::request(
            &host,
            "POST",
            "/v1/samples",
            token.as_deref(),
            Some(&v.to_string()),
        )
        .map_err(anyhow::Error::msg)?;
        if code != 201 {
            anyhow::bail!("controller refused the sample: HTTP {code}: {body}");
        }
    }
    println!("{text}");
    Ok(())
}

fn cmd_nvml(json_out: bool) -> Result<()> {
    use miso::control::{nvml::NvmlControl, GpuControl};
    let mut ctl = NvmlControl::new()?;
    let gpus = ctl.list_gpus()?;
    let mut rows = Vec::new();
    for g in &gpus {
        let layout = if g.mig_enabled {
            ctl.layout(g.index).map(|l| g.model.map(|m| l.label(m)))
        } else {
            Ok(None)
        };
        let check = ctl.check_profiles(g.index).ok();
        rows.push((g, layout, check));
    }
    if json_out {
        let v: Vec<_> = rows
            .iter()
            .map(|(g, l, c)| json!({"gpu": g, "layout": match l { Ok(l) => json!(l), Err(e) => json!({"error": e.to_string()}) }, "profile_check": c}))
            .collect();
        return print_json(&v);
    }
    for (g, l, c) in rows {
        if let Some(c) = &c {
            let bad: Vec<&str> = c
                .iter()
                .filter(|p| !p.matches)
                .map(|p| p.profile.as_str())
                .collect();
            println!(
                "GPU {}: driver profile table vs catalog: {}",
                g.index,
                if bad.is_empty() {
                    "all profiles match".to_string()
                } else {
                    format!("differs for {}", bad.join(", "))
                }
            );
        }
        let lay = match l {
            Ok(Some(l)) => l,
            Ok(None) => "MIG off".to_string(),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "GPU {} {} ({}) model {} MIG {}{}: {lay}",
            g.index,
            g.name,
            g.uuid,
            g.model_short.as_deref().unwrap_or("unknown"),
            if g.mig_enabled { "on" } else { "off" },
            if g.mig_pending != g.mig_enabled {
                " (change pending)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn cmd_reconfigure(a: ReconfigureArgs) -> Result<()> {
    use miso::control::{self, dryrun::DryRun, nvml::NvmlControl, GpuControl};
    if !a.dry_run && !a.yes {
        anyhow::bail!(
            "reconfiguring a real GPU needs --yes (or use --dry-run to print the NVML calls)"
        );
    }
    let (model, from, mut nvml) = match &a.from {
        Some(f) => {
            let m = gpu::gpu(&a.gpu)?;
            (m, gpu::parse_valid_layout(m, f).context("--from")?, None)
        }
        None => {
            let mut n = NvmlControl::new()?;
            let gpus = n.list_gpus()?;
            let info = gpus
                .iter()
                .find(|g| g.index == a.index)
                .ok_or(control::ControlError::NoSuchGpu(a.index))?;
            let m = info
                .model
                .ok_or_else(|| control::ControlError::UnknownModel {
                    gpu: a.index,
                    name: info.name.clone(),
                })?;
            let l = n.layout(a.index)?;
            (m, l, Some(n))
        }
    };
    let to = gpu::parse_valid_layout(model, &a.to).context("--to")?;
    let diff = LayoutDiff::between(model, &from, &to);
    println!(
        "GPU {} ({}): {} -> {}",
        a.index,
        model.name,
        from.label(model),
        to.label(model)
    );
    let report = if a.dry_run {
        let mut layouts = vec![Layout::empty(); a.index as usize + 1];
        layouts[a.index as usize] = from.clone();
        let mut d = DryRun::new(model, layouts);
        let r = control::apply(&mut d, model, a.index, &diff);
        for c in &d.calls {
            println!("  {c}");
        }
        r
    } else {
        let n = nvml.as_mut().context("no NVML backend")?;
        control::apply(n, model, a.index, &diff)
    };
    if let Some((step, e)) = report.failed {
        anyhow::bail!("{step}: {e} (the GPU keeps a valid layout; run again to converge)");
    }
    println!(
        "kept {}, destroyed {}, created {}",
        diff.keep.len(),
        report.destroyed.len(),
        report.created.len()
    );
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn cmd_gpus(json: bool) -> Result<()> {
    if json {
        let v: Vec<_> = gpu::GPUS
            .iter()
            .map(|g| {
                json!({
                    "name": g.name, "short": g.short, "aliases": g.aliases, "memory_mb": g.memory_mb,
                    "sm_count": g.sm_count, "compute_slices": g.compute_slices,
                    "memory_slices": g.memory_slices, "memory_source": g.memory_source,
                    "profiles": g.profiles.iter().map(|p| json!({
                        "name": p.name, "nvml_id": p.nvml_id, "nvml_profile_index": p.nvml_profile_index,
                        "compute_slices": p.compute_slices, "memory_slices": p.memory_slices,
                        "memory_mb": p.memory_mb, "sm_count": p.sm_count, "max_count": p.max_count,
                        "starts": p.starts, "standard": p.standard,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return print_json(&v);
    }
    for g in gpu::GPUS {
        println!(
            "{} ({}): {} MiB, {} SMs, {} compute / {} memory slices",
            g.name, g.short, g.memory_mb, g.sm_count, g.compute_slices, g.memory_slices
        );
        println!(
            "  {:<12} {:>4} {:>8} {:>9} {:>5} {:>4}  placements",
            "profile", "id", "mem MiB", "slices", "SMs", "max"
        );
        for p in g.profiles {
            let starts: Vec<String> = p.starts.iter().map(|s| s.to_string()).collect();
            println!(
                "  {:<12} {:>4} {:>8} {:>9} {:>5} {:>4}  {{{}}}:{}{}",
                p.name,
                p.nvml_id,
                p.memory_mb,
                format!("{}c/{}m", p.compute_slices, p.memory_slices),
                p.sm_count,
                p.max_count,
                starts.join(","),
                p.memory_slices,
                if p.standard { "" } else { "  (non-standard)" }
            );
        }
        println!("  memory sizes: {}\n", g.memory_source);
    }
    Ok(())
}

fn cmd_layouts(g: &'static GpuModel, all_profiles: bool, all: bool, json: bool) -> Result<()> {
    let set = g.profile_set(all_profiles);
    let layouts: Vec<Layout> = if all {
        gpu::all_layouts(g, all_profiles).to_vec()
    } else {
        gpu::maximal(g, &set)
    };
    if json {
        let v: Vec<_> = layouts.iter().map(|l| l.views(g)).collect();
        return print_json(&v);
    }
    for l in &layouts {
        println!("{:<40} {}", l.label(g), occupancy_bar(g, l));
    }
    println!(
        "{} {} layouts of {} ({} profiles)",
        layouts.len(),
        if all { "valid" } else { "maximal" },
        g.name,
        if all_profiles { "all" } else { "standard" }
    );
    Ok(())
}

/// `|4g     |3g     |`: each memory slice one cell, labelled by the compute size.
fn occupancy_bar(g: &GpuModel, l: &Layout) -> String {
    let mut cells = vec![".".to_string(); g.memory_slices as usize];
    for i in l.instances() {
        let p = &g.profiles[i.profile as usize];
        let kind = p.kind();
        for k in 0..p.memory_slices {
            cells[(i.start + k) as usize] = if k == 0 { kind.clone() } else { "-".into() };
        }
    }
    format!(
        "[{}]",
        cells.iter().map(|c| format!("{c:<3}")).collect::<String>()
    )
}
