//! An 8-bit sketch of embedding rows with per-row error bounds, so that the many distance
//! passes of farthest-first traversal can skip rows without changing any result.
//!
//! Each row `x` is quantised to bytes `q` with `x̃_d = lo_d + s · q_d` (a per-dimension
//! offset `lo_d`, one step `s` for all dimensions) and keeps `e = ‖x − x̃‖`. Because
//! the step is shared, `‖x̃ − ỹ‖ = s · √I` with `I = Σ_d (q_d − r_d)²` computed exactly
//! in integers, and the triangle inequality bounds the true distance on both sides:
//!
//! ```text
//! s·√I − e_x − e_y  ≤  ‖x − y‖  ≤  s·√I + e_x + e_y
//! ```
//!
//! A pass then reads a quarter of the bytes of the `f32` rows; the rows whose bounds
//! cannot decide are measured exactly (the `f32` kernel), so selections are identical to
//! the unpruned ones. This is the filter-and-refine use of lower bounds from similarity
//! search (e.g. Weber, Schek & Blott 1998, *A Quantitative Analysis and Performance Study
//! for Similarity-Search Methods in High-Dimensional Spaces*, the VA-file) applied to the
//! running minimum of Gonzalez's farthest-first traversal.

use ndarray::ArrayView2;
use rayon::prelude::*;

/// Largest dimension for which `I` (at most `D · 255²`) fits in a `u32`.
const MAX_DIM: usize = (u32::MAX / (255 * 255)) as usize;

/// Rows per parallel block when building.
const BLOCK_ROWS: usize = 4096;

/// The quantised rows and their error bounds.
pub(crate) struct Sketch {
    codes: Vec<u8>,
    dim: usize,
    step: f64,
    /// Upper bound on `‖x − x̃‖` per row; `+∞` for rows not covered, so bounds never
    /// rule anything out for them and they are always measured exactly.
    error: Vec<f64>,
    max_error: f64,
}

impl Sketch {
    /// Quantises the rows flagged in `used` (all of them finite); `None` when the view is
    /// not in standard layout, has no rows or columns, or too many columns.
    pub(crate) fn build(view: &ArrayView2<'_, f32>, used: &[bool]) -> Option<Sketch> {
        let (rows, dim) = view.dim();
        if rows == 0 || dim == 0 || dim > MAX_DIM || used.len() != rows {
            return None;
        }
        let data = view.as_slice()?;
        // Per-dimension bounds and the largest magnitude over the used rows, in parallel
        // row blocks (1 M × 256 values would take ~1 s on one core).
        let empty = || {
            (
                vec![f64::INFINITY; dim],
                vec![f64::NEG_INFINITY; dim],
                0.0f64,
            )
        };
        let (lo, hi, magnitude) = data
            .par_chunks(dim * BLOCK_ROWS)
            .zip(used.par_chunks(BLOCK_ROWS))
            .fold(empty, |(mut lo, mut hi, mut mag), (block, used)| {
                for (row, _) in block.chunks_exact(dim).zip(used).filter(|(_, u)| **u) {
                    for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                        let v = f64::from(v);
                        *l = l.min(v);
                        *h = h.max(v);
                        mag = mag.max(v.abs());
                    }
                }
                (lo, hi, mag)
            })
            .reduce(empty, |(mut lo, mut hi, m), (lo2, hi2, m2)| {
                lo.iter_mut().zip(&lo2).for_each(|(a, b)| *a = a.min(*b));
                hi.iter_mut().zip(&hi2).for_each(|(a, b)| *a = a.max(*b));
                (lo, hi, m.max(m2))
            });
        if !magnitude.is_finite() {
            return None;
        }
        let range = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| h - l)
            .filter(|r| r.is_finite())
            .fold(0.0f64, f64::max);
        let step = if range > 0.0 { range / 255.0 } else { 1.0 };
        let inverse = 1.0 / step;
        // f64 rounding in `lo + s·q` and in the sum below, far below any f32 difference.
        let slack = (dim as f64).sqrt() * magnitude * 1e-14;
        let mut codes = vec![0u8; rows * dim];
        let mut error = vec![f64::INFINITY; rows];
        codes
            .par_chunks_mut(dim)
            .zip(error.par_iter_mut())
            .zip(data.par_chunks(dim).zip(used.par_iter()))
            .filter(|(_, (_, u))| **u)
            .for_each(|((out, e), (row, _))| {
                *e = quantize_row(row, &lo, inverse, step, out).sqrt() * (1.0 + 1e-12) + slack;
            });
        let max_error = error
            .iter()
            .copied()
            .filter(|e| e.is_finite())
            .fold(0.0f64, f64::max);
        Some(Sketch {
            codes,
            dim,
            step,
            error,
            max_error,
        })
    }

    /// The quantisation step `s`.
    pub(crate) fn step(&self) -> f64 {
        self.step
    }

    /// The error bound `e` of row `i`.
    pub(crate) fn error(&self, i: usize) -> f64 {
        self.error.get(i).copied().unwrap_or(f64::INFINITY)
    }

    /// The largest error bound of any row.
    pub(crate) fn max_error(&self) -> f64 {
        self.max_error
    }

    /// The codes of rows `first..first + count`, row after row.
    pub(crate) fn rows(&self, first: usize, count: usize) -> &[u8] {
        self.codes
            .get(first * self.dim..(first + count) * self.dim)
            .unwrap_or(&[])
    }

    /// Codes per row.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// The codes of row `i`.
    pub(crate) fn row(&self, i: usize) -> &[u8] {
        self.codes
            .get(i * self.dim..(i + 1) * self.dim)
            .unwrap_or(&[])
    }

    /// `I = Σ_d (q_d − r_d)²` between two rows of codes, exact.
    #[cfg(test)]
    pub(crate) fn distance(a: &[u8], b: &[u8]) -> u32 {
        distance_portable(a, b)
    }
}

/// Writes the codes of `row` into `out` and returns `Σ (x − x̃)²`; AVX2 when the CPU has
/// it (four f64 lanes), else the same loop for the baseline target.
fn quantize_row(row: &[f32], lo: &[f64], inverse: f64, step: f64, out: &mut [u8]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { quantize_row_avx2(row, lo, inverse, step, out) };
    }
    quantize_row_portable(row, lo, inverse, step, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_row_avx2(row: &[f32], lo: &[f64], inverse: f64, step: f64, out: &mut [u8]) -> f64 {
    quantize_row_portable(row, lo, inverse, step, out)
}

/// The quantisation loop, in four independent lanes so it vectorises (the order of the
/// additions does not matter to the bound, which allows for their rounding).
#[inline(always)]
fn quantize_row_portable(row: &[f32], lo: &[f64], inverse: f64, step: f64, out: &mut [u8]) -> f64 {
    const L: usize = 4;
    let mut acc = [0.0f64; L];
    let quantize = |v: f32, l: f64, c: &mut u8| {
        // Any code gives a valid bound; rounding to the nearest keeps it small. `as`
        // truncates (and saturates): round half up, without a libm call.
        let code = ((f64::from(v) - l) * inverse + 0.5).clamp(0.0, 255.0) as u8;
        *c = code;
        let r = f64::from(v) - (l + step * f64::from(code));
        r * r
    };
    let n = row.len().min(lo.len()).min(out.len());
    let (rows, row_tail) = row[..n].as_chunks::<L>();
    let (los, lo_tail) = lo[..n].as_chunks::<L>();
    let (outs, out_tail) = out[..n].as_chunks_mut::<L>();
    for ((r, l), o) in rows.iter().zip(los).zip(outs) {
        for lane in 0..L {
            acc[lane] += quantize(r[lane], l[lane], &mut o[lane]);
        }
    }
    let mut tail = 0.0;
    for ((&v, &l), c) in row_tail.iter().zip(lo_tail).zip(out_tail) {
        tail += quantize(v, l, c);
    }
    acc.iter().sum::<f64>() + tail
}

/// Whether [`distance4_avx2`] may be called.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2"))
}

/// `I` between a row of codes and four centres' codes widened to i16, 16 bytes at a time:
/// the row is loaded and widened once for all four, differences are squared and summed
/// in pairs by `vpmaddwd` into i32 lanes, and the four sums are reduced together (no
/// overflow: each sum is at most `D · 255²` < 2³² for `D ≤ MAX_DIM`, and wrapping i32
/// lane additions give it exactly as a u32). Inlined into callers compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn distance4_avx2(row: &[u8], wide: [&[i16]; 4]) -> [u32; 4] {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_add_epi32, _mm_loadu_si128, _mm_storeu_si128, _mm256_add_epi32,
        _mm256_castsi256_si128, _mm256_cvtepu8_epi16, _mm256_extracti128_si256, _mm256_hadd_epi32,
        _mm256_loadu_si256, _mm256_madd_epi16, _mm256_setzero_si256, _mm256_sub_epi16,
    };
    let n = wide.iter().fold(row.len(), |n, w| n.min(w.len()));
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut at = 0;
    while at + 16 <= n {
        // SAFETY: at + 16 ≤ n ≤ every length; unaligned loads.
        unsafe {
            let x = _mm256_cvtepu8_epi16(_mm_loadu_si128(row.as_ptr().add(at).cast::<__m128i>()));
            for (a, w) in acc.iter_mut().zip(wide) {
                let y = _mm256_loadu_si256(w.as_ptr().add(at).cast::<__m256i>());
                let d = _mm256_sub_epi16(x, y);
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(d, d));
            }
        }
        at += 16;
    }
    // Lane l of the reduction below holds the sum of accumulator l.
    let s01 = _mm256_hadd_epi32(acc[0], acc[1]);
    let s23 = _mm256_hadd_epi32(acc[2], acc[3]);
    let s = _mm256_hadd_epi32(s01, s23);
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let mut out = [0u32; 4];
    // SAFETY: `out` holds four u32.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast::<__m128i>(), s) };
    for (o, w) in out.iter_mut().zip(wide) {
        *o += distance_portable(&row[at..n], &w[at..n]);
    }
    out
}

/// `I` between a row of codes and a centre's codes (as bytes, or widened to i16), one
/// value at a time.
#[inline]
pub(crate) fn distance_portable<T: Copy + Into<i32>>(a: &[u8], b: &[T]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i32::from(x) - y.into();
            d.unsigned_abs() * d.unsigned_abs()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn bounds_hold_and_kernels_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // 53 columns: a 32-byte chunk, a 16-byte one and a 5-byte tail; ranges differ.
        let (n, d) = (200, 53);
        let emb = ndarray::Array2::from_shape_fn((n, d), |(_, j)| {
            rng.random::<f32>() * (j as f32 + 1.0) - 3.0
        });
        let used = vec![true; n];
        let sketch = Sketch::build(&emb.view(), &used).expect("sketch");
        for i in 0..n {
            for j in (0..n).step_by(7) {
                let (a, b) = (sketch.row(i), sketch.row(j));
                let int = Sketch::distance(a, b);
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    let wide: Vec<i16> = b.iter().map(|&v| i16::from(v)).collect();
                    let others: Vec<Vec<i16>> = (1..4)
                        .map(|o| {
                            sketch
                                .row((j + o) % n)
                                .iter()
                                .map(|&v| i16::from(v))
                                .collect()
                        })
                        .collect();
                    // SAFETY: the CPU has AVX2.
                    let four =
                        unsafe { distance4_avx2(a, [&wide, &others[0], &others[1], &others[2]]) };
                    assert_eq!(four[0], int);
                    for (o, &got) in four.iter().enumerate().skip(1) {
                        assert_eq!(got, Sketch::distance(a, sketch.row((j + o) % n)));
                    }
                }
                let approx = sketch.step() * f64::from(int).sqrt();
                let exact: f64 = emb
                    .row(i)
                    .iter()
                    .zip(emb.row(j))
                    .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let slack = sketch.error(i) + sketch.error(j);
                assert!(approx - slack <= exact && exact <= approx + slack);
            }
        }
        assert!(sketch.max_error() > 0.0);
        // Constant data: one code, no error beyond the rounding slack.
        let flat = ndarray::Array2::<f32>::ones((3, 4));
        let sketch = Sketch::build(&flat.view(), &[true; 3]).expect("sketch");
        assert_eq!(Sketch::distance(sketch.row(0), sketch.row(2)), 0);
        assert!(sketch.max_error() < 1e-12);
    }

    #[test]
    fn unused_rows_may_hold_anything() {
        let mut emb = ndarray::Array2::<f32>::zeros((3, 2));
        emb[[1, 0]] = f32::NAN;
        emb[[2, 1]] = 4.0;
        let sketch = Sketch::build(&emb.view(), &[true, false, true]).expect("sketch");
        assert_eq!(Sketch::distance(sketch.row(0), sketch.row(2)), 255 * 255);
        assert_eq!(sketch.step(), 4.0 / 255.0);
        // The uncovered row's bound rules nothing out; the others' stay tight.
        assert_eq!(sketch.error(1), f64::INFINITY);
        assert!(sketch.max_error() < 1e-12);
    }
}
