//! Uncertainty + clustering: the most uncertain tile of each k-means cluster among the
//! most uncertain tiles.
//!
//! Möllenbrok, Sumbul & Demir 2023, *Deep Active Learning for Multi-Label Classification
//! of Remote Sensing Images* (IEEE GRSL), Sec. II (first paragraph) and Sec. II-B: "the
//! most uncertain `mb` samples are selected in the first step, and then `b` uncertain
//! samples (which are as diverse as possible to each other) are selected in the second
//! step": the `m·b` candidates are clustered into `b` clusters with k-means++ (Arthur &
//! Vassilvitskii 2007; here followed by Lloyd iterations, see [`kmeans`]) and "from each
//! cluster we select the sample associated to the highest multi-label uncertainty".
//!
//! The uncertainty decides which of the paper's query functions this is (Sec. II-A):
//!
//! | query function | [`SelectionInput::uncertainty`] |
//! |---|---|
//! | LL+Clustering | [`predicted_loss`](crate::uncertainty::predicted_loss), the loss-prediction head's output (Eq. 4) |
//! | TPD+Clustering | [`tpd`](crate::uncertainty::tpd) between this and the previous round's outputs (Eq. 5) |
//! | MGE+Clustering | [`mge`](crate::uncertainty::mge), the gradient-embedding norm (Eqs. 6–7) |
//!
//! TPD needs the previous round's model. In the first round there is none and the paper
//! "relies on random sampling" (Sec. II-A-2): pass [`Strategy::Random`] then, which is
//! what [`tpd_round_strategy`] returns. The paper uses `m = 3` (UCMerced) and `m = 4`
//! (TreeSatAI) (Sec. III-A); `m = 1` is plain top-k. Whether the model is warm- or
//! cold-started between rounds (Sec. III-B, Fig. 3) does not concern the selection.

use ndarray::Axis;
use serde::{Deserialize, Serialize};

use crate::sampling::error::SamplingError;
use crate::sampling::input::{check_embeddings, eligible_indices, eligible_mask};
use crate::sampling::kmeans::kmeans;
use crate::sampling::rank::rank_order;
use crate::sampling::{Pick, SelectionInput, Strategy};

/// Parameters of [`clustering`]. Serde fills missing fields from [`Default`] and rejects
/// unknown ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusteringParams {
    /// Candidate factor `m`: the `m · budget` most uncertain eligible tiles are clustered
    /// (default 10; the paper uses 3–4).
    pub m: usize,
    /// Lloyd iterations after k-means++ seeding (default 20; fewer run when the clusters
    /// settle earlier, 0 keeps the seeding's clusters).
    pub iterations: usize,
}

impl ClusteringParams {
    /// Default candidate factor `m`.
    pub const DEFAULT_M: usize = 10;
    /// Default number of Lloyd iterations.
    pub const DEFAULT_ITERATIONS: usize = 20;
}

impl Default for ClusteringParams {
    /// `m: 10`, `iterations: 20`.
    fn default() -> Self {
        Self {
            m: Self::DEFAULT_M,
            iterations: Self::DEFAULT_ITERATIONS,
        }
    }
}

/// Selects up to `budget` tiles by uncertainty + clustering (Möllenbrok et al. 2023,
/// Sec. II-B; see the module docs), most uncertain first.
///
/// Steps, over the eligible tiles only:
/// 1. the `m · budget` most uncertain tiles are the candidates (equal uncertainty: lower
///    index), all eligible tiles when there are fewer;
/// 2. when there are at most `budget` candidates, all of them are picked (there is
///    nothing to choose between);
/// 3. otherwise their embeddings are clustered into `budget` clusters by [`kmeans`]
///    (k-means++ seeding with ChaCha8 seeded by `seed`, then up to `params.iterations`
///    Lloyd iterations);
/// 4. the most uncertain tile of each cluster is picked (equal: lower index); a cluster
///    left empty by Lloyd's iterations contributes nothing, and fewer clusters exist
///    when candidates share embeddings, so fewer than `budget` tiles can come back.
///
/// Picks are ranked by uncertainty, highest first (equal: lower index), carry the tile's
/// uncertainty as `score` and no anchor.
///
/// Costs `O(N + c · b · D · (b + iterations))` for `c = min(m · b, eligible)` candidates
/// and `b = budget`, and `O(c · D)` memory for the candidates' embeddings.
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], [`SamplingError::ZeroCandidateFactor`] (`m == 0`),
/// shape and mask-length mismatches, [`SamplingError::NonFiniteUncertainty`],
/// [`SamplingError::NoEmbeddingDimensions`] and [`SamplingError::NonFiniteEmbedding`] for
/// an eligible tile.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::{ClusteringParams, SelectionInput, clustering};
///
/// // Two pairs of identical embeddings and a far, certain tile.
/// let embeddings = array![[0.0_f32], [0.0], [9.0], [9.0], [50.0]];
/// let uncertainty = array![0.9_f32, 0.8, 0.7, 0.6, 0.1];
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view());
/// let params = ClusteringParams { m: 2, iterations: 20 };
/// let picks = clustering(&input, 2, &params, 0)?;
/// // Candidates: the 4 most uncertain (tile 4 is left out); 2 clusters {0, 1} and {2, 3};
/// // top-k would have picked 0 and 1, which look the same.
/// assert_eq!(picks.iter().map(|p| p.index).collect::<Vec<_>>(), vec![0, 2]);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn clustering(
    input: &SelectionInput<'_>,
    budget: usize,
    params: &ClusteringParams,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    if params.m == 0 {
        return Err(SamplingError::ZeroCandidateFactor);
    }
    let eligible = eligible_mask(input)?;
    check_embeddings(&input.embeddings, &eligible)?;
    let mut chosen = cluster_pick(input, eligible_indices(&eligible), budget, params, seed)?;
    let u = &input.uncertainty;
    chosen.sort_unstable_by(|&a, &b| rank_order(u[a], a, u[b], b));
    Ok(chosen
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

/// Steps 1–4 of [`clustering`] over `candidates` (eligible tiles whose embeddings were
/// checked): the most uncertain tile of each of `budget` k-means clusters of the
/// `m · budget` most uncertain candidates; all candidates when there are at most
/// `budget`. The result is in rank order (most uncertain first).
pub(crate) fn cluster_pick(
    input: &SelectionInput<'_>,
    mut candidates: Vec<usize>,
    budget: usize,
    params: &ClusteringParams,
    seed: u64,
) -> Result<Vec<usize>, SamplingError> {
    let u = &input.uncertainty;
    let by_rank = |&a: &usize, &b: &usize| rank_order(u[a], a, u[b], b);
    let wanted = params.m.saturating_mul(budget);
    if wanted > 0 && wanted < candidates.len() {
        candidates.select_nth_unstable_by(wanted - 1, by_rank);
        candidates.truncate(wanted);
    }
    candidates.sort_unstable_by(by_rank);
    if candidates.len() <= budget {
        return Ok(candidates);
    }
    let points = input.embeddings.select(Axis(0), &candidates);
    let clusters = kmeans(points.view(), budget, params.iterations, seed)?;
    // Candidates are in rank order, so the first member of a cluster is its most
    // uncertain tile.
    let mut best: Vec<Option<usize>> = vec![None; clusters.clusters()];
    for (&tile, &cluster) in candidates.iter().zip(&clusters.assignment) {
        if let Some(slot @ None) = best.get_mut(cluster) {
            *slot = Some(tile);
        }
    }
    Ok(best.into_iter().flatten().collect())
}

/// The strategy for a TPD+Clustering round (Möllenbrok et al. 2023, Sec. II-A-2): with
/// the previous round's outputs available, [`Strategy::Clustering`] with `params` over
/// [`tpd`](crate::uncertainty::tpd) uncertainties; in the first round, where there is no
/// previous model, [`Strategy::Random`] as in the paper.
///
/// # Examples
///
/// ```
/// use nexttile::sampling::{ClusteringParams, Strategy, tpd_round_strategy};
///
/// let params = ClusteringParams::default();
/// assert_eq!(tpd_round_strategy(false, params), Strategy::Random);
/// assert_eq!(tpd_round_strategy(true, params), Strategy::Clustering(params));
/// ```
pub fn tpd_round_strategy(previous_available: bool, params: ClusteringParams) -> Strategy {
    if previous_available {
        Strategy::Clustering(params)
    } else {
        Strategy::Random
    }
}

#[cfg(test)]
mod tests {
    use crate::sampling::fixtures::indices;
    use ndarray::{Array1, Array2, array};

    use super::*;

    /// Three groups of identical embeddings (so k-means++ must seed one per group and the
    /// clusters are the groups, whatever the seed) with uncertainties
    ///   group A (x = 0):   0: 0.9, 1: 0.3, 2: 0.8
    ///   group B (x = 10):  3: 0.7, 4: 0.6
    ///   group C (x = 20):  5: 0.5, 6: 0.2
    fn groups() -> (Array2<f32>, Array1<f32>) {
        (
            array![[0.0_f32], [0.0], [0.0], [10.0], [10.0], [20.0], [20.0]],
            array![0.9_f32, 0.3, 0.8, 0.7, 0.6, 0.5, 0.2],
        )
    }

    #[test]
    fn hand_worked_three_groups() {
        // b = 3, m = 10: all 7 tiles are candidates, clustered into A, B, C; winners
        // 0 (0.9), 3 (0.7), 5 (0.5). Top-k would take 0, 2, 3 (two from group A).
        let (emb, unc) = groups();
        let input = SelectionInput::new(emb.view(), unc.view());
        for seed in 0..10 {
            let picks = clustering(&input, 3, &ClusteringParams::default(), seed).unwrap();
            assert_eq!(indices(&picks), vec![0, 3, 5], "seed {seed}");
            assert!(
                picks
                    .iter()
                    .all(|p| p.score == unc[p.index] && p.anchor.is_none())
            );
        }
    }

    #[test]
    fn only_the_m_b_most_uncertain_are_candidates() {
        // b = 2, m = 2: candidates are the 4 most uncertain, 0 (0.9), 2 (0.8), 3 (0.7),
        // 4 (0.6), i.e. groups A and B only; group C never gets a cluster. Winners: 0, 3.
        let (emb, unc) = groups();
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = ClusteringParams {
            m: 2,
            iterations: 20,
        };
        assert_eq!(
            indices(&clustering(&input, 2, &params, 4).unwrap()),
            vec![0, 3]
        );
        // m = 1 with b = 2: 2 candidates <= b, so both are picked: plain top-k (0, 2).
        let params = ClusteringParams {
            m: 1,
            iterations: 20,
        };
        assert_eq!(
            indices(&clustering(&input, 2, &params, 4).unwrap()),
            vec![0, 2]
        );
    }

    #[test]
    fn fewer_distinct_embeddings_than_budget_give_fewer_picks() {
        // b = 5 < 7 candidates, but only 3 distinct embeddings: 3 clusters, 3 picks.
        let (emb, unc) = groups();
        let input = SelectionInput::new(emb.view(), unc.view());
        assert_eq!(
            indices(&clustering(&input, 5, &ClusteringParams::default(), 0).unwrap()),
            vec![0, 3, 5]
        );
    }

    #[test]
    fn excluded_and_labelled_tiles_are_not_candidates() {
        // Tile 0 labelled, tile 3 excluded: group A's best is now 2 (0.8), group B's 4
        // (0.6), group C's 5 (0.5).
        let (emb, unc) = groups();
        let mut labelled = [false; 7];
        labelled[0] = true;
        let mut excluded = [false; 7];
        excluded[3] = true;
        let input = SelectionInput::new(emb.view(), unc.view())
            .with_labelled(&labelled)
            .with_excluded(&excluded);
        let picks = clustering(&input, 3, &ClusteringParams::default(), 1).unwrap();
        assert_eq!(indices(&picks), vec![2, 4, 5]);
    }

    #[test]
    fn budget_over_pool_returns_all_eligible_ranked() {
        let (emb, unc) = groups();
        let input = SelectionInput::new(emb.view(), unc.view());
        assert_eq!(
            indices(&clustering(&input, 7, &ClusteringParams::default(), 0).unwrap()),
            vec![0, 2, 3, 4, 5, 1, 6]
        );
    }

    #[test]
    fn degenerate_inputs() {
        let (emb, unc) = groups();
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = ClusteringParams::default();
        assert_eq!(
            clustering(&input, 0, &params, 0),
            Err(SamplingError::ZeroBudget)
        );
        let zero_m = ClusteringParams {
            m: 0,
            iterations: 20,
        };
        assert_eq!(
            clustering(&input, 2, &zero_m, 0),
            Err(SamplingError::ZeroCandidateFactor)
        );
        let mut nan = unc.clone();
        nan[6] = f32::NAN;
        let input = SelectionInput::new(emb.view(), nan.view());
        assert!(matches!(
            clustering(&input, 2, &params, 0),
            Err(SamplingError::NonFiniteUncertainty { tile: 6, .. })
        ));
        let flat = Array2::<f32>::zeros((7, 0));
        let input = SelectionInput::new(flat.view(), unc.view());
        assert_eq!(
            clustering(&input, 2, &params, 0),
            Err(SamplingError::NoEmbeddingDimensions)
        );
        let excluded = [true; 7];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        assert_eq!(clustering(&input, 2, &params, 0), Ok(vec![]));
        // Huge m · b saturates instead of overflowing.
        let input = SelectionInput::new(emb.view(), unc.view());
        let huge = ClusteringParams {
            m: usize::MAX,
            iterations: 1,
        };
        assert_eq!(clustering(&input, 3, &huge, 0).map(|p| p.len()), Ok(3));
    }

    #[test]
    fn tpd_first_round_is_random() {
        let params = ClusteringParams {
            m: 4,
            iterations: 5,
        };
        assert_eq!(tpd_round_strategy(false, params), Strategy::Random);
        assert_eq!(
            tpd_round_strategy(true, params),
            Strategy::Clustering(params)
        );
    }
}
