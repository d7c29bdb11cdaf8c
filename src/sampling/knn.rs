//! Brute-force k-nearest-neighbour search in an embedding space.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use ndarray::ArrayView2;

use crate::sampling::distance::squared_distances_into;
use crate::sampling::error::SamplingError;
use crate::sampling::input::check_embeddings;

/// The `k` eligible rows of the `[N, D]` `embeddings` nearest to row `query` (Euclidean
/// distance, brute force), nearest first.
///
/// The query itself counts as its own nearest neighbour at distance 0 when it is eligible
/// (it ranks before any duplicate of it); other equal distances go to the lower index.
/// An ineligible query is never returned. Returns all eligible rows when `k` exceeds their
/// number.
///
/// `O(N · D + N)` on average per query; no index structure is built.
///
/// # Errors
///
/// [`SamplingError::ZeroNeighbours`] for `k == 0`, [`SamplingError::IndexOutOfRange`] for
/// `query >= N`, [`SamplingError::MaskLengthMismatch`], [`SamplingError::NoEmbeddingDimensions`],
/// and [`SamplingError::NonFiniteEmbedding`] for an eligible (or the query) row with NaN or
/// infinity.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::k_nearest_neighbours;
///
/// let embeddings = array![[0.0_f32, 0.0], [3.0, 0.0], [1.0, 0.0], [0.0, 2.0]];
/// let hood = k_nearest_neighbours(embeddings.view(), 0, 3, &[true; 4])?;
/// assert_eq!(hood, vec![0, 2, 3]); // distances 0, 1, 2
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn k_nearest_neighbours(
    embeddings: ArrayView2<'_, f32>,
    query: usize,
    k: usize,
    eligible: &[bool],
) -> Result<Vec<usize>, SamplingError> {
    if k == 0 {
        return Err(SamplingError::ZeroNeighbours);
    }
    check_embeddings(&embeddings, eligible)?;
    let tiles = embeddings.nrows();
    if query >= tiles {
        return Err(SamplingError::IndexOutOfRange {
            index: query,
            tiles,
        });
    }
    let row = embeddings.row(query);
    if let Some((dim, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SamplingError::NonFiniteEmbedding {
            tile: query,
            dim,
            value,
        });
    }
    let mut distances = vec![f64::INFINITY; tiles];
    squared_distances_into(&embeddings, query, eligible, &mut distances);
    Ok(knn_from_distances(&distances, query, k, eligible))
}

/// The `k` eligible indices with the smallest `distances` (from `query`), nearest first;
/// ties: the query first, then lower index. `k >= 1` and finite eligible distances assumed.
pub(crate) fn knn_from_distances(
    distances: &[f64],
    query: usize,
    k: usize,
    eligible: &[bool],
) -> Vec<usize> {
    // One pass with a bounded max-heap of the k best seen so far (no N-sized
    // allocation per query); the key orders exactly as documented above.
    let key = |i: usize| {
        let d = distances.get(i).copied().unwrap_or(f64::INFINITY);
        (OrdF64(d), i != query, i)
    };
    let mut heap: BinaryHeap<(OrdF64, bool, usize)> = BinaryHeap::with_capacity(k + 1);
    for (i, &ok) in eligible.iter().enumerate() {
        if !ok {
            continue;
        }
        let item = key(i);
        if heap.len() < k {
            heap.push(item);
        } else if heap.peek().is_some_and(|top| item < *top) {
            heap.pop();
            heap.push(item);
        }
    }
    let mut best = heap.into_vec();
    best.sort_unstable();
    best.into_iter().map(|(_, _, i)| i).collect()
}

/// `f64` with the total order of [`f64::total_cmp`], for heap keys.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::*;

    #[test]
    fn hand_worked_neighbourhoods() {
        // Points on a line at x = 0, 1, 2, 5, 6 (y = 0).
        // From index 4 (x = 6): distances 4: 0, 3: 1, 2: 4, 1: 5, 0: 6.
        let emb = array![
            [0.0_f32, 0.0],
            [1.0, 0.0],
            [2.0, 0.0],
            [5.0, 0.0],
            [6.0, 0.0]
        ];
        let all = [true; 5];
        assert_eq!(
            k_nearest_neighbours(emb.view(), 4, 1, &all).unwrap(),
            vec![4]
        );
        assert_eq!(
            k_nearest_neighbours(emb.view(), 4, 3, &all).unwrap(),
            vec![4, 3, 2]
        );
        // From index 1 (x = 1): 0 and 2 tie at distance 1 -> the lower index first.
        assert_eq!(
            k_nearest_neighbours(emb.view(), 1, 3, &all).unwrap(),
            vec![1, 0, 2]
        );
        // k larger than the pool: everything, nearest first. From x = 2 the distances are
        // 2: 0, 1: 1, 0: 2, 3: 3, 4: 4.
        assert_eq!(
            k_nearest_neighbours(emb.view(), 2, 99, &all).unwrap(),
            vec![2, 1, 0, 3, 4]
        );
    }

    #[test]
    fn excluded_rows_and_query() {
        let emb = array![[0.0_f32], [1.0], [2.0], [5.0], [6.0]];
        // 3 excluded: from 4 the neighbours are 4, then 2 (distance 4), then 1 (5).
        let eligible = [true, true, true, false, true];
        assert_eq!(
            k_nearest_neighbours(emb.view(), 4, 3, &eligible).unwrap(),
            vec![4, 2, 1]
        );
        // An excluded query is not its own neighbour.
        assert_eq!(
            k_nearest_neighbours(emb.view(), 3, 2, &eligible).unwrap(),
            vec![4, 2]
        );
    }

    #[test]
    fn query_precedes_its_duplicates() {
        // Rows 0, 1 and 2 coincide; from 2, the query comes first, then 0 and 1.
        let emb = Array2::<f32>::zeros((3, 2));
        assert_eq!(
            k_nearest_neighbours(emb.view(), 2, 3, &[true; 3]).unwrap(),
            vec![2, 0, 1]
        );
        assert_eq!(
            k_nearest_neighbours(emb.view(), 2, 1, &[true; 3]).unwrap(),
            vec![2]
        );
    }

    #[test]
    fn degenerate_inputs() {
        let emb = array![[0.0_f32], [f32::NAN]];
        assert_eq!(
            k_nearest_neighbours(emb.view(), 0, 0, &[true, false]),
            Err(SamplingError::ZeroNeighbours)
        );
        assert_eq!(
            k_nearest_neighbours(emb.view(), 2, 1, &[true, false]),
            Err(SamplingError::IndexOutOfRange { index: 2, tiles: 2 })
        );
        assert!(matches!(
            k_nearest_neighbours(emb.view(), 1, 1, &[true, false]),
            Err(SamplingError::NonFiniteEmbedding { tile: 1, .. })
        ));
        assert!(matches!(
            k_nearest_neighbours(emb.view(), 0, 1, &[true, true]),
            Err(SamplingError::NonFiniteEmbedding { tile: 1, .. })
        ));
        assert_eq!(
            k_nearest_neighbours(emb.view(), 0, 2, &[true, false]).unwrap(),
            vec![0]
        );
    }
}
