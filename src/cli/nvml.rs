//! `miso nvml`: this host's GPUs as NVML reports them.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::print_json;

#[derive(Args)]
#[command(after_help = "Examples:
  miso nvml
  miso nvml --json

Needs the NVIDIA driver (libnvidia-ml.so.1); without it the error says so. Read-only.")]
pub struct NvmlArgs {
    /// Print JSON: one {"gpu", "layout", "profile_check"} per GPU.
    #[arg(long)]
    json: bool,
}

pub fn run(a: NvmlArgs) -> Result<()> {
    let json_out = a.json;
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
