//! A bounded load test of the recommendation endpoint, for loopback only: requests are paced at
//! a fixed rate for a fixed time by a few worker threads; each request's latency is counted from
//! the moment it was *scheduled* to be sent to its full reply, so a slow server that delays the
//! next sends shows in the figures (no coordinated omission). Refuses any address outside
//! 127.0.0.0/8 and ::1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{is_loopback, Client};

/// What a load test measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub requests: usize,
    pub errors: usize,
    pub target_rps: f64,
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first failed request's error or status, if any failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Send `rps × seconds` requests of `body` to `POST path` of `client`'s controller.
pub fn run(
    client: &Client,
    path: &str,
    body: &str,
    rps: f64,
    seconds: f64,
    workers: usize,
) -> Result<LoadReport, String> {
    let host = client.host();
    if !is_loopback(host) {
        return Err(format!("{host}: load tests only target loopback addresses"));
    }
    if !(rps > 0.0 && seconds > 0.0 && rps * seconds <= 1_000_000.0) {
        return Err("rate × duration must be positive and at most 1,000,000 requests".into());
    }
    let total = (rps * seconds) as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (next, lat, errors, first) = (
                next.clone(),
                lat.clone(),
                errors.clone(),
                first_error.clone(),
            );
            let (client, path, body) = (client.clone(), path.to_string(), body.to_string());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = t0 + Duration::from_secs_f64(i as f64 / rps);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                match client.request("POST", &path, Some(&body)) {
                    Ok((200, _)) => {
                        if let Ok(mut l) = lat.lock() {
                            let since_due = Instant::now().saturating_duration_since(due);
                            l.push(since_due.as_secs_f64() * 1e3);
                        }
                    }
                    r => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = first.lock() {
                            f.get_or_insert_with(|| match r {
                                Ok((code, body)) => format!("HTTP {code}: {body}"),
                                Err(e) => e,
                            });
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() - 1) as f64 * p).round() as usize]
        }
    };
    Ok(LoadReport {
        requests: total,
        errors: errors.load(Ordering::Relaxed),
        target_rps: rps,
        achieved_rps: l.len() as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: l.last().copied().unwrap_or(0.0),
        first_error: first_error.lock().ok().and_then(|f| f.clone()),
    })
}
