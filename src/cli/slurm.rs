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
    /// nodes; every node declares a fixed number of GPU gres (the GPU's compute slices: 7 on
    /// an A100), unused ones typed `unused`, as `scripts/slurm-cluster up` writes them. One GPU
    /// per node. Each node runs `miso agent` registered under its Slurm node name.
    Run(RunArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:
  eval \"$(scripts/slurm-cluster up --nodes 2)\"   # starts Slurm, miso serve, agents and this
  miso slurm run --slurm-conf /tmp/miso-slurm/etc/slurm.conf --dev-dir /tmp/miso-slurm/dev \\
      --restart-cmd 'scripts/slurm-cluster restart --node \"$MISO_SLURM_NODE\"'")]
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
    /// Shell command that restarts a node's Slurm daemons after its gres changed
    /// (`$MISO_SLURM_NODE` is the node), e.g. `ssh $MISO_SLURM_NODE systemctl restart slurmd
    /// && systemctl restart slurmctld`.
    #[arg(long)]
    restart_cmd: String,
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
    }
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
    if a.restart_cmd.trim().is_empty() {
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
