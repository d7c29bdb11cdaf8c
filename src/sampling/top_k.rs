//! Top-k: the most uncertain eligible tiles.

use crate::sampling::error::SamplingError;
use crate::sampling::input::{eligible_indices, eligible_mask};
use crate::sampling::rank::rank_order;
use crate::sampling::{Pick, SelectionInput};

/// Picks the `budget` eligible tiles with the highest uncertainty, most uncertain first;
/// equal uncertainties are ranked by lower tile index. The embeddings are not used (their
/// row count must still match). Returns every eligible tile when `budget` exceeds their
/// number. Each [`Pick`] carries the tile's uncertainty as `score` and no anchor.
///
/// Runs in `O(N + budget · log budget)` on average.
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], shape mismatches, and
/// [`SamplingError::NonFiniteUncertainty`] for a NaN or infinite uncertainty of an eligible
/// tile.
///
/// # Examples
///
/// ```
/// use ndarray::{Array2, array};
/// use nexttile::sampling::{SelectionInput, top_k};
///
/// let embeddings = Array2::<f32>::zeros((4, 0)); // not used by top-k
/// let uncertainty = array![0.2_f32, 0.9, 0.5, 0.9];
/// let excluded = [false, false, true, false];
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view()).with_excluded(&excluded);
/// let picks = top_k(&input, 2)?;
/// // 1 and 3 tie at 0.9: the lower index ranks first.
/// assert_eq!(picks.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1, 3]);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn top_k(input: &SelectionInput<'_>, budget: usize) -> Result<Vec<Pick>, SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    let eligible = eligible_mask(input)?;
    let u = &input.uncertainty;
    let mut pool = eligible_indices(&eligible);
    let by_rank = |&a: &usize, &b: &usize| rank_order(u[a], a, u[b], b);
    if budget < pool.len() {
        pool.select_nth_unstable_by(budget - 1, by_rank);
        pool.truncate(budget);
    }
    pool.sort_unstable_by(by_rank);
    Ok(pool
        .into_iter()
        .map(|index| Pick {
            index,
            score: u[index],
            anchor: None,
            cluster: None,
            covers: None,
            stage: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::sampling::fixtures::indices;
    use ndarray::{Array1, Array2, array};

    use super::*;

    #[test]
    fn highest_first_ties_by_index() {
        // Sorted by (uncertainty desc, index asc): 4 (0.8), 1 (0.7), 3 (0.7), 0 (0.3), 2 (0.1).
        let emb = Array2::<f32>::zeros((5, 2));
        let unc = array![0.3_f32, 0.7, 0.1, 0.7, 0.8];
        let input = SelectionInput::new(emb.view(), unc.view());
        let picks = top_k(&input, 3).unwrap();
        assert_eq!(indices(&picks), vec![4, 1, 3]);
        assert_eq!(picks[0].score, 0.8);
        assert!(picks.iter().all(|p| p.anchor.is_none()));
        assert_eq!(indices(&top_k(&input, 5).unwrap()), vec![4, 1, 3, 0, 2]);
    }

    #[test]
    fn excluded_never_picked_and_budget_over_pool_returns_all() {
        let emb = Array2::<f32>::zeros((4, 1));
        let unc = array![0.9_f32, 0.1, 0.5, 0.95];
        let excluded = [true, false, false, true];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        assert_eq!(indices(&top_k(&input, 10).unwrap()), vec![2, 1]);
    }

    #[test]
    fn nan_is_an_error_unless_excluded() {
        let emb = Array2::<f32>::zeros((3, 1));
        let unc = array![0.2_f32, f32::NAN, 0.4];
        let input = SelectionInput::new(emb.view(), unc.view());
        let err = top_k(&input, 1).unwrap_err();
        assert!(matches!(
            err,
            SamplingError::NonFiniteUncertainty { tile: 1, .. }
        ));
        assert!(err.to_string().contains("tile 1"), "{err}");
        let excluded = [false, true, false];
        let input = input.with_excluded(&excluded);
        assert_eq!(indices(&top_k(&input, 3).unwrap()), vec![2, 0]);
    }

    #[test]
    fn degenerate_inputs() {
        let emb = Array2::<f32>::zeros((0, 3));
        let unc = Array1::<f32>::zeros(0);
        let input = SelectionInput::new(emb.view(), unc.view());
        assert_eq!(top_k(&input, 3), Ok(vec![]));
        assert_eq!(top_k(&input, 0), Err(SamplingError::ZeroBudget));
    }
}
