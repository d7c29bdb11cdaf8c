//! Inference of a [`TrainableHead`]: deterministic and MC-dropout passes, hidden-feature
//! norms for MGE and the predicted loss for LL, on `ndarray` without candle.

use ndarray::{Array1, Array2, Array3, ArrayView2, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::train::check_rows;
use super::{HeadError, TrainableHead};

/// Rows per inference block: bounds the hidden activations held at once (16,384 × 256
/// `f32` = 16 MiB) and fixes the ChaCha8 stream of each block's dropout masks.
pub(super) const BLOCK_ROWS: usize = 16_384;

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

/// What [`TrainableHead::block_mc`] gives for one block of rows.
pub(super) struct BlockOutput {
    /// `[T, rows, C]` probabilities of the masked passes.
    pub(super) probs: Array3<f32>,
    /// `[rows, C]` of the deterministic pass.
    pub(super) deterministic: Array2<f32>,
    /// `[rows]` hidden-feature norms.
    pub(super) hidden_norm: Array1<f32>,
    /// `[rows]` of the loss-prediction branch, when there is one.
    pub(super) predicted_loss: Option<Array1<f32>>,
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
        // Blocks are independent (each draws its masks from its own ChaCha8 stream), so
        // they run side by side on the selection pool with the same numbers as one
        // after another: a full granule's 29,241 rows are two blocks.
        let starts: Vec<usize> = (0..n).step_by(BLOCK_ROWS).collect();
        let run = |(block, &start): (usize, &usize)| {
            let end = (start + BLOCK_ROWS).min(n);
            self.block_mc(
                x.slice(s![start..end, ..]),
                block,
                passes,
                seed,
                (keep, scale),
            )
        };
        let blocks: Vec<BlockOutput> = if starts.len() > 1 {
            use rayon::prelude::*;
            crate::threads::on_selection_pool(|| starts.par_iter().enumerate().map(run).collect())
        } else {
            starts.iter().enumerate().map(run).collect()
        };
        for (b, &start) in blocks.into_iter().zip(&starts) {
            let end = (start + BLOCK_ROWS).min(n);
            hidden_norm.slice_mut(s![start..end]).assign(&b.hidden_norm);
            if let (Some(pl), Some(l)) = (predicted_loss.as_mut(), &b.predicted_loss) {
                pl.slice_mut(s![start..end]).assign(l);
            }
            deterministic
                .slice_mut(s![start..end, ..])
                .assign(&b.deterministic);
            probs.slice_mut(s![.., start..end, ..]).assign(&b.probs);
        }
        Ok(McOutput {
            probs,
            deterministic,
            hidden_norm,
            predicted_loss,
        })
    }

    /// One block of rows of [`predict_mc`](Self::predict_mc): the first layer once, the
    /// deterministic pass, then `passes` masked passes with masks from the ChaCha8
    /// stream `block` of `seed`.
    pub(super) fn block_mc(
        &self,
        x: ArrayView2<'_, f32>,
        block: usize,
        passes: usize,
        seed: u64,
        (keep, scale): (f32, f32),
    ) -> BlockOutput {
        let w = &self.weights;
        let xs = self.standardise(x);
        let mut h = xs.dot(&w.w1.t());
        h += &w.b1;
        h.mapv_inplace(|v| v.max(0.0));
        let hidden_norm: Array1<f32> = h.outer_iter().map(|row| row.dot(&row).sqrt()).collect();
        let predicted_loss = w.loss.as_ref().map(|(lw1, lb1, lw2, lb2)| {
            let mut g = h.dot(&lw1.t());
            g += lb1;
            g.mapv_inplace(|v| v.max(0.0));
            let mut l = g.dot(&lw2.t());
            l += lb2;
            l.column(0).to_owned()
        });
        let deterministic = self.last_layer(h.view());
        let probs = self.masked_passes(&h, block, passes, seed, (keep, scale));
        BlockOutput {
            probs,
            deterministic,
            hidden_norm,
            predicted_loss,
        }
    }

    /// The `passes` masked passes of [`block_mc`](Self::block_mc) over its hidden
    /// features `h` (`[rows, H]`, standard layout): `[T, rows, C]` probabilities.
    ///
    /// Pass `t` masks unit `j` of row `r` with the stream's `u32` number
    /// `(t · rows + r) · H + j` (the masks of [`dropout_mask`] drawn pass after pass over
    /// the whole block). They are taken here [`MC_ROWS`] rows at a time, every pass on
    /// those rows before the next rows, by seeking the stream
    /// ([`ChaCha8Rng::set_word_pos`]): the rows' hidden features, mask and masked copy
    /// stay in cache for the `T` passes instead of crossing memory (16 MiB each) in every
    /// pass. A row's logits do not depend on the other rows multiplied with it, so the
    /// probabilities are those of whole-block passes bit for bit
    /// (`mc_passes_by_rows_equal_whole_block_passes`).
    pub(super) fn masked_passes(
        &self,
        h: &Array2<f32>,
        block: usize,
        passes: usize,
        seed: u64,
        (keep, scale): (f32, f32),
    ) -> Array3<f32> {
        let (rows, hidden) = h.dim();
        let Some(h) = h.as_slice() else {
            // Not standard layout (never: `h` is a product's result).
            return self.whole_block_passes(
                &h.as_standard_layout().into_owned(),
                block,
                passes,
                seed,
                (keep, scale),
            );
        };
        let mut probs = Array3::<f32>::zeros((passes, rows, self.spec.classes.len()));
        let mut rng = mask_stream(seed, block);
        let threshold = keep_threshold(keep);
        let per_pass = (rows * hidden) as u128;
        let mut draws = vec![0_u32; MC_ROWS.min(rows) * hidden];
        let mut masked = Array2::<f32>::zeros((MC_ROWS.min(rows), hidden));
        for first in (0..rows).step_by(MC_ROWS) {
            let end = (first + MC_ROWS).min(rows);
            let values = (end - first) * hidden;
            let units = &h[first * hidden..end * hidden];
            let mut part = masked.slice_mut(s![..end - first, ..]);
            for t in 0..passes {
                rng.set_word_pos(t as u128 * per_pass + (first * hidden) as u128);
                let draws = &mut draws[..values];
                rng.fill(draws);
                if let Some(m) = part.as_slice_mut() {
                    apply_mask(m, units, draws, threshold, scale);
                }
                probs
                    .slice_mut(s![t, first..end, ..])
                    .assign(&self.last_layer(part.view()));
            }
        }
        probs
    }

    /// [`masked_passes`](Self::masked_passes) pass after pass over the whole block: one
    /// mask of `rows × H` draws per pass ([`dropout_mask`]). The reference it is tested
    /// against, and the path for hidden features not in standard layout.
    pub(super) fn whole_block_passes(
        &self,
        h: &Array2<f32>,
        block: usize,
        passes: usize,
        seed: u64,
        (keep, scale): (f32, f32),
    ) -> Array3<f32> {
        let mut probs = Array3::<f32>::zeros((passes, h.nrows(), self.spec.classes.len()));
        let mut rng = mask_stream(seed, block);
        let mut masked = h.clone();
        let mut draws = vec![0_u32; MASK_CHUNK.min(h.len())];
        for t in 0..passes {
            dropout_mask(&mut rng, &mut draws, h, &mut masked, (keep, scale));
            probs
                .index_axis_mut(Axis(0), t)
                .assign(&self.last_layer(masked.view()));
        }
        probs
    }

    /// The last layer on (masked) hidden features `[rows, H]`: logits, then
    /// probabilities ([`activate`](Self::activate)), `[rows, C]`.
    fn last_layer(&self, hidden: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut logits = hidden.dot(&self.weights.w2.t());
        logits += &self.weights.b2;
        self.activate(&mut logits);
        logits
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

/// The ChaCha8 stream of block `block`'s dropout masks under `seed`.
fn mask_stream(seed: u64, block: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(block as u64);
    rng
}

/// The test on a stream's next `u32` `u` that equals `rng.random::<f32>() < keep` on it:
/// that float is `(u >> 8) · 2⁻²⁴`, so the unit is kept when `u >> 8 < ⌈keep · 2²⁴⌉`.
/// Drawing the `u32`s in bulk with [`Rng::fill`] takes the same ones in the same order
/// (tested), so masks drawn in bulk are those of the per-element draws.
pub(super) fn keep_threshold(keep: f32) -> u32 {
    (f64::from(keep) * f64::from(1_u32 << 24)).ceil() as u32
}

/// Rows whose masked passes run together in [`TrainableHead::masked_passes`]: their
/// hidden features, draws and masked copy (3 × 64 KiB at H = 256) stay in the L2 cache.
const MC_ROWS: usize = 64;

/// Draws of a dropout mask held at once: [`dropout_mask`] draws and applies a mask a
/// chunk at a time, so the draws stay in the L1 cache instead of making a round trip
/// through memory (16 MiB per pass for a 16,384-row block).
const MASK_CHUNK: usize = 4096;

/// One pass's inverted dropout: `masked[i] = h[i] · scale` where the pass keeps unit
/// `i`, else 0, in row-major order. Keeping is `rng.random::<f32>() < keep`, drawn in
/// bulk: that float is `(u >> 8) · 2⁻²⁴` for the stream's next `u32` `u`, so the test
/// is `u >> 8 < ⌈keep · 2²⁴⌉` on the same `u32`s, which [`Rng::fill`] draws in the same
/// order as one at a time, chunk after chunk of `draws.len()` (the masks are those of
/// the per-element draw; tested).
fn dropout_mask(
    rng: &mut ChaCha8Rng,
    draws: &mut [u32],
    h: &Array2<f32>,
    masked: &mut Array2<f32>,
    (keep, scale): (f32, f32),
) {
    let threshold = keep_threshold(keep);
    let chunk = draws.len().max(1);
    let mut apply = |h: &[f32], m: &mut [f32]| {
        for (h, m) in h.chunks(chunk).zip(m.chunks_mut(chunk)) {
            let draws = &mut draws[..h.len()];
            rng.fill(draws);
            apply_mask(m, h, draws, threshold, scale);
        }
    };
    if let (Some(h), Some(m)) = (h.as_slice(), masked.as_slice_mut()) {
        apply(h, m);
    } else {
        // Not standard layout (never, for the products above): logical order.
        let h = h.as_standard_layout();
        let mut m = masked.as_standard_layout().into_owned();
        if let (Some(h), Some(ms)) = (h.as_slice(), m.as_slice_mut()) {
            apply(h, ms);
        }
        masked.assign(&m);
    }
}

crate::simd::widest! {
    /// `masked[i] = h[i] · scale` where `draws[i] >> 8 < threshold`, else 0: the loop of
    /// [`dropout_mask`] on plain slices, so that it compiles to vector code (written
    /// inline, it stayed one element at a time and was 40 % of 20 MC passes over a
    /// granule). One multiplication or a zero per element: the same bits at any width.
    fn apply_mask(masked: &mut [f32], h: &[f32], draws: &[u32], threshold: u32, scale: f32) {
        for ((m, &v), &u) in masked.iter_mut().zip(h).zip(draws) {
            *m = if u >> 8 < threshold { v * scale } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bulk masks equal the per-element `rng.random::<f32>() < keep` draws, pass
    /// after pass, for several keep probabilities and an odd number of units.
    #[test]
    fn bulk_masks_equal_per_element_draws() {
        let h = Array2::from_shape_fn((37, 13), |(i, j)| (i * 13 + j) as f32 * 0.5 + 1.0);
        for keep in [0.7_f32, 0.5, 0.3, 0.999, 1.0 / 3.0] {
            let scale = 1.0 / keep;
            let mut a = ChaCha8Rng::seed_from_u64(9);
            a.set_stream(2);
            let mut b = a.clone();
            let mut masked = h.clone();
            // Chunks of 100 draws for the 481 units.
            let mut draws = vec![0_u32; 100];
            for _ in 0..5 {
                dropout_mask(&mut a, &mut draws, &h, &mut masked, (keep, scale));
                let mut want = h.clone();
                want.zip_mut_with(&h, |m, &v| {
                    *m = if b.random::<f32>() < keep {
                        v * scale
                    } else {
                        0.0
                    };
                });
                assert_eq!(masked, want, "keep {keep}");
            }
            // Both streams are at the same place afterwards.
            assert_eq!(a.random::<u32>(), b.random::<u32>());
        }
    }
}
