//! `miso agent`: the node agent: registers this host's GPUs and keeps each one converged to the
//! controller's desired state.

use anyhow::{Context, Result};
use clap::Args;

use miso::gpu::{self, Layout};

use super::{range, ControllerArgs};

#[derive(Args)]
#[command(after_help = "Examples:
  miso agent --name node1 --backend simulated --sim-gpus 2 --controller http://127.0.0.1:7450
  miso agent --name node1 --backend dry-run --once            # print the NVML calls of one pass
  miso agent --token-file token                               # real GPUs through NVML")]
pub struct AgentArgs {
    #[command(flatten)]
    controller: ControllerArgs,
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// How GPUs are driven: nvml (real), simulated (in memory, for tests and demos), dry-run
    /// (simulated placement rules, NVML calls printed).
    #[arg(long, value_enum, default_value = "nvml")]
    backend: BackendArg,
    /// Simulated/dry-run backends: number of GPUs.
    #[arg(long, default_value_t = 1, value_parser = range(1usize, 64))]
    sim_gpus: usize,
    /// Simulated/dry-run backends: the GPU model (see `miso gpus`).
    #[arg(long, default_value = "a100-40gb")]
    gpu: String,
    /// Simulated backend: persist the GPUs' layouts in this file.
    #[arg(long)]
    sim_state: Option<std::path::PathBuf>,
    /// Simulated backend: milliseconds each create/destroy takes.
    #[arg(long, default_value_t = 0, value_parser = range(0u64, 3_600_000))]
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
    #[arg(long, default_value_t = 30.0, value_parser = range(0.0, 86_400.0))]
    checkpoint_grace_s: f64,
    /// Milliseconds between reconcile passes.
    #[arg(long, default_value_t = 2000, value_parser = range(10u64, 3_600_000))]
    interval_ms: u64,
    /// Seconds a GPU call (NVML, MPS) may take before the agent gives up on it and reports the
    /// error; later calls fail at once until the hung one returns.
    #[arg(long, default_value_t = 60.0, value_parser = range(0.1, 3600.0))]
    gpu_call_timeout_s: f64,
    /// One pass, then exit.
    #[arg(long)]
    once: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    /// Real GPUs through NVML (needs the driver).
    Nvml,
    /// In-memory GPUs with the real placement rules (tests, demos).
    Simulated,
    /// Simulated placement rules, every NVML call printed.
    DryRun,
}

pub fn run(a: AgentArgs) -> Result<()> {
    use miso::control::{
        dryrun::DryRun, nvml::NvmlControl, simulated::SimulatedGpus, watchdog::Watchdog,
        ControlError, GpuControl,
    };
    let client = a.controller.client()?;
    let name = a.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "node".into())
    });
    let model = gpu::gpu(&a.gpu)?;
    let faults = a
        .sim_faults
        .iter()
        .map(|f| parse_fault(f).with_context(|| format!("--sim-fault {f}")))
        .collect::<Result<Vec<_>>>()?;
    let (backend, sim_gpus, sim_state, step_delay) = (
        a.backend,
        a.sim_gpus,
        a.sim_state.clone(),
        std::time::Duration::from_millis(a.step_delay_ms),
    );
    // The backend lives on the watchdog's thread: a driver call that hangs costs one error.
    let make = move || -> Result<Box<dyn GpuControl>, ControlError> {
        Ok(match backend {
            BackendArg::Nvml => Box::new(NvmlControl::new()?),
            BackendArg::Simulated => {
                let mut s = match &sim_state {
                    Some(p) => SimulatedGpus::persistent(model, sim_gpus, p)?,
                    None => SimulatedGpus::new(model, sim_gpus),
                };
                s.step_delay = step_delay;
                s.faults = faults;
                Box::new(s)
            }
            BackendArg::DryRun => {
                let mut d = DryRun::new(model, vec![Layout::empty(); sim_gpus]);
                d.echo = true;
                Box::new(d)
            }
        })
    };
    let mut ctl = Watchdog::new(
        make,
        std::time::Duration::from_secs_f64(a.gpu_call_timeout_s),
    )?;
    let cfg = miso::service::agent::AgentConfig {
        client,
        name,
        interval: std::time::Duration::from_millis(a.interval_ms),
        once: a.once,
        state_dir: a.state_dir.clone(),
        grace: std::time::Duration::from_secs_f64(a.checkpoint_grace_s),
    };
    miso::service::agent::run(&cfg, &mut ctl, &mut |m| eprintln!("agent: {m}"))
        .map_err(anyhow::Error::msg)
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
