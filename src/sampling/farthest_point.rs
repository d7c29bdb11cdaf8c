//! Farthest-point sampling (FPS) over an embedding space.
//!
//! Greedy farthest-first traversal (Gonzalez 1985, *Clustering to Minimize the Maximum
//! Intercluster Distance*, a 2-approximation of the k-center problem): after a start point,
//! repeatedly take the point farthest from everything chosen so far. It spreads the chosen
//! points over the embedding space and is step 2 ("diversity sampling") of MCFPS.

use ndarray::ArrayView2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sampling::error::SamplingError;
use crate::sampling::input::{check_embeddings, eligible_indices};
use crate::sampling::traversal::Traversal;

/// Chooses up to `count` eligible rows of the `[N, D]` `embeddings` by farthest-point
/// sampling, returned in the order they were chosen.
///
/// The first point is drawn uniformly at random among the eligible rows (ChaCha8 seeded
/// with `seed`); every next point is the eligible row with the largest Euclidean distance
/// to its nearest already-chosen point, ties going to the lower index. Returns all eligible
/// rows when `count` exceeds their number, and nothing when none is eligible.
///
/// Keeps a running nearest-chosen distance per row: `O(count · N · D)` time at worst,
/// `O(N · D)` bytes for an 8-bit sketch of the rows (a quarter of the embeddings) that lets
/// most passes skip most rows without changing the result, no `N × N` matrix.
///
/// # Errors
///
/// [`SamplingError::ZeroAnchors`] for `count == 0`,
/// [`SamplingError::MaskLengthMismatch`] when `eligible.len() != N`,
/// [`SamplingError::NoEmbeddingDimensions`] for `D == 0`, and
/// [`SamplingError::NonFiniteEmbedding`] for an eligible row with NaN or infinity.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::farthest_point_sampling;
///
/// let embeddings = array![[0.0_f32, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]];
/// let chosen = farthest_point_sampling(embeddings.view(), 2, &[true; 4], 3)?;
/// // Whatever the random start, the two points come from different clusters.
/// assert_eq!(chosen.len(), 2);
/// assert_ne!(chosen[0] < 2, chosen[1] < 2);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn farthest_point_sampling(
    embeddings: ArrayView2<'_, f32>,
    count: usize,
    eligible: &[bool],
    seed: u64,
) -> Result<Vec<usize>, SamplingError> {
    if count == 0 {
        return Err(SamplingError::ZeroAnchors);
    }
    check_embeddings(&embeddings, eligible)?;
    match seeded_start(eligible, seed) {
        Some(first) => Ok(fps_core(&embeddings, count, eligible, first, 0, |_, _| {})),
        None => Ok(Vec::new()),
    }
}

/// Like [`farthest_point_sampling`] but starting from the given `first` row instead of a
/// random one, so a run can be pinned (and reproduced by hand).
///
/// # Errors
///
/// Those of [`farthest_point_sampling`], plus [`SamplingError::IndexOutOfRange`] when
/// `first >= N` and [`SamplingError::NotEligible`] when `first` is not eligible.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::farthest_point_sampling_from;
///
/// // On a line at 0, 1, 3, 10: from 0 the farthest is 10 (index 3); then 3 is 3 away from
/// // 0 and 7 from 10, while 1 is only 1 away from 0, so index 2 comes next.
/// let embeddings = array![[0.0_f32], [1.0], [3.0], [10.0]];
/// let chosen = farthest_point_sampling_from(embeddings.view(), 3, &[true; 4], 0)?;
/// assert_eq!(chosen, vec![0, 3, 2]);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn farthest_point_sampling_from(
    embeddings: ArrayView2<'_, f32>,
    count: usize,
    eligible: &[bool],
    first: usize,
) -> Result<Vec<usize>, SamplingError> {
    if count == 0 {
        return Err(SamplingError::ZeroAnchors);
    }
    check_embeddings(&embeddings, eligible)?;
    check_start(eligible, first)?;
    Ok(fps_core(&embeddings, count, eligible, first, 0, |_, _| {}))
}

/// Checks that `first` is a valid, eligible start index.
pub(crate) fn check_start(eligible: &[bool], first: usize) -> Result<(), SamplingError> {
    match eligible.get(first) {
        None => Err(SamplingError::IndexOutOfRange {
            index: first,
            tiles: eligible.len(),
        }),
        Some(false) => Err(SamplingError::NotEligible { index: first }),
        Some(true) => Ok(()),
    }
}

/// The seeded uniform start among the eligible rows; `None` when none is eligible.
pub(crate) fn seeded_start(eligible: &[bool], seed: u64) -> Option<usize> {
    let pool = eligible_indices(eligible);
    if pool.is_empty() {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    pool.get(rng.random_range(0..pool.len())).copied()
}

/// FPS from a validated start. After each point is chosen, `on_anchor(point, hood)` is
/// called with that point's `neighbours` nearest eligible rows when `neighbours > 0`
/// (MCFPS), or with an empty slice.
pub(crate) fn fps_core(
    embeddings: &ArrayView2<'_, f32>,
    count: usize,
    eligible: &[bool],
    first: usize,
    neighbours: usize,
    mut on_anchor: impl FnMut(usize, &[usize]),
) -> Vec<usize> {
    let mut order = Vec::with_capacity(count.min(embeddings.nrows()));
    let mut traversal = Traversal::new(embeddings, eligible, &[]);
    order.push(first);
    let hoods = traversal.add_centres(&[first], neighbours);
    on_anchor(first, hoods.first().map_or(&[], Vec::as_slice));
    while order.len() < count {
        let batch = traversal.advance(count - order.len(), neighbours);
        if batch.is_empty() {
            break;
        }
        for centre in batch {
            order.push(centre.index);
            on_anchor(centre.index, &centre.neighbours);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use crate::sampling::fixtures::clusters;
    use ndarray::Array2;

    use super::*;

    #[test]
    fn hand_worked_three_clusters() {
        // Start at 0 = (0, 0). Squared distances to 0:
        //   1: 1, 2: 1, 3: 100, 4: 121, 5: 101, 6: 100, 7: 101, 8: 121
        // Max 121 is shared by 4 and 8 -> the lower index, 4 = (11, 0).
        // Squared distances to 4: 1: 100, 2: 122, 3: 1, 5: 2, 6: 221, 7: 200, 8: 242.
        // Nearest-chosen: 1: 1, 2: 1, 3: 1, 5: 2, 6: 100, 7: 101, 8: 121 -> 8 = (0, 11).
        // Nearest-chosen after 8 (distances to 8: 6: 1, 7: 2, 1: 122, 2: 100, 3: 221, 5: 200):
        //   1: 1, 2: 1, 3: 1, 5: 2, 6: 1, 7: 2 -> max 2 at 5 and 7 -> 5.
        let emb = clusters();
        let all = [true; 9];
        assert_eq!(
            farthest_point_sampling_from(emb.view(), 3, &all, 0).unwrap(),
            vec![0, 4, 8]
        );
        assert_eq!(
            farthest_point_sampling_from(emb.view(), 4, &all, 0).unwrap(),
            vec![0, 4, 8, 5]
        );
    }

    #[test]
    fn excluded_rows_are_skipped() {
        // Excluding 4 and 8: after 0 the farthest is 5 or 7 (101); tie -> 5. Then the
        // nearest-chosen distances are 1: 1, 2: 1, 3: 1, 6: 100, 7: 101 -> 7.
        let emb = clusters();
        let mut eligible = [true; 9];
        eligible[4] = false;
        eligible[8] = false;
        assert_eq!(
            farthest_point_sampling_from(emb.view(), 3, &eligible, 0).unwrap(),
            vec![0, 5, 7]
        );
    }

    #[test]
    fn count_over_pool_returns_every_eligible_row() {
        let emb = clusters();
        let mut eligible = [false; 9];
        eligible[2] = true;
        eligible[6] = true;
        eligible[7] = true;
        let mut got = farthest_point_sampling(emb.view(), 50, &eligible, 1).unwrap();
        got.sort_unstable();
        assert_eq!(got, vec![2, 6, 7]);
        assert_eq!(
            farthest_point_sampling(emb.view(), 3, &[false; 9], 1).unwrap(),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn seeded_start_is_deterministic_and_eligible() {
        let emb = clusters();
        let mut eligible = [true; 9];
        eligible[0] = false;
        for seed in 0..30 {
            let a = farthest_point_sampling(emb.view(), 3, &eligible, seed).unwrap();
            assert_eq!(
                a,
                farthest_point_sampling(emb.view(), 3, &eligible, seed).unwrap()
            );
            assert!(!a.contains(&0));
            // One anchor per cluster, whatever the start.
            let mut clusters_hit: Vec<usize> = a.iter().map(|&i| i / 3).collect();
            clusters_hit.sort_unstable();
            assert_eq!(clusters_hit, vec![0, 1, 2], "seed {seed}: {a:?}");
        }
    }

    #[test]
    fn duplicates_are_chosen_once_each() {
        // All points equal: every distance is 0, so ties go to the lower index.
        let emb = Array2::<f32>::ones((4, 3));
        assert_eq!(
            farthest_point_sampling_from(emb.view(), 4, &[true; 4], 2).unwrap(),
            vec![2, 0, 1, 3]
        );
    }

    #[test]
    fn degenerate_inputs() {
        let emb = clusters();
        let all = [true; 9];
        assert_eq!(
            farthest_point_sampling(emb.view(), 0, &all, 0),
            Err(SamplingError::ZeroAnchors)
        );
        assert_eq!(
            farthest_point_sampling_from(emb.view(), 2, &all, 9),
            Err(SamplingError::IndexOutOfRange { index: 9, tiles: 9 })
        );
        let mut eligible = all;
        eligible[3] = false;
        assert_eq!(
            farthest_point_sampling_from(emb.view(), 2, &eligible, 3),
            Err(SamplingError::NotEligible { index: 3 })
        );
        assert!(matches!(
            farthest_point_sampling(emb.view(), 2, &all[..8], 0),
            Err(SamplingError::MaskLengthMismatch {
                mask_len: 8,
                tiles: 9,
                ..
            })
        ));
        let mut nan = clusters();
        nan[[6, 1]] = f32::NAN;
        assert!(matches!(
            farthest_point_sampling(nan.view(), 2, &all, 0),
            Err(SamplingError::NonFiniteEmbedding {
                tile: 6,
                dim: 1,
                ..
            })
        ));
    }
}
