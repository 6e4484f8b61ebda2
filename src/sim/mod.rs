//! Discrete-event simulation of a cluster of MIG-capable GPUs running a job trace under a
//! policy: a virtual clock jumps from event to event (arrival, completion); between events every
//! job progresses at its current speed unless stalled (profiling, restart, reconfiguration).
//! The same policy code serves the live controller; only the clock and the GPUs differ here.
//! Knows `policy` (and through it the rest); nothing of HTTP or NVML.

pub mod report;
pub mod scenario;
pub mod trace;

use serde::Serialize;

use crate::gpu::GpuModel;
use crate::policy::{Cluster, Job, Policy};

pub use trace::{Format, TraceError, TraceJob};

/// Per-policy results.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Metrics {
    pub jobs: usize,
    pub avg_jct_s: f64,
    pub median_jct_s: f64,
    pub p95_jct_s: f64,
    pub avg_queue_s: f64,
    pub makespan_s: f64,
    /// Completed jobs per hour over the makespan.
    pub throughput_jobs_per_h: f64,
    /// Mean share of GPU compute held by jobs over the makespan (0..1).
    pub gpu_utilization: f64,
    pub reconfigurations: u64,
    pub job_moves: u64,
}

/// Everything a run produced, for reports.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub policy: String,
    pub metrics: Metrics,
    /// Job completion times, in trace order.
    pub jct_s: Vec<f64>,
    /// (time, gpu, jobs on it) at every change.
    pub occupancy: Vec<(f64, usize, usize)>,
}

/// Simulation failures.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("job `{job}` can never run: it fits no GPU of the cluster under policy {policy}")]
    Stuck { job: String, policy: String },
    #[error("the trace is empty")]
    Empty,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Run one policy over a trace on `gpus` GPUs of `model`. `tick` is called after each event
/// with the number of completed jobs (progress bars).
pub fn run(
    policy: &mut dyn Policy,
    trace: &[TraceJob],
    model: &'static GpuModel,
    gpus: usize,
    tick: &mut dyn FnMut(usize),
) -> Result<Outcome, SimError> {
    if trace.is_empty() {
        return Err(SimError::Empty);
    }
    let mut order: Vec<usize> = (0..trace.len()).collect();
    order.sort_by(|&a, &b| {
        trace[a]
            .arrival_s
            .total_cmp(&trace[b].arrival_s)
            .then(a.cmp(&b))
    });
    let mut c = Cluster::new(model, gpus);
    c.jobs = trace
        .iter()
        .map(|t| Job {
            name: t.name.clone(),
            arrival_s: t.arrival_s,
            work_s: t.work_s,
            workload: t.workload,
            remaining_s: t.work_s,
            rate: 0.0,
            stalled_until: 0.0,
            gpu: None,
            instance: None,
            share: 0.0,
            start_s: None,
            finish_s: None,
            moves: 0,
            believed: None,
        })
        .collect();
    let mut now = 0.0f64;
    let mut next = 0usize;
    let mut done = 0usize;
    let mut busy_integral = 0.0;
    let mut occupancy = Vec::new();
    let mut last_count = vec![0usize; gpus];
    let finish_time = |j: &Job, now: f64| -> f64 {
        if j.rate <= 0.0 {
            f64::INFINITY
        } else {
            j.stalled_until.max(now) + j.remaining_s / j.rate
        }
    };
    while done < trace.len() {
        let t_arr = order
            .get(next)
            .map(|&i| trace[i].arrival_s)
            .unwrap_or(f64::INFINITY);
        let mut t_fin = f64::INFINITY;
        for g in &c.gpus {
            for &j in &g.jobs {
                t_fin = t_fin.min(finish_time(&c.jobs[j], now));
            }
        }
        let t = t_arr.min(t_fin);
        if !t.is_finite() {
            let j = c.waiting.front().copied().unwrap_or(0);
            return Err(SimError::Stuck {
                job: c.jobs[j].name.clone(),
                policy: policy.name(),
            });
        }
        // Advance every running job to t.
        for g in &c.gpus {
            for &j in &g.jobs {
                let job = &mut c.jobs[j];
                let from = job.stalled_until.max(now);
                if t > from {
                    job.remaining_s -= job.rate * (t - from);
                }
                busy_integral += job.share * (t - now);
            }
        }
        now = t;
        // Completions (remaining work within rounding of zero).
        let finished: Vec<usize> = c
            .gpus
            .iter()
            .flat_map(|g| g.jobs.iter().copied())
            .filter(|&j| {
                c.jobs[j].remaining_s <= 1e-6 * c.jobs[j].work_s.max(1.0)
                    && c.jobs[j].stalled_until <= now + 1e-9
            })
            .collect();
        for j in finished {
            if let Some(g) = c.finish(j, now) {
                done += 1;
                policy.on_finish(&mut c, g, now);
            }
        }
        while next < order.len() && trace[order[next]].arrival_s <= now {
            c.waiting.push_back(order[next]);
            next += 1;
        }
        policy.schedule(&mut c, now);
        for (g, gs) in c.gpus.iter().enumerate() {
            if gs.jobs.len() != last_count[g] {
                last_count[g] = gs.jobs.len();
                occupancy.push((now, g, gs.jobs.len()));
            }
        }
        tick(done);
    }
    let jct: Vec<f64> = c
        .jobs
        .iter()
        .map(|j| j.finish_s.unwrap_or(now) - j.arrival_s)
        .collect();
    let queue: Vec<f64> = c
        .jobs
        .iter()
        .map(|j| j.start_s.unwrap_or(now) - j.arrival_s)
        .collect();
    let mut sorted = jct.clone();
    sorted.sort_by(f64::total_cmp);
    let first = c
        .jobs
        .iter()
        .map(|j| j.arrival_s)
        .fold(f64::INFINITY, f64::min);
    let makespan = now - first;
    let n = jct.len() as f64;
    let metrics = Metrics {
        jobs: jct.len(),
        avg_jct_s: jct.iter().sum::<f64>() / n,
        median_jct_s: percentile(&sorted, 0.5),
        p95_jct_s: percentile(&sorted, 0.95),
        avg_queue_s: queue.iter().sum::<f64>() / n,
        makespan_s: makespan,
        throughput_jobs_per_h: if makespan > 0.0 {
            n * 3600.0 / makespan
        } else {
            0.0
        },
        gpu_utilization: if makespan > 0.0 {
            busy_integral / (gpus as f64 * makespan)
        } else {
            0.0
        },
        reconfigurations: c.gpus.iter().map(|g| g.reconfigurations as u64).sum(),
        job_moves: c.jobs.iter().map(|j| j.moves as u64).sum(),
    };
    Ok(Outcome {
        policy: policy.name(),
        metrics,
        jct_s: jct,
        occupancy,
    })
}

#[cfg(test)]
mod tests;
