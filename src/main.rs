//! The `miso` command line: parse, call the library, print. No logic of its own lives here.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use miso::gpu::{self, migparted, GpuModel, Layout, LayoutDiff};

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
    /// NVIDIA mig-parted YAML (version v1), as the GPU operator consumes it.
    MigParted,
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
                format: ExportFormat::MigParted,
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
                print!("{}", migparted::export(g, &ls, &name));
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
