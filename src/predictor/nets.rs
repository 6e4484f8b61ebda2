//! The networks, written once on burn: the per-job MLP (a classifier over the training
//! workloads, decoded to the latency that minimises the expected absolute error) and the MISO
//! U-Net over the whole MPS matrix (regression on all five profile kinds, masked L1 loss).
//! Trained on the pure-Rust `flex` CPU backend (or libtorch with the `tch` feature).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::perf::{KINDS, SLOTS};

use super::PredictorError;

/// The device networks train and run on: the pure-Rust CPU backend, or with the `tch` feature
/// libtorch (CUDA device 0 when `MISO_TORCH_DEVICE=cuda`, else CPU).
pub fn device(train: bool) -> Device {
    #[cfg(feature = "tch")]
    #[allow(deprecated)] // burn marks its libtorch backend deprecated; it is the GPU path here
    let d = match std::env::var("MISO_TORCH_DEVICE").as_deref() {
        Ok("cuda") => Device::libtorch_cuda(0),
        _ => Device::libtorch(),
    };
    #[cfg(not(feature = "tch"))]
    let d = Device::flex();
    if train {
        d.autodiff()
    } else {
        d
    }
}

/// Per-job MLP: standardised features → hidden layers → one logit per training workload.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    out: Linear,
    act: Relu,
}

impl Mlp {
    pub fn new(inputs: usize, hidden: &[usize], classes: usize, device: &Device) -> Mlp {
        let mut layers = Vec::new();
        let mut w = inputs;
        for &h in hidden {
            layers.push(LinearConfig::new(w, h).init(device));
            w = h;
        }
        Mlp {
            layers,
            out: LinearConfig::new(w, classes).init(device),
            act: Relu::new(),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for l in &self.layers {
            x = self.act.forward(l.forward(x));
        }
        self.out.forward(x)
    }
}

/// MISO's U-Net over the MPS matrix: input `[B, 2, 3, 7]` (the matrix and a real-job mask),
/// an encoder of three 3×3 convolution blocks (32, 64, 128 channels), a decoder that
/// concatenates the encoder's skip connections (64, 32), and a head that folds the three MPS
/// rows into one normalised latency per profile kind and slot: `[B, 5, 7]`. The 3×7 input is
/// too small to pool, so the levels keep its size.
#[derive(Module, Debug)]
pub struct Unet {
    enc1: Conv2d,
    enc2: Conv2d,
    mid: Conv2d,
    dec2: Conv2d,
    dec1: Conv2d,
    head: Conv2d,
    act: Relu,
}

fn conv(cin: usize, cout: usize, k: [usize; 2], pad: bool, device: &Device) -> Conv2d {
    let p = if pad {
        PaddingConfig2d::Same
    } else {
        PaddingConfig2d::Valid
    };
    Conv2dConfig::new([cin, cout], k)
        .with_padding(p)
        .init(device)
}

impl Unet {
    pub fn new(device: &Device) -> Unet {
        Unet {
            enc1: conv(2, 32, [3, 3], true, device),
            enc2: conv(32, 64, [3, 3], true, device),
            mid: conv(64, 128, [3, 3], true, device),
            dec2: conv(128 + 64, 64, [3, 3], true, device),
            dec1: conv(64 + 32, 32, [3, 3], true, device),
            head: conv(32, KINDS, [3, 1], false, device),
            act: Relu::new(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        let e1 = self.act.forward(self.enc1.forward(x));
        let e2 = self.act.forward(self.enc2.forward(e1.clone()));
        let m = self.act.forward(self.mid.forward(e2.clone()));
        let d2 = self
            .act
            .forward(self.dec2.forward(Tensor::cat(vec![m, e2], 1)));
        let d1 = self
            .act
            .forward(self.dec1.forward(Tensor::cat(vec![d2, e1], 1)));
        let out = self.head.forward(d1); // [B, 5, 1, 7]
        let [b, _, _, _] = out.dims();
        out.reshape([b, KINDS, SLOTS])
    }
}

/// Settings of one network training run.
#[derive(Clone, Debug)]
pub struct NetTrain {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl NetTrain {
    /// The learning rate of `epoch`: stepped down to a fifth over the last third of training.
    fn lr_at(&self, epoch: usize) -> f64 {
        if epoch * 3 >= self.epochs * 2 {
            self.lr * 0.2
        } else {
            self.lr
        }
    }
}

fn tensor2(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Train the MLP classifier on `x` (rows of `d` standardised features) with labels `y`.
pub fn train_mlp(
    x: &[f32],
    d: usize,
    y: &[i64],
    classes: usize,
    hidden: &[usize],
    cfg: &NetTrain,
    bar: &ProgressBar,
) -> Mlp {
    let device = device(true);
    device.seed(cfg.seed);
    let mut model = Mlp::new(d, hidden, classes, &device);
    let mut opt = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let n = y.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let lr = cfg.lr_at(epoch);
        let mut total = 0.0f32;
        for chunk in order.chunks(cfg.batch) {
            let mut bx = Vec::with_capacity(chunk.len() * d);
            let mut by = Vec::with_capacity(chunk.len());
            for &i in chunk {
                bx.extend_from_slice(&x[i * d..(i + 1) * d]);
                by.push(y[i]);
            }
            let bx = tensor2(bx, [chunk.len(), d], &device);
            let by = Tensor::<1, Int>::from_data(TensorData::new(by, [chunk.len()]), &device);
            let loss = loss_fn.forward(model.forward(bx), by);
            total += loss.clone().into_scalar::<f32>() * chunk.len() as f32;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(lr, model, grads);
        }
        bar.set_message(format!("loss {:.4}", total / n as f32));
        bar.inc(1);
    }
    model.valid()
}

/// Class probabilities for rows of `d` standardised features.
pub fn mlp_probs(model: &Mlp, x: &[f32], d: usize) -> Vec<Vec<f32>> {
    let n = x.len() / d;
    if n == 0 {
        return Vec::new();
    }
    let device = device(false);
    let logits = model.forward(tensor2(x.to_vec(), [n, d], &device));
    let p = burn::tensor::activation::softmax(logits, 1);
    let c = p.dims()[1];
    let flat: Vec<f32> = p.into_data().try_to_vec::<f32>().unwrap_or_default();
    flat.chunks(c).map(|r| r.to_vec()).collect()
}

/// Train the U-Net on matrices `x` (`[N, 2, 3, 7]` flattened) against targets `t` and masks
/// `m` (`[N, 5, 7]` flattened; mask 1 where a target exists).
pub fn train_unet(x: &[f32], t: &[f32], m: &[f32], cfg: &NetTrain, bar: &ProgressBar) -> Unet {
    let device = device(true);
    device.seed(cfg.seed);
    let mut model = Unet::new(&device);
    let mut opt = AdamConfig::new().init();
    let xin = 2 * 3 * SLOTS;
    let tout = KINDS * SLOTS;
    let n = x.len() / xin;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let lr = cfg.lr_at(epoch);
        let mut total = 0.0f32;
        for chunk in order.chunks(cfg.batch) {
            let b = chunk.len();
            let (mut bx, mut bt, mut bm) = (
                Vec::with_capacity(b * xin),
                Vec::with_capacity(b * tout),
                Vec::with_capacity(b * tout),
            );
            for &i in chunk {
                bx.extend_from_slice(&x[i * xin..(i + 1) * xin]);
                bt.extend_from_slice(&t[i * tout..(i + 1) * tout]);
                bm.extend_from_slice(&m[i * tout..(i + 1) * tout]);
            }
            let bx = Tensor::<4>::from_data(TensorData::new(bx, [b, 2, 3, SLOTS]), &device);
            let bt = Tensor::<3>::from_data(TensorData::new(bt, [b, KINDS, SLOTS]), &device);
            let bm = Tensor::<3>::from_data(TensorData::new(bm, [b, KINDS, SLOTS]), &device);
            let count = bm.clone().sum();
            let loss = ((model.forward(bx) - bt).abs() * bm).sum() / count;
            total += loss.clone().into_scalar::<f32>() * b as f32;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(lr, model, grads);
        }
        bar.set_message(format!("L1 {:.4}", total / n as f32));
        bar.inc(1);
    }
    model.valid()
}

/// U-Net predictions `[N][kind][slot]` for matrices `x` (`[N, 2, 3, 7]` flattened).
pub fn unet_predict(model: &Unet, x: &[f32]) -> Vec<f32> {
    let n = x.len() / (2 * 3 * SLOTS);
    if n == 0 {
        return Vec::new();
    }
    let device = device(false);
    let out = model.forward(Tensor::<4>::from_data(
        TensorData::new(x.to_vec(), [n, 2, 3, SLOTS]),
        &device,
    ));
    out.into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// Save a module's weights as safetensors.
pub fn save<M: Module + ModuleSnapshot>(
    model: &M,
    path: &std::path::Path,
) -> Result<(), PredictorError> {
    let mut store = SafetensorsStore::from_file(path.to_path_buf());
    model
        .save_into(&mut store)
        .map_err(|e| PredictorError::Model(format!("cannot write {}: {e}", path.display())))
}

/// Load weights saved by [`save`] (the file's bytes; `label` names it in errors) into a freshly
/// built module of the same shape.
pub fn load<M: Module + ModuleSnapshot>(
    mut model: M,
    bytes: Vec<u8>,
    label: &str,
) -> Result<M, PredictorError> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    model
        .load_from(&mut store)
        .map_err(|e| PredictorError::Model(format!("cannot load {label}: {e}")))?;
    Ok(model)
}
