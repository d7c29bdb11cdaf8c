//! Random: a seeded uniform sample of the eligible tiles.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::sampling::error::SamplingError;
use crate::sampling::input::{eligible_indices, eligible_mask};
use crate::sampling::{Pick, SelectionInput};

/// Picks `budget` eligible tiles uniformly at random without replacement, ranked in the
/// order they were drawn. The draw is deterministic for a given `seed` (ChaCha8). Returns
/// every eligible tile (in random order) when `budget` exceeds their number. Each [`Pick`]
/// carries the tile's uncertainty as `score` (pass zeros when there is no model yet) and
/// no anchor.
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], shape mismatches, and
/// [`SamplingError::NonFiniteUncertainty`] for an eligible tile.
///
/// # Examples
///
/// ```
/// use ndarray::Array2;
/// use ndarray::Array1;
/// use nexttile::sampling::{SelectionInput, random_sample};
///
/// let embeddings = Array2::<f32>::zeros((100, 8));
/// let uncertainty = Array1::<f32>::zeros(100);
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view());
/// let a = random_sample(&input, 5, 42)?;
/// assert_eq!(a.len(), 5);
/// assert_eq!(a, random_sample(&input, 5, 42)?);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn random_sample(
    input: &SelectionInput<'_>,
    budget: usize,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    let eligible = eligible_mask(input)?;
    let pool = eligible_indices(&eligible);
    let amount = budget.min(pool.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok(rand::seq::index::sample(&mut rng, pool.len(), amount)
        .into_iter()
        .filter_map(|j| pool.get(j).copied())
        .map(|index| Pick {
            index,
            score: input.uncertainty[index],
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
    use ndarray::{Array1, Array2};

    use super::*;

    #[test]
    fn deterministic_distinct_and_seed_dependent() {
        let emb = Array2::<f32>::zeros((50, 2));
        let unc = Array1::from_shape_fn(50, |i| i as f32 / 50.0);
        let input = SelectionInput::new(emb.view(), unc.view());
        let a = random_sample(&input, 10, 7).unwrap();
        let b = random_sample(&input, 10, 7).unwrap();
        assert_eq!(a, b);
        let mut sorted = indices(&a);
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "picks must be distinct");
        assert!(
            a.iter()
                .all(|p| p.score == unc[p.index] && p.anchor.is_none())
        );
        // With C(50, 10) ≈ 1e10 possible draws, two fixed seeds giving the same ordered
        // sample would be a broken generator; the assertion is deterministic for these seeds.
        let c = random_sample(&input, 10, 8).unwrap();
        assert_ne!(indices(&a), indices(&c));
    }

    #[test]
    fn excluded_never_picked_and_budget_over_pool_returns_all() {
        let emb = Array2::<f32>::zeros((6, 1));
        let unc = Array1::<f32>::zeros(6);
        let excluded = [true, false, true, false, false, true];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        for seed in 0..20 {
            let mut got = indices(&random_sample(&input, 100, seed).unwrap());
            got.sort_unstable();
            assert_eq!(got, vec![1, 3, 4], "seed {seed}");
        }
    }

    #[test]
    fn zero_budget_and_nan() {
        let emb = Array2::<f32>::zeros((2, 1));
        let unc = Array1::from_vec(vec![0.0_f32, f32::NAN]);
        let input = SelectionInput::new(emb.view(), unc.view());
        assert!(matches!(
            random_sample(&input, 1, 0),
            Err(SamplingError::NonFiniteUncertainty { tile: 1, .. })
        ));
        assert_eq!(random_sample(&input, 0, 0), Err(SamplingError::ZeroBudget));
    }
}
