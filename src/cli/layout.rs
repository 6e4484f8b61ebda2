//! `miso layout check|diff|export|import`: one layout against the placement rules, between two
//! layouts, and to/from the configs of NVIDIA mig-parted, the GPU operator and Slurm.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;

use miso::gpu::{self, migparted, Layout, LayoutDiff};

use super::{print_json, GpuArg};

#[derive(Subcommand)]
pub enum LayoutCmd {
    /// Check a layout against the placement rules; the error names the instance and the rule.
    #[command(after_help = "Examples:
  miso layout check 4g.20gb@0,3g.20gb@4
  miso layout check --gpu h100-80gb 3g.40gb@0,3g.40gb@4 --json
  miso layout check 4g.20gb@2          # refused: 4g.20gb starts only at 0")]
    Check {
        #[command(flatten)]
        gpu: GpuArg,
        /// The layout, e.g. 4g.20gb@0,3g.20gb@4.
        layout: String,
        /// Print JSON: {"valid", "gpu", "layout", "compute_slices", "maximal"}.
        #[arg(long)]
        json: bool,
    },
    /// Which instances a re-partition keeps, destroys and creates (creation order: largest
    /// first). Use `empty` for a GPU with no instance.
    #[command(after_help = "Examples:
  miso layout diff 7g.40gb@0 4g.20gb@0,3g.20gb@4
  miso layout diff empty 3g.20gb@0,3g.20gb@4 --json")]
    Diff {
        #[command(flatten)]
        gpu: GpuArg,
        /// The layout the GPU has now (`empty` for none).
        from: String,
        /// The layout it should have.
        to: String,
        /// Print JSON: {"keep", "destroy", "create"}.
        #[arg(long)]
        json: bool,
    },
    /// Export layouts (one per GPU, in index order) as a config for another tool.
    #[command(after_help = "Examples:
  miso layout export 4g.20gb@0,3g.20gb@4 > mig-config.yaml
  miso layout export --format gpu-operator 7g.40gb@0 3g.20gb@0,3g.20gb@4
  miso layout export --format slurm 2g.10gb@0,2g.10gb@2,3g.20gb@4")]
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
    #[command(after_help = "Examples:
  miso layout export 4g.20gb@0,3g.20gb@4 > mig-config.yaml
  miso layout import mig-config.yaml
  miso layout import /etc/nvidia-mig-manager/config.yaml --config all-balanced --json")]
    Import {
        #[command(flatten)]
        gpu: GpuArg,
        /// The mig-parted YAML file.
        file: std::path::PathBuf,
        /// Which config of the file (needed when it has several).
        #[arg(long)]
        config: Option<String>,
        /// Print JSON: one {"devices", "mig_enabled", "layout"} per device group.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// NVIDIA mig-parted YAML (version v1).
    MigParted,
    /// A ConfigMap for the NVIDIA GPU operator and the `nvidia.com/mig.config` node label.
    GpuOperator,
    /// Slurm gres.conf / slurm.conf lines.
    Slurm,
}

pub fn run(c: LayoutCmd) -> Result<()> {
    match c {
        LayoutCmd::Check { gpu, layout, json } => {
            let g = gpu.model()?;
            let l = gpu::parse_valid_layout(g, &layout)?;
            let maximal = l.is_maximal(g, &g.profile_set(true));
            if json {
                return print_json(&json!({"valid": true, "gpu": g.name, "layout": l.views(g),
                    "compute_slices": l.compute_slices(g), "maximal": maximal}));
            }
            println!(
                "valid: {} on {} ({} of {} compute slices{})",
                l.label(g),
                g.name,
                l.compute_slices(g),
                g.compute_slices,
                if maximal { ", maximal" } else { "" }
            );
            Ok(())
        }
        LayoutCmd::Diff {
            gpu,
            from,
            to,
            json,
        } => {
            let g = gpu.model()?;
            let from = gpu::parse_valid_layout(g, &from).context("<FROM>")?;
            let to = gpu::parse_valid_layout(g, &to).context("<TO>")?;
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
                ExportFormat::GpuOperator => print!("{}", migparted::gpu_operator(g, &ls, &name)),
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
    }
}
