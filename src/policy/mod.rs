//! Scheduling policies as event handlers over one cluster state, shared by the simulator (and,
//! later, the live controller): NoPart, Static, MPS-only, MISO, Oracle and Ours.
//!
//! A policy never advances time: it is told "now" and changes which jobs run where, at what
//! speed, and until when they are stalled (profiling, checkpoint/restart, reconfiguration).
//! Depends on `gpu`, `perf`, `optimizer`, `predictor`.

mod mps_source;

use std::collections::VecDeque;

use crate::gpu::{GpuModel, Instance, Layout};
use crate::optimizer::{self, restart_s_for_model, OptJob, Options, Placement};
use crate::perf::{self, JobPerf, KINDS};
use crate::predictor::Predictor;

pub use mps_source::MpsSource;

/// One job known to the cluster.
#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub arrival_s: f64,
    pub work_s: f64,
    /// Index into `perf::catalog()`.
    pub workload: usize,
    /// Work left, seconds on a whole GPU.
    pub remaining_s: f64,
    /// Current speed (work seconds per second) when not stalled.
    pub rate: f64,
    /// The job makes no progress before this time.
    pub stalled_until: f64,
    pub gpu: Option<usize>,
    pub instance: Option<Instance>,
    /// Fraction of the GPU's compute the job holds (utilisation metric).
    pub share: f64,
    pub start_s: Option<f64>,
    pub finish_s: Option<f64>,
    /// Times the job was checkpointed and restarted elsewhere.
    pub moves: u32,
    /// The speeds the policy believes (predicted, or true for Oracle).
    pub believed: Option<JobPerf>,
}

/// One GPU.
#[derive(Clone, Debug, Default)]
pub struct Gpu {
    pub layout: Layout,
    /// Jobs running here (indexes into `Cluster::jobs`).
    pub jobs: Vec<usize>,
    pub reconfigurations: u32,
}

/// Overheads of the MISO mechanism (defaults from the paper's artifact).
#[derive(Clone, Debug)]
pub struct Overheads {
    /// MPS profiling of a GPU's mix when a job joins it (the artifact's prototype: 30 s).
    pub profiling_s: f64,
    /// MIG reconfiguration stall for the jobs that move, on top of their restart.
    pub reconfig_s: f64,
    /// Use the measured per-model checkpoint/restart times (else `restart_s` for all).
    pub per_model_restart: bool,
    pub restart_s: f64,
}

impl Default for Overheads {
    fn default() -> Overheads {
        Overheads {
            profiling_s: 30.0,
            reconfig_s: 2.0,
            per_model_restart: true,
            restart_s: 13.25,
        }
    }
}

impl Overheads {
    fn restart(&self, workload: usize) -> f64 {
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
    /// Arrived jobs waiting for a GPU, FIFO.
    pub waiting: VecDeque<usize>,
}

impl Cluster {
    pub fn new(model: &'static GpuModel, n: usize) -> Cluster {
        Cluster {
            model,
            gpus: vec![Gpu::default(); n],
            jobs: Vec::new(),
            waiting: VecDeque::new(),
        }
    }

    /// True speed of a job on a profile of this GPU model.
    pub fn true_speed(&self, job: usize, profile: usize) -> Option<f64> {
        perf::catalog()[self.jobs[job].workload]
            .perf()
            .speed_on(self.model, profile)
    }

    fn true_perf(&self, job: usize) -> JobPerf {
        perf::catalog()[self.jobs[job].workload].perf()
    }

    fn start(&mut self, j: usize, gpu: usize, now: f64) {
        let job = &mut self.jobs[j];
        job.gpu = Some(gpu);
        job.start_s.get_or_insert(now);
        self.gpus[gpu].jobs.push(j);
    }

    /// Mark a job done and take it off its GPU.
    pub fn finish(&mut self, j: usize, now: f64) -> Option<usize> {
        let g = self.jobs[j].gpu.take()?;
        let job = &mut self.jobs[j];
        job.finish_s = Some(now);
        job.remaining_s = 0.0;
        job.rate = 0.0;
        job.share = 0.0;
        job.instance = None;
        self.gpus[g].jobs.retain(|&x| x != j);
        Some(g)
    }
}

/// A scheduling policy.
pub trait Policy {
    fn name(&self) -> String;
    /// Place waiting jobs (called after every arrival and completion).
    fn schedule(&mut self, c: &mut Cluster, now: f64);
    /// React to job completion on `gpu` (before `schedule`).
    fn on_finish(&mut self, c: &mut Cluster, gpu: usize, now: f64);
}

/// One job per whole GPU, FIFO.
pub struct NoPart;

impl Policy for NoPart {
    fn name(&self) -> String {
        "nopart".into()
    }
    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        while let Some(&j) = c.waiting.front() {
            let Some(g) = (0..c.gpus.len()).find(|&g| c.gpus[g].jobs.is_empty()) else {
                break;
            };
            c.waiting.pop_front();
            c.start(j, g, now);
            let job = &mut c.jobs[j];
            job.rate = 1.0;
            job.share = 1.0;
        }
    }
    fn on_finish(&mut self, _: &mut Cluster, _: usize, _: f64) {}
}

/// Every GPU fixed to one layout; the job at the head of the queue takes the free instance
/// where it runs fastest (FIFO).
pub struct Static {
    pub layout: Layout,
}

impl Policy for Static {
    fn name(&self) -> String {
        "static".into()
    }
    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        for g in c.gpus.iter_mut() {
            if g.layout.is_empty() {
                g.layout = self.layout.clone();
            }
        }
        while let Some(&j) = c.waiting.front() {
            let mut best: Option<(f64, usize, Instance)> = None;
            for g in 0..c.gpus.len() {
                for inst in c.gpus[g].layout.instances() {
                    let busy = c.gpus[g]
                        .jobs
                        .iter()
                        .any(|&o| c.jobs[o].instance == Some(*inst));
                    if busy {
                        continue;
                    }
                    if let Some(s) = c.true_speed(j, inst.profile as usize) {
                        if best.is_none_or(|(b, _, _)| s > b) {
                            best = Some((s, g, *inst));
                        }
                    }
                }
            }
            let Some((s, g, inst)) = best else { break };
            c.waiting.pop_front();
            c.start(j, g, now);
            let share = c.model.profiles[inst.profile as usize].compute_slices as f64
                / c.model.compute_slices as f64;
            let job = &mut c.jobs[j];
            job.rate = s;
            job.instance = Some(inst);
            job.share = share;
        }
    }
    fn on_finish(&mut self, _: &mut Cluster, _: usize, _: f64) {}
}

/// Jobs share whole GPUs under MPS, at most `max_jobs` per GPU with an equal share of active
/// threads each; a job's speed is its measured solo speed at that thread share (MISO data,
/// single-job mixes). Interference beyond the thread share is not modelled (optimistic).
pub struct MpsOnly {
    pub max_jobs: usize,
    pub source: MpsSource,
}

impl MpsOnly {
    fn rerate(&self, c: &mut Cluster, g: usize) {
        let k = c.gpus[g].jobs.len().max(1);
        let pct = 100.0 / k as f64;
        for &j in &c.gpus[g].jobs.clone() {
            let s = self.source.solo_speed(c.jobs[j].workload, pct);
            c.jobs[j].rate = s;
            c.jobs[j].share = 1.0 / k as f64;
        }
    }
}

impl Policy for MpsOnly {
    fn name(&self) -> String {
        "mps".into()
    }
    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        while let Some(&j) = c.waiting.front() {
            let Some(g) = (0..c.gpus.len())
                .filter(|&g| c.gpus[g].jobs.len() < self.max_jobs)
                .min_by_key(|&g| c.gpus[g].jobs.len())
            else {
                break;
            };
            c.waiting.pop_front();
            c.start(j, g, now);
            self.rerate(c, g);
        }
    }
    fn on_finish(&mut self, c: &mut Cluster, gpu: usize, _: f64) {
        self.rerate(c, gpu);
    }
}

/// How a MISO-family policy learns speeds.
pub enum Speeds {
    /// True speeds, no profiling (Oracle).
    True,
    /// MPS profiling of the mix, then the predictor.
    Predicted {
        predictor: Box<Predictor>,
        source: MpsSource,
    },
}

/// MISO (and Oracle, and Ours): on arrival pick a GPU, profile its mix under MPS, predict,
/// optimise the layout, reconfigure; on completion re-partition to close the gap.
pub struct Miso {
    pub label: String,
    pub speeds: Speeds,
    pub options: Options,
    pub placement: Placement,
    pub overheads: Overheads,
    /// Estimate remaining work as the attained service (Ours, cost-aware), else unknown.
    pub estimate_remaining: bool,
}

impl Miso {
    fn opt_jobs(&self, c: &Cluster, g: usize, now: f64) -> Vec<OptJob> {
        c.gpus[g]
            .jobs
            .iter()
            .map(|&j| {
                let job = &c.jobs[j];
                let perf = job.believed.clone().unwrap_or_else(|| c.true_perf(j));
                OptJob {
                    id: j.to_string(),
                    perf,
                    remaining_s: if self.estimate_remaining {
                        Some((now - job.start_s.unwrap_or(now)).max(60.0))
                    } else {
                        None
                    },
                    current: job.instance,
                    restart_s: self.overheads.restart(job.workload),
                }
            })
            .collect()
    }

    /// Believed speeds of the jobs on GPU `g` (profiling its mix when predicted).
    fn learn(&mut self, c: &mut Cluster, g: usize) {
        let jobs = c.gpus[g].jobs.clone();
        match &mut self.speeds {
            Speeds::True => {
                for j in jobs {
                    c.jobs[j].believed = Some(c.true_perf(j));
                }
            }
            Speeds::Predicted { predictor, source } => {
                let ws: Vec<usize> = jobs.iter().map(|&j| c.jobs[j].workload).collect();
                let (m, slot_of) = source.matrix(&ws);
                let table = predictor.predict(&m);
                for (i, &j) in jobs.iter().enumerate() {
                    let truth = c.true_perf(j);
                    let mut p = table[slot_of[i]].clone().unwrap_or_else(|| truth.clone());
                    // Feasibility is known (memory need), speeds are predicted.
                    for k in 0..KINDS {
                        p.speed[k] = match (truth.speed[k], p.speed[k]) {
                            (Some(_), Some(v)) if v > 0.0 => Some(v),
                            (Some(_), _) => Some(1e-3),
                            (None, _) => None,
                        };
                    }
                    c.jobs[j].believed = Some(p);
                }
            }
        }
    }

    /// Re-plan GPU `g` and apply: moved jobs stall for restart + reconfiguration, all jobs
    /// stall until `stall_all_until` (profiling).
    fn replan(&mut self, c: &mut Cluster, g: usize, now: f64, stall_all_until: f64) -> bool {
        let jobs = self.opt_jobs(c, g, now);
        let current = c.gpus[g].layout.clone();
        let Ok(plan) = optimizer::plan(c.model, &jobs, &current, &self.options) else {
            return false;
        };
        if !plan.diff.is_noop() {
            c.gpus[g].reconfigurations += 1;
        }
        c.gpus[g].layout = plan.decision.layout.clone();
        let ids = c.gpus[g].jobs.clone();
        for &(ji, inst) in &plan.assignment {
            let j = ids[ji];
            let moved = plan.restart.contains(&ji);
            let share = c.model.profiles[inst.profile as usize].compute_slices as f64
                / c.model.compute_slices as f64;
            let speed = c.true_speed(j, inst.profile as usize).unwrap_or(1e-3);
            let restart = self.overheads.restart(c.jobs[j].workload);
            let job = &mut c.jobs[j];
            let mut until = stall_all_until.max(job.stalled_until);
            if moved {
                job.moves += 1;
                until = until.max(now) + restart + self.overheads.reconfig_s;
            } else if plan.start.contains(&ji) {
                until = until.max(now) + self.overheads.reconfig_s;
            }
            job.stalled_until = until;
            job.instance = Some(inst);
            job.rate = speed;
            job.share = share;
        }
        true
    }

    fn can_take(&self, c: &Cluster, g: usize, j: usize, now: f64) -> bool {
        let mut jobs = self.opt_jobs(c, g, now);
        jobs.push(OptJob::new("new", c.true_perf(j)));
        optimizer::optimize(c.model, &jobs, &c.gpus[g].layout, &self.options).is_ok()
    }
}

impl Policy for Miso {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        while let Some(&j) = c.waiting.front() {
            // Candidate GPUs that can take the job (memory, slice count).
            let cands: Vec<usize> = (0..c.gpus.len())
                .filter(|&g| self.can_take(c, g, j, now))
                .collect();
            if cands.is_empty() {
                break;
            }
            let g = match self.placement {
                Placement::FewestJobs => *cands
                    .iter()
                    .min_by_key(|&&g| c.gpus[g].jobs.len())
                    .unwrap_or(&cands[0]),
                Placement::BestGain => {
                    let states: Vec<optimizer::GpuState> = cands
                        .iter()
                        .map(|&g| optimizer::GpuState {
                            gpu: c.model,
                            layout: c.gpus[g].layout.clone(),
                            jobs: self.opt_jobs(c, g, now),
                        })
                        .collect();
                    let job = OptJob::new("new", c.true_perf(j));
                    optimizer::choose_gpu(&states, &job, Placement::BestGain, &self.options)
                        .map(|i| cands[i])
                        .unwrap_or(cands[0])
                }
            };
            c.waiting.pop_front();
            c.start(j, g, now);
            let profiling = match self.speeds {
                Speeds::True => 0.0,
                Speeds::Predicted { .. } => self.overheads.profiling_s,
            };
            self.learn(c, g);
            // Everyone on the GPU is profiled under MPS (no MIG progress meanwhile).
            let stall = if profiling > 0.0 {
                now + profiling
            } else {
                now
            };
            if !self.replan(c, g, now, stall) {
                // Cannot happen after can_take; put the job back rather than lose it.
                c.finish(j, now);
                c.jobs[j].finish_s = None;
                c.jobs[j].start_s = None;
                c.waiting.push_front(j);
                break;
            }
        }
    }

    fn on_finish(&mut self, c: &mut Cluster, gpu: usize, now: f64) {
        if c.gpus[gpu].jobs.is_empty() {
            return;
        }
        self.replan(c, gpu, now, now);
    }
}
