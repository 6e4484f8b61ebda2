//! `miso gpus` and `miso layouts`: what the GPU catalog knows.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use miso::gpu::{self, GpuModel, Layout};

use super::{print_json, GpuArg};

#[derive(Args)]
#[command(after_help = "Examples:
  miso gpus
  miso gpus --json | jq '.[].short'

Short names accepted by every --gpu flag are listed first, aliases in the JSON output.")]
pub struct GpusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(after_help = "Examples:
  miso layouts                          # the maximal layouts of an A100-40GB
  miso layouts --gpu h100-80gb --all    # every valid layout of an H100
  miso layouts --gpu a30 --json

Each row shows the layout and its memory slices: a cell per slice, labelled with the compute
size of the instance that starts there (`-` continues it, `.` is free).")]
pub struct LayoutsArgs {
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
}

pub fn run_gpus(a: GpusArgs) -> Result<()> {
    if a.json {
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
        let aliases: Vec<&str> = g.aliases.to_vec();
        println!(
            "{} ({}): {} MiB, {} SMs, {} compute / {} memory slices",
            g.name, g.short, g.memory_mb, g.sm_count, g.compute_slices, g.memory_slices
        );
        println!("  also accepted as: {}", aliases.join(", "));
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
    println!(
        "id: NVML GPU-instance profile id; slices: compute c / memory m; max: instances of that"
    );
    println!("profile at once; placements: {{start slices}}:size in memory slices.");
    Ok(())
}

pub fn run_layouts(a: LayoutsArgs) -> Result<()> {
    let g = a.gpu.model()?;
    let set = g.profile_set(a.all_profiles);
    let layouts: Vec<Layout> = if a.all {
        gpu::all_layouts(g, a.all_profiles).to_vec()
    } else {
        gpu::maximal(g, &set)
    };
    if a.json {
        let v: Vec<_> = layouts.iter().map(|l| l.views(g)).collect();
        return print_json(&v);
    }
    for l in &layouts {
        println!("{:<40} {}", l.label(g), occupancy_bar(g, l));
    }
    println!(
        "{} {} layouts of {} ({} profiles)",
        layouts.len(),
        if a.all { "valid" } else { "maximal" },
        g.name,
        if a.all_profiles { "all" } else { "standard" }
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
