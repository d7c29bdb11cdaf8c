//! Squared Euclidean distances between embedding rows.

use half::f16;
use ndarray::ArrayView2;

/// From this many values on, [`DistanceRows`] keeps an f16 copy of the rows
/// for the many distance passes of farthest-point sampling and core-set.
const COMPACT_MIN_VALUES: usize = 1 << 22;

/// The rows that many distance passes read (farthest-point sampling, core-set).
///
/// Large passes are memory-bound: every pass streams all `N × D` values. When
/// every value is exactly an f16 — true of all embeddings that went through the
/// embedding cache, which stores f16, and `score` uses those values even on a
/// cache miss — and the CPU converts f16 in hardware (x86-64 F16C + AVX2), the
/// passes read an f16 copy instead: half the bytes, and at 38,531 × 256 small
/// enough (19 MiB) to stay in a 32 MiB L3. The kernel converts exactly and
/// then does the f32 path's arithmetic lane for lane, so distances are
/// **bit-identical** to the f32 path (tested); otherwise the f32 rows are read.
pub(crate) struct DistanceRows<'v, 'a> {
    view: &'v ArrayView2<'a, f32>,
    compact: Option<Vec<u16>>,
}

impl<'v, 'a> DistanceRows<'v, 'a> {
    /// Wraps `view`, with the f16 copy when it is large, lossless and the CPU
    /// has F16C.
    pub(crate) fn new(view: &'v ArrayView2<'a, f32>) -> Self {
        let compact = (view.len() >= COMPACT_MIN_VALUES && has_f16c() && view.is_standard_layout())
            .then(|| compact_copy(view))
            .flatten();
        DistanceRows { view, compact }
    }

    /// Whether passes read the f16 copy.
    #[cfg(test)]
    pub(crate) fn is_compact(&self) -> bool {
        self.compact.is_some()
    }

    /// As [`squared_distances_into`], from the f16 copy when there is one.
    pub(crate) fn squared_distances_into(&self, query: usize, eligible: &[bool], out: &mut [f64]) {
        let Some(bits) = &self.compact else {
            squared_distances_into(self.view, query, eligible, out);
            return;
        };
        let dim = self.view.ncols();
        let q = self.view.row(query).to_vec();
        let rows = self.view.nrows();
        let threads = threads_for(rows.saturating_mul(dim));
        let chunk = rows.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            for (t, part) in out.chunks_mut(chunk).enumerate() {
                let q = &q;
                s.spawn(move || {
                    for (j, slot) in part.iter_mut().enumerate() {
                        let i = t * chunk + j;
                        *slot = if eligible.get(i).copied().unwrap_or(false) {
                            f64::from(squared_distance_f16(&bits[i * dim..(i + 1) * dim], q))
                        } else {
                            f64::INFINITY
                        };
                    }
                });
            }
        });
    }
}

/// The rows as f16 bit patterns, or `None` when some value is not exactly an f16.
fn compact_copy(view: &ArrayView2<'_, f32>) -> Option<Vec<u16>> {
    let mut out = Vec::with_capacity(view.len());
    for &v in view.iter() {
        let h = f16::from_f32(v);
        if h.to_f32().to_bits() != v.to_bits() {
            return None;
        }
        out.push(h.to_bits());
    }
    Some(out)
}

#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"))
}

#[cfg(not(target_arch = "x86_64"))]
fn has_f16c() -> bool {
    false
}

/// Squared distance of an f16 row (bit patterns) to an f32 query; only called
/// when [`has_f16c`] said yes.
#[inline]
fn squared_distance_f16(row: &[u16], q: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: DistanceRows only keeps an f16 copy when the CPU has AVX2 and F16C.
        unsafe { squared_distance_f16_avx2(row, q) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let r: Vec<f32> = row.iter().map(|b| f16::from_bits(*b).to_f32()).collect();
        squared_distance_portable(&r, q)
    }
}

/// The 8-lane loop of [`squared_distance_portable`] on f16 input: exact
/// conversion, then the same sub, mul and add per lane (no fused multiply-add,
/// as in the f32 path) and the same final sum, so results are bit-identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn squared_distance_f16_avx2(row: &[u16], q: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm256_add_ps, _mm256_cvtph_ps, _mm256_loadu_ps, _mm256_mul_ps,
        _mm256_setzero_ps, _mm256_storeu_ps, _mm256_sub_ps,
    };
    const L: usize = 8;
    let n = row.len().min(q.len());
    let chunks = n / L;
    let mut acc = _mm256_setzero_ps();
    for c in 0..chunks {
        // SAFETY: c·8 + 8 ≤ n ≤ both lengths; unaligned loads.
        unsafe {
            let h = _mm_loadu_si128(row.as_ptr().add(c * L).cast::<__m128i>());
            let x = _mm256_cvtph_ps(h);
            let y = _mm256_loadu_ps(q.as_ptr().add(c * L));
            let d = _mm256_sub_ps(x, y);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(d, d));
        }
    }
    let mut lanes = [0.0f32; L];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut tail = 0.0f32;
    for i in chunks * L..n {
        let d = f16::from_bits(row[i]).to_f32() - q[i];
        tail += d * d;
    }
    lanes.iter().sum::<f32>() + tail
}

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
    std::thread::scope(|s| {
        for (t, part) in out.chunks_mut(chunk).enumerate() {
            let q = &q;
            s.spawn(move || fill(embeddings, t * chunk, q, eligible, part));
        }
    });
}

/// Worker threads for a pass over `work` values.
fn threads_for(work: usize) -> usize {
    if work >= PARALLEL_MIN_WORK {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
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
            let row = embeddings.row(i);
            match row.as_slice() {
                Some(r) => f64::from(squared_distance(r, q)),
                None => {
                    let r = row.to_vec();
                    f64::from(squared_distance(&r, q))
                }
            }
        } else {
            f64::INFINITY
        };
    }
}

/// Squared distance of two equal-length slices: AVX2 + FMA when the CPU has
/// them (checked once at run time, so the binary stays portable), else the
/// same loop compiled for the baseline target.
#[inline]
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { squared_distance_avx2(a, b) };
        }
    }
    squared_distance_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
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
    fn compact_rows_give_bit_identical_distances_when_lossless() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // 67 columns: eight 8-lane chunks and a 3-value tail.
        let n = COMPACT_MIN_VALUES / 67 + 7;
        let exact = ndarray::Array2::from_shape_simple_fn((n, 67), || {
            f16::from_f32(rng.random::<f32>() * 4.0 - 2.0).to_f32()
        });
        let view = exact.view();
        let rows = DistanceRows::new(&view);
        if !has_f16c() {
            assert!(!rows.is_compact());
            return;
        }
        assert!(rows.is_compact());
        let eligible: Vec<bool> = (0..n).map(|i| i % 5 != 0).collect();
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        for query in [0, 11, n - 1] {
            rows.squared_distances_into(query, &eligible, &mut a);
            squared_distances_into(&view, query, &eligible, &mut b);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
        // A value f16 cannot hold: no copy, the f32 path.
        let mut inexact = exact.clone();
        inexact[[3, 3]] = 0.1;
        let view = inexact.view();
        assert!(!DistanceRows::new(&view).is_compact());
        // Small inputs are never copied.
        let small = ndarray::Array2::<f32>::zeros((10, 4));
        let view = small.view();
        assert!(!DistanceRows::new(&view).is_compact());
    }

    #[test]
    fn squared_distances() {
        // From (0, 0): (3, 4) is at 3² + 4² = 25; (1, 1) at 2; row 2 is not eligible.
        let emb = array![[0.0_f32, 0.0], [3.0, 4.0], [1.0, 1.0]];
        let mut out = vec![0.0; 3];
        squared_distances_into(&emb.view(), 0, &[true, true, false], &mut out);
        assert_eq!(out, vec![0.0, 25.0, f64::INFINITY]);
    }
}
