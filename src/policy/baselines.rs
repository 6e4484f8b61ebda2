//! The baselines of the MISO paper, as its experiment drivers ran them (`exp_full.py`,
//! `exp_static.py`, `exp_mps.py`), and the hindsight-best static layout.

use crate::gpu::{GpuModel, Instance, Layout};
use crate::perf::KIND_SLICES;

use super::{min_kind, Cluster, MpsSource, MpsSpeeds, Overheads, Policy};

/// The whole-GPU instance of a model (7g on A100/H100/H200, 4g on A30).
pub fn whole_instance(model: &GpuModel) -> Instance {
    let p = model
        .profiles
        .iter()
        .position(|p| p.standard && p.compute_slices == model.compute_slices)
        .unwrap_or(model.profiles.len() - 1);
    Instance::new(p, 0)
}

/// One job per whole GPU, strict FIFO; a queued job takes the lowest-numbered idle GPU
/// (`exp_full.py`). A gang job waits for enough idle GPUs.
pub struct NoPart;

impl Policy for NoPart {
    fn name(&self) -> String {
        "nopart".into()
    }
    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        let whole = whole_instance(c.model);
        while let Some(&j) = c.waiting.front() {
            if c.jobs[j].gpus > 1 {
                if !c.try_gang(j, now, &|_| true) {
                    break;
                }
                c.waiting.pop_front();
                continue;
            }
            let Some(g) = (0..c.gpus.len()).find(|&g| c.gpus[g].is_free()) else {
                break;
            };
            c.waiting.pop_front();
            c.gpus[g].layout = Layout::new(vec![whole]);
            c.start(j, g, now);
            c.jobs[j].instance = Some(whole);
            c.set_run(j, now, 1.0, 1.0, now);
        }
    }
}

/// Every GPU fixed to one layout (the artifact: 3g+2g+2g). A waiting job goes to the GPU whose
/// largest idle instance is largest, if that instance fits it; every waiting job is tried in
/// turn (no FIFO blocking). After each round running jobs are promoted to larger idle
/// instances of their GPU (checkpoint, restore). `exp_static.py`.
pub struct Static {
    pub layout: Layout,
    pub overheads: Overheads,
    /// Promote running jobs to larger idle instances (the artifact does).
    pub promote: bool,
}

impl Static {
    /// (instance index, compute slices) of the first largest idle instance of GPU `g`.
    fn max_idle(c: &Cluster, g: usize) -> Option<(usize, u8)> {
        let mut best: Option<(usize, u8)> = None;
        for (i, inst) in c.gpus[g].layout.instances().iter().enumerate() {
            if c.gpus[g].jobs.iter().any(|&o| c.jobs[o].instance == Some(*inst)) {
                continue;
            }
            let size = c.model.profiles[inst.profile as usize].compute_slices;
            if best.is_none_or(|(_, b)| size > b) {
                best = Some((i, size));
            }
        }
        best
    }

    fn try_schedule(&self, c: &mut Cluster, j: usize, gpus: &[usize], now: f64) -> bool {
        if c.jobs[j].gpus > 1 {
            let ok_all = |g: &super::Gpu| g.layout.len() > 0;
            return c.try_gang(j, now, &ok_all);
        }
        let perf = c.true_perf(j);
        let Some(mk) = min_kind(&perf) else {
            return false;
        };
        let mut cands: Vec<(usize, usize, u8)> = gpus
            .iter()
            .filter(|&&g| c.gpus[g].gang.is_none() && c.settled(g, now, &self.overheads))
            .filter_map(|&g| Self::max_idle(c, g).map(|(i, s)| (g, i, s)))
            .collect();
        // Stable sort by largest idle instance, largest first (ties: lowest GPU).
        cands.sort_by(|a, b| b.2.cmp(&a.2));
        let Some(&(g, i, size)) = cands.first() else {
            return false;
        };
        let inst = c.gpus[g].layout.instances()[i];
        let fits = size >= KIND_SLICES[mk] && c.true_speed(j, inst.profile as usize).is_some();
        if !fits {
            return false;
        }
        let speed = c.true_speed(j, inst.profile as usize).unwrap_or(1e-3);
        let share = c.share_of(inst.profile as usize);
        c.start(j, g, now);
        c.jobs[j].instance = Some(inst);
        c.set_run(j, now, speed, share, now);
        true
    }

    fn schedule_on(&self, c: &mut Cluster, gpus: &[usize], now: f64) {
        let waiting: Vec<usize> = c.waiting.iter().copied().collect();
        for j in waiting {
            if self.try_schedule(c, j, gpus, now) {
                c.waiting.retain(|&x| x != j);
            }
        }
    }

    fn init(&self, c: &mut Cluster) {
        for g in c.gpus.iter_mut() {
            if g.layout.is_empty() {
                g.layout = self.layout.clone();
            }
        }
    }
}

impl Policy for Static {
    fn name(&self) -> String {
        "static".into()
    }

    fn before_arrivals(&mut self, c: &mut Cluster, now: f64) {
        self.init(c);
        let emptied: Vec<usize> = (0..c.gpus.len())
            .filter(|&g| {
                c.gpus[g]
                    .emptied_at
                    .is_some_and(|t| now - t > self.overheads.settle_s)
            })
            .collect();
        self.schedule_on(c, &emptied, now);
        for g in &mut c.gpus {
            g.emptied_at = None;
        }
        if !self.promote {
            return;
        }
        // Promotion (`static_idle_optimize_V2`): idle instances largest first against running
        // jobs' instances smallest first; a pair moves while the idle one is larger.
        for g in 0..c.gpus.len() {
            let insts = c.gpus[g].layout.instances().to_vec();
            let size = |i: &Instance| c.model.profiles[i.profile as usize].compute_slices;
            let holder = |inst: &Instance| {
                c.gpus[g]
                    .jobs
                    .iter()
                    .copied()
                    .find(|&o| c.jobs[o].instance == Some(*inst))
            };
            let mut idle: Vec<Instance> =
                insts.iter().copied().filter(|i| holder(i).is_none()).collect();
            let mut busy: Vec<(Instance, usize)> = insts
                .iter()
                .filter_map(|i| holder(i).map(|j| (*i, j)))
                .collect();
            if idle.is_empty() || busy.is_empty() {
                continue;
            }
            idle.sort_by(|a, b| size(b).cmp(&size(a)));
            busy.sort_by_key(|(i, _)| size(i));
            let moves: Vec<(usize, Instance)> = idle
                .iter()
                .zip(&busy)
                .take_while(|(to, (from, _))| size(to) > size(from))
                .map(|(to, (_, j))| (*j, *to))
                .collect();
            for (j, to) in moves {
                c.checkpoint(j, now);
                let speed = c.true_speed(j, to.profile as usize).unwrap_or(1e-3);
                let share = c.share_of(to.profile as usize);
                let stall = now + self.overheads.save_wait_s + self.overheads.restart(c.jobs[j].workload);
                c.jobs[j].instance = Some(to);
                c.set_run(j, now, speed, share, stall);
            }
        }
    }

    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        self.init(c);
        let all: Vec<usize> = (0..c.gpus.len()).collect();
        self.schedule_on(c, &all, now);
    }

    fn wakeup(&self, c: &Cluster, now: f64) -> Option<f64> {
        // A GPU skipped for its settling time becomes eligible again.
        if c.waiting.is_empty() {
            return None;
        }
        c.gpus
            .iter()
            .filter_map(|g| g.checkpointed_at)
            .map(|t| t + self.overheads.settle_s + 1e-6)
            .filter(|&t| t > now)
            .reduce(f64::min)
    }
}

/// Every GPU fixed to one layout, FIFO; the job at the head of the queue takes the free
/// instance where it runs fastest. Run over every maximal layout, the best in hindsight is
/// reported as `static-best`.
pub struct StaticBest {
    pub layout: Layout,
}

impl Policy for StaticBest {
    fn name(&self) -> String {
        "static-best".into()
    }
    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        for g in c.gpus.iter_mut() {
            if g.layout.is_empty() {
                g.layout = self.layout.clone();
            }
        }
        while let Some(&j) = c.waiting.front() {
            if c.jobs[j].gpus > 1 {
                if !c.try_gang(j, now, &|_| true) {
                    break;
                }
                c.waiting.pop_front();
                continue;
            }
            let mut best: Option<(f64, usize, Instance)> = None;
            for g in 0..c.gpus.len() {
                if c.gpus[g].gang.is_some() {
                    continue;
                }
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
            let share = c.share_of(inst.profile as usize);
            c.jobs[j].instance = Some(inst);
            c.set_run(j, now, s, share, now);
        }
    }
}

/// Where the MPS baseline puts a job and how many threads it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpsPlacement {
    /// The artifact (`exp_mps.py`): the lowest-numbered GPU with room, a fixed active-thread
    /// percentage per job.
    FirstFitFixed,
    /// The least-loaded GPU, threads split equally among its jobs.
    LeastLoadedEqual,
}

/// Jobs share whole GPUs under MPS, at most `max_jobs` per GPU, strict FIFO.
pub struct MpsOnly {
    pub max_jobs: usize,
    /// Active-thread percentage of each job (the artifact: 33 %).
    pub level_pct: f64,
    pub placement: MpsPlacement,
    pub speeds: MpsSpeeds,
    pub source: MpsSource,
}

impl MpsOnly {
    fn rerate(&mut self, c: &mut Cluster, g: usize, now: f64) {
        let jobs = c.gpus[g].jobs.clone();
        let k = jobs.len().max(1);
        let pct = match self.placement {
            MpsPlacement::FirstFitFixed => self.level_pct,
            MpsPlacement::LeastLoadedEqual => 100.0 / k as f64,
        };
        let ws: Vec<usize> = jobs.iter().map(|&j| c.jobs[j].workload).collect();
        let speeds = self.source.speeds(&ws, pct, self.speeds);
        for (&j, s) in jobs.iter().zip(speeds) {
            let stall = c.jobs[j].stalled_until;
            c.set_run(j, now, s, 1.0 / k as f64, stall);
        }
    }
}

impl Policy for MpsOnly {
    fn name(&self) -> String {
        "mps".into()
    }
    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        while let Some(&j) = c.waiting.front() {
            if c.jobs[j].gpus > 1 {
                if !c.try_gang(j, now, &|_| true) {
                    break;
                }
                c.waiting.pop_front();
                continue;
            }
            let open = (0..c.gpus.len())
                .filter(|&g| c.gpus[g].gang.is_none() && c.gpus[g].jobs.len() < self.max_jobs);
            let g = match self.placement {
                MpsPlacement::FirstFitFixed => open.min(),
                MpsPlacement::LeastLoadedEqual => open.min_by_key(|&g| c.gpus[g].jobs.len()),
            };
            let Some(g) = g else { break };
            c.waiting.pop_front();
            c.start(j, g, now);
            self.rerate(c, g, now);
        }
    }
    fn on_finish(&mut self, c: &mut Cluster, gpu: usize, now: f64) {
        self.rerate(c, gpu, now);
    }
}
