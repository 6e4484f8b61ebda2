//! Training and evaluating the learned scheduling decision ([`crate::policy::rl`]) in the
//! simulator: episodes are traces (MISO-trace seeds at several loads, synthetic traces, time
//! windows of the Philly and openb traces), the reward is minus the number of jobs in the
//! system integrated over time (its sum is the total JCT), and the actor-critic is trained with
//! PPO on burn (`ppo.rs`), warm-started by cloning the rule. Held-out evaluation runs traces
//! training never saw against `miso`, `ours` and `oracle`.
//!
//! Depends on `sim` (and through it `policy`, `predictor`); nothing depends on it but the CLI.

mod curve;
mod eval;
mod ppo;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::gpu::GpuModel;
use crate::policy::rl::{
    self, Choice, Decide, Observation, PolicyMeta, PolicyModel, ACTIONS, INPUTS,
};
use crate::policy::Speeds;
use crate::predictor::{Dataset, Predictor};
use crate::sim::scenario::{self, Env};
use crate::sim::trace::{self, Format, LoadOptions, TraceJob};
use crate::sim::{run, EngineOptions};

pub use curve::{curve_csv, curve_svg};
pub use eval::{evaluate, probe, EvalRow, ProbeRow, PROBES};
pub use ppo::PpoSettings;

/// One trace a policy is trained or evaluated on.
#[derive(Clone, Debug)]
pub struct Episode {
    /// `miso`, `synthetic`, `philly`, `openb`.
    pub family: String,
    pub name: String,
    pub trace: Vec<TraceJob>,
    pub gpus: usize,
    /// The seed of the run (MPS measurements; the MISO trace's arrivals).
    pub seed: u64,
}

/// Where the shared traces are (a family without its file is left out, and said so).
#[derive(Clone, Debug, Default)]
pub struct TraceFiles {
    pub philly: Option<PathBuf>,
    pub openb: Option<PathBuf>,
}

/// Training, validation (model selection) and held-out episodes.
pub struct Sets {
    pub train: Vec<Episode>,
    pub validate: Vec<Episode>,
    pub heldout: Vec<Episode>,
    /// Families without their trace file.
    pub missing: Vec<String>,
}

/// The jobs of `jobs` arriving in `[from_s, to_s)`, shifted to start at 0.
pub fn window(jobs: &[TraceJob], from_s: f64, to_s: f64) -> Vec<TraceJob> {
    let mut w: Vec<TraceJob> = jobs
        .iter()
        .filter(|j| j.arrival_s >= from_s && j.arrival_s < to_s)
        .cloned()
        .collect();
    for j in w.iter_mut() {
        j.arrival_s -= from_s;
    }
    w
}

const DAY: f64 = 86_400.0;
/// Cluster sizes where the families contend (queueing is a large part of JCT under miso).
pub const MISO_GPUS: usize = 8;
pub const PHILLY_GPUS: usize = 24;
pub const OPENB_GPUS: usize = 12;

/// The episodes: training and held-out never share a MISO-trace seed, a Philly day or an openb
/// window, and the held-out loads include MISO-trace loads outside the training range.
pub fn episodes(files: &TraceFiles) -> Result<Sets, String> {
    let mut train = Vec::new();
    let mut validate = Vec::new();
    let mut heldout = Vec::new();
    let mut missing = Vec::new();
    let miso = |seed: u64, mean: f64, tag: &str| -> Episode {
        let o = LoadOptions {
            seed,
            mean_interarrival_s: mean,
            ..LoadOptions::default()
        };
        Episode {
            family: "miso".into(),
            name: format!("miso{tag} seed {seed}, {mean} s"),
            trace: trace::builtin_miso(&o),
            gpus: MISO_GPUS,
            seed,
        }
    };
    // MISO trace: training seeds 101–130 at 45–75 s; held out: seeds 1–10 (the README's) at the
    // paper's 60 s, and loads outside the training range (30 s, 100 s).
    for (i, seed) in (101..=130u64).enumerate() {
        let mean = [45.0, 60.0, 75.0][i % 3];
        train.push(miso(seed, mean, ""));
    }
    for seed in 131..=132u64 {
        validate.push(miso(seed, 60.0, ""));
    }
    for seed in 1..=10u64 {
        heldout.push(miso(seed, 60.0, ""));
    }
    for seed in 1..=5u64 {
        let mut e = miso(seed, 30.0, " (heavier)");
        e.family = "miso-load-30s".into();
        heldout.push(e);
        let mut e = miso(seed, 100.0, " (lighter)");
        e.family = "miso-load-100s".into();
        heldout.push(e);
    }
    // Synthetic: several loads and mixes (uniform over the catalog), training only.
    for (i, seed) in (201..=212u64).enumerate() {
        let mean = [60.0, 90.0, 120.0][i % 3];
        train.push(Episode {
            family: "synthetic".into(),
            name: format!("synthetic seed {seed}, {mean} s"),
            trace: trace::synthetic(150, mean, 300.0, 7200.0, seed),
            gpus: MISO_GPUS,
            seed,
        });
    }
    // Philly week: days 0–3 train (day 3 validates), days 4–6 held out.
    match &files.philly {
        Some(p) if p.exists() => {
            let all = load(p, &Format::philly(), 1)?;
            for day in 0..7u64 {
                let w = window(&all, day as f64 * DAY, (day + 1) as f64 * DAY);
                if w.is_empty() {
                    continue;
                }
                let e = Episode {
                    family: "philly".into(),
                    name: format!("philly day {day}"),
                    trace: w,
                    gpus: PHILLY_GPUS,
                    seed: 1,
                };
                match day {
                    0..=2 => train.push(e),
                    3 => validate.push(e),
                    _ => heldout.push(e),
                }
            }
        }
        _ => missing.push("philly".into()),
    }
    // openb: 40 days in 8-day windows; the first three train, the last two are held out.
    match &files.openb {
        Some(p) if p.exists() => {
            let all = load(p, &Format::openb(), 1)?;
            for k in 0..5u64 {
                let w = window(&all, k as f64 * 8.0 * DAY, (k + 1) as f64 * 8.0 * DAY);
                if w.is_empty() {
                    continue;
                }
                let e = Episode {
                    family: "openb".into(),
                    name: format!("openb days {}-{}", k * 8, (k + 1) * 8),
                    trace: w,
                    gpus: OPENB_GPUS,
                    seed: 1,
                };
                if k < 3 {
                    train.push(e);
                } else {
                    heldout.push(e);
                }
            }
        }
        _ => missing.push("openb".into()),
    }
    Ok(Sets {
        train,
        validate,
        heldout,
        missing,
    })
}

fn load(p: &Path, f: &Format, seed: u64) -> Result<Vec<TraceJob>, String> {
    let o = LoadOptions {
        seed,
        ..LoadOptions::default()
    };
    trace::load(p, f, &o)
        .map(|t| t.jobs)
        .map_err(|e| e.to_string())
}

/// Training settings (the recipe stored in `model.json`).
#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    pub iterations: usize,
    /// Episodes per iteration.
    pub episodes: usize,
    pub hidden: usize,
    pub lr: f64,
    pub clip: f64,
    pub epochs: usize,
    pub batch: usize,
    pub gamma: f64,
    pub lambda: f64,
    pub entropy: f64,
    /// Epochs of cloning the rule before PPO (0: start from random weights).
    pub clone_epochs: usize,
    /// Share of the cloned target spread over every valid action (exploration at the start).
    pub clone_smoothing: f64,
    pub seed: u64,
    /// Worker threads for episodes (results do not depend on it).
    pub threads: usize,
    /// Advantages: `false` GAE over the critic; `true` the episode's JCT against the rule's on
    /// the same trace (a paired baseline), for every step of the episode.
    pub paired: bool,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            iterations: 40,
            episodes: 16,
            hidden: 32,
            lr: 3e-5,
            clip: 0.2,
            epochs: 2,
            batch: 256,
            gamma: 0.99,
            lambda: 0.95,
            entropy: 0.0,
            clone_epochs: 20,
            clone_smoothing: 0.1,
            seed: 1,
            threads: 2,
            paired: false,
        }
    }
}

/// One decision a sampler took, with the time it was taken.
#[derive(Clone, Debug)]
struct Step {
    rows: Vec<[f32; INPUTS]>,
    action: usize,
    /// The rule's action (what cloning imitates).
    rule: usize,
    logp: f32,
    at_s: f64,
}

/// The trainer's decider: samples from the actor's softmax, records every step.
struct Sampler {
    net: Arc<rl::Net>,
    rng: ChaCha8Rng,
    steps: Arc<Mutex<Vec<Step>>>,
    /// Greedy instead of sampling (evaluation), recording nothing.
    greedy: bool,
}

impl Decide for Sampler {
    fn decide(&mut self, obs: &Observation, now: f64) -> Choice {
        if obs.rows.is_empty() {
            return Choice::Wait;
        }
        let p = ppo::masked_softmax(&self.net.scores(obs));
        let a = if self.greedy {
            (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        } else {
            let u: f32 = self.rng.random();
            let mut acc = 0.0;
            let mut pick = p.len() - 1;
            for (i, v) in p.iter().enumerate() {
                acc += v;
                if u < acc {
                    pick = i;
                    break;
                }
            }
            pick
        };
        if !self.greedy {
            if let Ok(mut s) = self.steps.lock() {
                s.push(Step {
                    rows: obs.rows.clone(),
                    action: a,
                    rule: obs.rule,
                    logp: p[a].max(1e-30).ln(),
                    at_s: now,
                });
            }
        }
        rl::choice_of(obs, a)
    }
}

/// What one episode produced.
struct Rollout {
    steps: Vec<Step>,
    /// Arrival and completion of every job.
    jobs: Vec<(f64, f64)>,
    avg_jct_s: f64,
}

/// What one run of a trace under Ours (with a decider or the rule) gave.
struct Run {
    /// Arrival and completion of every job.
    jobs: Vec<(f64, f64)>,
    avg_jct_s: f64,
    /// The decider's decisions and how many of them the rule took (outside its range).
    decisions: (u64, u64),
}

/// Per worker: its predictor (loaded once, reused by its runs).
struct Worker<'a> {
    data: &'a Dataset,
    predictor: Option<Box<Predictor>>,
    loader: &'a (dyn Fn() -> Result<Predictor, String> + Sync),
}

impl<'a> Worker<'a> {
    fn new(data: &'a Dataset, loader: &'a (dyn Fn() -> Result<Predictor, String> + Sync)) -> Self {
        Worker {
            data,
            predictor: None,
            loader,
        }
    }

    /// Run `e` under Ours with `decider` (None: the rule), as a fresh run (its own MPS source
    /// and predictions: the result does not depend on what the worker ran before).
    fn run(
        &mut self,
        model: &'static GpuModel,
        e: &Episode,
        decider: Option<Box<dyn Decide>>,
    ) -> Result<Run, String> {
        let predictor = match self.predictor.take() {
            Some(p) => p,
            None => Box::new((self.loader)()?),
        };
        let no_loader = || -> Result<Predictor, String> { Err("unused".into()) };
        let env = Env {
            seed: e.seed,
            ..Env::artifact(model, e.gpus, self.data, &no_loader)
        };
        let mut m = scenario::miso(&env, "rl", Speeds::Predicted { predictor }, true);
        m.decider = decider;
        let eng = EngineOptions {
            tick_s: env.fidelity.tick_s,
        };
        let out = run(&mut m, &e.trace, model, e.gpus, &eng, &mut |_| {})
            .map_err(|err| format!("{}: {err}", e.name));
        let decisions = m.decisions();
        if let Speeds::Predicted { predictor } = m.speeds {
            self.predictor = Some(predictor);
        }
        let out = out?;
        Ok(Run {
            jobs: e
                .trace
                .iter()
                .zip(&out.jct_s)
                .map(|(t, jct)| (t.arrival_s, t.arrival_s + jct))
                .collect(),
            avg_jct_s: out.metrics.avg_jct_s,
            decisions,
        })
    }

    /// Workers for `threads` threads over the same data and predictor.
    fn pool(
        threads: usize,
        data: &'a Dataset,
        loader: &'a (dyn Fn() -> Result<Predictor, String> + Sync),
    ) -> Vec<Worker<'a>> {
        (0..threads.max(1))
            .map(|_| Worker::new(data, loader))
            .collect()
    }
}

/// ∫ jobs-in-system dt from 0 to `t`.
fn in_system_integral(jobs: &[(f64, f64)], t: f64) -> f64 {
    jobs.iter().map(|&(a, f)| (f.min(t) - a).max(0.0)).sum()
}

/// Rewards of a rollout's steps: minus the jobs-in-system integral until the next decision (the
/// last one until the end), scaled so the mean step reward is −(1 − γ): returns near −1,
/// comparable across traces of any length and load.
fn rewards(r: &Rollout, gamma: f32) -> Vec<f32> {
    let end = r.jobs.iter().map(|j| j.1).fold(0.0, f64::max);
    let times: Vec<f64> = r.steps.iter().map(|s| s.at_s).collect();
    let c: Vec<f64> = times
        .iter()
        .chain(std::iter::once(&end))
        .map(|&t| in_system_integral(&r.jobs, t))
        .collect();
    let raw: Vec<f64> = (0..times.len()).map(|i| -(c[i + 1] - c[i])).collect();
    let scale = (raw.iter().map(|v| v.abs()).sum::<f64>() / raw.len().max(1) as f64).max(1e-9);
    raw.iter()
        .map(|v| (v / scale) as f32 * (1.0 - gamma).max(1e-3))
        .collect()
}

/// One point of the learning curve.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CurvePoint {
    pub iteration: usize,
    /// Mean training-episode reward (−∫ jobs in system dt = −total JCT) in units of the rule's
    /// (ours') on the same trace: −1 = as ours, above = better.
    pub reward: f64,
    /// Mean training-episode average JCT, seconds.
    pub train_jct_s: f64,
    /// Validation average JCT of the greedy policy relative to `ours` (%; negative = better).
    pub validation_vs_ours_pct: f64,
    pub policy_loss: f32,
    pub value_loss: f32,
    pub entropy: f32,
}

/// What training returns.
pub struct Trained {
    pub model: PolicyModel,
    pub curve: Vec<CurvePoint>,
    /// The iteration whose policy was kept (best validation).
    pub best_iteration: usize,
}

/// FNV-1a over the training episodes' jobs.
fn fingerprint(eps: &[Episode]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= *x as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for e in eps {
        eat(e.name.as_bytes());
        eat(&(e.gpus as u64).to_le_bytes());
        for j in &e.trace {
            eat(&j.arrival_s.to_le_bytes());
            eat(&j.work_s.to_le_bytes());
            eat(&(j.workload as u64).to_le_bytes());
            eat(&j.gpus.to_le_bytes());
        }
    }
    format!("fnv1a64:{h:016x}")
}

/// Run `f` on every item of `items`, one thread per worker; results in item order.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    workers: &mut [Worker<'_>],
    f: &(dyn Fn(&mut Worker<'_>, usize, &T) -> Result<R, String> + Sync),
) -> Result<Vec<R>, String> {
    let threads = workers.len().max(1);
    let mut out: Vec<Option<Result<R, String>>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (w, worker) in workers.iter_mut().enumerate() {
            let idx: Vec<usize> = (w..items.len()).step_by(threads).collect();
            handles.push(s.spawn(move || {
                idx.into_iter()
                    .map(|i| (i, f(worker, i, &items[i])))
                    .collect::<Vec<_>>()
            }));
        }
        for h in handles {
            if let Ok(v) = h.join() {
                for (i, r) in v {
                    out[i] = Some(r);
                }
            }
        }
    });
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("a worker thread panicked".into())))
        .collect()
}

/// Train a policy. `progress(iteration, point)` is called after each iteration.
pub fn train(
    cfg: &TrainConfig,
    sets: &Sets,
    model: &'static GpuModel,
    data: &Dataset,
    loader: &(dyn Fn() -> Result<Predictor, String> + Sync),
    name: &str,
    progress: &mut dyn FnMut(&CurvePoint),
) -> Result<Trained, String> {
    if sets.train.is_empty() {
        return Err("no training episodes".into());
    }
    let mut workers = Worker::pool(cfg.threads, data, loader);
    // Validation baseline: ours (the rule), once.
    let ours_val: Vec<f64> = par_map(&sets.validate, &mut workers, &|w, _, e| {
        w.run(model, e, None).map(|r| r.avg_jct_s)
    })?;
    let (mut actor, mut critic, mut opt_a, mut opt_c, device) = ppo::init(cfg.hidden, cfg.seed);
    let settings = PpoSettings {
        lr: cfg.lr,
        clip: cfg.clip as f32,
        epochs: cfg.epochs,
        batch: cfg.batch,
        entropy: cfg.entropy as f32,
        value_coef: 0.5,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut lo = [f32::INFINITY; INPUTS];
    let mut hi = [f32::NEG_INFINITY; INPUTS];
    let mut curve = Vec::new();
    let mut ours_train: Vec<Option<f64>> = vec![None; sets.train.len()];
    let mut best: Option<(f64, usize, rl::Net)> = None;
    for it in 0..=cfg.iterations {
        let net = Arc::new(actor.export());
        let critic_net = critic.export();
        // Iteration 0 only measures the starting policy (after cloning the rule).
        let picks: Vec<usize> = (0..cfg.episodes)
            .map(|_| rng.random_range(0..sets.train.len()))
            .collect();
        let seeds: Vec<u64> = picks.iter().map(|_| rng.random()).collect();
        // The rule's total JCT on each picked training trace (once per trace): the reward's unit.
        let mut todo: Vec<usize> = picks
            .iter()
            .copied()
            .filter(|&i| ours_train[i].is_none())
            .collect();
        todo.sort_unstable();
        todo.dedup();
        let got: Vec<f64> = par_map(&todo, &mut workers, &|w, _, &i| {
            w.run(model, &sets.train[i], None).map(|r| r.avg_jct_s)
        })?;
        for (&i, v) in todo.iter().zip(got) {
            ours_train[i] = Some(v);
        }
        let jobs: Vec<(&Episode, u64)> = picks.iter().map(|&i| &sets.train[i]).zip(seeds).collect();
        let rollouts: Vec<Rollout> = par_map(&jobs, &mut workers, &|w, _, (e, s)| {
            let steps = Arc::new(Mutex::new(Vec::new()));
            let d = Sampler {
                net: net.clone(),
                rng: ChaCha8Rng::seed_from_u64(*s),
                steps: steps.clone(),
                greedy: false,
            };
            let r = w.run(model, e, Some(Box::new(d)))?;
            let steps = steps
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default();
            Ok(Rollout {
                steps,
                jobs: r.jobs,
                avg_jct_s: r.avg_jct_s,
            })
        })?;
        // Samples with GAE advantages from the critic.
        let mut samples = Vec::new();
        for (r, &pick) in rollouts.iter().zip(&picks) {
            let rw = rewards(r, cfg.gamma as f32);
            let values: Vec<f32> = r
                .steps
                .iter()
                .map(|s| critic_net.score(&s.rows[0]))
                .collect();
            let n = r.steps.len();
            let mut adv = vec![0f32; n];
            let mut gae = 0f32;
            for i in (0..n).rev() {
                let next = if i + 1 < n { values[i + 1] } else { 0.0 };
                let (gamma, lambda) = (cfg.gamma as f32, cfg.lambda as f32);
                let delta = rw[i] + gamma * next - values[i];
                gae = delta + gamma * lambda * gae;
                adv[i] = gae;
            }
            if cfg.paired {
                let ours = ours_train[pick].unwrap_or(r.avg_jct_s).max(1e-9);
                adv.fill((1.0 - r.avg_jct_s / ours) as f32);
            }
            for (i, s) in r.steps.iter().enumerate() {
                for row in &s.rows {
                    for k in 0..INPUTS {
                        lo[k] = lo[k].min(row[k]);
                        hi[k] = hi[k].max(row[k]);
                    }
                }
                let mut rows = s.rows.clone();
                let valid = rows.len().min(ACTIONS);
                rows.resize(ACTIONS, [0.0; INPUTS]);
                samples.push(ppo::Sample {
                    rows,
                    valid,
                    action: s.action.min(valid.saturating_sub(1)),
                    rule: s.rule.min(valid.saturating_sub(1)),
                    old_logp: s.logp,
                    advantage: adv[i],
                    ret: adv[i] + values[i],
                });
            }
        }
        // Normalised advantages.
        let n = samples.len().max(1) as f32;
        let mean = samples.iter().map(|s| s.advantage).sum::<f32>() / n;
        let sd = (samples
            .iter()
            .map(|s| (s.advantage - mean).powi(2))
            .sum::<f32>()
            / n)
            .sqrt()
            .max(1e-6);
        for s in samples.iter_mut() {
            s.advantage = (s.advantage - mean) / sd;
        }
        // Validation of the policy these rollouts came from (greedy).
        let val: Vec<f64> = par_map(&sets.validate, &mut workers, &|w, _, e| {
            let d = Sampler {
                net: net.clone(),
                rng: ChaCha8Rng::seed_from_u64(0),
                steps: Arc::new(Mutex::new(Vec::new())),
                greedy: true,
            };
            w.run(model, e, Some(Box::new(d))).map(|r| r.avg_jct_s)
        })?;
        let vs = if val.is_empty() {
            0.0
        } else {
            val.iter()
                .zip(&ours_val)
                .map(|(v, o)| 100.0 * (v / o - 1.0))
                .sum::<f64>()
                / val.len() as f64
        };
        if it > 0 && best.as_ref().is_none_or(|(b, _, _)| vs < *b) {
            best = Some((vs, it, (*net).clone()));
        }
        let mut stats = ppo::UpdateStats::default();
        if it == 0 && cfg.clone_epochs > 0 {
            // Cloning: a larger step and small batches, so the start is the rule.
            let bc = PpoSettings {
                lr: cfg.lr * 30.0,
                batch: 32,
                ..settings.clone()
            };
            actor = ppo::clone_rule(
                actor,
                &mut opt_a,
                &samples,
                cfg.clone_epochs,
                cfg.clone_smoothing as f32,
                &bc,
                &mut rng,
                &device,
            );
        } else if it < cfg.iterations {
            let (a, c, st) = ppo::update(
                actor, critic, &mut opt_a, &mut opt_c, &samples, &settings, &mut rng, &device,
            );
            actor = a;
            critic = c;
            stats = st;
        }
        let point = CurvePoint {
            iteration: it,
            reward: rollouts
                .iter()
                .zip(&picks)
                .map(|(r, &i)| -r.avg_jct_s / ours_train[i].unwrap_or(r.avg_jct_s).max(1e-9))
                .sum::<f64>()
                / rollouts.len().max(1) as f64,
            train_jct_s: rollouts.iter().map(|r| r.avg_jct_s).sum::<f64>()
                / rollouts.len().max(1) as f64,
            validation_vs_ours_pct: vs,
            policy_loss: stats.policy_loss,
            value_loss: stats.value_loss,
            entropy: stats.entropy,
        };
        progress(&point);
        curve.push(point);
    }
    let (_, best_iteration, net) = best.ok_or("no iteration was validated")?;
    let meta = PolicyMeta {
        format: rl::FORMAT.into(),
        name: name.into(),
        recipe: serde_json::to_value(cfg).unwrap_or_default(),
        data_fingerprint: fingerprint(&sets.train),
        seed: cfg.seed,
        input_lo: lo
            .iter()
            .map(|v| if v.is_finite() { *v } else { 0.0 })
            .collect(),
        input_hi: hi
            .iter()
            .map(|v| if v.is_finite() { *v } else { 0.0 })
            .collect(),
        metrics: serde_json::json!({
            "best_iteration": best_iteration,
            "validation_vs_ours_pct": curve.get(best_iteration).map(|p| p.validation_vs_ours_pct),
            "training_episodes": sets.train.len(),
            "curve": curve,
        }),
    };
    Ok(Trained {
        model: PolicyModel { meta, net },
        curve,
        best_iteration,
    })
}

#[cfg(test)]
mod tests;
