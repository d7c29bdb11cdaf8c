//! Core-set selection by k-center greedy over the embedding space.
//!
//! Sener & Savarese 2018, *Active Learning for Convolutional Neural Networks: A Core-Set
//! Approach* (ICLR), Sec. 4.2 and Algorithm 1 (k-Center-Greedy): choosing the batch whose
//! balls cover the pool with the smallest radius is the k-center problem; the greedy
//! solution, a 2-approximation, starts from the labelled points as centres and repeatedly
//! adds the unlabelled point farthest from its nearest centre,
//! `u = argmax_{i ∈ pool} min_{j ∈ centres} Δ(x_i, x_j)`. Möllenbrok, Sumbul & Demir 2023
//! (*Deep Active Learning for Multi-Label Classification of Remote Sensing Images*, IEEE
//! GRSL, Sec. I, ref. [7]) cite it as the diversity baseline; it ignores uncertainty.
//!
//! The greedy step is farthest-point sampling seeded with several points at once, so it
//! shares the farthest-first traversal of
//! [`farthest_point_sampling`](crate::sampling::farthest_point_sampling) (exact `f32`
//! distances, split across cores, with rows skipped only when an 8-bit sketch proves the
//! new centre cannot be nearer).

use ndarray::ArrayView2;

use crate::sampling::error::SamplingError;
use crate::sampling::farthest_point::seeded_start;
use crate::sampling::input::{check_embeddings, eligible_mask, labelled_mask};
use crate::sampling::traversal::Traversal;
use crate::sampling::{Pick, SelectionInput};

/// Selects up to `budget` tiles by k-center greedy (Sener & Savarese 2018, Algorithm 1),
/// ranked in selection order.
///
/// The initial centres are the [`labelled`](SelectionInput::labelled) tiles. Without any,
/// the first pick is drawn uniformly among the eligible tiles (ChaCha8 seeded with `seed`;
/// the seed is not used otherwise) and becomes the first centre. Then, until the budget
/// is reached or no eligible tile is left, the eligible tile with the largest Euclidean
/// embedding distance to its nearest centre is picked (equal distances: lower index) and
/// becomes a centre itself. Excluded tiles are neither picked nor centres.
///
/// Each [`Pick`] carries as `score` the distance (not squared) from the tile to its nearest
/// centre at the moment it was picked, so scores never increase down the ranking; the
/// cold-start first pick, chosen with no centre at all, scores `+∞` (serialised as JSON
/// `null`). The uncertainty is not used for choosing (it must still be finite for eligible
/// tiles, as for every strategy). No pick has an anchor.
///
/// Costs `O((L + budget) · N · D)` time for `L` labelled tiles and `O(N)` memory: one
/// distance pass per centre, no `N × N` matrix.
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], shape and mask-length mismatches,
/// [`SamplingError::NoEmbeddingDimensions`], [`SamplingError::NonFiniteUncertainty`] for
/// an eligible tile, and [`SamplingError::NonFiniteEmbedding`] for an eligible or a
/// labelled tile.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::{SelectionInput, coreset};
///
/// // Tiles on a line at 0, 1, 4, 10; tile 0 is already labelled.
/// let embeddings = array![[0.0_f32], [1.0], [4.0], [10.0]];
/// let uncertainty = array![0.0_f32, 0.0, 0.0, 0.0];
/// let labelled = [true, false, false, false];
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view()).with_labelled(&labelled);
/// let picks = coreset(&input, 2, 0)?;
/// // 10 is farthest from the centre 0; then 4 is 4 from 0 and 6 from 10, while 1 is 1 from 0.
/// assert_eq!(picks.iter().map(|p| p.index).collect::<Vec<_>>(), vec![3, 2]);
/// assert_eq!(picks[0].score, 10.0);
/// assert_eq!(picks[1].score, 4.0);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn coreset(
    input: &SelectionInput<'_>,
    budget: usize,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    let eligible = eligible_mask(input)?;
    let labelled = labelled_mask(input);
    let used: Vec<bool> = eligible
        .iter()
        .zip(&labelled)
        .map(|(&e, &l)| e || l)
        .collect();
    check_embeddings(&input.embeddings, &used)?;
    let centres: Vec<usize> = labelled
        .iter()
        .enumerate()
        .filter_map(|(i, &l)| l.then_some(i))
        .collect();
    Ok(k_center_greedy(
        &input.embeddings,
        &eligible,
        &centres,
        budget,
        seed,
    ))
}

/// k-center greedy on validated input: `centres` are the initial centres (any rows), only
/// `eligible` rows are picked.
fn k_center_greedy(
    embeddings: &ArrayView2<'_, f32>,
    eligible: &[bool],
    centres: &[usize],
    budget: usize,
    seed: u64,
) -> Vec<Pick> {
    let tiles = embeddings.nrows();
    let mut traversal = Traversal::new(embeddings, eligible, centres);
    traversal.add_centres(centres, 0);
    let mut picks = Vec::with_capacity(budget.min(tiles));
    if centres.is_empty() {
        let Some(first) = seeded_start(eligible, seed) else {
            return picks;
        };
        picks.push(Pick {
            index: first,
            score: f32::INFINITY,
            anchor: None,
            cluster: None,
            covers: None,
            stage: None,
        });
        traversal.add_centres(&[first], 0);
    }
    while picks.len() < budget {
        let batch = traversal.advance(budget - picks.len(), 0);
        if batch.is_empty() {
            break;
        }
        picks.extend(batch.into_iter().map(|c| Pick {
            index: c.index,
            score: c.squared.sqrt() as f32,
            anchor: None,
            cluster: None,
            covers: None,
            stage: None,
        }));
    }
    picks
}

#[cfg(test)]
mod tests {
    use crate::sampling::fixtures::{clusters, indices};
    use ndarray::{Array1, Array2, array};

    use super::*;
    use crate::sampling::farthest_point::farthest_point_sampling_from;

    #[test]
    fn labelled_tiles_are_the_initial_centres() {
        // Centres: labelled 0 = (0, 0) and 3 = (10, 0). Squared distances to the nearest:
        //   1: min(1, 81) = 1        2: min(1, 101) = 1
        //   4: min(121, 1) = 1       5: min(101, 1) = 1
        //   6: min(100, 200) = 100   7: min(101, 181) = 101   8: min(121, 221) = 121
        // -> 8 at √121 = 11. Distances to 8 = (0, 11): 6: 1, 7: 2, others ≥ 100, so the
        // nearest become 6: 1, 7: 2 -> max 2 at 7 (√2). Then 1, 2, 4, 5, 6 all at 1 -> 1.
        let emb = clusters();
        let unc = Array1::<f32>::zeros(9);
        let mut labelled = [false; 9];
        labelled[0] = true;
        labelled[3] = true;
        let input = SelectionInput::new(emb.view(), unc.view()).with_labelled(&labelled);
        let picks = coreset(&input, 3, 123).unwrap();
        assert_eq!(indices(&picks), vec![8, 7, 1]);
        assert_eq!(picks[0].score, 11.0);
        assert_eq!(picks[1].score, 2.0_f32.sqrt());
        assert_eq!(picks[2].score, 1.0);
        assert!(picks.iter().all(|p| p.anchor.is_none()));
        // With centres the seed is not used.
        assert_eq!(coreset(&input, 3, 7).unwrap(), picks);
    }

    #[test]
    fn cold_start_is_fps_from_the_seeded_tile() {
        // Without labelled tiles the first pick is the seeded start, scored +∞, and the
        // rest is exactly farthest-point sampling from it.
        let emb = clusters();
        let unc = Array1::<f32>::zeros(9);
        let input = SelectionInput::new(emb.view(), unc.view());
        let all = [true; 9];
        for seed in 0..10 {
            let picks = coreset(&input, 4, seed).unwrap();
            let first = seeded_start(&all, seed).unwrap();
            assert_eq!(picks[0].index, first);
            assert_eq!(picks[0].score, f32::INFINITY);
            assert_eq!(
                indices(&picks),
                farthest_point_sampling_from(emb.view(), 4, &all, first).unwrap()
            );
            assert!(picks.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }

    #[test]
    fn excluded_tiles_are_neither_picked_nor_centres() {
        // Line at 0, 1, 5, 6. Tile 0 labelled, tile 3 (x = 6) excluded: it is not a centre
        // and not picked. Nearest to centre 0: 1: 1, 2: 5 -> 2 (score 5), then 1 (score 1).
        let emb = array![[0.0_f32], [1.0], [5.0], [6.0]];
        let unc = Array1::<f32>::zeros(4);
        let labelled = [true, false, false, false];
        let excluded = [false, false, false, true];
        let input = SelectionInput::new(emb.view(), unc.view())
            .with_labelled(&labelled)
            .with_excluded(&excluded);
        let picks = coreset(&input, 10, 0).unwrap();
        assert_eq!(indices(&picks), vec![2, 1]);
        assert_eq!(picks[0].score, 5.0);
        assert_eq!(picks[1].score, 1.0);
    }

    #[test]
    fn duplicates_of_centres_score_zero_and_ties_go_to_lower_index() {
        // All rows equal: every distance is 0 once there is a centre.
        let emb = Array2::<f32>::ones((4, 2));
        let unc = Array1::<f32>::zeros(4);
        let labelled = [false, false, true, false];
        let input = SelectionInput::new(emb.view(), unc.view()).with_labelled(&labelled);
        let picks = coreset(&input, 5, 0).unwrap();
        assert_eq!(indices(&picks), vec![0, 1, 3]);
        assert!(picks.iter().all(|p| p.score == 0.0));
    }

    #[test]
    fn degenerate_inputs() {
        let emb = clusters();
        let unc = Array1::<f32>::zeros(9);
        let input = SelectionInput::new(emb.view(), unc.view());
        assert_eq!(coreset(&input, 0, 0), Err(SamplingError::ZeroBudget));
        // Nothing eligible: nothing to pick, not an error.
        let labelled = [true; 9];
        let all_labelled = input.with_labelled(&labelled);
        assert_eq!(coreset(&all_labelled, 3, 0), Ok(vec![]));
        // A labelled centre must have a finite embedding ...
        let mut nan = clusters();
        nan[[4, 1]] = f32::NAN;
        let mut one = [false; 9];
        one[4] = true;
        let input = SelectionInput::new(nan.view(), unc.view()).with_labelled(&one);
        assert!(matches!(
            coreset(&input, 2, 0),
            Err(SamplingError::NonFiniteEmbedding {
                tile: 4,
                dim: 1,
                ..
            })
        ));
        // ... an excluded, unlabelled tile need not.
        let input = SelectionInput::new(nan.view(), unc.view()).with_excluded(&one);
        assert_eq!(coreset(&input, 1, 0).map(|p| p.len()), Ok(1));
        let flat = Array2::<f32>::zeros((9, 0));
        let input = SelectionInput::new(flat.view(), unc.view());
        assert_eq!(
            coreset(&input, 2, 0),
            Err(SamplingError::NoEmbeddingDimensions)
        );
    }
}
