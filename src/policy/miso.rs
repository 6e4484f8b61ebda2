//! MISO, its Oracle, and Ours: MIG re-partitioning driven by predicted (or true) speeds.
//!
//! As the artifact ran MISO (`exp_miso.py`, `mps/scheduler/simulator/utils.py`): a job arriving
//! at an idle GPU starts on the whole GPU at once; a job joining busy jobs sends the GPU into an
//! MPS profiling phase (the running jobs are checkpointed and resumed under MPS, everyone keeps
//! training at the profiling thread share for `profiling_s`), then every job is checkpointed
//! and restarted on the layout chosen from the predicted speeds. A GPU in a profiling phase or
//! just checkpointed takes no new job; when a job leaves, the GPU is re-partitioned (every job
//! restarted) only when no job waits. The Oracle (`exp_oracle.py`) knows true speeds and skips
//! profiling. Ours keeps MISO's mechanism and changes the decisions (see [`MisoMode::Ours`]).

use crate::gpu::{Instance, Layout};
use crate::optimizer::{self, OptJob, Options, Placement};
use crate::perf::{self, JobPerf, KINDS, KIND_SLICES};
use crate::predictor::{observe, Estimate, Predictor};

use super::baselines::whole_instance;
use super::rl::{self, Choice, Decide};
use super::{Cluster, MpsSource, MpsSpeeds, Overheads, Policy};

/// How a MISO-family policy learns speeds.
pub enum Speeds {
    /// True speeds, no profiling (Oracle).
    True,
    /// MPS profiling of the mix, then the predictor.
    Predicted { predictor: Box<Predictor> },
}

/// Which decisions around the optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MisoMode {
    /// The artifact's rules: fewest-jobs placement gated by its `max_allowed` slice rule, every
    /// job of a re-partitioned GPU restarted, re-partition on completion only when nothing waits.
    Artifact,
    /// Ours: placement where the job adds the least predicted slowdown (exact feasibility), a
    /// waiting job takes an idle instance that fits it without disturbing anyone, only moved
    /// jobs restart, re-partitioning on completion when its gain over the jobs' attained
    /// service beats the restart cost, and least disruption among near-equal layouts.
    Ours,
}

/// MISO, Oracle and Ours.
pub struct Miso {
    pub label: String,
    pub speeds: Speeds,
    pub mode: MisoMode,
    pub options: Options,
    pub placement: Placement,
    pub overheads: Overheads,
    /// Simulated MPS measurements (predictor input) and MPS speeds in the profiling phase.
    pub mps: MpsSource,
    pub mps_speeds: MpsSpeeds,
    /// Restart every job of a re-partitioned GPU (the artifact), else only moved ones.
    pub restart_all: bool,
    /// The earlier model: profiling stalls every job of the GPU, even a job alone on it.
    pub stall_profiling: bool,
    /// Ours: rounds at every arrival and completion (miso's controller) instead of the
    /// artifact's 10 s loop.
    pub react_at_once: bool,
    /// Ours: a job's expected remaining work is this plus the service it attained.
    pub attained_prior_s: f64,
    /// Ours: skip the profiling phase when its expected value is below its cost
    /// ([`Miso::join_without_profiling`]).
    pub skip_unneeded_profiling: bool,
    /// GPUs in an MPS profiling phase, with the time it started.
    profiling: std::collections::BTreeMap<usize, f64>,
    /// Jobs whose believed speeds come from a measurement (else from the prior).
    measured: Vec<bool>,
    /// GPUs where a job finished since the last round.
    finished_on: Vec<usize>,
    /// GPUs that may hold an idle instance (a job left), to re-partition when nothing waits.
    bubbles: std::collections::BTreeSet<usize>,
    /// Predicted speeds per measured mix (sorted workloads), in that order.
    predictions: std::collections::HashMap<Vec<usize>, Vec<Option<JobPerf>>>,
    /// What the optimizer is given as predicted speeds (point, expected, interval's worst).
    pub objective: Estimate,
    /// Learn from runs: each finished job's measured speed on every profile kind it ran on
    /// corrects the predictions of later jobs of its workload ([`observe::fill`]).
    pub learn_online: bool,
    /// Per workload, the latency (relative to its 7g latency) observed on each kind.
    observed: std::collections::HashMap<usize, [Option<f64>; KINDS]>,
    /// Per job, the kinds it has run on; jobs with a run not yet harvested.
    ran_on: Vec<[bool; KINDS]>,
    unharvested: Vec<usize>,
    /// Ours with a learned decision ([`rl`]): which shortlisted GPU the head job joins, or
    /// whether it waits, is the decider's (else the best gain).
    pub decider: Option<Box<dyn Decide>>,
}

/// Ours asks the optimizer about this many least-loaded GPUs per placement (scale); the learned
/// policy chooses among the same shortlist.
const SHORTLIST: usize = rl::TOP_K;

/// The artifact's 18 A100 partitions (`partition_code.json`: compute slices per GPU), used by
/// its `update_max_allowed` rule only (the layouts themselves come from the exact optimizer).
const ARTIFACT_PARTITIONS: [&[u8]; 18] = [
    &[7],
    &[2, 1, 4],
    &[1, 1, 1, 4],
    &[3, 3],
    &[2, 1, 3],
    &[1, 1, 1, 3],
    &[3, 2, 2],
    &[3, 2, 1, 1],
    &[3, 1, 1, 2],
    &[3, 1, 1, 1, 1],
    &[2, 1, 2, 2],
    &[2, 1, 2, 1, 1],
    &[2, 1, 1, 1, 2],
    &[1, 1, 1, 2, 1, 1],
    &[1, 1, 1, 1, 1, 2],
    &[2, 1, 1, 1, 1, 1],
    &[1, 2, 1, 1, 1, 1],
    &[1, 1, 1, 1, 1, 1, 1],
];

impl Miso {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        label: &str,
        speeds: Speeds,
        mode: MisoMode,
        options: Options,
        placement: Placement,
        overheads: Overheads,
        mps: MpsSource,
        mps_speeds: MpsSpeeds,
    ) -> Miso {
        Miso {
            label: label.to_string(),
            speeds,
            mode,
            options,
            placement,
            overheads,
            mps,
            mps_speeds,
            restart_all: mode == MisoMode::Artifact,
            stall_profiling: false,
            attained_prior_s: 60.0,
            react_at_once: mode == MisoMode::Ours,
            skip_unneeded_profiling: mode == MisoMode::Ours,
            profiling: Default::default(),
            measured: Vec::new(),
            predictions: std::collections::HashMap::new(),
            finished_on: Vec::new(),
            bubbles: Default::default(),
            objective: Estimate::Point,
            learn_online: false,
            observed: Default::default(),
            ran_on: Vec::new(),
            unharvested: Vec::new(),
            decider: None,
        }
    }

    /// The learned decision for the head job `j` among the shortlist `chunk` (available GPUs,
    /// least loaded first): `Some(g)` to join GPU `g`, `None` to wait.
    fn decide(
        &self,
        decider: &mut dyn Decide,
        c: &Cluster,
        j: usize,
        chunk: &[usize],
        now: f64,
    ) -> Option<Option<usize>> {
        let states = self.gpu_states(c, chunk, now);
        let since: Vec<Option<f64>> = chunk
            .iter()
            .map(|&g| c.gpus[g].checkpointed_at.map(|t| now - t))
            .collect();
        let job = self.newcomer(c, j);
        let cands = rl::candidates(&states, &job, &self.options, &since);
        if cands.is_empty() {
            return None;
        }
        let obs = rl::Observation::new(&Self::queue_view(c, Some(j), now), cands);
        Some(match decider.decide(&obs, now) {
            Choice::Join(i) => obs.candidates.get(i).map(|cv| chunk[cv.gpu]),
            _ => None,
        })
    }

    /// The queue and cluster as a learned decision sees them (`head`: the job decided for).
    fn queue_view(c: &Cluster, head: Option<usize>, now: f64) -> rl::QueueView {
        rl::QueueView {
            waiting: c.waiting.len().max(usize::from(head.is_some())),
            head_min_kind: head.and_then(|j| c.min_kind_of(j)).unwrap_or(0),
            head_wait_s: head.map_or(0.0, |j| now - c.jobs[j].arrival_s),
            idle_gpus: c.gpus.iter().filter(|g| g.is_free()).count(),
            gpus: c.gpus.len(),
            running: c
                .gpus
                .iter()
                .map(|g| g.jobs.len() + usize::from(g.gang.is_some()))
                .sum(),
        }
    }

    /// A pending re-partition of GPU `g` (a job left) decided by the learned policy: applied
    /// now, deferred to a later round (kept pending), or dropped (nothing to gain, or the rule
    /// declines and the policy agrees, as ours drops it).
    fn learned_repartition(
        &mut self,
        decider: &mut dyn Decide,
        c: &mut Cluster,
        g: usize,
        now: f64,
    ) {
        let Some(st) = self.gpu_states(c, &[g], now).pop() else {
            return;
        };
        let (jobs, current) = (&st.jobs, &st.layout);
        let free = Options {
            cost_aware: false,
            ..self.options.clone()
        };
        let (Ok(best), Ok(gated)) = (
            optimizer::plan(c.model, jobs, current, &free),
            optimizer::plan(c.model, jobs, current, &self.options),
        ) else {
            return;
        };
        if best.is_noop() {
            return;
        }
        let slowdown = |assign: &mut dyn Iterator<Item = (usize, Instance)>| -> f64 {
            let mut sum = 0.0;
            for (ji, inst) in assign {
                sum += jobs[ji]
                    .perf
                    .speed_on(c.model, inst.profile as usize)
                    .map_or(1e3, |s| 1.0 / s.max(1e-3));
            }
            sum / jobs.len().max(1) as f64
        };
        let now_cost = slowdown(
            &mut jobs
                .iter()
                .enumerate()
                .filter_map(|(i, j)| j.current.map(|inst| (i, inst))),
        );
        let after = slowdown(&mut best.assignment.iter().copied());
        let on_gpu = rl::JobsOnGpu::of(&st);
        let view = rl::RepartitionView {
            jobs: jobs.len(),
            saved: (now_cost - after).max(0.0),
            restart_s: best.restart.iter().map(|&i| jobs[i].restart_s).sum(),
            mean_attained_s: on_gpu.mean_attained_s,
            min_attained_s: on_gpu.min_attained_s,
            since_reconfig_s: c.gpus[g].checkpointed_at.map(|t| now - t),
            idle_slices: on_gpu.idle_slices,
            rule_applies: !gated.is_noop(),
        };
        let obs = rl::Observation::repartition(&Self::queue_view(c, None, now), &view);
        match decider.decide(&obs, now) {
            Choice::Apply if view.rule_applies => self.apply(c, g, now, &gated, now),
            Choice::Apply => self.apply(c, g, now, &best, now),
            _ if view.rule_applies => {
                self.bubbles.insert(g);
            }
            _ => {}
        }
    }

    /// Decisions the learned policy took, and how many fell back to the rule.
    pub fn decisions(&self) -> (u64, u64) {
        self.decider.as_ref().map_or((0, 0), |d| d.counts())
    }

    /// Learning from runs: job `j` runs on `inst`.
    fn note_run(&mut self, c: &Cluster, j: usize, inst: Instance) {
        if !self.learn_online {
            return;
        }
        let Some(k) = perf::kind_index(c.model.profiles[inst.profile as usize].compute_slices)
        else {
            return;
        };
        if self.ran_on.len() <= j {
            self.ran_on.resize(j + 1, [false; KINDS]);
        }
        if !self.ran_on[j].iter().any(|r| *r) {
            self.unharvested.push(j);
        }
        self.ran_on[j][k] = true;
    }

    /// Learning from runs: finished jobs report their measured speed on each kind they ran on
    /// (as the agent hears iteration times), kept per workload.
    fn harvest(&mut self, c: &Cluster) {
        let mut keep = Vec::new();
        for j in std::mem::take(&mut self.unharvested) {
            if c.jobs[j].finish_s.is_none() {
                keep.push(j);
                continue;
            }
            let truth = c.true_perf(j);
            let seen = self
                .observed
                .entry(c.jobs[j].workload)
                .or_insert([None; KINDS]);
            for k in 0..KINDS {
                if let (true, Some(v)) = (self.ran_on[j][k], truth.speed[k]) {
                    if v > 0.0 {
                        seen[k] = Some(1.0 / v);
                    }
                }
            }
        }
        self.unharvested = keep;
    }

    /// A predicted speed vector corrected by what runs of workload `w` showed.
    fn corrected(&self, w: usize, p: JobPerf) -> JobPerf {
        let Some(obs) = self.observed.get(&w) else {
            return p;
        };
        let prior: [Option<f64>; KINDS] =
            std::array::from_fn(|k| p.speed[k].filter(|v| *v > 0.0).map(|v| 1.0 / v));
        let t = observe::fill(&prior, obs);
        let Some(t7) = t[KINDS - 1] else {
            return p;
        };
        JobPerf {
            speed: std::array::from_fn(|k| t[k].filter(|v| *v > 0.0).map(|v| t7 / v)),
            memory_mb: p.memory_mb,
        }
    }

    fn predicted(&self) -> bool {
        matches!(self.speeds, Speeds::Predicted { .. })
    }

    /// What the policy knows of a job before profiling it: which slices it fits (its memory
    /// need) and, for speeds, the catalog's mean per profile kind (a typical job).
    fn prior(c: &Cluster, j: usize) -> JobPerf {
        static MEAN: std::sync::OnceLock<[f64; KINDS]> = std::sync::OnceLock::new();
        let mean = MEAN.get_or_init(|| {
            let cat = perf::catalog();
            std::array::from_fn(|k| {
                let v: Vec<f64> = cat.iter().filter_map(|w| w.perf().speed[k]).collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            })
        });
        let mut p = c.true_perf(j);
        for k in 0..KINDS {
            if p.speed[k].is_some() {
                p.speed[k] = Some(mean[k]);
            }
        }
        p
    }

    /// A waiting job as the optimizer sees it before profiling.
    fn newcomer(&self, c: &Cluster, j: usize) -> OptJob {
        OptJob {
            remaining_s: Some(self.attained_prior_s),
            restart_s: self.overheads.restart(c.jobs[j].workload),
            ..OptJob::new("new", Self::prior(c, j))
        }
    }

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
                    remaining_s: match self.mode {
                        // Attained service as the estimate of what is left (least-attained
                        // service reasoning; the true remaining work is never read).
                        MisoMode::Ours => Some(
                            self.attained_prior_s + (now - job.start_s.unwrap_or(now)).max(0.0),
                        ),
                        MisoMode::Artifact => None,
                    },
                    current: job.instance,
                    restart_s: self.overheads.restart(job.workload),
                }
            })
            .collect()
    }

    /// GPUs `gpus` as the optimizer sees them.
    fn gpu_states(&self, c: &Cluster, gpus: &[usize], now: f64) -> Vec<optimizer::GpuState> {
        gpus.iter()
            .map(|&g| optimizer::GpuState {
                gpu: c.model,
                layout: c.gpus[g].layout.clone(),
                jobs: self.opt_jobs(c, g, now),
            })
            .collect()
    }

    /// Believed speeds of the jobs on GPU `g` (predicted from its mix's MPS measurement).
    fn learn(&mut self, c: &mut Cluster, g: usize) {
        let jobs = c.gpus[g].jobs.clone();
        if self.measured.len() < c.jobs.len() {
            self.measured.resize(c.jobs.len(), false);
        }
        for &j in &jobs {
            self.measured[j] = true;
        }
        match &self.speeds {
            Speeds::True => {
                for j in jobs {
                    c.jobs[j].believed = Some(c.true_perf(j));
                }
            }
            Speeds::Predicted { predictor } => {
                // The same mix (multiset of workloads) is measured, and predicted, once.
                let mut ws: Vec<usize> = jobs.iter().map(|&j| c.jobs[j].workload).collect();
                ws.sort_unstable();
                let table = match self.predictions.get(&ws) {
                    Some(t) => t.clone(),
                    None => {
                        let (m, slot_of) = self.mps.matrix(&ws);
                        let t = predictor.predict_for(&m, self.objective);
                        let sorted: Vec<Option<JobPerf>> = slot_of
                            .iter()
                            .map(|&s| t.get(s).cloned().flatten())
                            .collect();
                        self.predictions.insert(ws.clone(), sorted.clone());
                        sorted
                    }
                };
                let mut used = vec![false; ws.len()];
                for &j in &jobs {
                    let truth = c.true_perf(j);
                    let w = c.jobs[j].workload;
                    let pos = (0..ws.len()).find(|&i| !used[i] && ws[i] == w);
                    if let Some(i) = pos {
                        used[i] = true;
                    }
                    let mut p = pos
                        .and_then(|i| table.get(i).cloned().flatten())
                        .map(|p| self.corrected(w, p))
                        .unwrap_or_else(|| truth.clone());
                    // Feasibility is known (memory need), speeds are predicted.
                    for k in 0..KINDS {
                        p.speed[k] = match (truth.speed[k], p.speed[k]) {
                            (Some(_), Some(v)) if v > 0.0 => Some(v),
                            (Some(_), _) => Some(1e-3),
                            (None, _) => None,
                        };
                    }
                    p.memory_mb = truth.memory_mb;
                    c.jobs[j].believed = Some(p);
                }
            }
        }
    }

    /// The artifact's `update_max_allowed`: the largest slice size a new job may need so that
    /// the jobs' smallest sizes, counted exactly per size, fit one of its partitions.
    fn max_allowed(c: &Cluster, g: usize) -> Option<u8> {
        // Counts of the jobs' smallest sizes 1, 2, 3, 4, 7 as a base-8 number.
        let mut key = 0usize;
        for &j in &c.gpus[g].jobs {
            if let Some(k) = c.min_kind_of(j) {
                key += 8usize.pow(k as u32);
            }
        }
        static MEMO: std::sync::OnceLock<Vec<Option<u8>>> = std::sync::OnceLock::new();
        let memo = MEMO.get_or_init(|| {
            (0..8usize.pow(KINDS as u32))
                .map(|key| {
                    let mut count = [0u8; 8];
                    for (k, &size) in KIND_SLICES.iter().enumerate() {
                        count[size as usize] = ((key / 8usize.pow(k as u32)) % 8) as u8;
                    }
                    Self::max_allowed_of(&count)
                })
                .collect()
        });
        memo.get(key).copied().flatten()
    }

    fn max_allowed_of(count: &[u8; 8]) -> Option<u8> {
        let fits = |extra: u8| {
            let mut need = *count;
            need[extra as usize] += 1;
            ARTIFACT_PARTITIONS.iter().any(|part| {
                (1..8).all(|s| need[s] <= part.iter().filter(|&&x| x as usize == s).count() as u8)
            })
        };
        [7u8, 4, 3, 2, 1].into_iter().find(|&s| fits(s))
    }

    /// The artifact's admission test: GPU `g`'s `max_allowed` slice is at least job `j`'s
    /// smallest fitting slice.
    fn artifact_admits(c: &Cluster, g: usize, j: usize) -> bool {
        let Some(mk) = c.min_kind_of(j) else {
            return false;
        };
        Self::max_allowed(c, g).is_some_and(|m| m >= KIND_SLICES[mk])
    }

    /// Would the optimizer find a layout for GPU `g`'s jobs plus job `j`?
    fn fits(&self, c: &Cluster, g: usize, j: usize, now: f64) -> bool {
        let mut jobs = self.opt_jobs(c, g, now);
        jobs.push(self.newcomer(c, j));
        optimizer::optimize(c.model, &jobs, &c.gpus[g].layout, &self.options).is_ok()
    }

    fn available(&self, c: &Cluster, g: usize, now: f64) -> bool {
        c.gpus[g].gang.is_none()
            && !self.profiling.contains_key(&g)
            && c.settled(g, now, &self.overheads)
    }

    /// Available, and no job on it is stalled (mid-restart).
    fn ready(&self, c: &Cluster, g: usize, now: f64) -> bool {
        self.available(c, g, now)
            && c.gpus[g]
                .jobs
                .iter()
                .all(|&o| c.jobs[o].stalled_until <= now)
    }

    /// An idle instance of GPU `g` that fits job `j` (a bubble left by a finished job).
    fn idle_instance(&self, c: &Cluster, g: usize, perf: &JobPerf) -> Option<Instance> {
        c.gpus[g]
            .layout
            .instances()
            .iter()
            .filter(|i| c.holder(g, **i).is_none())
            .filter(|i| perf.speed_on(c.model, i.profile as usize).is_some())
            .max_by(|a, b| {
                let s = |i: &Instance| perf.speed_on(c.model, i.profile as usize).unwrap_or(0.0);
                s(a).total_cmp(&s(b))
            })
            .copied()
    }

    /// Place job `j` on one of `gpus`, if one can take it.
    fn try_schedule(&mut self, c: &mut Cluster, j: usize, gpus: &[usize], now: f64) -> bool {
        if c.jobs[j].gpus > 1 {
            // Whole free GPUs (a GPU in a profiling phase has jobs, so it is not free).
            let settle = self.overheads.settle_s;
            let ok = |g: &super::Gpu| g.checkpointed_at.is_none_or(|t| now - t > settle);
            return c.try_gang(j, now, &ok);
        }
        if self.mode == MisoMode::Ours && !self.stall_profiling {
            // A bubble that fits: start there, nobody else moves (learned at the next
            // profiling or re-partition of this GPU).
            let prior = Self::prior(c, j);
            if let Some((g, inst)) = gpus
                .iter()
                .copied()
                .filter(|&g| {
                    !c.gpus[g].jobs.is_empty()
                        && c.gpus[g].layout.len() > c.gpus[g].jobs.len()
                        && self.available(c, g, now)
                })
                .find_map(|g| self.idle_instance(c, g, &prior).map(|i| (g, i)))
            {
                c.start(j, g, now);
                c.jobs[j].believed = Some(prior);
                let speed = c.true_speed(j, inst.profile as usize).unwrap_or(1e-3);
                let share = c.share_of(inst.profile as usize);
                c.jobs[j].instance = Some(inst);
                c.set_run(j, now, speed, share, now);
                self.note_run(c, j, inst);
                return true;
            }
        }
        // Candidates least-loaded first (lowest index on a tie), produced lazily: MISO takes the
        // first the optimizer confirms, Ours the best gain among each group of SHORTLIST.
        let most = c.model.compute_slices as usize;
        // The learned decider, if any, is held apart while the candidates borrow the policy.
        let mut decider = self.decider.take();
        let learned = self.mode == MisoMode::Ours;
        let mut waits = false;
        let cr: &Cluster = c;
        let mut ordered = (0..=most)
            .flat_map(|k| {
                gpus.iter()
                    .copied()
                    .filter(move |&g| cr.gpus[g].jobs.len() == k)
            })
            .filter(|&g| {
                self.available(cr, g, now)
                    && (self.mode == MisoMode::Ours || Self::artifact_admits(cr, g, j))
            });
        let chosen = match self.placement {
            Placement::FewestJobs => ordered.find(|&g| self.fits(cr, g, j, now)),
            Placement::BestGain => {
                let mut chosen = None;
                loop {
                    let chunk: Vec<usize> = ordered.by_ref().take(SHORTLIST).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    if let Some(d) = decider.as_deref_mut().filter(|_| learned) {
                        // Learned: join one of this shortlist's feasible GPUs, or wait.
                        match self.decide(d, cr, j, &chunk, now) {
                            Some(Some(g)) => {
                                chosen = Some(g);
                                break;
                            }
                            Some(None) => {
                                waits = true;
                                break;
                            }
                            None => continue, // none feasible here
                        }
                    }
                    let states = self.gpu_states(cr, &chunk, now);
                    let job = self.newcomer(cr, j);
                    chosen =
                        optimizer::choose_gpu(&states, &job, Placement::BestGain, &self.options)
                            .map(|i| chunk[i]);
                    if chosen.is_some() {
                        break;
                    }
                }
                chosen
            }
        };
        self.decider = decider;
        if waits {
            return false;
        }
        let Some(g) = chosen else { return false };
        let alone = c.gpus[g].jobs.is_empty();
        c.start(j, g, now);
        if self.stall_profiling {
            // The earlier model: everyone stalls while the mix is profiled, even a lone job.
            self.learn(c, g);
            let mut stall = now;
            if self.predicted() {
                stall += self.overheads.profiling_s;
                for &o in &c.gpus[g].jobs.clone() {
                    c.jobs[o].profiling_s += self.overheads.profiling_s;
                }
            }
            self.replan(c, g, now, stall, false);
            return true;
        }
        if alone {
            // Alone on the GPU: the whole GPU at once, no profiling.
            let whole = Layout::new(vec![whole_instance(c.model)]);
            // A GPU never partitioned yet is whole already.
            let changed = !c.gpus[g].layout.is_empty() && c.gpus[g].layout != whole;
            c.gpus[g].layout = whole.clone();
            if changed {
                c.gpus[g].reconfigurations += 1;
            }
            let inst = whole.instances()[0];
            let stall = if changed {
                now + self.overheads.reconfig_s
            } else {
                now
            };
            c.jobs[j].instance = Some(inst);
            self.learn(c, g);
            let speed = c.true_speed(j, inst.profile as usize).unwrap_or(1e-3);
            c.set_run(j, now, speed, 1.0, stall);
            return true;
        }
        if !self.predicted() {
            // Oracle: checkpoint the running jobs, re-partition, start and resume at once.
            self.learn(c, g);
            self.replan(c, g, now, now, true);
            return true;
        }
        if self.skip_unneeded_profiling && self.join_without_profiling(c, g, j, now) {
            return true;
        }
        // MPS profiling phase: running jobs are checkpointed and resumed under MPS; the new
        // job starts there; everyone trains at the profiling thread share.
        let jobs = c.gpus[g].jobs.clone();
        let ws: Vec<usize> = jobs.iter().map(|&o| c.jobs[o].workload).collect();
        let speeds = self
            .mps
            .speeds(&ws, self.overheads.profiling_pct, self.mps_speeds);
        let share = 1.0 / jobs.len() as f64;
        for (&o, s) in jobs.iter().zip(speeds) {
            let stall = if o == j {
                now
            } else {
                c.checkpoint(o, now);
                now + self.overheads.save_wait_s + self.overheads.restart(c.jobs[o].workload)
            };
            c.jobs[o].instance = None;
            c.set_run(o, now, s, share, stall);
        }
        self.profiling.insert(g, now);
        true
    }

    /// Ours: join without profiling when the measurement is not worth its cost. The newcomer
    /// `j`'s speeds are unknown before profiling; its possible curves are those of the catalog's
    /// model families (their workloads with its known memory fit, averaged). The plan made with the
    /// prior (their mean) is scored under each candidate against that candidate's own optimum:
    /// the mean regret, in slowdown, times the jobs' expected remaining work, is the time lost
    /// by not measuring. Profiling costs every job on the GPU its restores (into MPS and back)
    /// and the MPS phase. When the expected loss is smaller, the prior plan is applied at once
    /// (only moved jobs restart). Needs every other job on the GPU measured already.
    fn join_without_profiling(&mut self, c: &mut Cluster, g: usize, j: usize, now: f64) -> bool {
        if self.measured.len() < c.jobs.len() {
            self.measured.resize(c.jobs.len(), false);
        }
        let others: Vec<usize> = c.gpus[g].jobs.iter().copied().filter(|&o| o != j).collect();
        if others.iter().any(|&o| !self.measured[o]) {
            return false;
        }
        let truth = c.true_perf(j);
        let mask: Vec<bool> = truth.speed.iter().map(Option::is_some).collect();
        // One curve per model family: the mean of its workloads with the same memory fit.
        let cat = perf::catalog();
        let candidates: Vec<JobPerf> = perf::models()
            .into_iter()
            .filter_map(|m| {
                let fit: Vec<JobPerf> = (0..cat.len())
                    .filter(|&w| cat[w].model == m)
                    .map(|w| c.perf_as(j, w))
                    .filter(|p| p.speed.iter().map(Option::is_some).eq(mask.iter().copied()))
                    .collect();
                let first = fit.first()?.clone();
                let mut mean = first;
                for k in 0..KINDS {
                    mean.speed[k] = mean.speed[k].map(|_| {
                        fit.iter().filter_map(|p| p.speed[k]).sum::<f64>() / fit.len() as f64
                    });
                }
                Some(mean)
            })
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let mut jobs = self.opt_jobs(c, g, now);
        let Some(ji) = c.gpus[g].jobs.iter().position(|&o| o == j) else {
            return false;
        };
        jobs[ji] = self.newcomer(c, j);
        let current = c.gpus[g].layout.clone();
        let Ok(plan) = optimizer::plan(c.model, &jobs, &current, &self.options) else {
            return false;
        };
        let mut regret = 0.0;
        for cand in &candidates {
            let mut js = jobs.clone();
            js[ji].perf = cand.clone();
            let Ok(best) = optimizer::optimize(c.model, &js, &current, &self.options) else {
                return false;
            };
            let with_prior: f64 = plan
                .assignment
                .iter()
                .map(|&(i, inst)| {
                    js[i]
                        .perf
                        .speed_on(c.model, inst.profile as usize)
                        .map_or(1e3, |s| 1.0 / s)
                })
                .sum();
            regret += (with_prior - best.cost).max(0.0) / candidates.len() as f64;
        }
        let n = jobs.len() as f64;
        let remaining = jobs.iter().filter_map(|o| o.remaining_s).sum::<f64>() / n;
        let loss = regret * remaining;
        let o = &self.overheads;
        let measure: f64 = others
            .iter()
            .map(|&x| 2.0 * o.restart(c.jobs[x].workload) + o.save_wait_s + o.mps_exit_wait_s)
            .sum::<f64>()
            + o.restart(c.jobs[j].workload)
            + o.mps_exit_wait_s
            + 0.5 * o.profiling_s * n;
        if loss >= measure {
            return false;
        }
        c.jobs[j].believed = Some(Self::prior(c, j));
        self.apply(c, g, now, &plan, now);
        true
    }

    /// Profiling over: predict from the mix's measurement, then checkpoint everyone and
    /// restart them on the chosen layout.
    fn end_profiling(&mut self, c: &mut Cluster, g: usize, now: f64) {
        let Some(started) = self.profiling.remove(&g) else {
            return;
        };
        for &j in &c.gpus[g].jobs {
            let since = c.jobs[j].start_s.unwrap_or(started).max(started);
            c.jobs[j].profiling_s += now - since;
        }
        if c.gpus[g].jobs.is_empty() {
            return;
        }
        self.learn(c, g);
        let jobs = self.opt_jobs(c, g, now);
        let Ok(plan) = optimizer::plan(
            c.model,
            &jobs,
            &c.gpus[g].layout,
            &Options {
                cost_aware: false,
                ..self.options.clone()
            },
        ) else {
            return;
        };
        c.gpus[g].layout = plan.decision.layout.clone();
        c.gpus[g].reconfigurations += 1;
        let ids = c.gpus[g].jobs.clone();
        for &(ji, inst) in &plan.assignment {
            let j = ids[ji];
            c.checkpoint(j, now);
            let stall = now
                + self.overheads.mps_exit_wait_s
                + self.overheads.reconfig_s
                + self.overheads.restart(c.jobs[j].workload);
            let speed = c.true_speed(j, inst.profile as usize).unwrap_or(1e-3);
            let share = c.share_of(inst.profile as usize);
            c.jobs[j].instance = Some(inst);
            c.set_run(j, now, speed, share, stall);
            self.note_run(c, j, inst);
        }
    }

    /// Re-plan GPU `g` from believed speeds and apply. Moved jobs (all running jobs when
    /// `restart_all`) are checkpointed and restored; new jobs start after the reconfiguration;
    /// everyone stalls until at least `stall_all_until`.
    fn replan(
        &mut self,
        c: &mut Cluster,
        g: usize,
        now: f64,
        stall_all_until: f64,
        force: bool,
    ) -> bool {
        let jobs = self.opt_jobs(c, g, now);
        let current = c.gpus[g].layout.clone();
        let Ok(plan) = optimizer::plan(c.model, &jobs, &current, &self.options) else {
            return false;
        };
        if plan.is_noop() && !force && stall_all_until <= now {
            return true;
        }
        self.apply(c, g, now, &plan, stall_all_until);
        true
    }

    /// Apply a plan on GPU `g` (see [`Miso::replan`]).
    fn apply(
        &mut self,
        c: &mut Cluster,
        g: usize,
        now: f64,
        plan: &optimizer::Plan,
        stall_all_until: f64,
    ) {
        let changed = !plan.diff.is_noop();
        if changed {
            c.gpus[g].reconfigurations += 1;
        }
        c.gpus[g].layout = plan.decision.layout.clone();
        let ids = c.gpus[g].jobs.clone();
        for &(ji, inst) in &plan.assignment {
            let j = ids[ji];
            let running = c.jobs[j].instance.is_some();
            let moved = running && (plan.restart.contains(&ji) || (self.restart_all && changed));
            let speed = c.true_speed(j, inst.profile as usize).unwrap_or(1e-3);
            let share = c.share_of(inst.profile as usize);
            let mut until = stall_all_until.max(c.jobs[j].stalled_until);
            if moved {
                c.checkpoint(j, now);
                until = until.max(now)
                    + self.overheads.save_wait_s
                    + self.overheads.reconfig_s
                    + self.overheads.restart(c.jobs[j].workload);
            } else if !running {
                until = until.max(now)
                    + if changed {
                        self.overheads.reconfig_s
                    } else {
                        0.0
                    };
            }
            c.jobs[j].instance = Some(inst);
            c.set_run(j, now, speed, share, until);
            self.note_run(c, j, inst);
        }
    }

    /// Ours: an idle GPU takes one job of the GPU that shares the most jobs (alone on the whole
    /// GPU: no profiling needed; moving onto busy GPUs measured worse), when the slowdown saved over the
    /// jobs' expected remaining work beats the moved job's restore time. MISO never moves a
    /// job across GPUs.
    fn rebalance(&mut self, c: &mut Cluster, now: f64) {
        let sum_inv = |c: &Cluster, jobs: &[OptJob]| -> f64 {
            jobs.iter()
                .map(|oj| {
                    oj.current
                        .and_then(|i| oj.perf.speed_on(c.model, i.profile as usize))
                        .map_or(0.0, |s| 1.0 / s)
                })
                .sum()
        };
        for _ in 0..c.gpus.len() {
            let Some(g) = (0..c.gpus.len())
                .filter(|&g| c.gpus[g].is_free() && self.ready(c, g, now))
                .min_by_key(|&g| (c.gpus[g].jobs.len(), g))
            else {
                return;
            };
            let Some(h) = (0..c.gpus.len())
                .filter(|&h| {
                    c.gpus[h].jobs.len() >= c.gpus[g].jobs.len() + 2 && self.ready(c, h, now)
                })
                .max_by_key(|&h| (c.gpus[h].jobs.len(), std::cmp::Reverse(h)))
            else {
                return;
            };
            let from = self.opt_jobs(c, h, now);
            let to = self.opt_jobs(c, g, now);
            let before = sum_inv(c, &from) + sum_inv(c, &to);
            let horizon = from
                .iter()
                .chain(&to)
                .filter_map(|o| o.remaining_s)
                .fold(f64::INFINITY, f64::min)
                .min(3600.0);
            let mut best: Option<(usize, f64)> = None;
            for x in 0..from.len() {
                let rest: Vec<OptJob> = from
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != x)
                    .map(|(_, o)| o.clone())
                    .collect();
                let mut joined = to.clone();
                joined.push(OptJob {
                    current: None,
                    ..from[x].clone()
                });
                let (Ok(dh), Ok(dg)) = (
                    optimizer::optimize(c.model, &rest, &c.gpus[h].layout, &self.options),
                    optimizer::optimize(c.model, &joined, &c.gpus[g].layout, &self.options),
                ) else {
                    continue;
                };
                let saved = before - (dh.cost + dg.cost);
                let n = (from.len() + to.len()) as f64;
                let gain = saved * horizon / n - from[x].restart_s;
                if gain > 0.0 && best.is_none_or(|(_, b)| gain > b) {
                    best = Some((x, gain));
                }
            }
            let Some((x, _)) = best else { return };
            let j = c.gpus[h].jobs[x];
            // Move: checkpoint on h, restore on g after g's re-partition.
            c.checkpoint(j, now);
            c.gpus[h].jobs.retain(|&o| o != j);
            c.gpus[g].jobs.push(j);
            c.jobs[j].gpu = Some(g);
            c.jobs[j].instance = None;
            let restore =
                now + self.overheads.save_wait_s + self.overheads.restart(c.jobs[j].workload);
            let share = c.jobs[j].share;
            c.set_run(j, now, 0.0, share, restore);
            self.replan(c, g, now, now, true);
            // The GPU it left closes the gap (moved jobs only).
            self.replan(c, h, now, now, false);
        }
    }

    /// A GPU with an instance no job uses (or a partitioned GPU with no jobs).
    fn has_bubble(c: &Cluster, g: usize) -> bool {
        let gpu = &c.gpus[g];
        if gpu.gang.is_some() {
            return false;
        }
        if gpu.jobs.is_empty() {
            let whole = whole_instance(c.model);
            return !gpu.layout.is_empty()
                && !(gpu.layout.len() == 1 && gpu.layout.instances()[0] == whole);
        }
        gpu.layout.len() > gpu.jobs.len()
    }
}

impl Policy for Miso {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn before_arrivals(&mut self, c: &mut Cluster, now: f64) {
        // Jobs onto GPUs emptied more than the settling time ago.
        let mut finished = std::mem::take(&mut self.finished_on);
        finished.sort_unstable();
        finished.dedup();
        let emptied: Vec<usize> = finished
            .iter()
            .copied()
            .filter(|&g| {
                c.gpus[g]
                    .emptied_at
                    .is_some_and(|t| now - t > self.overheads.settle_s)
            })
            .collect();
        while let Some(&j) = c.waiting.front() {
            if !self.try_schedule(c, j, &emptied, now) {
                break;
            }
            c.waiting.pop_front();
        }
        for &g in &finished {
            c.gpus[g].emptied_at = None;
        }
        // Re-partition GPUs with idle instances, when nothing waits.
        if !c.waiting.is_empty() {
            return;
        }
        let pending: Vec<usize> = self.bubbles.iter().copied().collect();
        for g in pending {
            if self.profiling.contains_key(&g) {
                continue;
            }
            self.bubbles.remove(&g);
            if !Self::has_bubble(c, g) {
                continue;
            }
            if c.gpus[g].jobs.is_empty() {
                c.gpus[g].layout = Layout::new(vec![whole_instance(c.model)]);
                c.gpus[g].reconfigurations += 1;
                continue;
            }
            if self.mode == MisoMode::Ours {
                if let Some(mut d) = self.decider.take() {
                    self.learned_repartition(d.as_mut(), c, g, now);
                    self.decider = Some(d);
                    continue;
                }
            }
            self.replan(c, g, now, now, false);
        }
        if self.mode == MisoMode::Ours && !self.stall_profiling && !finished.is_empty() {
            self.rebalance(c, now);
        }
    }

    fn schedule(&mut self, c: &mut Cluster, now: f64) {
        if !c.waiting.is_empty() {
            let all: Vec<usize> = (0..c.gpus.len()).collect();
            while let Some(&j) = c.waiting.front() {
                if !self.try_schedule(c, j, &all, now) {
                    break;
                }
                c.waiting.pop_front();
            }
        }
        let over: Vec<usize> = self
            .profiling
            .iter()
            .filter(|&(_, &started)| now - started >= self.overheads.profiling_s - 1e-9)
            .map(|(&g, _)| g)
            .collect();
        for g in over {
            self.end_profiling(c, g, now);
        }
    }

    fn event_driven(&self) -> bool {
        self.mode == MisoMode::Ours && self.react_at_once
    }

    fn wakeup(&self, c: &mut Cluster, now: f64) -> Option<f64> {
        let prof = self
            .profiling
            .values()
            .map(|started| started + self.overheads.profiling_s)
            .filter(|&t| t > now)
            .reduce(f64::min);
        let settle = if c.waiting.is_empty() {
            None
        } else {
            c.next_settled(now, &self.overheads)
        };
        match (prof, settle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_finish(&mut self, c: &mut Cluster, gpu: usize, _now: f64) {
        if self.learn_online {
            self.harvest(c);
        }
        self.finished_on.push(gpu);
        self.bubbles.insert(gpu);
    }
}
