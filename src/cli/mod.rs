//! The `miso` command line. `main.rs` only calls [`main`]; each verb's flags, checks and printing
//! live in `src/cli/<verb>.rs`, and every decision (layouts, predictions, plans, simulation) is
//! made by the library. This module holds what the verbs share: the top-level parser, the value
//! parsers that range-check numbers, default paths, and output helpers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use miso::gpu::{self, GpuModel};
use miso::predictor::Predictor;

pub mod agent;
pub mod evaluate;
pub mod gpus;
pub mod layout;
pub mod loadtest;
pub mod nvml;
pub mod predict;
pub mod profile;
pub mod recommend;
pub mod reconfigure;
pub mod serve;
pub mod simulate;
pub mod slurm;
pub mod status;
pub mod train;
pub mod train_policy;

#[derive(Parser)]
#[command(
    name = "miso",
    version,
    about = "Share NVIDIA datacenter GPUs among deep-learning jobs with MIG, guided by MPS profiling",
    long_about = "miso partitions MIG-capable GPUs (A100, A30, H100, H200) among training jobs. \
Jobs are profiled briefly under MPS, a learned model predicts their speed on every MIG slice, \
and an exact search picks the layout, placement and assignment.\n\n\
Layouts on the command line are written as <profile>@<start>[,...], e.g. 4g.20gb@0,3g.20gb@4, \
where start is the placement in memory slices (see `miso layouts`). Errors exit with code 2.",
    after_help = "Start here:
  miso simulate                  replay the MISO paper's trace under every policy
  miso gpus                      the GPU models and MIG profiles miso knows
  miso recommend --jobs examples/jobs.json
  miso serve --insecure-no-auth  a local controller (README, \"Run for real\")

`miso <verb> --help` lists every flag with examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU models miso knows, with their MIG profiles.
    Gpus(gpus::GpusArgs),
    /// Enumerate the valid placed MIG layouts of a GPU (default: the maximal layouts of the
    /// standard profiles).
    Layouts(gpus::LayoutsArgs),
    /// Check, diff, export or import one layout.
    #[command(subcommand)]
    Layout(layout::LayoutCmd),
    /// Recommend a MIG layout, placement and job assignment for one GPU, with the plan that
    /// gets there from the current layout.
    Recommend(recommend::RecommendArgs),
    /// Train a predictor (MPS measurements → speed on each MIG profile) and save it with its
    /// metrics.
    Train(train::TrainArgs),
    /// Train the learned scheduling decisions (which GPU the head job joins, or wait; apply or
    /// defer a pending re-partition) with PPO in the simulator, save them with the learning
    /// curve, and evaluate them on held-out traces.
    TrainPolicy(train_policy::TrainPolicyArgs),
    /// Score a trained model on held-out data: MAE/MAPE per profile, decision quality.
    Evaluate(evaluate::EvaluateArgs),
    /// Predict MIG latencies for MPS feature matrices (.npy, shape N×3×7).
    Predict(predict::PredictArgs),
    /// Read the GPUs of this host through NVML: model, MIG mode, current placed layout.
    Nvml(nvml::NvmlArgs),
    /// Change one GPU's MIG layout with the least disruption (instances present in both
    /// layouts are left alone). `--dry-run` prints the exact NVML calls instead.
    Reconfigure(reconfigure::ReconfigureArgs),
    /// Run the controller: HTTP API for nodes, jobs, profiling samples, recommendations.
    Serve(serve::ServeArgs),
    /// Print the controller's OpenAPI document (JSON), generated from its request and reply
    /// types; the same document a running controller serves at /openapi.json.
    Openapi(serve::OpenapiArgs),
    /// Run the node agent: register this host's GPUs with the controller, then keep each GPU
    /// converged to its desired state.
    ///
    /// Level-triggered: each pass it checkpoints the jobs whose instance changes (SIGTERM),
    /// reconciles the MIG layout, starts the jobs on their instances, profiles a mix under MPS
    /// when the controller asks, and reports.
    ///
    /// A job runs as `sh -c COMMAND` in its own process group with CUDA_VISIBLE_DEVICES (its
    /// MIG device), MISO_JOB, MISO_INSTANCE, MISO_CHECKPOINT_DIR and MISO_RESTART. On SIGTERM
    /// it saves to MISO_CHECKPOINT_DIR and exits; it resumes from there when started again.
    /// While its GPU profiles the mix under MPS it also gets MISO_REPORT_HOST and
    /// MISO_REPORT_PORT and writes one line per iteration over TCP: `<MISO_JOB> <seconds>`
    /// (README, "Job protocol"; examples/train_job.sh follows both protocols).
    Agent(agent::AgentArgs),
    /// miso on Slurm: the connector that places a Slurm partition's jobs on MIG slices and
    /// re-partitions its nodes through Slurm's own drain/requeue/resume.
    #[command(subcommand)]
    Slurm(slurm::SlurmCmd),
    /// What a controller knows: each GPU's desired and reported layout, the jobs on its
    /// instances, profiling phases, and every job's state.
    Status(status::StatusArgs),
    /// Load-test a controller's recommendation endpoint (loopback only).
    Loadtest(loadtest::LoadtestArgs),
    /// Profile a mix of jobs under MPS at each active-thread level and record the sample.
    Profile(profile::ProfileArgs),
    /// Replay a job trace on a simulated MIG cluster under several policies and compare JCT,
    /// makespan, throughput (default: the MISO paper's setup, 8 A100s, 100 jobs).
    Simulate(simulate::SimulateArgs),
}

/// Parse the command line, run the verb, print an error as one line and exit 2 on failure.
pub fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        // A bad value is one line naming the flag and the range (exit 2); help, version and
        // usage errors keep clap's full text.
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            ) =>
        {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or_default());
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The parser, with every value-taking flag allowed to start with `-` so that `--gpus -1`
/// reaches its range check instead of being read as an unknown flag.
fn command() -> clap::Command {
    fn negatives(c: clap::Command) -> clap::Command {
        c.mut_args(|a| {
            if a.get_action().takes_values() {
                a.allow_negative_numbers(true)
            } else {
                a
            }
        })
        .mut_subcommands(negatives)
    }
    negatives(Cli::command())
}

fn run(c: Command) -> Result<()> {
    match c {
        Command::Gpus(a) => gpus::run_gpus(a),
        Command::Layouts(a) => gpus::run_layouts(a),
        Command::Layout(c) => layout::run(c),
        Command::Recommend(a) => recommend::run(a),
        Command::Train(a) => train::run(a),
        Command::TrainPolicy(a) => train_policy::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Nvml(a) => nvml::run(a),
        Command::Reconfigure(a) => reconfigure::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Openapi(a) => serve::run_openapi(a),
        Command::Agent(a) => agent::run(a),
        Command::Status(a) => status::run(a),
        Command::Slurm(c) => slurm::run(c),
        Command::Loadtest(a) => loadtest::run(a),
        Command::Profile(a) => profile::run(a),
        Command::Simulate(a) => simulate::run(a),
    }
}

// ---------------------------------------------------------------------------------------------
// Flags several verbs share.

/// `--gpu`: a GPU model by short name, alias or NVML name.
#[derive(clap::Args)]
pub struct GpuArg {
    #[arg(long, default_value = "a100-40gb", help = gpu_help())]
    pub gpu: String,
}

fn gpu_help() -> String {
    let names: Vec<String> = gpu::GPUS
        .iter()
        .map(|g| {
            let short: Vec<&str> = g
                .aliases
                .iter()
                .copied()
                .filter(|a| !a.starts_with("NVIDIA"))
                .collect();
            if short.is_empty() {
                g.short.to_string()
            } else {
                format!("{} (or {})", g.short, short.join(", "))
            }
        })
        .collect();
    format!(
        "GPU model: {}; or the name NVML reports, e.g. \"NVIDIA H100 80GB HBM3\"",
        names.join(", ")
    )
}

impl GpuArg {
    pub fn model(&self) -> Result<&'static GpuModel> {
        Ok(gpu::gpu(&self.gpu).context("--gpu")?)
    }
}

/// `--controller` and `--token-file`: how a client verb reaches the controller.
#[derive(clap::Args)]
pub struct ControllerArgs {
    /// The controller's URL: http://HOST:PORT on loopback, https://HOST:PORT elsewhere (a
    /// controller started with --tls-cert/--tls-key).
    #[arg(long, default_value = "http://127.0.0.1:7450")]
    pub controller: String,
    /// File holding the controller's bearer token (as given to `miso serve --token-file`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the controller's TLS certificate (or the self-signed
    /// certificate itself); without it https:// is verified against the public web roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Allow a plain http:// controller URL outside loopback (the token then crosses the
    /// network in clear).
    #[arg(long)]
    pub allow_plain_http: bool,
}

impl ControllerArgs {
    /// A client for the controller, with the token read from --token-file.
    pub fn client(&self) -> Result<miso::service::client::Client> {
        client_for(
            &self.controller,
            &self.token_file,
            &self.ca_file,
            self.allow_plain_http,
        )
    }
}

/// A client for the controller at `url`; the error names the flag at fault.
pub fn client_for(
    url: &str,
    token_file: &Option<PathBuf>,
    ca_file: &Option<PathBuf>,
    allow_plain: bool,
) -> Result<miso::service::client::Client> {
    let token = read_token(token_file)?;
    let opts = miso::service::client::ClientOptions {
        ca_file: ca_file.clone(),
        allow_plain,
    };
    miso::service::client::Client::new(url, token.as_deref(), &opts)
        .map_err(|e| anyhow::anyhow!("--controller: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Value parsers: every number on the command line is range-checked where it is parsed, so a
// bad value is one line naming the flag (exit 2) and never reaches the library.

/// A number in `lo..=hi` (integers and floats; NaN and infinities are refused).
pub fn range<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| match s.trim().parse::<f64>() {
                // A number, but not one of T (negative, fractional or too big for an integer).
                Ok(_) => {
                    format!("{s} is out of range: must be a whole number between {lo} and {hi}")
                }
                Err(_) => format!("`{s}` is not a number"),
            })?;
        if v >= lo && v <= hi {
            Ok(v)
        } else {
            Err(format!(
                "{v} is out of range: must be between {lo} and {hi}"
            ))
        }
    }
}

/// A finite number of at least `lo` (seconds, rates).
pub fn at_least(lo: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| finite(s, |v| v >= lo, &format!("≥ {lo}"))
}

/// A finite number greater than zero.
pub fn positive(s: &str) -> Result<f64, String> {
    finite(s, |v| v > 0.0, "> 0")
}

/// `s` as a finite number that satisfies `ok`, else why not (`rule` says what is allowed).
fn finite(s: &str, ok: impl Fn(f64) -> bool, rule: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: must be a finite number {rule}"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Default paths and inputs.

/// Where the MISO measurements are looked for when `--data` is not given, in order: `$MISO_DATA`,
/// `../shared/datasets/miso-a100` from the current folder, the same beside the source tree this
/// binary was built from (so an installed `miso` finds them from any folder on that machine).
pub fn default_data() -> Result<PathBuf> {
    let rel = Path::new("../shared/datasets/miso-a100");
    let mut tried = Vec::new();
    let env = std::env::var_os("MISO_DATA").map(PathBuf::from);
    let candidates = env
        .into_iter()
        .chain([
            rel.to_path_buf(),
            Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
        ])
        .collect::<Vec<_>>();
    for c in candidates {
        if c.join("mps_features.npy").is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    anyhow::bail!(
        "--data: the MISO measurements (mps_features.npy, mig_targets.npy) are not in {}; \
pass --data DIR (the miso-a100 folder of the shared datasets) or set MISO_DATA",
        tried.join(", ")
    )
}

/// `--data` if given, else [`default_data`].
pub fn data_dir(given: &Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.clone()),
        None => default_data(),
    }
}

/// `--model DIR` if given, else the model compiled into the binary.
pub fn load_model(dir: &Option<PathBuf>) -> Result<Predictor> {
    Ok(match dir {
        Some(d) => Predictor::load(d).context("--model")?,
        None => Predictor::builtin()?,
    })
}

/// The text of a file, or of standard input for `-`.
pub fn read_input(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Logs on standard error through `tracing`: `RUST_LOG` filters them (default `info`);
/// `access: false` silences the access log (target `miso::access`). Colours only on a terminal.
pub fn init_logs(access: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if !access {
        if let Ok(d) = "miso::access=off".parse() {
            filter = filter.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The bearer token in `--token-file`, if one was given.
pub fn read_token(f: &Option<PathBuf>) -> Result<Option<String>> {
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

/// A progress bar counting `unit`s (epochs, jobs), drawn on standard error.
pub fn progress(len: u64, what: &str, unit: &str) -> indicatif::ProgressBar {
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

/// A reader that went away (`miso … --json | head`) ends the output quietly instead of a panic.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v)?;
    match writeln!(std::io::stdout(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(c: &clap::Command, path: &str, out: &mut Vec<String>) {
        let here = format!("{path} {}", c.get_name());
        for a in c.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{here}: --{id} has no description"));
            }
        }
        let leaf = c.get_subcommands().next().is_none();
        if leaf && c.get_name() != "miso" {
            let after = c
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !after.contains("Examples:") {
                out.push(format!("{here}: no examples section"));
            }
        }
        for s in c.get_subcommands() {
            walk(s, &here, out);
        }
    }

    #[test]
    fn every_flag_is_described_and_every_verb_has_examples() {
        command().debug_assert();
        let mut missing = Vec::new();
        walk(&command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    /// Shell-like words of an example line: quotes group, `#` starts a comment, a pipe or a
    /// redirection ends the command.
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quote: Option<char> = None;
        let mut any = false;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => cur.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    any = true;
                }
                (None, '#' | '|' | '>') => break,
                (None, c) if c.is_whitespace() => {
                    if !cur.is_empty() || any {
                        out.push(std::mem::take(&mut cur));
                        any = false;
                    }
                }
                (None, c) => cur.push(c),
            }
        }
        if !cur.is_empty() || any {
            out.push(cur);
        }
        out
    }

    fn examples(c: &clap::Command, out: &mut Vec<String>) {
        // The verbs' `Examples:` sections (the top level lists verbs with prose beside them).
        if let Some(h) = c.get_after_help().filter(|_| c.get_name() != "miso") {
            let text = h.to_string().replace("\\\n", " ");
            for l in text.lines() {
                let l = l.trim_start();
                if l.starts_with("miso ") {
                    out.push(l.to_string());
                }
            }
        }
        for s in c.get_subcommands() {
            examples(s, out);
        }
    }

    #[test]
    fn every_example_in_the_help_parses() {
        let mut lines = Vec::new();
        examples(&command(), &mut lines);
        assert!(lines.len() > 30, "{} examples", lines.len());
        for l in lines {
            let w = words(&l);
            if let Err(e) = command().try_get_matches_from(&w) {
                panic!("`{l}` does not parse: {e}");
            }
        }
    }

    #[test]
    fn one_name_per_idea_across_verbs() {
        // The same idea has one flag name everywhere: --controller, --gpu-index, --gpu.
        let mut names = Vec::new();
        for s in command().get_subcommands() {
            for a in s.get_arguments() {
                if let Some(l) = a.get_long() {
                    names.push(l.to_string());
                }
            }
        }
        for bad in ["url", "index", "gpu-model", "controller-url"] {
            assert!(!names.iter().any(|n| n == bad), "--{bad} is used");
        }
    }

    #[test]
    fn negative_and_huge_numbers_reach_the_range_check() {
        for args in [
            &["miso", "simulate", "--gpus", "-1"][..],
            &["miso", "simulate", "--profiling-s=-0.5"],
            &["miso", "simulate", "--reconfig-s", "-0.9"],
            &["miso", "simulate", "--mps-max-jobs", "0"],
            &["miso", "simulate", "--synthetic", "100000000000"],
            &[
                "miso",
                "recommend",
                "--jobs",
                "j.json",
                "--reconfig-s",
                "-1",
            ],
            &["miso", "train", "--batch", "0"],
            &["miso", "loadtest", "--rps", "-5"],
            &["miso", "agent", "--sim-gpus", "0"],
        ] {
            let e = command()
                .try_get_matches_from(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}: {e}"
            );
            let text = e.to_string();
            assert!(text.contains("out of range"), "{args:?}: {text}");
        }
        assert!(command()
            .try_get_matches_from(["miso", "simulate", "--gpus", "64"])
            .is_ok());
    }
}
