//! Inference of a [`TrainableHead`]: deterministic and MC-dropout passes, hidden-feature
//! norms for MGE and the predicted loss for LL, on `ndarray` without candle.

use ndarray::{Array1, Array2, Array3, ArrayView2, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::train::check_rows;
use super::{HeadError, TrainableHead};

/// Rows per inference block: bounds the hidden activations held at once (16,384 × 256
/// `f32` = 16 MiB) and fixes the ChaCha8 stream of each block's dropout masks.
const BLOCK_ROWS: usize = 16_384;

/// The outputs of [`TrainableHead::predict_mc`] for `N` tiles.
#[derive(Debug, Clone)]
pub struct McOutput {
    /// `[T, N, C]` probabilities of the `T` dropout passes: softmax rows (single-label)
    /// or independent sigmoids (multi-label); the layout [`crate::uncertainty`] takes.
    pub probs: Array3<f32>,
    /// `[N, C]` probabilities of the deterministic pass (dropout off).
    pub deterministic: Array2<f32>,
    /// `[N]` Euclidean norm of the last layer's input (the hidden features, dropout off),
    /// for [`mge`](crate::uncertainty::mge).
    pub hidden_norm: Array1<f32>,
    /// `[N]` output of the loss-prediction branch (dropout off), for
    /// [`predicted_loss`](crate::uncertainty::predicted_loss); `None` without the branch.
    pub predicted_loss: Option<Array1<f32>>,
}

impl TrainableHead {
    /// Class probabilities with dropout off, `[N, C]`.
    ///
    /// # Errors
    ///
    /// [`HeadError::DimensionMismatch`] and [`HeadError::NonFinite`] for bad embeddings.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, HeadError> {
        Ok(self.predict_mc(x, 0, 0)?.deterministic)
    }

    /// Runs the deterministic pass and `passes` MC-dropout passes over `x` (`[N, D]`).
    ///
    /// The first layer runs once per row; each pass draws a fresh inverted-dropout mask
    /// on the hidden features (ChaCha8 seeded by `seed`, one stream per block of rows)
    /// and runs only the last layer, so `T` passes cost far less than `T` forward passes.
    /// With `passes == 0`, [`McOutput::probs`] is `[0, N, C]`.
    ///
    /// # Errors
    ///
    /// [`HeadError::DimensionMismatch`] and [`HeadError::NonFinite`] for bad embeddings.
    pub fn predict_mc(
        &self,
        x: ArrayView2<'_, f32>,
        passes: usize,
        seed: u64,
    ) -> Result<McOutput, HeadError> {
        check_rows(&self.spec, x)?;
        let n = x.nrows();
        let classes = self.spec.classes.len();
        let w = &self.weights;
        let keep = 1.0 - self.config.dropout;
        let scale = 1.0 / keep;
        let mut probs = Array3::<f32>::zeros((passes, n, classes));
        let mut deterministic = Array2::<f32>::zeros((n, classes));
        let mut hidden_norm = Array1::<f32>::zeros(n);
        let mut predicted_loss = w.loss.as_ref().map(|_| Array1::<f32>::zeros(n));
        for (block, start) in (0..n).step_by(BLOCK_ROWS).enumerate() {
            let end = (start + BLOCK_ROWS).min(n);
            let xs = self.standardise(x.slice(s![start..end, ..]));
            let mut h = xs.dot(&w.w1.t());
            h += &w.b1;
            h.mapv_inplace(|v| v.max(0.0));
            for (row, out) in h.outer_iter().zip(hidden_norm.slice_mut(s![start..end])) {
                *out = row.dot(&row).sqrt();
            }
            if let (Some((lw1, lb1, lw2, lb2)), Some(pl)) = (&w.loss, predicted_loss.as_mut()) {
                let mut g = h.dot(&lw1.t());
                g += lb1;
                g.mapv_inplace(|v| v.max(0.0));
                let mut l = g.dot(&lw2.t());
                l += lb2;
                pl.slice_mut(s![start..end]).assign(&l.column(0));
            }
            let mut logits = h.dot(&w.w2.t());
            logits += &w.b2;
            self.activate(&mut logits);
            deterministic.slice_mut(s![start..end, ..]).assign(&logits);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(block as u64);
            let mut masked = h.clone();
            for t in 0..passes {
                masked.zip_mut_with(&h, |m, &v| {
                    *m = if rng.random::<f32>() < keep {
                        v * scale
                    } else {
                        0.0
                    };
                });
                let mut logits = masked.dot(&w.w2.t());
                logits += &w.b2;
                self.activate(&mut logits);
                probs
                    .index_axis_mut(Axis(0), t)
                    .slice_mut(s![start..end, ..])
                    .assign(&logits);
            }
        }
        Ok(McOutput {
            probs,
            deterministic,
            hidden_norm,
            predicted_loss,
        })
    }

    /// Turns logits into probabilities in place: sigmoid per class (multi-label) or a
    /// softmax per row.
    fn activate(&self, logits: &mut Array2<f32>) {
        if self.spec.multi_label {
            logits.mapv_inplace(|z| 1.0 / (1.0 + (-z).exp()));
        } else {
            for mut row in logits.outer_iter_mut() {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                row.mapv_inplace(|z| (z - max).exp());
                let sum = row.sum();
                row.mapv_inplace(|v| v / sum);
            }
        }
    }
}
