//! Tests of the trainable head on small synthetic problems.

use candle_core::{Device, Tensor, Var};
use ndarray::{Array1, Array2, Axis, array, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::uncertainty::mge;

/// Three Gaussian blobs in 8 dimensions, `per_class` samples each.
fn blobs(per_class: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = per_class * 3;
    let mut x = Array2::<f32>::zeros((n, 8));
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 3;
        for d in 0..8 {
            let centre = if d % 3 == c { 3.0 } else { 0.0 };
            x[[i, d]] = centre + rng.random_range(-1.0..1.0);
        }
        y.push(c);
    }
    (x, y)
}

fn spec(multi: bool, ll: bool) -> HeadSpec {
    HeadSpec {
        input_dim: 8,
        classes: vec!["a".into(), "b".into(), "c".into()],
        multi_label: multi,
        loss_prediction: ll,
    }
}

fn small_config(seed: u64) -> HeadConfig {
    HeadConfig {
        hidden: 32,
        steps: 150,
        batch_size: 16,
        learning_rate: 5e-3,
        seed,
        ..HeadConfig::default()
    }
}

fn accuracy(p: &Array2<f32>, y: &[usize]) -> f64 {
    crate::eval::metrics::accuracy(p.view(), y)
}

#[test]
fn learns_separable_classes_and_is_deterministic() {
    let (x, y) = blobs(30, 1);
    let (tx, ty) = blobs(50, 2);
    let mut a = TrainableHead::new(spec(false, false), small_config(7), x.view()).unwrap();
    let report = a.fit(x.view(), Targets::Single(&y), false).unwrap();
    assert_eq!(report.samples, 90);
    assert!(report.final_loss < 0.3, "loss {}", report.final_loss);
    let acc = accuracy(&a.predict(tx.view()).unwrap(), &ty);
    assert!(acc > 0.95, "test accuracy {acc}");
    // Same seed, same data: bit-identical weights and predictions.
    let mut b = TrainableHead::new(spec(false, false), small_config(7), x.view()).unwrap();
    b.fit(x.view(), Targets::Single(&y), false).unwrap();
    assert_eq!(a.weights, b.weights);
    // Another seed: different weights.
    let mut c = TrainableHead::new(spec(false, false), small_config(8), x.view()).unwrap();
    c.fit(x.view(), Targets::Single(&y), false).unwrap();
    assert_ne!(a.weights, c.weights);
}

#[test]
fn mc_passes_differ_and_rows_are_distributions() {
    let (x, y) = blobs(20, 3);
    let mut h = TrainableHead::new(spec(false, false), small_config(1), x.view()).unwrap();
    h.fit(x.view(), Targets::Single(&y), false).unwrap();
    let out = h.predict_mc(x.view(), 5, 11).unwrap();
    assert_eq!(out.probs.dim(), (5, 60, 3));
    for row in out.probs.index_axis(Axis(0), 0).outer_iter() {
        assert!((row.sum() - 1.0).abs() < 1e-5);
    }
    assert_ne!(
        out.probs.index_axis(Axis(0), 0),
        out.probs.index_axis(Axis(0), 1)
    );
    // Same seed: same passes; the deterministic pass equals predict().
    let again = h.predict_mc(x.view(), 5, 11).unwrap();
    assert_eq!(out.probs, again.probs);
    assert_eq!(out.deterministic, h.predict(x.view()).unwrap());
    // Dropout 0: every pass equals the deterministic one.
    let mut cfg = small_config(1);
    cfg.dropout = 0.0;
    let mut nd = TrainableHead::new(spec(false, false), cfg, x.view()).unwrap();
    nd.fit(x.view(), Targets::Single(&y), false).unwrap();
    let o = nd.predict_mc(x.view(), 3, 0).unwrap();
    for t in 0..3 {
        let diff = (&o.probs.index_axis(Axis(0), t) - &o.deterministic)
            .iter()
            .fold(0.0_f32, |m, v| m.max(v.abs()));
        assert!(diff < 1e-6, "pass {t} differs by {diff}");
    }
}

#[test]
fn warm_start_continues_cold_start_reinitialises() {
    let (x, y) = blobs(20, 4);
    let mut h = TrainableHead::new(spec(false, false), small_config(3), x.view()).unwrap();
    let first = h.fit(x.view(), Targets::Single(&y), false).unwrap();
    let warm = h.clone().fit(x.view(), Targets::Single(&y), true).unwrap();
    let cold = h.clone().fit(x.view(), Targets::Single(&y), false).unwrap();
    assert!(warm.warm_start && !cold.warm_start);
    // Continuing from trained weights ends lower than starting over with the same steps.
    assert!(warm.final_loss < first.final_loss, "{warm:?} vs {first:?}");
    assert!(warm.final_loss < cold.final_loss, "{warm:?} vs {cold:?}");
}

#[test]
fn multi_label_head_uses_sigmoids_and_bce() {
    let (x, y) = blobs(30, 5);
    // Label set: the blob's class, plus class 2 whenever the first feature is large.
    let mut t = Array2::<f32>::zeros((x.nrows(), 3));
    for (i, &c) in y.iter().enumerate() {
        t[[i, c]] = 1.0;
    }
    let mut h = TrainableHead::new(spec(true, true), small_config(2), x.view()).unwrap();
    let r = h.fit(x.view(), Targets::Multi(t.view()), false).unwrap();
    assert!(r.final_ranking_loss.is_some());
    let out = h.predict_mc(x.view(), 4, 0).unwrap();
    // Sigmoids: rows need not sum to 1 and every value is in (0, 1).
    assert!(out.deterministic.iter().all(|&p| p > 0.0 && p < 1.0));
    let (micro, _) = crate::eval::metrics::f1_scores(out.deterministic.view(), t.view(), 0.5);
    assert!(micro > 0.9, "micro F1 {micro}");
    let loss = out.predicted_loss.unwrap();
    assert_eq!(loss.len(), x.nrows());
    assert!(loss.iter().all(|v| v.is_finite()));
    // A single-label head has no loss branch.
    let plain = TrainableHead::new(spec(true, false), small_config(2), x.view()).unwrap();
    assert!(
        plain
            .predict_mc(x.view(), 0, 0)
            .unwrap()
            .predicted_loss
            .is_none()
    );
}

/// The loss-prediction branch learns to rank samples by their true loss: after joint
/// training, its output correlates positively with the per-sample BCE on held-out data.
#[test]
fn loss_prediction_ranks_by_true_loss() {
    let (x, y) = blobs(60, 6);
    let mut t = Array2::<f32>::zeros((x.nrows(), 3));
    // Noisy labels on a third of the samples make some losses high.
    for (i, &c) in y.iter().enumerate() {
        t[[i, if i % 3 == 0 { (c + 1) % 3 } else { c }]] = 1.0;
    }
    let mut cfg = small_config(4);
    cfg.steps = 400;
    let mut h = TrainableHead::new(spec(true, true), cfg, x.view()).unwrap();
    h.fit(x.view(), Targets::Multi(t.view()), false).unwrap();
    let out = h.predict_mc(x.view(), 0, 0).unwrap();
    let p = &out.deterministic;
    let true_loss: Vec<f32> = (0..x.nrows())
        .map(|i| {
            (0..3)
                .map(|c| {
                    let q = p[[i, c]].clamp(1e-6, 1.0 - 1e-6);
                    -(t[[i, c]] * q.ln() + (1.0 - t[[i, c]]) * (1.0 - q).ln())
                })
                .sum::<f32>()
        })
        .collect();
    let pred = out.predicted_loss.unwrap();
    let rho = spearman(&true_loss, pred.as_slice().unwrap());
    assert!(rho > 0.3, "Spearman correlation {rho}");
}

fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let rank = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (k, &i) in idx.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    cov / var
}

/// Seed 004's MGE (Eqs. 6–7) is the norm of the BCE gradient with respect to the last
/// layer's weights under thresholded pseudo-labels. Candle's autograd on the trained
/// head's last layer must give the same number as the closed form that
/// [`mge`] computes from the probabilities and the hidden-feature norm.
#[test]
fn mge_equals_the_autograd_gradient_norm_of_the_last_layer() {
    let (x, y) = blobs(10, 7);
    let mut h = TrainableHead::new(spec(true, false), small_config(5), x.view()).unwrap();
    let mut t = Array2::<f32>::zeros((x.nrows(), 3));
    for (i, &c) in y.iter().enumerate() {
        t[[i, c]] = 1.0;
    }
    h.fit(x.view(), Targets::Multi(t.view()), false).unwrap();
    let out = h.predict_mc(x.view(), 0, 0).unwrap();
    let closed = mge(out.deterministic.view(), out.hidden_norm.view(), 0.5).unwrap();
    let dev = Device::Cpu;
    for i in [0usize, 7, 13, 29] {
        // Hidden features of sample i (dropout off), recomputed independently.
        let xs = h.standardise(x.slice(ndarray::s![i..i + 1, ..]));
        let mut hid = xs.dot(&h.weights.w1.t());
        hid += &h.weights.b1;
        hid.mapv_inplace(|v| v.max(0.0));
        let hid =
            Tensor::from_vec(hid.iter().copied().collect::<Vec<f32>>(), (1, 32), &dev).unwrap();
        let w2 = Var::from_tensor(
            &Tensor::from_vec(
                h.weights.w2.iter().copied().collect::<Vec<f32>>(),
                (3, 32),
                &dev,
            )
            .unwrap(),
        )
        .unwrap();
        let b2 = Tensor::from_vec(h.weights.b2.to_vec(), 3, &dev).unwrap();
        let z = hid
            .matmul(&w2.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(&b2)
            .unwrap();
        let p = candle_nn::ops::sigmoid(&z).unwrap();
        let pseudo: Vec<f32> = p
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&v| if v >= 0.5 { 1.0 } else { 0.0 })
            .collect();
        let yhat = Tensor::from_vec(pseudo, (1, 3), &dev).unwrap();
        // BCE summed over classes (Eq. 1 for one sample).
        let bce = ((z.relu().unwrap()
            + (z.abs().unwrap().neg().unwrap().exp().unwrap() + 1.0)
                .unwrap()
                .log()
                .unwrap())
        .unwrap()
            - (&z * &yhat).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
        let grads = bce.backward().unwrap();
        let g = grads.get(w2.as_tensor()).unwrap();
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        assert!(
            (norm - closed[i]).abs() <= 1e-4 * norm.max(1.0),
            "sample {i}: autograd {norm} vs closed form {}",
            closed[i]
        );
    }
}

#[test]
fn save_and_load_round_trip() {
    let (x, y) = blobs(10, 8);
    let mut h = TrainableHead::new(spec(true, true), small_config(9), x.view()).unwrap();
    let mut t = Array2::<f32>::zeros((x.nrows(), 3));
    for (i, &c) in y.iter().enumerate() {
        t[[i, c]] = 1.0;
    }
    h.fit(x.view(), Targets::Multi(t.view()), false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("head.safetensors");
    h.save(&path).unwrap();
    let back = TrainableHead::load(&path).unwrap();
    assert_eq!(back.weights, h.weights);
    assert_eq!(back.spec, h.spec);
    assert_eq!(back.config, h.config);
    assert_eq!(back.fits(), 1);
    assert_eq!(
        back.predict(x.view()).unwrap(),
        h.predict(x.view()).unwrap()
    );
    // A file that is not a head is refused with the path in the message.
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let msg = TrainableHead::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("head.safetensors") && msg.contains("safetensors"),
        "{msg}"
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let x = array![[0.0_f32; 8], [1.0; 8]];
    let mut h = TrainableHead::new(spec(false, false), small_config(0), x.view()).unwrap();
    let wrong_dim = Array2::<f32>::zeros((2, 5));
    assert!(matches!(
        h.fit(wrong_dim.view(), Targets::Single(&[0, 1]), false),
        Err(HeadError::DimensionMismatch {
            expected: 8,
            found: 5
        })
    ));
    assert!(matches!(
        h.fit(x.view(), Targets::Single(&[0, 3]), false),
        Err(HeadError::InvalidLabels(_))
    ));
    assert!(matches!(
        h.fit(x.view(), Targets::Single(&[0]), false),
        Err(HeadError::InvalidLabels(_))
    ));
    let empty = Array2::<f32>::zeros((0, 8));
    assert!(matches!(
        h.fit(empty.view(), Targets::Single(&[]), false),
        Err(HeadError::NoSamples)
    ));
    let mut nan = x.clone();
    nan[[1, 2]] = f32::NAN;
    assert!(matches!(
        h.predict(nan.view()),
        Err(HeadError::NonFinite { row: 1 })
    ));
    let multi = Array2::<f32>::zeros((2, 3));
    assert!(matches!(
        h.fit(x.view(), Targets::Multi(multi.view()), false),
        Err(HeadError::InvalidLabels(_))
    ));
    let bad = HeadConfig {
        dropout: 1.0,
        ..HeadConfig::default()
    };
    assert!(TrainableHead::new(spec(false, false), bad, x.view()).is_err());
    let _ = Array1::<f32>::zeros(1);
}

/// More rows than one inference block: the blocks run side by side on the selection
/// pool, and each block's passes are exactly what that block gives alone (its own
/// ChaCha8 stream), assembled in row order.
#[test]
fn blocks_run_side_by_side_with_the_numbers_of_one_at_a_time() {
    let (x, y) = blobs(20, 3);
    let mut h = TrainableHead::new(spec(false, true), small_config(1), x.view()).unwrap();
    h.fit(x.view(), Targets::Single(&y), false).unwrap();
    let rows = super::infer::BLOCK_ROWS + 37;
    let big = Array2::from_shape_fn((rows, 8), |(i, d)| x[[i % 60, d]] + (i / 60) as f32 * 1e-3);
    let out = h.predict_mc(big.view(), 3, 11).unwrap();
    let keep = 1.0 - h.config.dropout;
    for (block, start) in [(0usize, 0usize), (1, super::infer::BLOCK_ROWS)] {
        let end = (start + super::infer::BLOCK_ROWS).min(rows);
        let alone = h.block_mc(
            big.slice(s![start..end, ..]),
            block,
            3,
            11,
            (keep, 1.0 / keep),
        );
        assert_eq!(out.probs.slice(s![.., start..end, ..]), alone.probs);
        assert_eq!(
            out.deterministic.slice(s![start..end, ..]),
            alone.deterministic
        );
        assert_eq!(out.hidden_norm.slice(s![start..end]), alone.hidden_norm);
        let pl = out.predicted_loss.as_ref().unwrap();
        assert_eq!(pl.slice(s![start..end]), alone.predicted_loss.unwrap());
    }
}

/// The MC passes taken 64 rows at a time, every pass on those rows before the next,
/// with the stream sought to each row's draws, give the probabilities of whole-block
/// passes bit for bit: row counts around the 64-row step, several passes, streams,
/// keep probabilities, single- and multi-label heads.
#[test]
fn mc_passes_by_rows_equal_whole_block_passes() {
    let (x, y) = blobs(20, 3);
    for multi in [false, true] {
        let mut h = TrainableHead::new(spec(multi, false), small_config(2), x.view()).unwrap();
        if multi {
            let targets =
                Array2::from_shape_fn((y.len(), 3), |(i, c)| f32::from(u8::from(y[i] == c)));
            h.fit(x.view(), Targets::Multi(targets.view()), false)
                .unwrap();
        } else {
            h.fit(x.view(), Targets::Single(&y), false).unwrap();
        }
        let hidden = h.config.hidden;
        for rows in [1, 63, 64, 65, 130, 1000] {
            let features = Array2::from_shape_fn((rows, hidden), |(i, j)| {
                (((i * 31 + j * 17) % 23) as f32 - 9.0).max(0.0) * 0.37
            });
            for (keep, block, passes) in [(0.5_f32, 0, 5), (0.7, 3, 2), (0.999, 1, 1), (0.3, 0, 0)]
            {
                let scale = 1.0 / keep;
                let by_rows = h.masked_passes(&features, block, passes, 9, (keep, scale));
                let whole = h.whole_block_passes(&features, block, passes, 9, (keep, scale));
                assert_eq!(by_rows.dim(), (passes, rows, 3));
                for (a, b) in by_rows.iter().zip(&whole) {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "multi {multi} rows {rows} keep {keep}"
                    );
                }
            }
        }
    }
}

/// The fused AdamW gives the very bits candle-nn's `AdamW` gives, step after step (it
/// exists for speed only; the label-savings results were measured with candle-nn's).
#[test]
fn fused_adamw_matches_candle_nn_bit_for_bit() {
    use candle_nn::Optimizer;
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut values =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let (w0, x, y) = (values(6 * 4), values(10 * 4), values(10 * 6));
    let x = Tensor::from_vec(x, (10, 4), &dev).unwrap();
    let y = Tensor::from_vec(y, (10, 6), &dev).unwrap();
    let loss = |w: &Var| {
        let d = (x.matmul(&w.as_tensor().t().unwrap()).unwrap() - &y).unwrap();
        d.sqr().unwrap().mean_all().unwrap()
    };
    let ours = Var::from_tensor(&Tensor::from_vec(w0.clone(), (6, 4), &dev).unwrap()).unwrap();
    let theirs = Var::from_tensor(&Tensor::from_vec(w0, (6, 4), &dev).unwrap()).unwrap();
    let (lr, wd) = (3e-3, 1e-2);
    let mut fused = super::train::FusedAdamW::new(vec![ours.clone()], lr, wd).unwrap();
    let params = candle_nn::ParamsAdamW {
        lr,
        weight_decay: wd,
        ..candle_nn::ParamsAdamW::default()
    };
    let mut reference = candle_nn::AdamW::new(vec![theirs.clone()], params).unwrap();
    for step in 0..50 {
        fused.backward_step(&loss(&ours)).unwrap();
        reference.backward_step(&loss(&theirs)).unwrap();
        let a: Vec<f32> = ours.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = theirs.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "step {step}: {a:?} vs {b:?}");
    }
}

#[test]
fn epochs_make_the_steps_grow_with_the_samples() {
    let fixed = HeadConfig::default();
    assert_eq!(fixed.steps_for(10), 600);
    assert_eq!(fixed.steps_for(5000), 600);
    let grown = HeadConfig {
        epochs: Some(64.0),
        ..HeadConfig::default()
    };
    grown.validate().unwrap();
    // ⌈64 · n / 64⌉ = n steps, clamped to 200..=600.
    assert_eq!(grown.steps_for(200), 200);
    assert_eq!(grown.steps_for(320), 320);
    assert_eq!(grown.steps_for(128), 200);
    assert_eq!(grown.steps_for(5000), 600);
    // Fewer samples than a batch: the batch is the samples, 64 steps → the minimum.
    assert_eq!(grown.steps_for(10), 200);
    for bad in [Some(0.0), Some(f64::NAN), Some(-1.0)] {
        let c = HeadConfig {
            epochs: bad,
            ..HeadConfig::default()
        };
        assert!(c.validate().is_err(), "{bad:?}");
    }
    let c = HeadConfig {
        epochs: Some(64.0),
        min_steps: 700,
        ..HeadConfig::default()
    };
    assert!(c.validate().is_err());
    // A training reports the steps it took.
    let (x, y) = blobs(10, 3);
    let mut h = TrainableHead::new(
        spec(false, false),
        HeadConfig {
            epochs: Some(4.0),
            min_steps: 5,
            steps: 50,
            ..small_config(1)
        },
        x.view(),
    )
    .unwrap();
    // 30 samples, batch 16: ⌈4 · 30 / 16⌉ = 8 steps.
    assert_eq!(
        h.fit(x.view(), Targets::Single(&y), false).unwrap().steps,
        8
    );
}

/// The first layer's product without the minibatch's gradient gives the bits of candle's
/// `matmul` forwards and, through ReLU and a loss, the same gradient of the weights.
#[test]
fn input_product_trains_as_matmul_does() {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut values =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    // Sizes that leave partial register tiles in every dimension.
    let (b, d, h) = (37, 131, 29);
    let (x, w0) = (values(b * d), values(d * h));
    let x = Tensor::from_vec(x, (b, d), &dev).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|f| f.to_bits()).collect()
    };
    let run = |custom: bool| {
        let w = Var::from_tensor(&Tensor::from_vec(w0.clone(), (d, h), &dev).unwrap()).unwrap();
        let product = if custom {
            x.apply_op2(w.as_tensor(), super::train::InputProduct)
        } else {
            x.matmul(w.as_tensor())
        }
        .unwrap();
        let loss = product.relu().unwrap().sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!(
            grads.get(&x).is_none() || !custom,
            "no gradient for the input"
        );
        (bits(&product), bits(grads.get(w.as_tensor()).unwrap()))
    };
    let (ours, theirs) = (run(true), run(false));
    assert_eq!(ours.0, theirs.0, "forward");
    assert_eq!(ours.1, theirs.1, "gradient of the weights");
}
