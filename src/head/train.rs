//! [`TrainableHead`]: weights, standardisation and training with candle.

use std::time::Instant;

use candle_core::{D, Device, Tensor, Var};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{HeadConfig, HeadError, HeadSpec, Targets};

/// Smallest standard deviation used to standardise an embedding dimension (a constant
/// dimension would otherwise divide by zero).
const MIN_STD: f32 = 1e-6;

/// Weights and biases of the loss-prediction branch: `[loss_hidden, hidden]`,
/// `[loss_hidden]`, `[1, loss_hidden]`, `[1]`.
pub(crate) type LossBranch = (Array2<f32>, Array1<f32>, Array2<f32>, Array1<f32>);

/// The weights of the head as plain arrays (PyTorch layout: `[out, in]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Weights {
    pub(crate) w1: Array2<f32>,
    pub(crate) b1: Array1<f32>,
    pub(crate) w2: Array2<f32>,
    pub(crate) b2: Array1<f32>,
    /// Loss-prediction branch, if the head has one.
    pub(crate) loss: Option<LossBranch>,
}

/// What one call of [`TrainableHead::fit`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    /// Samples trained on.
    pub samples: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Whether training continued from the previous weights (warm start).
    pub warm_start: bool,
    /// Mean classification loss over the last epoch's worth of steps.
    pub final_loss: f32,
    /// Mean ranking loss of the loss-prediction branch over the same steps, if it has one.
    pub final_ranking_loss: Option<f32>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// An MLP classifier head trained on embeddings: `Linear(D → H) → ReLU → dropout →
/// Linear(H → C)`, softmax (single-label) or sigmoid (multi-label), with an optional
/// loss-prediction branch `Linear(H → L) → ReLU → Linear(L → 1)` on the hidden features
/// (LL, Möllenbrok et al. 2023 Sec. II-A-1; the paper's global average pooling is the
/// identity on a vector).
///
/// Inputs are standardised per dimension with the mean and standard deviation of a
/// *reference* set given at construction, normally every tile's embedding (labels are
/// not needed for that, so it is fixed for the whole active-learning run).
#[derive(Debug, Clone)]
pub struct TrainableHead {
    pub(crate) spec: HeadSpec,
    pub(crate) config: HeadConfig,
    pub(crate) mean: Array1<f32>,
    pub(crate) inv_std: Array1<f32>,
    pub(crate) weights: Weights,
    pub(crate) fits: u64,
}

impl TrainableHead {
    /// A freshly initialised head whose standardisation comes from `reference`
    /// (`[N, input_dim]`, e.g. all embeddings of the pool).
    ///
    /// # Errors
    ///
    /// [`HeadError::InvalidConfig`] for a bad `config` or a spec with fewer than two
    /// classes (one for multi-label), [`HeadError::DimensionMismatch`] and
    /// [`HeadError::NonFinite`] for a bad `reference`.
    pub fn new(
        spec: HeadSpec,
        config: HeadConfig,
        reference: ArrayView2<'_, f32>,
    ) -> Result<Self, HeadError> {
        config.validate()?;
        let min_classes = if spec.multi_label { 1 } else { 2 };
        if spec.classes.len() < min_classes || spec.input_dim == 0 {
            return Err(HeadError::InvalidConfig(format!(
                "a {} head needs at least {min_classes} classes and a non-empty input, got {} classes and {} dimensions",
                if spec.multi_label {
                    "multi-label"
                } else {
                    "single-label"
                },
                spec.classes.len(),
                spec.input_dim
            )));
        }
        check_rows(&spec, reference)?;
        let (mean, inv_std) = if reference.nrows() == 0 {
            (Array1::zeros(spec.input_dim), Array1::ones(spec.input_dim))
        } else {
            let mean = reference
                .mean_axis(Axis(0))
                .unwrap_or_else(|| Array1::zeros(spec.input_dim));
            let std = reference.std_axis(Axis(0), 0.0);
            (mean, std.mapv(|s| 1.0 / s.max(MIN_STD)))
        };
        let weights = init_weights(&spec, &config, config.seed);
        Ok(Self {
            spec,
            config,
            mean,
            inv_std,
            weights,
            fits: 0,
        })
    }

    /// The head's shape.
    pub fn spec(&self) -> &HeadSpec {
        &self.spec
    }

    /// The head's hyper-parameters.
    pub fn config(&self) -> &HeadConfig {
        &self.config
    }

    /// How many times [`fit`](Self::fit) has run (the active-learning round).
    pub fn fits(&self) -> u64 {
        self.fits
    }

    /// Standardises `x` with the reference statistics.
    pub(crate) fn standardise(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        (&x - &self.mean) * &self.inv_std
    }

    /// Trains on `(x, targets)`. With `warm_start` training continues from the current
    /// weights; without, the weights are re-initialised first (cold start; the seed of
    /// round `r` is derived from [`HeadConfig::seed`] and `r`, so every round differs
    /// but the whole run is reproducible). Seed 004 (Sec. III-B) found warm start better
    /// on a small archive and cold start better on a large one.
    ///
    /// # Errors
    ///
    /// [`HeadError::NoSamples`], [`HeadError::DimensionMismatch`],
    /// [`HeadError::NonFinite`], [`HeadError::InvalidLabels`] (count or classes), and
    /// [`HeadError::Candle`] if candle fails.
    pub fn fit(
        &mut self,
        x: ArrayView2<'_, f32>,
        targets: Targets<'_>,
        warm_start: bool,
    ) -> Result<TrainReport, HeadError> {
        let started = Instant::now();
        if x.nrows() == 0 {
            return Err(HeadError::NoSamples);
        }
        check_rows(&self.spec, x)?;
        if targets.len() != x.nrows() {
            return Err(HeadError::InvalidLabels(format!(
                "{} labels for {} embeddings",
                targets.len(),
                x.nrows()
            )));
        }
        targets.check(&self.spec)?;
        self.fits += 1;
        let round_seed = self
            .config
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.fits);
        if !warm_start {
            self.weights = init_weights(&self.spec, &self.config, round_seed);
        }
        let (weights, final_loss, final_ranking_loss) =
            train(self, x, targets, round_seed ^ 0x5EED)?;
        self.weights = weights;
        Ok(TrainReport {
            samples: x.nrows(),
            steps: self.config.steps_for(x.nrows()),
            warm_start,
            final_loss,
            final_ranking_loss,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Checks width and finiteness of embedding rows.
pub(crate) fn check_rows(spec: &HeadSpec, x: ArrayView2<'_, f32>) -> Result<(), HeadError> {
    if x.ncols() != spec.input_dim {
        return Err(HeadError::DimensionMismatch {
            expected: spec.input_dim,
            found: x.ncols(),
        });
    }
    if let Some(row) = x
        .outer_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        return Err(HeadError::NonFinite { row });
    }
    Ok(())
}

/// PyTorch's default `Linear` initialisation: weights and biases uniform in
/// `±1/√fan_in` (Kaiming-uniform with `a = √5`).
fn linear_init(rng: &mut ChaCha8Rng, out: usize, inp: usize) -> (Array2<f32>, Array1<f32>) {
    let bound = 1.0 / (inp as f32).sqrt();
    let w = Array2::from_shape_simple_fn((out, inp), || rng.random_range(-bound..bound));
    let b = Array1::from_shape_simple_fn(out, || rng.random_range(-bound..bound));
    (w, b)
}

fn init_weights(spec: &HeadSpec, config: &HeadConfig, seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (w1, b1) = linear_init(&mut rng, config.hidden, spec.input_dim);
    let (w2, b2) = linear_init(&mut rng, spec.classes.len(), config.hidden);
    let loss = spec.loss_prediction.then(|| {
        let (lw1, lb1) = linear_init(&mut rng, config.loss_hidden, config.hidden);
        let (lw2, lb2) = linear_init(&mut rng, 1, config.loss_hidden);
        (lw1, lb1, lw2, lb2)
    });
    Weights {
        w1,
        b1,
        w2,
        b2,
        loss,
    }
}

/// The first layer's product `x · W₁` (`[B, D] × [D, H]`) of a training step, whose
/// backward pass gives only `W₁` its gradient.
///
/// candle's own `matmul` also computes the gradient of its left operand, here the
/// minibatch of embeddings, which is no variable: a third product as large as the other
/// two (`[B, H] × [H, D]`) plus a zeroed `[B, D]` accumulator on every step, all thrown
/// away. This op runs the same product forwards (candle's CPU `matmul` on the same
/// layouts) and the same `xᵀ · grad` backwards, so the trained weights keep their bits
/// (golden digests of the retrained run; `tests::input_product_trains_as_matmul_does`).
pub(super) struct InputProduct;

impl candle_core::CustomOp2 for InputProduct {
    fn name(&self) -> &'static str {
        "input-product"
    }

    fn cpu_fwd(
        &self,
        x: &candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        w: &candle_core::CpuStorage,
        w_layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        let (m, k) = x_layout.shape().dims2()?;
        let (k2, n) = w_layout.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("input product: [{m}, {k}] × [{k2}, {n}]");
        }
        let out = x.matmul(w, (1, m, n, k), x_layout, w_layout)?;
        Ok((out, candle_core::Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(x.t()?.matmul(grad)?)))
    }
}

fn var2(dev: &Device, a: &Array2<f32>) -> Result<Var, HeadError> {
    let data: Vec<f32> = a.iter().copied().collect();
    Ok(Var::from_tensor(&Tensor::from_vec(data, a.dim(), dev)?)?)
}

fn var1(dev: &Device, a: &Array1<f32>) -> Result<Var, HeadError> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        a.to_vec(),
        a.len(),
        dev,
    )?)?)
}

fn back2(v: &Var) -> Result<Array2<f32>, HeadError> {
    let (r, c) = v.as_tensor().dims2()?;
    let data = v.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    Array2::from_shape_vec((r, c), data)
        .map_err(|e| HeadError::InvalidConfig(format!("weight shape: {e}")))
}

fn back1(v: &Var) -> Result<Array1<f32>, HeadError> {
    Ok(Array1::from_vec(v.as_tensor().to_vec1::<f32>()?))
}

/// Per-sample loss `[B]` of `logits` `[B, C]`: cross-entropy against class indices, or BCE
/// averaged over classes (Eq. 1) against 0/1 rows.
fn per_sample_loss(logits: &Tensor, targets: &BatchTargets) -> Result<Tensor, HeadError> {
    Ok(match targets {
        BatchTargets::Single(idx) => candle_nn::ops::log_softmax(logits, D::Minus1)?
            .gather(&idx.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg()?,
        BatchTargets::Multi(y) => {
            // BCE with logits, stable form: max(z, 0) − z·y + ln(1 + e^{−|z|}).
            let softplus = (logits.relu()? + ((logits.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
            (softplus - (logits * y)?)?.mean(1)?
        }
    })
}

enum BatchTargets {
    Single(Tensor),
    Multi(Tensor),
}

/// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
/// arXiv:1711.05101) with candle-nn's defaults (β₁ 0.9, β₂ 0.999, ε 1e-8), as candle-nn
/// 0.11's `AdamW::step` computes it, operation for operation in f32 (so a training gives
/// the same bits), but in one pass over each parameter's values instead of about a dozen
/// tensor operations that each allocate a new tensor: those passes, not the matrix
/// products, were most of a head training on 1024-d embeddings.
pub(super) struct FusedAdamW {
    /// Each variable with its state.
    vars: Vec<AdamState>,
    lr: f64,
    weight_decay: f64,
    step_t: i32,
}

/// A variable with its first and second moments.
type AdamState = (Var, Vec<f32>, Vec<f32>);

/// The constants of one AdamW step, in `f32` as candle-nn's tensor operations take them.
#[derive(Clone, Copy)]
struct AdamStep {
    b1: f32,
    one_b1: f32,
    b2: f32,
    one_b2: f32,
    scale_m: f32,
    scale_v: f32,
    decay: f32,
    lr: f32,
    eps: f32,
}

impl FusedAdamW {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    pub(super) fn new(vars: Vec<Var>, lr: f64, weight_decay: f64) -> Result<Self, HeadError> {
        let vars = vars
            .into_iter()
            .map(|v| {
                let n = v.elem_count();
                (v, vec![0.0; n], vec![0.0; n])
            })
            .collect();
        Ok(Self {
            vars,
            lr,
            weight_decay,
            step_t: 0,
        })
    }

    /// Backpropagates `loss` and updates every variable that has a gradient, in place in
    /// the variable's own storage (no copy of the values or of the gradient).
    pub(super) fn backward_step(&mut self, loss: &Tensor) -> Result<(), HeadError> {
        let grads = loss.backward()?;
        self.step_t += 1;
        // The constants as candle-nn forms them: in f64, then each taken to f32 by the
        // tensor operation it feeds (`x * c` is `x * c + 0`, `x + c` is `x * 1 + c`).
        let (b1, b2) = (Self::BETA1, Self::BETA2);
        let step = AdamStep {
            b1: b1 as f32,
            one_b1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_b2: (1.0 - b2) as f32,
            scale_m: (1f64 / (1f64 - b1.powi(self.step_t))) as f32,
            scale_v: (1f64 / (1f64 - b2.powi(self.step_t))) as f32,
            decay: (1f64 - self.lr * self.weight_decay) as f32,
            lr: self.lr as f32,
            eps: Self::EPS as f32,
        };
        for (var, m, v) in &mut self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.contiguous()?;
            let update = AdamUpdate {
                moments: std::cell::RefCell::new((m.as_mut_slice(), v.as_mut_slice())),
                step,
            };
            var.as_tensor().inplace_op2(&g, &update)?;
        }
        Ok(())
    }
}

/// One variable's AdamW update as an in-place candle op: the variable's values are the
/// destination, its gradient the source; the moments are the optimiser's.
struct AdamUpdate<'a> {
    moments: std::cell::RefCell<(&'a mut [f32], &'a mut [f32])>,
    step: AdamStep,
}

impl candle_core::InplaceOp2 for AdamUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        theta: &mut candle_core::CpuStorage,
        theta_layout: &candle_core::Layout,
        grad: &candle_core::CpuStorage,
        grad_layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::CpuStorage::F32;
        let (F32(theta), F32(grad)) = (theta, grad) else {
            candle_core::bail!("adamw-update: f32 only");
        };
        let (Some((t0, t1)), Some((g0, g1))) = (
            theta_layout.contiguous_offsets(),
            grad_layout.contiguous_offsets(),
        ) else {
            candle_core::bail!("adamw-update: contiguous values and gradient only");
        };
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        let (Some(theta), Some(grad)) = (theta.get_mut(t0..t1), grad.get(g0..g1)) else {
            candle_core::bail!("adamw-update: layout outside the storage");
        };
        if grad.len() != theta.len() || m.len() != theta.len() || v.len() != theta.len() {
            candle_core::bail!(
                "adamw-update: {} values, {} gradients",
                theta.len(),
                grad.len()
            );
        }
        adam_update(theta, grad, m, v, self.step);
        Ok(())
    }
}

crate::simd::widest! {
    /// candle-nn 0.11's AdamW step for each element, operation for operation in `f32`.
    /// Every operation is an IEEE one, so the wider vectors give the same bits.
    fn adam_update(theta: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
        let moments = m.iter_mut().zip(v.iter_mut());
        for ((t, (m, v)), &g) in theta.iter_mut().zip(moments).zip(grad) {
            let next_m = (*m * s.b1 + 0.0) + (g * s.one_b1 + 0.0);
            let next_v = (*v * s.b2 + 0.0) + ((g * g) * s.one_b2 + 0.0);
            let m_hat = next_m * s.scale_m + 0.0;
            let v_hat = next_v * s.scale_v + 0.0;
            let decayed = *t * s.decay + 0.0;
            let adjusted = m_hat / (v_hat.sqrt() * 1.0 + s.eps);
            *t = decayed - (adjusted * s.lr + 0.0);
            *m = next_m;
            *v = next_v;
        }
    }
}

/// The training loop: AdamW over shuffled minibatches, inverted dropout with masks from
/// ChaCha8, and the LL ranking loss on pairs (first half of the batch against the
/// second half reversed, as Yoo & Kweon 2019).
fn train(
    head: &TrainableHead,
    x: ArrayView2<'_, f32>,
    targets: Targets<'_>,
    seed: u64,
) -> Result<(Weights, f32, Option<f32>), HeadError> {
    let dev = Device::Cpu;
    let cfg = &head.config;
    let n = x.nrows();
    let xs = head.standardise(x);
    let xs = Tensor::from_vec(xs.iter().copied().collect::<Vec<f32>>(), xs.dim(), &dev)?;
    let all_targets = target_tensor(targets, n, &dev)?;
    let w = &head.weights;
    // The first layer is held as `[in, out]` (its transpose), so the forward product
    // takes it as it is and its gradient arrives in that layout: candle then neither
    // transposes the gradient nor accumulates it twice (once for the transposed view,
    // once for the variable). The same numbers: every element is multiplied, summed
    // and updated as before (tested by the golden digests of a retrained run).
    let (w1, b1, w2, b2) = (
        var2(&dev, &w.w1.t().as_standard_layout().to_owned())?,
        var1(&dev, &w.b1)?,
        var2(&dev, &w.w2)?,
        var1(&dev, &w.b2)?,
    );
    let loss_vars = match &w.loss {
        Some((a, b, c, d)) => Some((
            var2(&dev, a)?,
            var1(&dev, b)?,
            var2(&dev, c)?,
            var1(&dev, d)?,
        )),
        None => None,
    };
    let mut vars = vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()];
    if let Some((a, b, c, d)) = &loss_vars {
        vars.extend([a.clone(), b.clone(), c.clone(), d.clone()]);
    }
    let mut opt = FusedAdamW::new(vars, cfg.learning_rate, cfg.weight_decay)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let batch = cfg.batch_size.min(n);
    let keep = 1.0 - cfg.dropout;
    let scale = 1.0 / keep;
    let hidden = cfg.hidden;
    let steps = cfg.steps_for(n);
    let detach_step = (cfg.loss_detach_after * steps as f64).round() as usize;
    let threshold = super::infer::keep_threshold(keep);
    let mut draws = vec![0_u32; batch * hidden];
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut pos = 0;
    let window = n.div_ceil(batch).max(1);
    let mut recent: Vec<(f32, Option<f32>)> = Vec::with_capacity(window);
    for step in 0..steps {
        if pos + batch > n {
            order.shuffle(&mut rng);
            pos = 0;
        }
        let idx: Vec<u32> = order[pos..pos + batch].iter().map(|&i| i as u32).collect();
        pos += batch;
        let idx = Tensor::from_vec(idx, batch, &dev)?;
        let xb = xs.index_select(&idx, 0)?;
        let yb = match &all_targets {
            BatchTargets::Single(t) => BatchTargets::Single(t.index_select(&idx, 0)?),
            BatchTargets::Multi(t) => BatchTargets::Multi(t.index_select(&idx, 0)?),
        };
        let h = xb
            .apply_op2(w1.as_tensor(), InputProduct)?
            .broadcast_add(b1.as_tensor())?
            .relu()?;
        // `rng.random::<f32>() < keep` per unit, drawn in bulk (see `keep_threshold`).
        rng.fill(draws.as_mut_slice());
        let mask: Vec<f32> = draws
            .iter()
            .map(|&u| if u >> 8 < threshold { scale } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (batch, hidden), &dev)?;
        let logits = (h.clone() * mask)?
            .matmul(&w2.as_tensor().t()?)?
            .broadcast_add(b2.as_tensor())?;
        let per_sample = per_sample_loss(&logits, &yb)?;
        let class_loss = per_sample.mean_all()?;
        let mut total = class_loss.clone();
        let mut ranking_value = None;
        if let Some((lw1, lb1, lw2, lb2)) = &loss_vars {
            let half = batch / 2;
            if half > 0 {
                let input = if step < detach_step {
                    h.clone()
                } else {
                    h.detach()
                };
                let ranking = ranking_loss(
                    &input,
                    &per_sample,
                    (lw1, lb1, lw2, lb2),
                    (batch, cfg.loss_margin),
                    &dev,
                )?;
                ranking_value = Some(ranking.to_scalar::<f32>()?);
                total = (total + (ranking * cfg.loss_weight)?)?;
            }
        }
        opt.backward_step(&total)?;
        if recent.len() == window {
            recent.remove(0);
        }
        recent.push((class_loss.to_scalar::<f32>()?, ranking_value));
    }
    let count = recent.len().max(1) as f32;
    let final_loss = recent.iter().map(|r| r.0).sum::<f32>() / count;
    let ranking: Vec<f32> = recent.iter().filter_map(|r| r.1).collect();
    let final_ranking =
        (!ranking.is_empty()).then(|| ranking.iter().sum::<f32>() / ranking.len() as f32);
    let loss = match &loss_vars {
        Some((a, b, c, d)) => Some((back2(a)?, back1(b)?, back2(c)?, back1(d)?)),
        None => None,
    };
    Ok((
        Weights {
            w1: back2(&w1)?.t().as_standard_layout().to_owned(),
            b1: back1(&b1)?,
            w2: back2(&w2)?,
            b2: back1(&b2)?,
            loss,
        },
        final_loss,
        final_ranking,
    ))
}

/// The loss-prediction module's ranking loss on one batch (Yoo & Kweon 2019, Eq. 2): its
/// predicted loss per sample from the hidden features `input`, compared in pairs (the
/// first half of the batch against the second half reversed) with the true per-sample
/// losses. In: features, true losses, the module's variables, `(batch, margin)`.
/// Out: the mean hinge over the pairs, a scalar tensor.
fn ranking_loss(
    input: &Tensor,
    per_sample: &Tensor,
    (lw1, lb1, lw2, lb2): (&Var, &Var, &Var, &Var),
    (batch, margin): (usize, f64),
    dev: &Device,
) -> Result<Tensor, HeadError> {
    let half = batch / 2;
    let pred = input
        .matmul(&lw1.as_tensor().t()?)?
        .broadcast_add(lb1.as_tensor())?
        .relu()?
        .matmul(&lw2.as_tensor().t()?)?
        .broadcast_add(lb2.as_tensor())?
        .squeeze(1)?;
    let true_loss = per_sample.detach().to_vec1::<f32>()?;
    let first: Vec<u32> = (0..half as u32).collect();
    let second: Vec<u32> = (0..half).map(|i| (batch - 1 - i) as u32).collect();
    let sign: Vec<f32> = first
        .iter()
        .zip(&second)
        .map(|(&i, &k)| {
            let d = true_loss[i as usize] - true_loss[k as usize];
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
        .collect();
    let first = Tensor::from_vec(first, half, dev)?;
    let second = Tensor::from_vec(second, half, dev)?;
    let sign = Tensor::from_vec(sign, half, dev)?;
    let diff = (pred.index_select(&first, 0)? - pred.index_select(&second, 0)?)?;
    // Eq. 2: max(0, −sign(l_i − l_k)·(l̂_i − l̂_k) + ξ).
    let ranking = ((sign * diff)?.neg()? + margin)?.relu()?.mean_all()?;
    Ok(ranking)
}

/// The training targets as one tensor: class indices (`u32`, N) or multi-label 0/1
/// rows (N × C).
fn target_tensor(targets: Targets<'_>, n: usize, dev: &Device) -> Result<BatchTargets, HeadError> {
    Ok(match targets {
        Targets::Single(v) => BatchTargets::Single(Tensor::from_vec(
            v.iter().map(|&c| c as u32).collect::<Vec<_>>(),
            n,
            dev,
        )?),
        Targets::Multi(a) => BatchTargets::Multi(Tensor::from_vec(
            a.iter().copied().collect::<Vec<f32>>(),
            a.dim(),
            dev,
        )?),
    })
}
