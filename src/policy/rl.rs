//! Learned scheduling decisions around the exact optimizer: which GPU the job at the head of
//! the queue joins (one of the best [`TOP_K`] candidates ranked by the optimizer's gain) or
//! whether it waits; and, for a GPU where a job left an idle instance, whether its pending
//! re-partition is applied now or deferred. The layout and assignment on a GPU stay the
//! optimizer's.
//!
//! This file holds what deciding needs and nothing of training: the observation (features of
//! the queue and of each candidate GPU, computed from optimizer-level views so the simulator and
//! the controller build the same numbers), the policy network's forward pass in plain Rust
//! (a few thousand multiply-adds: microseconds per decision), the training range with the
//! rule-based fallback outside it, and the policy folder's format (`model.json`,
//! `weights.json`). The network is trained on burn by `crate::rl` in the simulator.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::optimizer::{self, GpuState, OptJob, Options};

/// Candidate GPUs per decision (the best by the optimizer's gain).
pub const TOP_K: usize = 4;
/// Features of the queue and cluster, shared by every action of a decision.
pub const GLOBAL: usize = 6;
/// Features of one candidate GPU.
pub const CANDIDATE: usize = 8;
/// Inputs of the scoring network: global, candidate, the "wait/defer" flag and the
/// "re-partition decision" flag.
pub const INPUTS: usize = GLOBAL + CANDIDATE + 2;
/// Index of the wait/defer flag.
const WAIT: usize = GLOBAL + CANDIDATE;
/// Index of the flag marking a re-partition decision's rows.
const REPARTITION: usize = GLOBAL + CANDIDATE + 1;
/// Actions: the candidates, then wait.
pub const ACTIONS: usize = TOP_K + 1;
/// The format tag of a policy folder's `model.json`.
pub const FORMAT: &str = "miso-policy/1";

/// The queue and cluster at a decision.
#[derive(Clone, Debug, Default)]
pub struct QueueView {
    /// Jobs waiting, the head included.
    pub waiting: usize,
    /// The head job's smallest fitting profile kind (0 = 1g … 4 = 7g).
    pub head_min_kind: usize,
    /// Seconds the head job has waited.
    pub head_wait_s: f64,
    /// GPUs with no job.
    pub idle_gpus: usize,
    pub gpus: usize,
    /// Jobs running on the cluster.
    pub running: usize,
}

/// One candidate GPU for the head job.
#[derive(Clone, Debug, Default)]
pub struct CandidateView {
    /// Index of the GPU in the caller's list.
    pub gpu: usize,
    /// Jobs on it now.
    pub jobs: usize,
    /// How much the optimizer's objective rises when the job joins (lower is better).
    pub gain: f64,
    /// Mean and least attained service of its jobs (seconds; the optimizer's remaining-work
    /// estimate under least-attained-service reasoning).
    pub mean_attained_s: f64,
    pub min_attained_s: f64,
    /// Summed restore times of its jobs (what a profiling phase or re-partition costs them).
    pub restart_s: f64,
    /// Seconds since its jobs were last checkpointed (reconfiguration); `None`: never, or unknown.
    pub since_reconfig_s: Option<f64>,
    /// Compute slices of instances no job holds.
    pub idle_slices: u32,
}

/// A GPU whose pending re-partition (a job left) may be applied now or deferred.
#[derive(Clone, Debug, Default)]
pub struct RepartitionView {
    /// Jobs on it.
    pub jobs: usize,
    /// How much the optimizer's objective falls if re-partitioned now (≥ 0).
    pub saved: f64,
    /// Summed restore times of the jobs the re-partition moves.
    pub restart_s: f64,
    pub mean_attained_s: f64,
    pub min_attained_s: f64,
    pub since_reconfig_s: Option<f64>,
    /// Compute slices of instances no job holds.
    pub idle_slices: u32,
    /// The rule's decision (ours' cost gate: the saving over the jobs' expected remaining work
    /// beats the restarts).
    pub rule_applies: bool,
}

/// Which decision an observation is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// The head job: join a candidate or wait.
    #[default]
    Join,
    /// A pending re-partition: apply (action 0) or defer (action 1).
    Repartition,
}

/// What a policy sees at one decision: one row of [`INPUTS`] features per action.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    pub kind: Kind,
    /// Join: rows of the candidates (best gain first), then the wait row when waiting is
    /// allowed. Re-partition: the apply row, then the defer row.
    pub rows: Vec<[f32; INPUTS]>,
    pub candidates: Vec<CandidateView>,
    pub wait_allowed: bool,
    /// The action the rule takes.
    pub rule: usize,
}

impl Observation {
    /// Build the rows. Waiting is allowed only when no candidate is an empty GPU and something
    /// runs (so a completion will come and the head is reconsidered).
    pub fn new(q: &QueueView, mut candidates: Vec<CandidateView>) -> Observation {
        candidates.sort_by(|a, b| a.gain.total_cmp(&b.gain).then(a.gpu.cmp(&b.gpu)));
        candidates.truncate(TOP_K);
        let best = candidates.first().map_or(0.0, |c| c.gain);
        let g = global_features(q);
        let mut rows: Vec<[f32; INPUTS]> = candidates
            .iter()
            .enumerate()
            .map(|(rank, c)| {
                let mut r = [0f32; INPUTS];
                r[..GLOBAL].copy_from_slice(&g);
                r[GLOBAL..GLOBAL + CANDIDATE].copy_from_slice(&candidate_features(c, rank, best));
                r
            })
            .collect();
        let wait_allowed = q.running > 0 && candidates.iter().all(|c| c.jobs > 0);
        if wait_allowed {
            let mut r = [0f32; INPUTS];
            r[..GLOBAL].copy_from_slice(&g);
            r[WAIT] = 1.0;
            rows.push(r);
        }
        Observation {
            kind: Kind::Join,
            rows,
            candidates,
            wait_allowed,
            rule: 0,
        }
    }

    /// A pending re-partition: apply now (row 0) or defer (row 1).
    pub fn repartition(q: &QueueView, v: &RepartitionView) -> Observation {
        let g = global_features(q);
        let mut apply = [0f32; INPUTS];
        apply[..GLOBAL].copy_from_slice(&g);
        let c = [
            squash(v.jobs as f64 / 7.0),
            squash(-v.saved.clamp(0.0, 5.0)),
            squash(v.restart_s.max(0.0) / 60.0),
            squash(log(v.mean_attained_s, 600.0)),
            squash(log(v.min_attained_s, 600.0)),
            squash(v.since_reconfig_s.map_or(1.0, |s| log(s, 60.0).min(1.0))),
            squash(v.idle_slices as f64 / 7.0),
            if v.rule_applies { 1.0 } else { 0.0 },
        ];
        apply[GLOBAL..GLOBAL + CANDIDATE].copy_from_slice(&c);
        apply[REPARTITION] = 1.0;
        let mut defer = [0f32; INPUTS];
        defer[..GLOBAL].copy_from_slice(&g);
        defer[GLOBAL + CANDIDATE - 1] = if v.rule_applies { 0.0 } else { 1.0 };
        defer[WAIT] = 1.0;
        defer[REPARTITION] = 1.0;
        Observation {
            kind: Kind::Repartition,
            rows: vec![apply, defer],
            candidates: Vec::new(),
            wait_allowed: true,
            rule: if v.rule_applies { 0 } else { 1 },
        }
    }

    /// Is action `a` "wait" (join decisions)?
    pub fn is_wait(&self, a: usize) -> bool {
        self.kind == Kind::Join && self.wait_allowed && a + 1 == self.rows.len()
    }
}

/// Seconds on a log scale: ln(1 + s/unit) / 3.
fn log(s: f64, unit: f64) -> f64 {
    (1.0 + s.max(0.0) / unit).ln() / 3.0
}

fn squash(x: f64) -> f32 {
    x.clamp(-1e6, 1e6) as f32
}

fn global_features(q: &QueueView) -> [f32; GLOBAL] {
    let gpus = q.gpus.max(1) as f64;
    [
        squash((1.0 + q.waiting as f64).ln() / 3.0),
        squash(q.head_min_kind as f64 / 4.0),
        squash((1.0 + q.head_wait_s.max(0.0) / 60.0).ln() / 3.0),
        squash(q.idle_gpus as f64 / gpus),
        squash(q.running as f64 / gpus / 4.0),
        squash((1.0 + gpus).ln() / 7.0),
    ]
}

fn candidate_features(c: &CandidateView, rank: usize, best: f64) -> [f32; CANDIDATE] {
    [
        squash(c.jobs as f64 / 7.0),
        squash(c.gain.clamp(-5.0, 5.0)),
        squash((c.gain - best).clamp(0.0, 5.0)),
        squash(log(c.mean_attained_s, 600.0)),
        squash(log(c.min_attained_s, 600.0)),
        squash(c.restart_s.max(0.0) / 60.0),
        squash(c.since_reconfig_s.map_or(1.0, |s| log(s, 60.0).min(1.0))),
        squash(rank as f64 / TOP_K as f64 + c.idle_slices as f64 / 70.0),
    ]
}

/// Candidates for a new job among `states` (the GPUs that may take it): the optimizer's
/// objective rise on each GPU where a layout fits, with what [`CandidateView`] needs from the
/// GPU's jobs. `since_reconfig_s[i]` is GPU `states[i]`'s time since its last checkpoint.
pub fn candidates(
    states: &[GpuState],
    job: &OptJob,
    opts: &Options,
    since_reconfig_s: &[Option<f64>],
) -> Vec<CandidateView> {
    optimizer::placement_gains(states, job, opts)
        .into_iter()
        .map(|(i, gain)| {
            candidate(
                i,
                &states[i],
                gain,
                since_reconfig_s.get(i).copied().flatten(),
            )
        })
        .collect()
}

/// GPU number `gpu` (in the caller's list), in state `st`, as a candidate whose objective rises
/// by `gain` when the job joins.
pub fn candidate(
    gpu: usize,
    st: &GpuState,
    gain: f64,
    since_reconfig_s: Option<f64>,
) -> CandidateView {
    let j = JobsOnGpu::of(st);
    CandidateView {
        gpu,
        jobs: st.jobs.len(),
        gain,
        mean_attained_s: j.mean_attained_s,
        min_attained_s: j.min_attained_s,
        restart_s: st.jobs.iter().map(|j| j.restart_s).sum(),
        since_reconfig_s,
        idle_slices: j.idle_slices,
    }
}

/// What a GPU's jobs show a learned decision: their attained service (the optimizer's
/// remaining-work estimate under least-attained-service reasoning) and the compute slices of
/// instances none of them holds.
pub struct JobsOnGpu {
    pub mean_attained_s: f64,
    pub min_attained_s: f64,
    pub idle_slices: u32,
}

impl JobsOnGpu {
    pub fn of(st: &GpuState) -> JobsOnGpu {
        let attained: Vec<f64> = st
            .jobs
            .iter()
            .map(|j| j.remaining_s.unwrap_or(0.0))
            .collect();
        let slices =
            |i: &crate::gpu::Instance| st.gpu.profiles[i.profile as usize].compute_slices as u32;
        let used: u32 = st
            .jobs
            .iter()
            .filter_map(|j| j.current.as_ref())
            .map(slices)
            .sum();
        let total: u32 = st.layout.instances().iter().map(slices).sum();
        JobsOnGpu {
            mean_attained_s: attained.iter().sum::<f64>() / attained.len().max(1) as f64,
            min_attained_s: attained
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .min(1e9),
            idle_slices: total.saturating_sub(used),
        }
    }
}

/// One dense layer: `out = in · w + b`, `w` row-major `[inputs, outputs]` (burn's layout).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// The scoring network: dense layers with tanh between them, one score per action row.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Net {
    pub layers: Vec<Dense>,
}

impl Net {
    /// Check the shapes chain from [`INPUTS`] to one output.
    pub fn validate(&self) -> Result<(), String> {
        let mut w = INPUTS;
        for (i, l) in self.layers.iter().enumerate() {
            if l.inputs != w || l.w.len() != l.inputs * l.outputs || l.b.len() != l.outputs {
                return Err(format!(
                    "layers[{i}]: shape {}×{} with {} weights and {} biases does not follow {w} inputs",
                    l.inputs,
                    l.outputs,
                    l.w.len(),
                    l.b.len()
                ));
            }
            if l.w.iter().chain(&l.b).any(|v| !v.is_finite()) {
                return Err(format!("layers[{i}]: a weight is not a finite number"));
            }
            w = l.outputs;
        }
        if self.layers.is_empty() || w != 1 {
            return Err("layers: the last layer must have one output".into());
        }
        Ok(())
    }

    /// The score of one row.
    pub fn score(&self, x: &[f32; INPUTS]) -> f32 {
        let mut cur: Vec<f32> = x.to_vec();
        let last = self.layers.len().saturating_sub(1);
        for (li, l) in self.layers.iter().enumerate() {
            let mut out = l.b.clone();
            for (i, xi) in cur.iter().enumerate() {
                let row = &l.w[i * l.outputs..(i + 1) * l.outputs];
                for (o, w) in out.iter_mut().zip(row) {
                    *o += xi * w;
                }
            }
            if li < last {
                for o in out.iter_mut() {
                    *o = o.tanh();
                }
            }
            cur = out;
        }
        cur.first().copied().unwrap_or(0.0)
    }

    /// Scores of every row of an observation.
    pub fn scores(&self, obs: &Observation) -> Vec<f32> {
        obs.rows.iter().map(|r| self.score(r)).collect()
    }
}

/// How a policy was trained and how it did (the folder's `model.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyMeta {
    pub format: String,
    pub name: String,
    /// The training settings, as given.
    pub recipe: serde_json::Value,
    /// Fingerprint of the training traces (FNV-1a over their jobs).
    pub data_fingerprint: String,
    pub seed: u64,
    /// Per input, the least and largest value seen in training: outside it (with a margin) the
    /// rule decides.
    pub input_lo: Vec<f32>,
    pub input_hi: Vec<f32>,
    /// Held-out figures measured at the end of training.
    pub metrics: serde_json::Value,
}

/// A trained policy: its network and what it was trained on.
#[derive(Clone, Debug)]
pub struct PolicyModel {
    pub meta: PolicyMeta,
    pub net: Net,
}

/// Errors loading a policy folder.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

fn file_err(p: &Path, reason: impl Into<String>) -> PolicyError {
    PolicyError::File {
        file: p.display().to_string(),
        reason: reason.into(),
    }
}

/// The decision a policy took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Join candidate `i` (index into `Observation::candidates`).
    Join(usize),
    Wait,
    /// Apply the pending re-partition now.
    Apply,
    /// Leave it for a later round.
    Defer,
}

impl PolicyModel {
    /// Parse a policy from its two files' texts (`label` names the folder in errors).
    pub fn from_json(meta: &str, weights: &str, label: &Path) -> Result<PolicyModel, PolicyError> {
        let mp = label.join("model.json");
        let wp = label.join("weights.json");
        let meta: PolicyMeta =
            serde_json::from_str(meta).map_err(|e| file_err(&mp, format!("not a policy: {e}")))?;
        if meta.format != FORMAT {
            return Err(file_err(
                &mp,
                format!("format: `{}` (expected `{FORMAT}`)", meta.format),
            ));
        }
        if meta.input_lo.len() != INPUTS || meta.input_hi.len() != INPUTS {
            return Err(file_err(
                &mp,
                format!("input_lo/input_hi: {INPUTS} values each expected"),
            ));
        }
        if let Some(i) = (0..INPUTS).find(|&i| {
            let (lo, hi) = (meta.input_lo[i], meta.input_hi[i]);
            !lo.is_finite() || !hi.is_finite() || lo > hi
        }) {
            return Err(file_err(
                &mp,
                format!("input_lo[{i}]/input_hi[{i}]: not a finite range"),
            ));
        }
        let net: Net = serde_json::from_str(weights)
            .map_err(|e| file_err(&wp, format!("not weights: {e}")))?;
        net.validate().map_err(|e| file_err(&wp, e))?;
        Ok(PolicyModel { meta, net })
    }

    /// Load a policy folder (`model.json`, `weights.json`).
    pub fn load(dir: &Path) -> Result<PolicyModel, PolicyError> {
        let read = |f: &str| {
            let p = dir.join(f);
            std::fs::read_to_string(&p).map_err(|e| file_err(&p, format!("cannot read: {e}")))
        };
        PolicyModel::from_json(&read("model.json")?, &read("weights.json")?, dir)
    }

    /// The policy trained for this release (`models/policy-default`, compiled in).
    pub fn builtin() -> Result<PolicyModel, PolicyError> {
        PolicyModel::from_json(
            include_str!("../../models/policy-default/model.json"),
            include_str!("../../models/policy-default/weights.json"),
            Path::new("models/policy-default"),
        )
    }

    /// `rl` (the built-in policy) or `rl:DIR`.
    pub fn from_spec(spec: &str) -> Result<PolicyModel, PolicyError> {
        match spec.strip_prefix("rl:") {
            Some("") => Err(PolicyError::File {
                file: spec.into(),
                reason: "no folder after `rl:` (give rl for the built-in policy)".into(),
            }),
            Some(dir) => PolicyModel::load(Path::new(dir)),
            None => PolicyModel::builtin(),
        }
    }

    /// Write the folder (created if needed).
    pub fn save(&self, dir: &Path) -> Result<(), PolicyError> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, format!("cannot create: {e}")))?;
        let write = |f: &str, text: String| {
            let p = dir.join(f);
            std::fs::write(&p, text + "\n").map_err(|e| file_err(&p, format!("cannot write: {e}")))
        };
        let meta = serde_json::to_string_pretty(&self.meta).unwrap_or_default();
        write("model.json", meta)?;
        write(
            "weights.json",
            serde_json::to_string(&self.net).unwrap_or_default(),
        )
    }

    /// Is every feature of the observation inside the training range (with a margin of a tenth
    /// of the range, at least 0.05)?
    pub fn in_range(&self, obs: &Observation) -> bool {
        obs.rows.iter().all(|r| {
            r.iter().enumerate().all(|(i, &v)| {
                let (lo, hi) = (self.meta.input_lo[i], self.meta.input_hi[i]);
                let m = (0.1 * (hi - lo)).max(0.05);
                v >= lo - m && v <= hi + m
            })
        })
    }

    /// The greedy decision, and whether the rule decided (outside the training range): the
    /// rule joins the best-gain candidate.
    pub fn decide(&self, obs: &Observation) -> (Choice, bool) {
        if obs.rows.is_empty() {
            return (rule(obs), false);
        }
        if !self.in_range(obs) {
            return (rule(obs), true);
        }
        let s = self.net.scores(obs);
        let a = (0..s.len())
            .max_by(|&a, &b| s[a].total_cmp(&s[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        (choice_of(obs, a), false)
    }
}

/// The rule-based decision: the best-gain candidate (wait when there is none); for a
/// re-partition, ours' cost gate.
pub fn rule(obs: &Observation) -> Choice {
    match obs.kind {
        Kind::Repartition => choice_of(obs, obs.rule),
        Kind::Join if obs.candidates.is_empty() => Choice::Wait,
        Kind::Join => Choice::Join(0),
    }
}

/// The choice of action `a`.
pub fn choice_of(obs: &Observation, a: usize) -> Choice {
    match obs.kind {
        Kind::Repartition if a == 0 => Choice::Apply,
        Kind::Repartition => Choice::Defer,
        Kind::Join if obs.is_wait(a) || a >= obs.candidates.len() => Choice::Wait,
        Kind::Join => Choice::Join(a),
    }
}

/// Who decides in a policy's rounds: the greedy trained policy, or a trainer's sampler.
pub trait Decide: Send {
    /// Decide for the head job at `now`.
    fn decide(&mut self, obs: &Observation, now: f64) -> Choice;
    /// Decisions taken, and how many of them fell back to the rule.
    fn counts(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// The trained policy, greedy, with the rule outside its training range.
pub struct Greedy {
    pub model: std::sync::Arc<PolicyModel>,
    decisions: u64,
    fallbacks: u64,
}

impl Greedy {
    pub fn new(model: std::sync::Arc<PolicyModel>) -> Greedy {
        Greedy {
            model,
            decisions: 0,
            fallbacks: 0,
        }
    }
}

impl Decide for Greedy {
    fn decide(&mut self, obs: &Observation, _now: f64) -> Choice {
        let (c, fell_back) = self.model.decide(obs);
        self.decisions += 1;
        self.fallbacks += u64::from(fell_back);
        c
    }

    fn counts(&self) -> (u64, u64) {
        (self.decisions, self.fallbacks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(gpu: usize, jobs: usize, gain: f64) -> CandidateView {
        CandidateView {
            gpu,
            jobs,
            gain,
            ..CandidateView::default()
        }
    }

    fn q() -> QueueView {
        QueueView {
            waiting: 3,
            gpus: 8,
            running: 10,
            ..QueueView::default()
        }
    }

    fn model(lo: f32, hi: f32) -> PolicyModel {
        // Scores the wait flag high: a policy that always waits when it may.
        let mut w = vec![0.0; INPUTS];
        w[WAIT] = 5.0;
        PolicyModel {
            meta: PolicyMeta {
                format: FORMAT.into(),
                name: "t".into(),
                recipe: serde_json::Value::Null,
                data_fingerprint: String::new(),
                seed: 0,
                input_lo: vec![lo; INPUTS],
                input_hi: vec![hi; INPUTS],
                metrics: serde_json::Value::Null,
            },
            net: Net {
                layers: vec![Dense {
                    inputs: INPUTS,
                    outputs: 1,
                    w,
                    b: vec![0.0],
                }],
            },
        }
    }

    #[test]
    fn candidates_ranked_by_gain_at_most_top_k_and_wait_last() {
        let cs = (0..6).map(|g| cand(g, 2, 1.0 - g as f64 * 0.1)).collect();
        let o = Observation::new(&q(), cs);
        assert_eq!(o.candidates.len(), TOP_K);
        assert_eq!(o.candidates[0].gpu, 5, "least gain first");
        assert!(o.wait_allowed);
        assert_eq!(o.rows.len(), TOP_K + 1);
        assert!(o.is_wait(TOP_K) && !o.is_wait(0));
        assert_eq!(o.rows[TOP_K][WAIT], 1.0);
        assert_eq!(choice_of(&o, TOP_K), Choice::Wait);
    }

    #[test]
    fn waiting_is_masked_beside_an_empty_gpu_or_an_idle_cluster() {
        let o = Observation::new(&q(), vec![cand(0, 2, 1.0), cand(1, 0, 1.5)]);
        assert!(!o.wait_allowed);
        assert_eq!(o.rows.len(), 2);
        let idle = QueueView { running: 0, ..q() };
        let o = Observation::new(&idle, vec![cand(0, 2, 1.0)]);
        assert!(!o.wait_allowed);
    }

    #[test]
    fn outside_the_training_range_the_rule_decides() {
        let o = Observation::new(&q(), vec![cand(0, 2, 1.0), cand(1, 3, 1.2)]);
        let (c, fell_back) = model(-10.0, 10.0).decide(&o);
        assert_eq!((c, fell_back), (Choice::Wait, false), "the net waits");
        let (c, fell_back) = model(0.0, 0.01).decide(&o);
        assert_eq!(
            (c, fell_back),
            (Choice::Join(0), true),
            "the rule joins the best gain"
        );
    }

    #[test]
    fn bad_policy_files_name_the_field() {
        let m = model(0.0, 1.0);
        let meta = serde_json::to_string(&m.meta).unwrap();
        let weights = serde_json::to_string(&m.net).unwrap();
        let p = Path::new("pol");
        assert!(PolicyModel::from_json(&meta, &weights, p).is_ok());
        let e = PolicyModel::from_json(&meta.replace(FORMAT, "other/1"), &weights, p);
        assert!(e.unwrap_err().to_string().contains("format"));
        let e =
            PolicyModel::from_json(&meta, &weights.replace("\"outputs\":1", "\"outputs\":2"), p);
        assert!(e.unwrap_err().to_string().contains("layers[0]"));
        let e = PolicyModel::from_json("[1,2]", &weights, p);
        assert!(e.unwrap_err().to_string().contains("model.json"));
        let e = PolicyModel::from_json(&meta, "{\"layers\": 3}", p);
        assert!(e.unwrap_err().to_string().contains("weights.json"));
        let mut bad = m.meta.clone();
        bad.input_lo[3] = 2.0;
        let e = PolicyModel::from_json(&serde_json::to_string(&bad).unwrap(), &weights, p);
        assert!(e.unwrap_err().to_string().contains("input_lo[3]"));
        assert!(PolicyModel::from_spec("rl:")
            .unwrap_err()
            .to_string()
            .contains("rl:"));
    }
}
