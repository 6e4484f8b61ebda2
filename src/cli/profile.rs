//! `miso profile`: run a mix of jobs under MPS at each active-thread level and record the
//! sample (miso-mps-sample/1) the predictor reads.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use miso::gpu;

use super::{client_for, range};

#[derive(Args)]
#[command(after_help = "Examples:
  miso profile --no-mps --seconds 2 --job a=examples/train_job.sh --job b=examples/train_job.sh
  miso profile --gpu-index 0 --job 'bert_train8=python3 train.py --batch 8' --out sample.json
  miso profile --job x=./job.sh --for-jobs job-17 --controller http://127.0.0.1:7450 --token-file token

Jobs report their speed over the line protocol (README, \"Job protocol\"); the sample's matrix
holds each job's latency at each level divided by its largest (1.0 = slowest).")]
pub struct ProfileArgs {
    /// A job of the mix as LABEL=COMMAND (run with `sh -c`), e.g.
    /// --job 'bert_train8=python3 train.py --batch 8'. Up to 7.
    #[arg(long = "job", required = true)]
    jobs: Vec<String>,
    /// MPS active-thread percentages, three of them.
    #[arg(long, value_delimiter = ',', default_value = "100,50,14", value_parser = range(1u32, 100))]
    levels: Vec<u32>,
    /// Seconds each level runs.
    #[arg(long, default_value_t = 30.0, value_parser = range(0.001, 86_400.0))]
    seconds: f64,
    /// GPU index (CUDA_VISIBLE_DEVICES of the MPS daemon).
    #[arg(long, default_value_t = 0, value_parser = range(0u32, 1023))]
    gpu_index: u32,
    /// GPU model name recorded in the sample when NVML cannot tell.
    #[arg(long, default_value = "a100-40gb")]
    gpu: String,
    /// With MIG on: the instance the mix runs on under MPS, e.g. 7g.40gb@0 (MISO profiles on
    /// the whole-GPU instance). Without it the daemon serves the whole GPU (MIG off).
    #[arg(long)]
    instance: Option<String>,
    /// Run the jobs without starting an MPS daemon (tests without a GPU).
    #[arg(long)]
    no_mps: bool,
    /// The controller's ids of the profiled jobs, one per --job in order (`-` for a slot that
    /// is no controller job). The sample is then stored with them, and the controller predicts
    /// these jobs' MIG speeds from it when it plans their GPU.
    #[arg(long, value_delimiter = ',')]
    for_jobs: Vec<String>,
    /// Mix number recorded in the sample.
    #[arg(long, default_value_t = 0)]
    mix: usize,
    /// Send the sample to this controller (POST /v1/samples), e.g. http://127.0.0.1:7450.
    #[arg(long)]
    controller: Option<String>,
    /// File holding the controller's bearer token.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// PEM file of the CA that signed the controller's TLS certificate.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Allow a plain http:// controller URL outside loopback.
    #[arg(long)]
    allow_plain_http: bool,
    /// Also write the sample (JSON) here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

pub fn run(a: ProfileArgs) -> Result<()> {
    use miso::service::profile::{profile_mix, ProfileJob};
    let jobs = a
        .jobs
        .iter()
        .enumerate()
        .map(|(k, j)| {
            let (l, c) = j
                .split_once('=')
                .with_context(|| format!("--job {}: expected LABEL=COMMAND", k + 1))?;
            if l.trim().is_empty() || c.trim().is_empty() {
                anyhow::bail!("--job {}: expected LABEL=COMMAND", k + 1);
            }
            Ok(ProfileJob {
                label: l.trim().to_string(),
                command: c.to_string(),
                key: k.to_string(),
                env: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let gpu_name = match miso::control::nvml::NvmlControl::new()
        .and_then(|mut n| miso::control::GpuControl::list_gpus(&mut n))
    {
        Ok(g) => g
            .iter()
            .find(|g| g.index == a.gpu_index)
            .map(|g| g.name.clone())
            .unwrap_or_else(|| a.gpu.clone()),
        Err(_) => gpu::gpu(&a.gpu)?.name.to_string(),
    };
    if !a.for_jobs.is_empty() && a.for_jobs.len() != jobs.len() {
        anyhow::bail!(
            "--for-jobs: {} ids for {} --job options (one per job, `-` for none)",
            a.for_jobs.len(),
            jobs.len()
        );
    }
    let mut nvml = if a.no_mps {
        None
    } else {
        Some(miso::control::nvml::NvmlControl::new()?)
    };
    let instance = match &a.instance {
        None => None,
        Some(l) => {
            let model = gpu::gpu(&a.gpu)?;
            Some(gpu::Instance::parse(model, l).context("--instance")?)
        }
    };
    let target = nvml.as_mut().map(|n| miso::service::profile::MpsTarget {
        ctl: n,
        gpu: a.gpu_index,
        instance,
    });
    let grace = std::time::Duration::from_secs(5);
    let rec = profile_mix(&jobs, &a.levels, a.seconds, target, &gpu_name, a.mix, grace)
        .map_err(anyhow::Error::msg)?;
    let text = serde_json::to_string(&rec)?;
    if let Some(o) = &a.out {
        std::fs::write(o, &text).with_context(|| format!("cannot write {}", o.display()))?;
    }
    if let Some(url) = &a.controller {
        let client = client_for(url, &a.token_file, &a.ca_file, a.allow_plain_http)?;
        let mut v = serde_json::to_value(&rec)?;
        if !a.for_jobs.is_empty() {
            let ids: Vec<serde_json::Value> = a
                .for_jobs
                .iter()
                .map(|j| {
                    if j == "-" {
                        serde_json::Value::Null
                    } else {
                        json!(j)
                    }
                })
                .collect();
            v["jobs"] = json!(ids);
        }
        let (code, body) = client
            .request("POST", "/v1/samples", Some(&v.to_string()))
            .map_err(anyhow::Error::msg)?;
        if code != 201 {
            anyhow::bail!("controller refused the sample: HTTP {code}: {body}");
        }
    }
    println!("{text}");
    Ok(())
}
