//! Squared Euclidean distances between embedding rows.

use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;

/// Fills `out[i]` with the squared Euclidean distance between row `i` and row `query` of
/// `embeddings` for every eligible `i`, and with `+∞` for the others. Squared distances
/// order points exactly as distances do, without the square root.
///
/// This is the hot loop of farthest-point sampling (S passes over N × D values), so it
/// works on contiguous `f32` rows in 8 independent lanes (which the compiler turns into
/// SIMD) and splits large inputs across the available cores. Accumulating in `f32` over
/// a few hundred dimensions keeps about 6 significant digits; the result is stored as
/// `f64` for the callers.
pub(crate) fn squared_distances_into(
    embeddings: &ArrayView2<'_, f32>,
    query: usize,
    eligible: &[bool],
    out: &mut [f64],
) {
    let q = embeddings.row(query).to_vec();
    let rows = embeddings.nrows();
    let threads = threads_for(rows.saturating_mul(embeddings.ncols()));
    if threads <= 1 {
        fill(embeddings, 0, &q, eligible, out);
        return;
    }
    let chunk = rows.div_ceil(threads);
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(t, part)| fill(embeddings, t * chunk, &q, eligible, part));
}

/// Euclidean distance between two rows, in `f64` (each difference exact, the sum
/// rounded in `f64`): for bounds that must not carry the `f32` passes' rounding.
pub(crate) fn distance_f64(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Worker threads for a pass over `work` values.
pub(crate) fn threads_for(work: usize) -> usize {
    if work >= PARALLEL_MIN_WORK {
        rayon::current_num_threads().min(MAX_THREADS)
    } else {
        1
    }
}

/// Below this many `f32` values per pass, threads cost more than they save.
const PARALLEL_MIN_WORK: usize = 1 << 20;
/// Upper bound on worker threads for one distance pass.
const MAX_THREADS: usize = 16;

/// `out[j]` = squared distance of row `first + j` to `q` (or `+∞` when not eligible).
fn fill(
    embeddings: &ArrayView2<'_, f32>,
    first: usize,
    q: &[f32],
    eligible: &[bool],
    out: &mut [f64],
) {
    for (j, slot) in out.iter_mut().enumerate() {
        let i = first + j;
        *slot = if eligible.get(i).copied().unwrap_or(false) {
            f64::from(row_distance(embeddings, i, q))
        } else {
            f64::INFINITY
        };
    }
}

/// Squared distance of row `i` of `embeddings` to `q`, by the kernel of
/// [`squared_distances_into`] (so the two agree bit for bit).
#[inline]
pub(crate) fn row_distance(embeddings: &ArrayView2<'_, f32>, i: usize, q: &[f32]) -> f32 {
    let row = embeddings.row(i);
    match row.as_slice() {
        Some(r) => squared_distance(r, q),
        None => {
            let r = row.to_vec();
            squared_distance(&r, q)
        }
    }
}

/// Squared distance of two equal-length slices: AVX2 + FMA when the CPU has
/// them (checked once at run time, so the binary stays portable), else the
/// same loop compiled for the baseline target.
#[inline]
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { squared_distance_avx2(a, b) };
        }
    }
    squared_distance_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn squared_distance_avx2(a: &[f32], b: &[f32]) -> f32 {
    squared_distance_portable(a, b)
}

/// The 8-lane loop; inlined into the AVX2 variant so it is compiled for it.
#[inline(always)]
fn squared_distance_portable(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 8;
    let mut acc = [0.0f32; L];
    let (ca, ra) = a.as_chunks::<L>();
    let (cb, rb) = b.as_chunks::<L>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..L {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        tail += d * d;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn squared_distances() {
        // From (0, 0): (3, 4) is at 3² + 4² = 25; (1, 1) at 2; row 2 is not eligible.
        let emb = array![[0.0_f32, 0.0], [3.0, 4.0], [1.0, 1.0]];
        let mut out = vec![0.0; 3];
        squared_distances_into(&emb.view(), 0, &[true, true, false], &mut out);
        assert_eq!(out, vec![0.0, 25.0, f64::INFINITY]);
    }
}
