//! `miso loadtest`: paced requests against a controller's recommendation endpoint.

use anyhow::Result;
use clap::Args;

use super::{positive, print_json, range, ControllerArgs};

#[derive(Args)]
#[command(after_help = "Examples:
  miso loadtest                                    # 1,000 requests/s for 5 s on loopback
  miso loadtest --rps 5000 --seconds 10 --workers 32 --json

Each request asks for the layout of five MISO workloads on an A100-40GB. Latency percentiles
are per request, lower is better; achieved below target means the controller saturated.")]
pub struct LoadtestArgs {
    #[command(flatten)]
    controller: ControllerArgs,
    /// Requests per second.
    #[arg(long, default_value_t = 1000.0, value_parser = positive)]
    rps: f64,
    /// How long to send, in seconds (at most an hour).
    #[arg(long, default_value_t = 5.0, value_parser = range(0.001, 3600.0))]
    seconds: f64,
    /// Concurrent client threads.
    #[arg(long, default_value_t = 16, value_parser = range(1usize, 1024))]
    workers: usize,
    /// Print JSON: requests, target and achieved rate, errors, latency percentiles.
    #[arg(long)]
    json: bool,
}

pub fn run(a: LoadtestArgs) -> Result<()> {
    let client = a.controller.client()?;
    let body = r#"{"gpu":"a100-40gb","jobs":[{"id":"a","workload":"bert_train8"},{"id":"b","workload":"resnet_train64"},{"id":"c","workload":"gnn_train128"},{"id":"d","workload":"mobilenet_train64"},{"id":"e","workload":"transformer_train16"}]}"#;
    let r =
        miso::service::loadtest::run(&client, "/v1/recommend", body, a.rps, a.seconds, a.workers)
            .map_err(anyhow::Error::msg)?;
    if a.json {
        return print_json(&r);
    }
    println!("{} requests at {:.0}/s target: {:.0}/s achieved, {} errors; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.requests, r.target_rps, r.achieved_rps, r.errors, r.p50_ms, r.p99_ms, r.max_ms);
    if let Some(e) = &r.first_error {
        anyhow::bail!(
            "{} of {} requests failed; the first: {e}",
            r.errors,
            r.requests
        );
    }
    Ok(())
}
