//! `miso reconfigure`: one GPU to a new MIG layout through NVML, least disruption first;
//! `--dry-run` prints the NVML calls.

use anyhow::{Context, Result};
use clap::Args;

use miso::gpu::{self, Layout, LayoutDiff};

use super::range;

#[derive(Args)]
#[command(after_help = "Examples:
  miso reconfigure --dry-run --from 7g.40gb@0 --to 4g.20gb@0,3g.20gb@4   # no GPU needed
  miso reconfigure --gpu-index 0 --to 3g.20gb@0,3g.20gb@4 --dry-run     # reads the GPU
  miso reconfigure --gpu-index 0 --to 3g.20gb@0,3g.20gb@4 --yes         # really does it

Instances present in both layouts are kept; the rest are destroyed, then the new ones created,
largest first. On a failure the GPU keeps a valid layout and a second run converges.")]
pub struct ReconfigureArgs {
    /// GPU index on this host (as nvidia-smi numbers them).
    #[arg(long, default_value_t = 0, value_parser = range(0u32, 1023))]
    gpu_index: u32,
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

pub fn run(a: ReconfigureArgs) -> Result<()> {
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
                .find(|g| g.index == a.gpu_index)
                .ok_or(control::ControlError::NoSuchGpu(a.gpu_index))?;
            let m = info
                .model
                .ok_or_else(|| control::ControlError::UnknownModel {
                    gpu: a.gpu_index,
                    name: info.name.clone(),
                })?;
            let l = n.layout(a.gpu_index)?;
            (m, l, Some(n))
        }
    };
    let to = gpu::parse_valid_layout(model, &a.to).context("--to")?;
    let diff = LayoutDiff::between(model, &from, &to);
    println!(
        "GPU {} ({}): {} -> {}",
        a.gpu_index,
        model.name,
        from.label(model),
        to.label(model)
    );
    let report = if a.dry_run {
        let mut layouts = vec![Layout::empty(); a.gpu_index as usize + 1];
        layouts[a.gpu_index as usize] = from.clone();
        let mut d = DryRun::new(model, layouts);
        let r = control::apply(&mut d, model, a.gpu_index, &diff);
        for c in &d.calls {
            println!("  {c}");
        }
        r
    } else {
        let n = nvml.as_mut().context("no NVML backend")?;
        control::apply(n, model, a.gpu_index, &diff)
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
