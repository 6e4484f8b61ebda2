//! `miso status`: what a controller knows, as a table or JSON.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::{print_json, ControllerArgs};

#[derive(Args)]
#[command(after_help = "Examples:
  miso status
  miso status --controller http://10.0.0.5:7450 --token-file token --json

STATE: converged (the GPU has its desired layout), converging (the agent is applying it),
profiling (a mix runs under MPS), - (nothing desired yet).")]
pub struct StatusArgs {
    #[command(flatten)]
    controller: ControllerArgs,
    /// The same as JSON: {"gpus": [...], "jobs": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn run(a: StatusArgs) -> Result<()> {
    let json_out = a.json;
    let client = a.controller.client()?;
    let get = |path: &str| -> Result<serde_json::Value> {
        let (code, body) = client
            .request("GET", path, None)
            .map_err(anyhow::Error::msg)?;
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
        if let Some(e) = j["error"].as_str() {
            println!("{:>20} {e}", "");
        }
    }
    Ok(())
}
