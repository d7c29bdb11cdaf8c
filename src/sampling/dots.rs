//! Every point's dot product with every k-means centroid, computed straight from the
//! points' rows on CPUs with AVX2 and FMA, bit for bit as `matrixmultiply` (under
//! ndarray's `dot`) computes them there, without packing the points first.
//!
//! k-means' assignment multiplies `[n, D]` points by `[D, k]` centroids with few
//! centroids (a first TypiClust suggestion of 20 tiles has k = 20), so `matrixmultiply`
//! spent a third of its time copying the points into its packed layout, every Lloyd
//! iteration (18 % of a granule's TypiClust suggestion on a 2-core AMD EPYC, `perf`).
//! Here the points are read where they are and only the centroids are laid out for the
//! kernel, once per assignment.
//!
//! The arithmetic is `matrixmultiply` 0.3's on its AVX2 + FMA path (`KernelFmaAvx2`,
//! chosen when the CPU has AVX2 and FMA but not AVX-512F): the depth is cut into blocks
//! of 256 (`S_KC`); in each block every product is a chain of fused multiply-adds in
//! depth order starting from zero; the blocks' sums are added to the result in order.
//! The same operations on the same values give the same bits, so the assignments, and
//! the picks of every strategy that clusters, are those of the `dot` they replace
//! (`dots_equal_matrixmultiply_bit_for_bit`). Other CPUs keep `dot`: `matrixmultiply`'s
//! AVX-512 and AVX kernels differ from this one.

use ndarray::Array2;

/// `matrixmultiply`'s depth block for `f32` (`archparam_defaults::S_KC`).
const DEPTH_BLOCK: usize = 256;
/// Centroids per panel: three 8-lane vectors.
const PANEL: usize = 24;
/// Points per pass over a panel.
const ROWS: usize = 4;

/// The centroids laid out for [`dots_into`]: panels of [`PANEL`] centroids, each
/// `[D, PANEL]` row-major and zero-padded.
pub(crate) struct Panels {
    data: Vec<f32>,
    depth: usize,
    centroids: usize,
}

impl Panels {
    /// Lays out `[k, D]` centroids, or `None` when this CPU does not take the AVX2 + FMA
    /// path (then the caller keeps `ndarray`'s `dot`).
    pub(crate) fn new(centroids: &Array2<f32>) -> Option<Self> {
        if !fma_path() {
            return None;
        }
        let (k, depth) = centroids.dim();
        let panels = k.div_ceil(PANEL);
        let mut data = vec![0.0_f32; panels * depth * PANEL];
        for (j, row) in centroids.outer_iter().enumerate() {
            let base = (j / PANEL) * depth * PANEL + j % PANEL;
            for (p, &v) in row.iter().enumerate() {
                data[base + p * PANEL] = v;
            }
        }
        Some(Self {
            data,
            depth,
            centroids: k,
        })
    }
}

/// Whether `matrixmultiply` runs its AVX2 + FMA kernel on this CPU (its own test).
fn fma_path() -> bool {
    crate::simd::avx2_fma() && !crate::simd::avx512f()
}

/// `out[r · k + j] = points[r] · centroid[j]` for a block of points whose rows are each
/// contiguous; `false` (nothing written) when a row is not contiguous or the block's
/// width is not the centroids' depth. (Test-only: k-means gives [`dots_of_rows`] the
/// rows it computes.)
#[cfg(test)]
pub(crate) fn dots_into(
    points: &ndarray::ArrayView2<'_, f32>,
    panels: &Panels,
    out: &mut [f32],
) -> bool {
    let rows: Option<Vec<&[f32]>> = points.outer_iter().map(|r| r.to_slice()).collect();
    rows.is_some_and(|rows| dots_of_rows(&rows, points.ncols(), panels, out))
}

/// [`dots_into`] for any rows, each a slice of `depth` values: `out[r · k + j] =
/// rows[r] · centroid[j]`. A row's products do not depend on the other rows given
/// with it (each is its own chain of operations), so products of some rows of a block
/// are those of the whole block bit for bit. `false` (nothing written) when a row's
/// length or `depth` is not the centroids' depth or `out` is not `rows × k`.
pub(crate) fn dots_of_rows(
    rows: &[&[f32]],
    depth: usize,
    panels: &Panels,
    out: &mut [f32],
) -> bool {
    if depth != panels.depth
        || depth == 0
        || out.len() != rows.len() * panels.centroids
        || rows.iter().any(|r| r.len() != depth)
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `Panels` exist only where the CPU has AVX2 and FMA (`fma_path`).
        unsafe { kernel(rows, panels, out) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = rows;
        false
    }
}

/// The products of [`dots_of_rows`], [`ROWS`] points by one panel at a time; every row
/// holds `panels.depth` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn kernel(points: &[&[f32]], panels: &Panels, out: &mut [f32]) {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let depth = panels.depth;
    let k = panels.centroids;
    let rows = points.len();
    for first in (0..rows).step_by(ROWS) {
        // Rows past the end repeat the last row; their results are not stored.
        let row = |i: usize| &points[(first + i).min(rows - 1)][..depth];
        let quad = [row(0), row(1), row(2), row(3)];
        for (q, panel) in panels.data.chunks_exact(depth * PANEL).enumerate() {
            let mut sum = [[_mm256_setzero_ps(); 3]; ROWS];
            for block in (0..depth).step_by(DEPTH_BLOCK) {
                let end = (block + DEPTH_BLOCK).min(depth);
                let mut ab = [[_mm256_setzero_ps(); 3]; ROWS];
                for p in block..end {
                    let b = &panel[p * PANEL..(p + 1) * PANEL];
                    // SAFETY: `b` holds PANEL = 24 floats, read as three vectors of 8.
                    let bv: [__m256; 3] = unsafe {
                        [
                            _mm256_loadu_ps(b.as_ptr()),
                            _mm256_loadu_ps(b.as_ptr().add(8)),
                            _mm256_loadu_ps(b.as_ptr().add(16)),
                        ]
                    };
                    for (acc, point) in ab.iter_mut().zip(&quad) {
                        let a = _mm256_set1_ps(point[p]);
                        for (v, &bw) in acc.iter_mut().zip(&bv) {
                            *v = _mm256_fmadd_ps(a, bw, *v);
                        }
                    }
                }
                for (s, a) in sum.iter_mut().zip(&ab) {
                    for (sv, &av) in s.iter_mut().zip(a) {
                        *sv = _mm256_add_ps(av, *sv);
                    }
                }
            }
            let stored = (k - q * PANEL).min(PANEL);
            for (i, s) in sum.iter().enumerate().take(rows - first) {
                let mut lanes = [0.0_f32; PANEL];
                for (v, chunk) in s.iter().zip(lanes.chunks_exact_mut(8)) {
                    // SAFETY: `chunk` holds 8 floats.
                    unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), *v) };
                }
                let at = (first + i) * k + q * PANEL;
                out[at..at + stored].copy_from_slice(&lanes[..stored]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    /// Values of very different sizes and signs, so that any other order of additions
    /// or a multiply and add rounded apart would show in the last bits.
    fn values(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut s = seed;
        Array2::from_shape_fn((rows, cols), |_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let m = ((s >> 40) as f32) / 16_777_216.0 - 0.5;
            let e = ((s >> 20) % 9) as i32 - 4;
            m * 10_f32.powi(e)
        })
    }

    #[test]
    fn dots_equal_matrixmultiply_bit_for_bit() {
        // Depths across the 256 block (one block, a partial one, several); centroid
        // counts across the 24 panel; row counts across the 4-row pass.
        for (rows, depth, k) in [
            (257, 1024, 20),
            (9, 300, 7),
            (33, 256, 24),
            (5, 513, 49),
            (1, 8, 1),
            (64, 100, 500),
        ] {
            let points = values(rows, depth, rows as u64 * 31 + depth as u64);
            let centroids = values(k, depth, k as u64 * 7 + 1);
            let want = points.dot(&centroids.t());
            let Some(panels) = Panels::new(&centroids) else {
                // Not an AVX2 + FMA CPU: `kmeans` keeps `dot`, and there is nothing
                // of this module's to compare.
                eprintln!("this CPU keeps matrixmultiply's own kernel; nothing compared");
                return;
            };
            let mut got = vec![f32::NAN; rows * k];
            assert!(dots_into(&points.view(), &panels, &mut got));
            for (r, row) in want.outer_iter().enumerate() {
                for (j, &w) in row.iter().enumerate() {
                    let g = got[r * k + j];
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "rows {rows} depth {depth} k {k}: [{r}, {j}] {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_of_a_wider_array_and_some_rows_alone_give_the_same_bits() {
        let points = values(9, 16, 1);
        let centroids = values(3, 8, 2);
        let Some(panels) = Panels::new(&centroids) else {
            return;
        };
        // Rows that are each contiguous but not one after the other.
        let half = points.slice(ndarray::s![.., ..8]);
        let want = half.dot(&centroids.t());
        let mut all = vec![0.0; 9 * 3];
        assert!(dots_into(&half, &panels, &mut all));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&all), bits(want.as_slice().unwrap()));
        // Rows 7, 2 and 5 on their own: the products of those rows in the whole block.
        let picked: Vec<&[f32]> = [7, 2, 5]
            .iter()
            .map(|&r| &points.as_slice().unwrap()[r * 16..r * 16 + 8])
            .collect();
        let mut some = vec![0.0; 3 * 3];
        assert!(dots_of_rows(&picked, 8, &panels, &mut some));
        for (i, &r) in [7, 2, 5].iter().enumerate() {
            assert_eq!(bits(&some[i * 3..i * 3 + 3]), bits(&all[r * 3..r * 3 + 3]));
        }
        // A row whose values are not contiguous is left to `dot`.
        let every_other = points.slice(ndarray::s![.., ..;2]);
        assert!(!dots_into(&every_other, &panels, &mut all));
    }
}
