//! Discrete-event simulation of a cluster of MIG-capable GPUs running a job trace under a
//! policy. A virtual clock jumps from event to event (arrival, completion); between events every
//! job progresses at its current speed unless stalled (checkpoint/restore, reconfiguration).
//! The policy acts in scheduling rounds: by default every `tick_s` = 10 s when something
//! happened, as the MISO artifact's scheduling loop does (`exp_*.py`: arrivals are noticed, and
//! freed GPUs reused, at its ticks), or at every event with `tick_s = 0`.
//! The same policy code serves the live controller through the optimizer; only the clock and
//! the GPUs differ here. Knows `policy` (and through it the rest); nothing of HTTP or NVML.

mod miso_trace;
pub mod report;
pub mod scenario;
pub mod trace;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

use serde::Serialize;

use crate::gpu::GpuModel;
use crate::policy::{Cluster, Job, Policy};

pub use trace::{Format, TraceError, TraceJob};

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Seconds between scheduling rounds (the artifact's loop: 10); 0: a round at every event.
    pub tick_s: f64,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions { tick_s: 10.0 }
    }
}

/// Metrics of one group of jobs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupMetrics {
    pub jobs: usize,
    pub avg_jct_s: f64,
    pub p95_jct_s: f64,
    pub avg_queue_s: f64,
}

/// Per-policy results. Times are seconds; JCT = completion − trace arrival (a job that arrived
/// between ticks waits for the next one, and that counts), JRT = completion − first start,
/// queueing = first start − arrival.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Metrics {
    pub jobs: usize,
    pub avg_jct_s: f64,
    pub median_jct_s: f64,
    pub p95_jct_s: f64,
    pub avg_jrt_s: f64,
    pub avg_queue_s: f64,
    /// From the experiment start (time 0) to the last completion.
    pub makespan_s: f64,
    /// Completed jobs per hour over the makespan.
    pub throughput_jobs_per_h: f64,
    /// Mean system throughput: the summed speed (1/slowdown) of running jobs, over the makespan.
    pub avg_stp: f64,
    /// Mean share of GPU compute held by jobs over the makespan (0..1).
    pub gpu_utilization: f64,
    /// MIG layout changes.
    pub reconfigurations: u64,
    /// Checkpoint/restarts, in all and per job.
    pub restarts: u64,
    pub restarts_per_job: f64,
    /// Mean seconds a job spent in MPS profiling phases.
    pub profiling_s_per_job: f64,
    /// Single-GPU (whole or fractional) and multi-GPU (gang) jobs apart, when both occur.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<BTreeMap<String, GroupMetrics>>,
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
    /// (time, system throughput): the summed speed of running jobs, averaged per interval.
    pub stp: Vec<(f64, f64)>,
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

/// A completion candidate in the event heap (stale when the job's version moved on).
#[derive(PartialEq)]
struct Due(f64, usize, u32);

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Due {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Run one policy over a trace on `gpus` GPUs of `model`. `tick` is called after each round
/// with the number of completed jobs (progress bars).
pub fn run(
    policy: &mut dyn Policy,
    trace: &[TraceJob],
    model: &'static GpuModel,
    gpus: usize,
    opts: &EngineOptions,
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
        .map(|t| {
            let mut j = Job::new(t.name.clone(), t.arrival_s, t.work_s, t.workload);
            j.gpus = t.gpus.max(1);
            j.min_share = t.share;
            j
        })
        .collect();
    for i in 0..c.jobs.len() {
        c.jobs[i].min_kind = crate::policy::min_kind(&c.true_perf(i));
    }
    let step = if policy.event_driven() {
        0.0
    } else {
        opts.tick_s.max(0.0)
    };
    let align = |t: f64| {
        if step > 0.0 {
            (t / step - 1e-9).ceil().max(0.0) * step
        } else {
            t
        }
    };
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut now = 0.0f64;
    let mut next = 0usize;
    let mut done = 0usize;
    let mut arrived: Vec<usize> = Vec::new();
    let mut round_at: Option<f64> = None;
    let mut occupancy = Vec::new();
    let mut last_count = vec![0usize; gpus];
    let mut touched: Vec<usize> = Vec::new();
    let n = trace.len();
    while done < n {
        // Push fresh completion times of jobs whose speed changed.
        for j in std::mem::take(&mut c.dirty) {
            let job = &c.jobs[j];
            if let Some(g) = job.gpu {
                touched.push(g);
            }
            touched.extend(job.gang.iter().copied());
            let t = job.finish_time();
            if t.is_finite() {
                heap.push(Reverse(Due(t, j, job.version)));
            }
        }
        for g in touched.drain(..) {
            let k = c.gpus[g].jobs.len() + usize::from(c.gpus[g].gang.is_some());
            if k != last_count[g] {
                last_count[g] = k;
                occupancy.push((now, g, k));
            }
        }
        while let Some(Reverse(Due(_, j, v))) = heap.peek() {
            if c.jobs[*j].version != *v || c.jobs[*j].finish_s.is_some() {
                heap.pop();
            } else {
                break;
            }
        }
        let t_fin = heap.peek().map_or(f64::INFINITY, |Reverse(d)| d.0.max(now));
        let t_arr = order
            .get(next)
            .map_or(f64::INFINITY, |&i| trace[i].arrival_s.max(now));
        let t_wake = policy
            .wakeup(&mut c, now)
            .filter(|&w| w > now)
            .map_or(f64::INFINITY, align);
        let t_round = round_at.unwrap_or(f64::INFINITY).min(t_wake);
        let t_event = t_fin.min(t_arr);
        if t_event.is_finite() && t_event <= t_round {
            now = t_event;
            if t_fin <= t_arr {
                let Some(Reverse(Due(_, j, _))) = heap.pop() else {
                    continue;
                };
                // A gang's GPUs free with it: their occupancy changes too.
                touched.extend(c.jobs[j].gang.iter().copied());
                let g = c.finish(j, now);
                done += 1;
                if let Some(g) = g {
                    touched.push(g);
                    policy.on_finish(&mut c, g, now);
                }
            } else {
                arrived.push(order[next]);
                next += 1;
            }
            let r = align(now);
            round_at = Some(round_at.map_or(r, |x: f64| x.min(r)));
            continue;
        }
        if !t_round.is_finite() {
            let j = c.waiting.front().copied().unwrap_or(0);
            return Err(SimError::Stuck {
                job: c.jobs[j].name.clone(),
                policy: policy.name(),
            });
        }
        now = t_round;
        policy.before_arrivals(&mut c, now);
        c.waiting.extend(arrived.drain(..));
        policy.schedule(&mut c, now);
        round_at = None;
        tick(done);
    }
    Ok(outcome(policy.name(), c, now, gpus, occupancy))
}

fn outcome(
    policy: String,
    mut c: Cluster,
    end: f64,
    gpus: usize,
    occupancy: Vec<(f64, usize, usize)>,
) -> Outcome {
    // JCT and queueing from the trace arrival for every policy (a scheduler that ticks notices
    // a job up to one tick later; that delay counts).
    let jct: Vec<f64> = c
        .jobs
        .iter()
        .map(|j| j.finish_s.unwrap_or(end) - j.arrival_s)
        .collect();
    let queue: Vec<f64> = c
        .jobs
        .iter()
        .map(|j| j.start_s.unwrap_or(end) - j.arrival_s)
        .collect();
    let jrt: Vec<f64> = c
        .jobs
        .iter()
        .map(|j| j.finish_s.unwrap_or(end) - j.start_s.unwrap_or(end))
        .collect();
    let mut sorted = jct.clone();
    sorted.sort_by(f64::total_cmp);
    let makespan = end;
    let nj = jct.len() as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let work: f64 = c.jobs.iter().map(|j| j.work_s).sum();
    let restarts: u64 = c.jobs.iter().map(|j| j.restarts as u64).sum();
    let groups = if c.jobs.iter().any(|j| j.gpus > 1) {
        let mut m = BTreeMap::new();
        for (name, multi) in [("single_gpu", false), ("multi_gpu", true)] {
            let idx: Vec<usize> = (0..c.jobs.len())
                .filter(|&i| (c.jobs[i].gpus > 1) == multi)
                .collect();
            let mut js: Vec<f64> = idx.iter().map(|&i| jct[i]).collect();
            let qs: Vec<f64> = idx.iter().map(|&i| queue[i]).collect();
            js.sort_by(f64::total_cmp);
            m.insert(
                name.to_string(),
                GroupMetrics {
                    jobs: idx.len(),
                    avg_jct_s: mean(&js),
                    p95_jct_s: percentile(&js, 0.95),
                    avg_queue_s: mean(&qs),
                },
            );
        }
        Some(m)
    } else {
        None
    };
    let metrics = Metrics {
        jobs: jct.len(),
        avg_jct_s: mean(&jct),
        median_jct_s: percentile(&sorted, 0.5),
        p95_jct_s: percentile(&sorted, 0.95),
        avg_jrt_s: mean(&jrt),
        avg_queue_s: mean(&queue),
        makespan_s: makespan,
        throughput_jobs_per_h: if makespan > 0.0 {
            nj * 3600.0 / makespan
        } else {
            0.0
        },
        avg_stp: if makespan > 0.0 { work / makespan } else { 0.0 },
        gpu_utilization: if makespan > 0.0 {
            c.busy_integral / (gpus as f64 * makespan)
        } else {
            0.0
        },
        reconfigurations: c.gpus.iter().map(|g| g.reconfigurations as u64).sum(),
        restarts,
        restarts_per_job: restarts as f64 / nj,
        profiling_s_per_job: c.jobs.iter().map(|j| j.profiling_s).sum::<f64>() / nj,
        groups,
    };
    let stp = stp_series(&mut c.stp_deltas, makespan, 400);
    Outcome {
        policy,
        metrics,
        jct_s: jct,
        occupancy,
        stp,
    }
}

/// The summed speed of running jobs averaged over `bins` equal intervals of [0, end].
fn stp_series(deltas: &mut [(f64, f64)], end: f64, bins: usize) -> Vec<(f64, f64)> {
    if end <= 0.0 || bins == 0 {
        return Vec::new();
    }
    deltas.sort_by(|a, b| a.0.total_cmp(&b.0));
    let w = end / bins as f64;
    let mut area = vec![0.0; bins];
    let (mut level, mut t) = (0.0f64, 0.0f64);
    let mut add = |from: f64, to: f64, level: f64| {
        let first = ((from / w).floor() as usize).min(bins - 1);
        let last = ((to / w).floor() as usize).min(bins - 1);
        for (b, cell) in area.iter_mut().enumerate().take(last + 1).skip(first) {
            let lo = from.max(b as f64 * w);
            let hi = if b == last {
                to
            } else {
                to.min((b + 1) as f64 * w)
            };
            if hi > lo {
                *cell += level * (hi - lo);
            }
        }
    };
    for &(at, d) in deltas.iter() {
        let at = at.min(end);
        if at > t && level.abs() > 1e-12 {
            add(t, at, level);
        }
        t = t.max(at);
        level += d;
    }
    area.iter()
        .enumerate()
        .map(|(i, a)| (i as f64 * w, a / w))
        .collect()
}

#[cfg(test)]
mod tests;
