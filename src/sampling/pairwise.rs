//! Pairwise squared Euclidean distances between two sets of embedding rows, computed
//! block by block as matrix products (`‖a‖² + ‖b‖² − 2 a·b`) so that the density-based
//! strategies ([`typiclust`](crate::sampling::typiclust),
//! [`probcover`](crate::sampling::probcover)) run at matrix-multiply speed instead of one
//! row pair at a time. The full `N × M` matrix is never held: each block of rows is
//! reduced by the caller's function as soon as it is computed.

use ndarray::{Array1, ArrayView2, Axis, s};
use rayon::prelude::*;

/// Rows of `a` per matrix product (bounds the `[BLOCK, M]` scratch matrix).
const BLOCK_ROWS: usize = 128;

/// For every row `i` of `a` (`[N, D]`), calls `reduce(i, d)` where `d[j]` is the squared
/// Euclidean distance from `a[i]` to `b[j]` (`b` is `[M, D]`, clamped at 0 against
/// rounding), and returns the results in row order. Blocks of rows run in parallel on
/// rayon's pool. `f32` throughout: distances between almost-equal rows are accurate to
/// about 1e-6 of the rows' squared norms.
pub(crate) fn map_distance_rows<T, F>(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    reduce: F,
) -> Vec<T>
where
    T: Send,
    F: Fn(usize, &[f32]) -> T + Sync,
{
    let b_norms: Array1<f32> = b.map_axis(Axis(1), |r| r.dot(&r));
    let starts: Vec<usize> = (0..a.nrows()).step_by(BLOCK_ROWS).collect();
    let blocks: Vec<Vec<T>> = starts
        .par_iter()
        .map(|&start| {
            let end = (start + BLOCK_ROWS).min(a.nrows());
            let block = a.slice(s![start..end, ..]);
            let mut g = block.dot(&b.t());
            let mut out = Vec::with_capacity(end - start);
            for (k, mut row) in g.outer_iter_mut().enumerate() {
                let ai = block.row(k);
                let na = ai.dot(&ai);
                row.zip_mut_with(&b_norms, |v, &nb| *v = (na + nb - 2.0 * *v).max(0.0));
                let slice = row
                    .as_slice()
                    .map(<[f32]>::to_vec)
                    .unwrap_or_else(|| row.to_vec());
                out.push(reduce(start + k, &slice));
            }
            out
        })
        .collect();
    blocks.into_iter().flatten().collect()
}

/// Most rows [`map_self_distance_rows`] holds the full `N × N` matrix for (64 MiB).
const SYMMETRIC_MAX_ROWS: usize = 4096;

/// [`map_distance_rows`]`(a, a, reduce)` with half the multiply-adds: only the blocks on
/// and above the diagonal are multiplied and the matrix is mirrored. The numbers are the
/// same: a distance's product `a_i·a_j` sums the same products in the same order as
/// `a_j·a_i`, and `‖a_i‖² + ‖a_j‖²` is commutative (tested bit for bit). Above
/// [`SYMMETRIC_MAX_ROWS`] rows it is [`map_distance_rows`] itself (the full matrix would
/// not be bounded).
pub(crate) fn map_self_distance_rows<T, F>(a: ArrayView2<'_, f32>, reduce: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, &[f32]) -> T + Sync,
{
    let n = a.nrows();
    if n > SYMMETRIC_MAX_ROWS {
        return map_distance_rows(a, a, reduce);
    }
    let norms: Array1<f32> = a.map_axis(Axis(1), |r| r.dot(&r));
    let starts: Vec<usize> = (0..n).step_by(BLOCK_ROWS).collect();
    // Row block `start..end` against rows `start..`: its strip of the upper triangle.
    let strips: Vec<ndarray::Array2<f32>> = starts
        .par_iter()
        .map(|&start| {
            let end = (start + BLOCK_ROWS).min(n);
            let block = a.slice(s![start..end, ..]);
            let mut g = block.dot(&a.slice(s![start.., ..]).t());
            for (k, mut row) in g.outer_iter_mut().enumerate() {
                let na = norms[start + k];
                row.zip_mut_with(&norms.slice(s![start..]), |v, &nb| {
                    *v = (na + nb - 2.0 * *v).max(0.0);
                });
            }
            g
        })
        .collect();
    let mut full = ndarray::Array2::<f32>::zeros((n, n));
    for (&start, strip) in starts.iter().zip(&strips) {
        let rows = strip.nrows();
        full.slice_mut(s![start..start + rows, start..])
            .assign(strip);
    }
    // Below the diagonal blocks: the mirror of what the strips hold.
    for (&start, strip) in starts.iter().zip(&strips) {
        let rows = strip.nrows();
        full.slice_mut(s![start + rows.., start..start + rows])
            .assign(&strip.slice(s![.., rows..]).t());
    }
    (0..n)
        .into_par_iter()
        .map(|i| {
            let row = full.row(i);
            match row.as_slice() {
                Some(d) => reduce(i, d),
                None => reduce(i, &row.to_vec()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn matches_the_definition() {
        let a = array![[0.0_f32, 0.0], [3.0, 4.0], [1.0, 1.0]];
        let b = array![[0.0_f32, 0.0], [3.0, 0.0]];
        let rows = map_distance_rows(a.view(), b.view(), |i, d| (i, d.to_vec()));
        assert_eq!(rows[0], (0, vec![0.0, 9.0]));
        assert_eq!(rows[1], (1, vec![25.0, 16.0]));
        assert_eq!(rows[2], (2, vec![2.0, 5.0]));
    }

    #[test]
    fn the_symmetric_path_gives_the_same_bits() {
        for (n, d) in [(1, 3), (130, 7), (3 * BLOCK_ROWS + 17, 129)] {
            let a = ndarray::Array2::from_shape_fn((n, d), |(i, j)| {
                ((i * 7919 + j * 104_729) % 1013) as f32 / 97.0 - 5.0
            });
            let full = map_distance_rows(a.view(), a.view(), |i, r| (i, r.to_vec()));
            let half = map_self_distance_rows(a.view(), |i, r| (i, r.to_vec()));
            assert_eq!(full.len(), half.len());
            for (x, y) in full.iter().zip(&half) {
                assert_eq!(x.0, y.0);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
                assert_eq!(bits(&x.1), bits(&y.1), "row {} of {n} × {d}", x.0);
            }
        }
    }

    #[test]
    fn many_blocks_keep_row_order() {
        let n = 3 * BLOCK_ROWS + 5;
        let a = ndarray::Array2::from_shape_fn((n, 3), |(i, d)| (i * 3 + d) as f32 * 0.01);
        let firsts = map_distance_rows(a.view(), a.view(), |i, d| (i, d[i]));
        assert_eq!(firsts.len(), n);
        for (k, (i, self_distance)) in firsts.into_iter().enumerate() {
            assert_eq!(i, k);
            assert!(self_distance < 1e-3, "{self_distance}");
        }
    }
}
