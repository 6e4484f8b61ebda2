//! Scheduling policies as handlers of scheduling rounds over one cluster state, shared by the
//! simulator (and, through the optimizer, the live controller): NoPart, Static (the MISO
//! artifact's 3g+2g+2g with promotion), StaticBest (a fixed layout, best in hindsight), MPS,
//! MISO, Oracle and Ours.
//!
//! A policy never advances time: it is told "now" and changes which jobs run where, at what
//! speed, and until when they are stalled (checkpoint/restore, reconfiguration). The engine
//! (`sim`) calls it in rounds: every `tick_s` seconds when something happened (the artifact's
//! 10 s scheduling loop) or at every event. Depends on `gpu`, `perf`, `optimizer`, `predictor`.

mod baselines;
mod miso;
mod mps_source;
pub mod rl;

use std::collections::VecDeque;

use crate::gpu::{GpuModel, Instance, Layout};
use crate::optimizer::restart_s_for_model;
use crate::perf::{self, JobPerf, KINDS, KIND_SLICES};

pub use baselines::{MpsOnly, MpsPlacement, NoPart, Static, StaticBest};
pub use miso::{Miso, MisoMode, Speeds};
pub use mps_source::{MpsSource, MpsSpeeds};

/// One job known to the cluster.
#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub arrival_s: f64,
    pub work_s: f64,
    /// Index into `perf::catalog()`.
    pub workload: usize,
    /// GPUs asked for (2 or more: a gang of whole GPUs).
    pub gpus: u32,
    /// A fractional job's share of one GPU: no slice below it in compute or memory.
    pub min_share: Option<f64>,
    /// The smallest profile kind the job fits (index into `KIND_SLICES`), once known.
    pub min_kind: Option<usize>,
    /// Work left, seconds on a whole GPU (as of `settled_s`).
    pub remaining_s: f64,
    settled_s: f64,
    /// Current speed (work seconds per second) when not stalled.
    pub rate: f64,
    /// The job makes no progress before this time (checkpoint/restore, reconfiguration).
    pub stalled_until: f64,
    pub gpu: Option<usize>,
    /// GPUs of a gang job.
    pub gang: Vec<usize>,
    pub instance: Option<Instance>,
    /// Fraction of the GPU's compute the job holds (utilisation metric).
    pub share: f64,
    pub start_s: Option<f64>,
    pub finish_s: Option<f64>,
    /// Times the job was checkpointed and restarted.
    pub restarts: u32,
    /// Seconds the job spent in MPS profiling phases.
    pub profiling_s: f64,
    /// The speeds the policy believes (predicted, or true for Oracle).
    pub believed: Option<JobPerf>,
    pub(crate) version: u32,
}

impl Job {
    pub fn new(name: impl Into<String>, arrival_s: f64, work_s: f64, workload: usize) -> Job {
        Job {
            name: name.into(),
            arrival_s,
            work_s,
            workload,
            gpus: 1,
            min_share: None,
            min_kind: None,
            remaining_s: work_s,
            settled_s: 0.0,
            rate: 0.0,
            stalled_until: 0.0,
            gpu: None,
            gang: Vec::new(),
            instance: None,
            share: 0.0,
            start_s: None,
            finish_s: None,
            restarts: 0,
            profiling_s: 0.0,
            believed: None,
            version: 0,
        }
    }

    /// When the job finishes at its current speed (infinite when it does not progress).
    pub fn finish_time(&self) -> f64 {
        if self.rate <= 0.0 || self.finish_s.is_some() {
            f64::INFINITY
        } else {
            self.stalled_until.max(self.settled_s) + self.remaining_s.max(0.0) / self.rate
        }
    }
}

/// One GPU.
#[derive(Clone, Debug, Default)]
pub struct Gpu {
    pub layout: Layout,
    /// Jobs running here (indexes into `Cluster::jobs`).
    pub jobs: Vec<usize>,
    /// The gang job holding this whole GPU.
    pub gang: Option<usize>,
    pub reconfigurations: u32,
    /// When a job last finished here (the artifact waits 3 s before reusing an emptied GPU).
    pub emptied_at: Option<f64>,
    /// When jobs here were last checkpointed (the artifact skips such a GPU for 3 s).
    pub checkpointed_at: Option<f64>,
}

impl Gpu {
    /// No job and no gang on it.
    pub fn is_free(&self) -> bool {
        self.jobs.is_empty() && self.gang.is_none()
    }
}

/// Overheads of checkpoint/restart and reconfiguration (defaults from the MISO artifact).
#[derive(Clone, Debug)]
pub struct Overheads {
    /// MPS profiling of a GPU's mix when a job joins busy jobs (the artifact: 30 s at 50 %).
    pub profiling_s: f64,
    /// Active-thread percentage of every job during MISO's profiling phase.
    pub profiling_pct: f64,
    /// MIG reconfiguration stall of the jobs started after it.
    pub reconfig_s: f64,
    /// Use the measured per-model restore times (else `restart_s` for every job).
    pub per_model_restart: bool,
    pub restart_s: f64,
    /// Fixed waits of the artifact's drivers around a checkpoint (`time.sleep(1)` after a
    /// save; 2.5 s when leaving MPS).
    pub save_wait_s: f64,
    pub mps_exit_wait_s: f64,
    /// Seconds a GPU is skipped after a checkpoint or after it emptied (the artifact: 3 s).
    pub settle_s: f64,
}

impl Default for Overheads {
    fn default() -> Overheads {
        Overheads {
            profiling_s: 30.0,
            profiling_pct: 50.0,
            reconfig_s: 2.0,
            per_model_restart: true,
            restart_s: 30.0,
            save_wait_s: 1.0,
            mps_exit_wait_s: 2.5,
            settle_s: 3.0,
        }
    }
}

impl Overheads {
    /// Seconds a job of this workload needs to restore from its checkpoint.
    pub fn restart(&self, workload: usize) -> f64 {
        if self.per_model_restart {
            restart_s_for_model(perf::catalog()[workload].model)
        } else {
            self.restart_s
        }
    }
}

/// The state every policy acts on.
pub struct Cluster {
    pub model: &'static GpuModel,
    pub gpus: Vec<Gpu>,
    pub jobs: Vec<Job>,
    /// Noticed jobs waiting for a GPU, in arrival order.
    pub waiting: VecDeque<usize>,
    /// Jobs whose speed or stall changed since the engine last looked.
    pub(crate) dirty: Vec<usize>,
    /// Work-weighted compute share held (utilisation integral).
    pub(crate) busy_integral: f64,
    /// (time, change of the summed speed of running jobs): the system-throughput timeline.
    pub(crate) stp_deltas: Vec<(f64, f64)>,
    /// Times of checkpoints, oldest first (GPUs settle after them).
    checkpoints: VecDeque<f64>,
}

impl Cluster {
    pub fn new(model: &'static GpuModel, n: usize) -> Cluster {
        Cluster {
            model,
            gpus: vec![Gpu::default(); n],
            jobs: Vec::new(),
            waiting: VecDeque::new(),
            dirty: Vec::new(),
            busy_integral: 0.0,
            stp_deltas: Vec::new(),
            checkpoints: VecDeque::new(),
        }
    }

    /// True speeds of a job (its workload's measured table, with a fractional job's floor).
    pub fn true_perf(&self, job: usize) -> JobPerf {
        self.perf_as(job, self.jobs[job].workload)
    }

    /// The smallest profile kind job `j` fits (cached by the engine in `Job::min_kind`).
    pub fn min_kind_of(&self, j: usize) -> Option<usize> {
        self.jobs[j]
            .min_kind
            .or_else(|| min_kind(&self.true_perf(j)))
    }

    /// The job running on instance `inst` of GPU `g`, if any.
    pub fn holder(&self, g: usize, inst: Instance) -> Option<usize> {
        self.gpus[g]
            .jobs
            .iter()
            .copied()
            .find(|&o| self.jobs[o].instance == Some(inst))
    }

    /// The speeds job `j` would have if it trained workload `w` (with its fractional floor).
    pub fn perf_as(&self, job: usize, w: usize) -> JobPerf {
        let mut p = catalog_perf(w);
        if let Some(share) = self.jobs[job].min_share {
            floor(self.model, &mut p, share);
        }
        p
    }

    /// True speed of a job on a profile of this GPU model.
    pub fn true_speed(&self, job: usize, profile: usize) -> Option<f64> {
        self.true_perf(job).speed_on(self.model, profile)
    }

    /// Compute share of a profile of this GPU model.
    pub fn share_of(&self, profile: usize) -> f64 {
        self.model.profiles[profile].compute_slices as f64 / self.model.compute_slices as f64
    }

    /// Bring a job's remaining work up to `now` at its current speed.
    fn settle(&mut self, j: usize, now: f64) {
        let job = &mut self.jobs[j];
        if now > job.settled_s {
            let from = job.stalled_until.max(job.settled_s);
            if now > from && job.rate > 0.0 {
                job.remaining_s -= job.rate * (now - from);
                self.stp_deltas.push((from, job.rate));
                self.stp_deltas.push((now, -job.rate));
            }
            self.busy_integral += job.share * (now - job.settled_s);
            job.settled_s = now;
        }
    }

    /// Set a running job's speed, compute share and stall (from `now`).
    pub fn set_run(&mut self, j: usize, now: f64, rate: f64, share: f64, stalled_until: f64) {
        self.settle(j, now);
        let job = &mut self.jobs[j];
        job.rate = rate;
        job.share = share;
        job.stalled_until = stalled_until.max(now);
        job.version += 1;
        self.dirty.push(j);
    }

    /// A running job is checkpointed now (restart counted; the caller sets its stall).
    pub fn checkpoint(&mut self, j: usize, now: f64) {
        self.settle(j, now);
        self.jobs[j].restarts += 1;
        if let Some(g) = self.jobs[j].gpu {
            self.gpus[g].checkpointed_at = Some(now);
            if self.checkpoints.back() != Some(&now) {
                self.checkpoints.push_back(now);
            }
        }
    }

    /// Put job `j` on GPU `gpu` (speed set separately).
    pub fn start(&mut self, j: usize, gpu: usize, now: f64) {
        let job = &mut self.jobs[j];
        job.gpu = Some(gpu);
        job.settled_s = now;
        job.start_s.get_or_insert(now);
        self.gpus[gpu].jobs.push(j);
    }

    /// Start a gang job on these whole GPUs at full speed.
    pub fn start_gang(&mut self, j: usize, gpus: &[usize], now: f64) {
        for &g in gpus {
            self.gpus[g].gang = Some(j);
        }
        let job = &mut self.jobs[j];
        job.gang = gpus.to_vec();
        job.settled_s = now;
        job.start_s.get_or_insert(now);
        self.set_run(j, now, 1.0, gpus.len() as f64, now);
    }

    /// Start the waiting gang job `j` on the first free GPUs that `ok` accepts, if enough.
    pub fn try_gang(&mut self, j: usize, now: f64, ok: &dyn Fn(&Gpu) -> bool) -> bool {
        let k = self.jobs[j].gpus as usize;
        let free: Vec<usize> = (0..self.gpus.len())
            .filter(|&g| self.gpus[g].is_free() && ok(&self.gpus[g]))
            .take(k)
            .collect();
        if free.len() < k {
            return false;
        }
        self.start_gang(j, &free, now);
        true
    }

    /// For FIFO policies: if the job at the head of the queue is a gang, start it on the first
    /// free GPUs (dequeued) or report that it waits.
    pub fn start_head_gang(&mut self, now: f64) -> HeadGang {
        let Some(&j) = self.waiting.front() else {
            return HeadGang::NotGang;
        };
        if self.jobs[j].gpus <= 1 {
            return HeadGang::NotGang;
        }
        if !self.try_gang(j, now, &|_| true) {
            return HeadGang::Waits;
        }
        self.waiting.pop_front();
        HeadGang::Started(j)
    }

    /// Mark a job done and take it off its GPU(s); returns the GPU of a single-GPU job.
    pub fn finish(&mut self, j: usize, now: f64) -> Option<usize> {
        self.settle(j, now);
        let gang = std::mem::take(&mut self.jobs[j].gang);
        for g in gang {
            self.gpus[g].gang = None;
            self.gpus[g].emptied_at = Some(now);
        }
        let job = &mut self.jobs[j];
        job.finish_s = Some(now);
        job.remaining_s = 0.0;
        job.rate = 0.0;
        job.share = 0.0;
        job.instance = None;
        job.version += 1;
        let g = job.gpu.take()?;
        self.gpus[g].jobs.retain(|&x| x != j);
        self.gpus[g].emptied_at = Some(now);
        Some(g)
    }

    /// When the next GPU checkpointed before `now` becomes usable again (for wakeups).
    pub fn next_settled(&mut self, now: f64, o: &Overheads) -> Option<f64> {
        while self
            .checkpoints
            .front()
            .is_some_and(|&t| t + o.settle_s < now)
        {
            self.checkpoints.pop_front();
        }
        self.checkpoints
            .iter()
            .map(|t| t + o.settle_s + 1e-6)
            .find(|&t| t > now)
    }

    /// Is GPU `g` past the artifact's 3 s settling after a checkpoint?
    pub fn settled(&self, g: usize, now: f64, o: &Overheads) -> bool {
        self.gpus[g]
            .checkpointed_at
            .is_none_or(|t| now - t > o.settle_s)
    }
}

/// What [`Cluster::start_head_gang`] did.
pub enum HeadGang {
    /// The head of the queue is not a gang job (or the queue is empty).
    NotGang,
    /// The gang job started and left the queue.
    Started(usize),
    /// Not enough free GPUs: it waits (and, FIFO, so does everyone behind it).
    Waits,
}

/// The measured speeds of catalog workload `w` (computed once).
fn catalog_perf(w: usize) -> JobPerf {
    static PERF: std::sync::OnceLock<Vec<JobPerf>> = std::sync::OnceLock::new();
    PERF.get_or_init(|| perf::catalog().iter().map(|x| x.perf()).collect())[w].clone()
}

/// A fractional job's floor: no profile with less compute, or less memory, than its share.
fn floor(model: &GpuModel, p: &mut JobPerf, share: f64) {
    for (k, s) in p.speed.iter_mut().enumerate() {
        if (KIND_SLICES[k] as f64) < share * model.compute_slices as f64 - 1e-9 {
            *s = None;
        }
    }
    let whole = model
        .profiles
        .iter()
        .map(|p| p.memory_mb)
        .max()
        .unwrap_or(model.memory_mb);
    let need = (share * whole as f64).floor() as u32;
    p.memory_mb = Some(p.memory_mb.map_or(need, |m| m.max(need)));
    if p.speed.iter().all(Option::is_none) {
        p.speed[KINDS - 1] = Some(1.0);
    }
}

/// A scheduling policy.
pub trait Policy {
    fn name(&self) -> String;
    /// The part of a round before newly arrived jobs are noticed (the artifact's step after
    /// its sleep: jobs onto emptied GPUs, then promotion or idle re-partitioning).
    fn before_arrivals(&mut self, _c: &mut Cluster, _now: f64) {}
    /// Place waiting jobs and advance the policy's own phases (profiling).
    fn schedule(&mut self, c: &mut Cluster, now: f64);
    /// A job finished on `gpu` at `now` (state only; the policy acts in the next round).
    fn on_finish(&mut self, _c: &mut Cluster, _gpu: usize, _now: f64) {}
    /// Rounds at every event rather than on the engine's tick (a controller that reacts to
    /// each arrival and completion at once, as miso's does).
    fn event_driven(&self) -> bool {
        false
    }
    /// The earliest time after `now` the policy needs a round even if nothing happens.
    fn wakeup(&self, _c: &mut Cluster, _now: f64) -> Option<f64> {
        None
    }
}

/// The smallest profile kind a job fits (its index in `KIND_SLICES`).
pub fn min_kind(p: &JobPerf) -> Option<usize> {
    p.speed.iter().position(Option::is_some)
}
