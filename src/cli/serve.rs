//! `miso serve`: the controller (HTTP API over a SQLite store).

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args)]
#[command(after_help = "Examples:
  miso serve --insecure-no-auth                          # local experiments, loopback only
  head -c 32 /dev/urandom | base64 > token && chmod 600 token
  miso serve --token-file token --listen 0.0.0.0:7450 --tls-cert cert.pem --tls-key key.pem \
             --db /var/lib/miso/miso.db               # clients: --controller https://HOST:7450 --ca-file ca.pem
  RUST_LOG=warn miso serve --insecure-no-auth            # errors and warnings only, no access log

The API document is served at /openapi.json (generated from the server's types; a copy is in
docs/openapi.json); `miso status` shows what the controller knows. Logs go to standard error
(RUST_LOG filters them: `info` by default; target `miso::access` is the access log).
The default model is compiled in: --models needs a folder only for models you train.")]
pub struct ServeArgs {
    /// What the active model gives the planner as a profiled job's speeds (the robust
    /// objective): its point prediction, the expected slowdown under its predictive
    /// distribution (lowered the decision regret on families never seen by 4 %), or the worst
    /// case of its calibrated interval.
    #[arg(long, default_value = "point", value_parser = ["point", "expected", "worst"])]
    estimate: String,
    /// How `/v1/schedule` places jobs by default: `rules` (the request's `placement`, fewest
    /// jobs unless asked), or `rl` / `rl:DIR`, the learned policy (built in, or a folder from
    /// `miso train-policy`), with the best-gain rule when a decision is outside its training
    /// range. A request's `placement` still wins.
    #[arg(long, default_value = "rules")]
    scheduler: String,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:7450")]
    listen: std::net::SocketAddr,
    /// SQLite database file (created; WAL mode).
    #[arg(long, default_value = "miso.db")]
    db: std::path::PathBuf,
    /// File holding the bearer token that writes (and reads) need; at least 16 characters.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Allow reads without the token.
    #[arg(long)]
    open_reads: bool,
    /// Run without any token (local experiments only).
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_auth: bool,
    /// Folder of model directories (list/activate/retrain through the API).
    #[arg(long, default_value = "models")]
    models: std::path::PathBuf,
    /// Do not print the access log (one line per request on standard error: method, path,
    /// route, status, milliseconds; never headers, bodies or the token).
    #[arg(long)]
    no_access_log: bool,
    /// PEM certificate chain to serve HTTPS with (rustls); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve plain HTTP on an address outside loopback (the token would cross the network in
    /// clear); without it such a --listen needs --tls-cert/--tls-key.
    #[arg(long)]
    allow_plain_http: bool,
    /// Seconds a request may take before the reply is 503 (a write still completes); model
    /// retraining has no limit.
    #[arg(long, default_value_t = 30.0, value_parser = crate::cli::range(0.1, 3600.0))]
    request_timeout_s: f64,
    /// Seconds a client has to send a request's headers once connected (or between requests
    /// on a kept-alive connection); slower or half-open connections are closed.
    #[arg(long, default_value_t = 10.0, value_parser = crate::cli::range(0.1, 3600.0))]
    header_timeout_s: f64,
    /// Model to activate at start when none was active before; `default` is the built-in model
    /// when the folder has no `default`. The model activated through the API survives restarts.
    #[arg(long, default_value = "default")]
    model: String,
}

pub fn run(a: ServeArgs) -> Result<()> {
    // The learned policy first: a bad folder is an error before anything else is set up.
    let scheduler = match a.scheduler.as_str() {
        "rules" => None,
        spec if spec == "rl" || spec.starts_with("rl:") => Some(std::sync::Arc::new(
            miso::policy::rl::PolicyModel::from_spec(spec).context("--scheduler")?,
        )),
        other => bail!("--scheduler: `{other}` (rules, rl or rl:DIR)"),
    };
    let token = match (&a.token_file, a.insecure_no_auth) {
        (Some(f), _) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("--token-file: cannot read {}", f.display()))?;
            if let Ok(m) = std::fs::metadata(f) {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: --token-file {} can be read by other users (mode {:o}); run chmod 600 on it",
                        f.display(),
                        m.permissions().mode() & 0o777
                    );
                }
            }
            let t = t.trim().to_string();
            if t.len() < 16 {
                anyhow::bail!("--token-file: the token must have at least 16 characters");
            }
            Some(t)
        }
        (None, true) => None,
        (None, false) => {
            anyhow::bail!("--token-file is required (or --insecure-no-auth for local experiments)")
        }
    };
    let tls = a.tls_cert.clone().zip(a.tls_key.clone());
    if tls.is_none() && !a.listen.ip().is_loopback() && !a.allow_plain_http {
        anyhow::bail!(
            "--listen {}: plain HTTP outside loopback would send the token in clear; give \
             --tls-cert and --tls-key (or --allow-plain-http on a network you trust)",
            a.listen
        );
    }
    super::init_logs(!a.no_access_log);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let cfg = miso::service::Config {
        listen: a.listen,
        db: a.db.clone(),
        models: a.models.clone(),
        active_model: Some(a.model.clone()),
        token,
        open_reads: a.open_reads,
        request_timeout: std::time::Duration::from_secs_f64(a.request_timeout_s),
        tls,
        header_timeout: std::time::Duration::from_secs_f64(a.header_timeout_s),
        estimate: a.estimate.parse().map_err(anyhow::Error::msg)?,
        scheduler,
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(miso::service::serve(cfg, |addr| {
        // The token is never printed.
        println!(
            "miso controller listening on {scheme}://{addr} (db {})",
            a.db.display()
        );
    }))
    .map_err(anyhow::Error::msg)
}

#[derive(Args)]
#[command(after_help = "Examples:
  miso openapi > docs/openapi.json                 # the committed copy (a test checks it is current)
  miso openapi | python3 -m json.tool | less")]
pub struct OpenapiArgs {}

pub fn run_openapi(_: OpenapiArgs) -> Result<()> {
    let doc = miso::service::http::openapi();
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
