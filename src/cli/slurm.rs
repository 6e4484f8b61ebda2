//! `miso slurm`: the connector that makes miso the MIG brain of a Slurm partition.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use miso::service::slurm::{self, ctl::Slurm};

use super::{range, ControllerArgs};

#[derive(Subcommand)]
pub enum SlurmCmd {
    /// Run the connector: place the pending jobs of partition `miso` on MIG slices and
    /// re-partition nodes through Slurm (drain, requeue what changes, apply, new gres, resume).
    ///
    /// Users submit as usual: `sbatch -p miso --gres=gpu:1 job.sh`, optionally naming the
    /// workload with `--comment miso:workload=NAME` (a workload of `miso recommend`'s catalog;
    /// other jobs are planned with the mean measured speeds). Partition `miso` must be
    /// State=DOWN (Slurm queues, miso places) and `miso-run` a hidden partition over the same
    /// nodes; every node declares one GPU gres per compute slice of its GPU, typed mig0, mig1,
    /// ... (seats: 7 on an A100), as `scripts/slurm-cluster up` writes them. A job is given a
    /// seat when first placed and keeps it; re-partitioning moves instances between seats (the
    /// profile each seat holds is in gres.conf, the node's Comment and the job's Comment). One
    /// GPU per node. Each node runs `miso agent` registered under its Slurm node name.
    Run(RunArgs),
    /// Print the gres.conf lines of this node's MIG instances on real hardware, in the seat
    /// form `miso slurm run` keeps (Type=mig0 … one per compute slice, each holding an
    /// instance or none): an instance's `MultipleFiles=` names its device files (the GPU's
    /// /dev/nvidiaN and the /dev/nvidia-caps files of its GPU and compute instance, from NVML's
    /// ids and /proc/driver/nvidia-caps/mig-minors); and the node's `Gres=`. Debian's Slurm has
    /// no NVML autodetection, so without these lines Slurm cannot give a job its slice.
    Gres(GresArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:
  miso slurm gres --node gpu07                        # this host's GPU 0, through NVML
  miso slurm gres --node n1 --backend simulated --gpu a100-40gb \\
      --sim-state gpu.json --mig-minors minors.txt   # a simulated GPU's layout")]
pub struct GresArgs {
    /// The node's name in slurm.conf.
    #[arg(long)]
    node: String,
    /// The GPU's index (one GPU per node under `miso slurm run`).
    #[arg(long, default_value_t = 0, value_parser = range(0u32, 1023))]
    gpu_index: u32,
    /// nvml (this host's driver) or simulated (a state file of `miso agent --backend
    /// simulated --sim-state`).
    #[arg(long, value_enum, default_value = "nvml")]
    backend: GresBackend,
    /// Simulated backend: the GPU model.
    #[arg(long, default_value = "a100-40gb")]
    gpu: String,
    /// Simulated backend: the layout state file.
    #[arg(long)]
    sim_state: Option<PathBuf>,
    /// The driver's table of MIG capability minors.
    #[arg(long, default_value = "/proc/driver/nvidia-caps/mig-minors")]
    mig_minors: PathBuf,
    /// The node's present lines (from an earlier run): instances that are still there keep
    /// their seats, so the jobs on them keep their GPUs.
    #[arg(long)]
    gres_conf: Option<PathBuf>,
    /// The same as JSON: {"node", "layout", "gres", "lines": [...]}.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GresBackend {
    Nvml,
    Simulated,
}

#[derive(Args)]
#[command(after_help = "Examples:
  eval \"$(scripts/slurm-cluster up --nodes 2)\"   # starts Slurm, miso serve, agents and this
  miso slurm run --slurm-conf /tmp/miso-slurm/etc/slurm.conf --dev-dir /tmp/miso-slurm/dev")]
pub struct RunArgs {
    #[command(flatten)]
    controller: ControllerArgs,
    /// The cluster's slurm.conf (its nodes' `Gres=` are rewritten on a re-partition; default:
    /// $SLURM_CONF).
    #[arg(long)]
    slurm_conf: Option<PathBuf>,
    /// The cluster's gres.conf (default: beside slurm.conf).
    #[arg(long)]
    gres_conf: Option<PathBuf>,
    /// The partition users submit to (State=DOWN: Slurm queues, miso places).
    #[arg(long, default_value = "miso")]
    partition: String,
    /// The hidden partition placed jobs run in.
    #[arg(long, default_value = "miso-run")]
    run_partition: String,
    /// Device files of simulated MIG slots are made here (`DIR/<node>/mig-<instance>`).
    #[arg(long)]
    dev_dir: PathBuf,
    /// Shell command that restarts a node's slurmd when its seats' device files changed
    /// (`$MISO_SLURM_NODE` is the node), e.g. `ssh $MISO_SLURM_NODE systemctl restart slurmd`.
    /// Simulated seats keep their files, so it is never run for them.
    #[arg(long)]
    restart_cmd: Option<String>,
    /// Milliseconds between passes.
    #[arg(long, default_value_t = 1000, value_parser = range(10u64, 3_600_000))]
    interval_ms: u64,
    /// Seconds the node's agent gets to apply a new layout.
    #[arg(long, default_value_t = 60.0, value_parser = range(1.0, 3600.0))]
    apply_timeout_s: f64,
    /// One pass, then exit.
    #[arg(long)]
    once: bool,
}

pub fn run(cmd: SlurmCmd) -> Result<()> {
    match cmd {
        SlurmCmd::Run(a) => run_connector(a),
        SlurmCmd::Gres(a) => gres(a),
    }
}

fn gres(a: GresArgs) -> Result<()> {
    use miso::control::{nvml::NvmlControl, simulated::SimulatedGpus, GpuControl};
    use miso::service::slurm::gres as g;
    if a.node.is_empty()
        || a.node
            .chars()
            .any(|c| c.is_whitespace() || c == '=' || c == '#')
    {
        bail!(
            "--node `{}`: a Slurm node name (no spaces, `=` or `#`)",
            a.node.escape_debug()
        );
    }
    let mut ctl: Box<dyn GpuControl> = match a.backend {
        GresBackend::Nvml => Box::new(NvmlControl::new()?),
        GresBackend::Simulated => {
            let model = miso::gpu::gpu(&a.gpu)?;
            let Some(p) = &a.sim_state else {
                bail!("--backend simulated needs --sim-state (the agent's state file)");
            };
            Box::new(SimulatedGpus::persistent(
                model,
                (a.gpu_index + 1) as usize,
                p,
            )?)
        }
    };
    let gpus = ctl.list_gpus()?;
    let info = gpus
        .iter()
        .find(|x| x.index == a.gpu_index)
        .ok_or_else(|| anyhow::anyhow!("--gpu-index {}: no such GPU", a.gpu_index))?;
    let Some(model) = info.model else {
        bail!(
            "GPU {} ({}) is not a MIG-capable model miso knows",
            a.gpu_index,
            info.name
        );
    };
    let layout = ctl.layout(a.gpu_index)?;
    let mut ids = std::collections::HashMap::new();
    for i in layout.instances() {
        ids.insert(*i, ctl.mig_ids(a.gpu_index, *i)?);
    }
    let text = std::fs::read_to_string(&a.mig_minors)
        .map_err(|e| anyhow::anyhow!("--mig-minors {}: {e}", a.mig_minors.display()))?;
    let minors = g::parse_mig_minors(&text)
        .map_err(|e| anyhow::anyhow!("--mig-minors {}: {e}", a.mig_minors.display()))?;
    let gpu_minor = ids.values().next().map_or(a.gpu_index, |x| x.minor);
    let mut keep = std::collections::HashMap::new();
    if let Some(p) = &a.gres_conf {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("--gres-conf {}: {e}", p.display()))?;
        for s in g::parse(&text, &a.node)
            .map_err(|e| anyhow::anyhow!("--gres-conf {}: {e}", p.display()))?
        {
            if let Some(i) = s.instance {
                keep.insert(i, s.seat);
            }
        }
    }
    let slots = g::hardware_slots(model, &layout, &keep, &ids, &minors, gpu_minor)?;
    let lines = g::render(&a.node, &slots);
    let value = g::gres_value(&slots);
    if a.json {
        super::print_json(&serde_json::json!({
            "node": a.node, "layout": layout.label(model), "gres": value,
            "lines": lines.lines().collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "# gres.conf: {} on {} ({})",
            layout.label(model),
            a.node,
            model.name
        );
        print!("{lines}");
        println!(
            "# slurm.conf: the node's NodeName line takes\n# NodeName={} ... Gres={value}",
            a.node
        );
    }
    Ok(())
}

fn run_connector(a: RunArgs) -> Result<()> {
    let Some(slurm_conf) = a
        .slurm_conf
        .clone()
        .or_else(|| std::env::var_os("SLURM_CONF").map(PathBuf::from))
    else {
        bail!("--slurm-conf: not given and $SLURM_CONF is not set");
    };
    if !slurm_conf.is_file() {
        bail!("--slurm-conf {}: no such file", slurm_conf.display());
    }
    let gres_conf = a.gres_conf.clone().unwrap_or_else(|| {
        slurm_conf
            .parent()
            .map_or_else(|| PathBuf::from("gres.conf"), |d| d.join("gres.conf"))
    });
    if !gres_conf.is_file() {
        bail!("--gres-conf {}: no such file", gres_conf.display());
    }
    for (flag, p) in [
        ("--partition", &a.partition),
        ("--run-partition", &a.run_partition),
    ] {
        if p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("{flag} `{p}`: letters, digits, `-` and `_` only");
        }
    }
    if a.partition == a.run_partition {
        bail!("--run-partition must differ from --partition");
    }
    if a.restart_cmd
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        bail!("--restart-cmd: must not be empty");
    }
    let cfg = slurm::Config {
        client: a.controller.client()?,
        slurm: Slurm::new(Some(slurm_conf.clone())),
        partition: a.partition,
        run_partition: a.run_partition,
        slurm_conf,
        gres_conf,
        dev_dir: a.dev_dir,
        restart_cmd: a.restart_cmd,
        interval: std::time::Duration::from_millis(a.interval_ms),
        apply_timeout: std::time::Duration::from_secs_f64(a.apply_timeout_s),
        once: a.once,
    };
    slurm::run(&cfg, &mut |m| eprintln!("slurm: {m}")).map_err(anyhow::Error::msg)?;
    Ok(())
}
