//! The baselines of the MISO paper, as its experiment drivers ran them (`exp_full.py`,
//! `exp_static.py`, `exp_mps.py`), and the hindsight-best static layout.

use crate::gpu::{GpuModel, Instance, Layout};
use crate::perf::KIND_SLICES;

use super::{Cluster, HeadGang, MpsSource, MpsSpeeds, Overheads, Policy};

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
            match c.start_head_gang(now) {
                HeadGang::Started(_) => continue,
                HeadGang::Waits => break,
                HeadGang::NotGang => {}
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
            if c.holder(g, *inst).is_some() {
                continue;
            }
            let size = c.model.profiles[inst.profile as usize].compute_slices;
            if best.is_none_or(|(_, b)| size > b) {
                best = Some((i, size));
            }
        }
        best
    }

    /// Place the waiting jobs in turn on `gpus`: each goes to the GPU whose largest idle
    /// instance is largest (lowest index on a tie) if that instance fits it, else waits.
    fn schedule_on(&self, c: &mut Cluster, gpus: &[usize], now: f64) {
        use std::cmp::Reverse;
        if c.waiting.is_empty() {
            return;
        }
        use std::collections::BTreeSet;
        // (largest idle size, GPU) of the eligible GPUs, largest first.
        let mut open: BTreeSet<(Reverse<u8>, usize, usize)> = gpus
            .iter()
            .filter(|&&g| c.gpus[g].gang.is_none() && c.settled(g, now, &self.overheads))
            .filter_map(|&g| Self::max_idle(c, g).map(|(i, s)| (Reverse(s), g, i)))
            .collect();
        let waiting: Vec<usize> = c.waiting.iter().copied().collect();
        let mut placed = Vec::new();
        for j in waiting {
            if c.jobs[j].gpus > 1 {
                if c.try_gang(j, now, &|g| g.layout.len() > 0) {
                    placed.push(j);
                    open.retain(|&(_, g, _)| c.gpus[g].gang.is_none());
                }
                continue;
            }
            let Some(&(Reverse(size), g, i)) = open.iter().next() else {
                break;
            };
            let Some(mk) = c.min_kind_of(j) else { continue };
            let inst = c.gpus[g].layout.instances()[i];
            let Some(speed) = c.true_speed(j, inst.profile as usize) else {
                continue;
            };
            if size < KIND_SLICES[mk] {
                continue;
            }
            open.remove(&(Reverse(size), g, i));
            let share = c.share_of(inst.profile as usize);
            c.start(j, g, now);
            c.jobs[j].instance = Some(inst);
            c.set_run(j, now, speed, share, now);
            placed.push(j);
            if let Some((i, s)) = Self::max_idle(c, g) {
                open.insert((Reverse(s), g, i));
            }
        }
        if !placed.is_empty() {
            c.waiting.retain(|j| !placed.contains(j));
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
        // GPUs where a job finished since the last round: waiting jobs may take those emptied
        // more than the settling time ago, and only these can have a job to promote.
        let finished: Vec<usize> = (0..c.gpus.len())
            .filter(|&g| c.gpus[g].emptied_at.is_some())
            .collect();
        let emptied: Vec<usize> = finished
            .iter()
            .copied()
            .filter(|&g| {
                c.gpus[g]
                    .emptied_at
                    .is_some_and(|t| now - t > self.overheads.settle_s)
            })
            .collect();
        self.schedule_on(c, &emptied, now);
        for &g in &finished {
            c.gpus[g].emptied_at = None;
        }
        if !self.promote {
            return;
        }
        // Promotion (`static_idle_optimize_V2`): idle instances largest first against running
        // jobs' instances smallest first; a pair moves while the idle one is larger.
        for g in finished {
            let insts = c.gpus[g].layout.instances().to_vec();
            let size = |i: &Instance| c.model.profiles[i.profile as usize].compute_slices;
            let holder = |inst: &Instance| c.holder(g, *inst);
            let mut idle: Vec<Instance> = insts
                .iter()
                .copied()
                .filter(|i| holder(i).is_none())
                .collect();
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
                let stall =
                    now + self.overheads.save_wait_s + self.overheads.restart(c.jobs[j].workload);
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

    fn wakeup(&self, c: &mut Cluster, now: f64) -> Option<f64> {
        // A GPU skipped for its settling time becomes eligible again.
        if c.waiting.is_empty() {
            return None;
        }
        c.next_settled(now, &self.overheads)
    }
}

/// Every GPU fixed to one layout, FIFO; the job at the head of the queue takes the free
/// instance where it runs fastest (lowest GPU first). Run over every maximal layout, the best in
/// hindsight is reported as `static-best`.
pub struct StaticBest {
    pub layout: Layout,
    /// Free instances per profile: (GPU, instance index), kept across rounds.
    free: Vec<std::collections::BTreeSet<(usize, usize)>>,
    /// GPUs held by a gang job, as last seen.
    held: Vec<bool>,
}

impl StaticBest {
    pub fn new(layout: Layout) -> StaticBest {
        StaticBest {
            layout,
            free: Vec::new(),
            held: Vec::new(),
        }
    }

    /// Mark every instance of GPU `g` free or not, as it is now.
    fn refresh(&mut self, c: &Cluster, g: usize) {
        for (i, inst) in c.gpus[g].layout.instances().iter().enumerate() {
            let busy = c.gpus[g].gang.is_some() || c.holder(g, *inst).is_some();
            let set = &mut self.free[inst.profile as usize];
            if busy {
                set.remove(&(g, i));
            } else {
                set.insert((g, i));
            }
        }
    }
}

impl Policy for StaticBest {
    fn name(&self) -> String {
        "static-best".into()
    }
    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        if self.free.is_empty() {
            self.free = vec![Default::default(); c.model.profiles.len()];
            self.held = vec![false; c.gpus.len()];
            for g in 0..c.gpus.len() {
                if c.gpus[g].layout.is_empty() {
                    c.gpus[g].layout = self.layout.clone();
                }
                self.refresh(c, g);
            }
        }
        for g in 0..c.gpus.len() {
            if self.held[g] && c.gpus[g].gang.is_none() {
                self.held[g] = false;
                self.refresh(c, g);
            }
        }
        let mut profiles: Vec<usize> = self
            .layout
            .instances()
            .iter()
            .map(|i| i.profile as usize)
            .collect();
        profiles.sort_unstable();
        profiles.dedup();
        while let Some(&j) = c.waiting.front() {
            match c.start_head_gang(now) {
                HeadGang::Started(j) => {
                    for &g in &c.jobs[j].gang.clone() {
                        self.held[g] = true;
                        self.refresh(c, g);
                    }
                    continue;
                }
                HeadGang::Waits => break,
                HeadGang::NotGang => {}
            }
            let mut best: Option<(f64, (usize, usize))> = None;
            for &p in &profiles {
                let (Some(s), Some(&at)) = (c.true_speed(j, p), self.free[p].iter().next()) else {
                    continue;
                };
                if best.is_none_or(|(b, bat)| s > b || (s == b && at < bat)) {
                    best = Some((s, at));
                }
            }
            let Some((s, (g, i))) = best else { break };
            c.waiting.pop_front();
            let inst = c.gpus[g].layout.instances()[i];
            self.free[inst.profile as usize].remove(&(g, i));
            c.start(j, g, now);
            let share = c.share_of(inst.profile as usize);
            c.jobs[j].instance = Some(inst);
            c.set_run(j, now, s, share, now);
        }
    }
    fn on_finish(&mut self, c: &mut Cluster, gpu: usize, _now: f64) {
        if !self.free.is_empty() {
            self.refresh(c, gpu);
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
            match c.start_head_gang(now) {
                HeadGang::Started(_) => continue,
                HeadGang::Waits => break,
                HeadGang::NotGang => {}
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
