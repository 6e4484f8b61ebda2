//! The actor (scores per action row, masked softmax over a decision's actions) and the critic
//! (value of a decision's state) on burn, and one PPO update: clipped surrogate, value loss,
//! entropy bonus, Adam. Also behaviour cloning of the rule (warm start). The trained actor is
//! exported to [`Net`] for the plain-Rust forward pass that decides.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, tanh};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::policy::rl::{Dense, Net, ACTIONS, INPUTS};

/// Two tanh hidden layers and one output per row.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    out: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, device: &Device) -> Mlp {
        Mlp {
            l1: LinearConfig::new(INPUTS, hidden).init(device),
            l2: LinearConfig::new(hidden, hidden).init(device),
            out: LinearConfig::new(hidden, 1).init(device),
        }
    }

    /// `[n, INPUTS]` → `[n, 1]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = tanh(self.l1.forward(x));
        let x = tanh(self.l2.forward(x));
        self.out.forward(x)
    }

    /// The weights as a plain network (same arithmetic as [`Mlp::forward`]).
    pub fn export(&self) -> Net {
        let dense = |l: &Linear| {
            let w = l.weight.val();
            let [inputs, outputs] = w.dims();
            Dense {
                inputs,
                outputs,
                w: w.into_data().try_to_vec::<f32>().unwrap_or_default(),
                b: l.bias
                    .as_ref()
                    .map(|b| b.val().into_data().try_to_vec::<f32>().unwrap_or_default())
                    .unwrap_or_else(|| vec![0.0; outputs]),
            }
        };
        Net {
            layers: vec![dense(&self.l1), dense(&self.l2), dense(&self.out)],
        }
    }
}

/// One decision, as trained on.
#[derive(Clone, Debug)]
pub struct Sample {
    /// `ACTIONS` rows (padded with zeros), with a mask of the real ones.
    pub rows: Vec<[f32; INPUTS]>,
    pub valid: usize,
    pub action: usize,
    /// The rule's action.
    pub rule: usize,
    pub old_logp: f32,
    pub advantage: f32,
    pub ret: f32,
}

/// PPO settings.
#[derive(Clone, Debug)]
pub struct PpoSettings {
    pub lr: f64,
    pub clip: f32,
    pub epochs: usize,
    pub batch: usize,
    pub entropy: f32,
    pub value_coef: f32,
}

/// Loss figures of an update (means over its minibatches).
#[derive(Clone, Debug, Default)]
pub struct UpdateStats {
    pub policy_loss: f32,
    pub value_loss: f32,
    pub entropy: f32,
}

fn tensors(batch: &[&Sample], device: &Device) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let n = batch.len();
    let mut x = Vec::with_capacity(n * ACTIONS * INPUTS);
    let mut mask = Vec::with_capacity(n * ACTIONS);
    let mut onehot = Vec::with_capacity(n * ACTIONS);
    for s in batch {
        for a in 0..ACTIONS {
            match s.rows.get(a).filter(|_| a < s.valid) {
                Some(r) => x.extend_from_slice(r),
                None => x.extend(std::iter::repeat_n(0f32, INPUTS)),
            }
            mask.push(if a < s.valid { 1f32 } else { 0.0 });
            onehot.push(if a == s.action { 1f32 } else { 0.0 });
        }
    }
    (
        Tensor::from_data(TensorData::new(x, [n * ACTIONS, INPUTS]), device),
        Tensor::from_data(TensorData::new(mask, [n, ACTIONS]), device),
        Tensor::from_data(TensorData::new(onehot, [n, ACTIONS]), device),
    )
}

fn col(v: Vec<f32>, device: &Device) -> Tensor<2> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n, 1]), device)
}

/// Masked log-probabilities `[n, ACTIONS]` of the actor on `x`.
fn log_probs(actor: &Mlp, x: Tensor<2>, mask: Tensor<2>, n: usize) -> Tensor<2> {
    let logits = actor.forward(x).reshape([n, ACTIONS]);
    let masked = logits + (mask - 1.0) * 1.0e4;
    log_softmax(masked, 1)
}

/// One PPO update of actor and critic on `samples` (several epochs of shuffled minibatches).
#[allow(clippy::too_many_arguments)]
pub fn update(
    mut actor: Mlp,
    mut critic: Mlp,
    opt_a: &mut ModuleOptimizer,
    opt_c: &mut ModuleOptimizer,
    samples: &[Sample],
    s: &PpoSettings,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> (Mlp, Mlp, UpdateStats) {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut stats = UpdateStats::default();
    let mut batches = 0f32;
    for _ in 0..s.epochs {
        order.shuffle(rng);
        for chunk in order.chunks(s.batch.max(1)) {
            let b: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
            let n = b.len();
            let (x, mask, onehot) = tensors(&b, device);
            let adv = col(b.iter().map(|s| s.advantage).collect(), device);
            let old = col(b.iter().map(|s| s.old_logp).collect(), device);
            let ret = col(b.iter().map(|s| s.ret).collect(), device);
            // Actor: clipped surrogate and entropy bonus.
            let lp = log_probs(&actor, x.clone(), mask.clone(), n);
            let logp = (lp.clone() * onehot).sum_dim(1);
            let ratio = (logp - old).exp();
            let surr = (ratio.clone() * adv.clone())
                .min_pair(ratio.clamp(1.0 - s.clip, 1.0 + s.clip) * adv);
            let entropy = -(softmax_of(&lp) * lp * mask).sum_dim(1).mean();
            let policy_loss = -surr.mean();
            let loss = policy_loss.clone() - entropy.clone() * s.entropy;
            stats.policy_loss += policy_loss.into_scalar::<f32>();
            stats.entropy += entropy.into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &actor);
            actor = opt_a.step(s.lr, actor, grads);
            // Critic: the state is the best candidate's row (global features included).
            let first: Vec<f32> = b.iter().flat_map(|s| s.rows[0]).collect();
            let v = critic.forward(Tensor::from_data(
                TensorData::new(first, [n, INPUTS]),
                device,
            ));
            let value_loss = (v - ret).powi_scalar(2).mean() * s.value_coef;
            stats.value_loss += value_loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(value_loss.backward(), &critic);
            critic = opt_c.step(s.lr, critic, grads);
            batches += 1.0;
        }
    }
    if batches > 0.0 {
        stats.policy_loss /= batches;
        stats.value_loss /= batches;
        stats.entropy /= batches;
    }
    (actor, critic, stats)
}

/// Probabilities from log-probabilities.
fn softmax_of(lp: &Tensor<2>) -> Tensor<2> {
    lp.clone().exp()
}

/// Behaviour cloning of the rule (the best-gain candidate; ours' cost gate for a
/// re-partition): cross-entropy on the masked softmax against the rule smoothed by `smooth`
/// (spread over the valid actions), so training starts near the rule and still explores.
#[allow(clippy::too_many_arguments)]
pub fn clone_rule(
    mut actor: Mlp,
    opt: &mut ModuleOptimizer,
    samples: &[Sample],
    epochs: usize,
    smooth: f32,
    s: &PpoSettings,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Mlp {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    for _ in 0..epochs {
        order.shuffle(rng);
        for chunk in order.chunks(s.batch.max(1)) {
            let b: Vec<Sample> = chunk
                .iter()
                .map(|&i| Sample {
                    action: samples[i].rule,
                    ..samples[i].clone()
                })
                .collect();
            let refs: Vec<&Sample> = b.iter().collect();
            let n = refs.len();
            let (x, mask, onehot) = tensors(&refs, device);
            let valid = col(refs.iter().map(|s| s.valid.max(1) as f32).collect(), device);
            let target = onehot * (1.0 - smooth) + mask.clone() * smooth / valid;
            let lp = log_probs(&actor, x, mask.clone(), n);
            let loss = -(lp * target * mask).sum_dim(1).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &actor);
            actor = opt.step(s.lr, actor, grads);
        }
    }
    actor
}

/// Fresh actor, critic and their Adam optimisers on the training device, seeded.
pub fn init(hidden: usize, seed: u64) -> (Mlp, Mlp, ModuleOptimizer, ModuleOptimizer, Device) {
    let device = crate::predictor::nets::device(true);
    device.seed(seed);
    let actor = Mlp::new(hidden, &device);
    let critic = Mlp::new(hidden, &device);
    (
        actor,
        critic,
        AdamConfig::new().init(),
        AdamConfig::new().init(),
        device,
    )
}

/// Softmax of masked scores (plain, for sampling and for the old log-probabilities).
pub fn masked_softmax(scores: &[f32]) -> Vec<f32> {
    let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.iter().map(|v| v / z.max(1e-30)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn exported_net_scores_as_burn_does() {
        let device = crate::predictor::nets::device(false);
        device.seed(7);
        let m = Mlp::new(8, &device);
        let net = m.export();
        assert!(net.validate().is_ok());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let rows: Vec<[f32; INPUTS]> = (0..5)
            .map(|_| std::array::from_fn(|_| rand::Rng::random_range(&mut rng, -1.0..1.0)))
            .collect();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let out = m.forward(Tensor::from_data(
            TensorData::new(flat, [5, INPUTS]),
            &device,
        ));
        let burn: Vec<f32> = out.into_data().try_to_vec::<f32>().unwrap_or_default();
        assert_eq!(burn.len(), 5);
        for (r, b) in rows.iter().zip(&burn) {
            assert!((net.score(r) - b).abs() < 1e-4, "{} vs {b}", net.score(r));
        }
    }
}
