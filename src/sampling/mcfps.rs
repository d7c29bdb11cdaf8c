//! MCFPS: Monte-Carlo-dropout uncertainty within farthest-point-sampled neighbourhoods.
//!
//! Pogorzelski & Arlinghaus, *Enhancing Active Learning for Sentinel 2 Imagery through
//! Contrastive Learning and Uncertainty Estimation* (Helmholtz-Zentrum Hereon), Sec. III-B
//! and Algorithm 1: in the embedding space of a contrastive (MoCo) encoder,
//!
//! 1. farthest-point sampling picks `S` anchors (diversity),
//! 2. a nearest-neighbour search gives each anchor `S_i` a neighbourhood `M_i` of size `k`,
//! 3. every tile of `M_i` gets an MC-dropout uncertainty from the mean of `t` passes,
//! 4. the most uncertain tile of each neighbourhood is sent for labelling.
//!
//! The paper's uncertainty is the maximum of the mean class probabilities, the lowest
//! maximum being the most uncertain: pass
//! [`least_confidence`](crate::uncertainty::least_confidence) (`1 − max`) as
//! [`SelectionInput::uncertainty`] to follow it, or any other metric of
//! [`crate::uncertainty`].
//!
//! The paper leaves open what happens when neighbourhoods overlap; here anchors are served
//! in FPS order and a later anchor whose best tile is already taken takes its next most
//! uncertain untaken neighbour (or nothing, when all of them are taken).

use serde::{Deserialize, Serialize};

use crate::sampling::error::SamplingError;
use crate::sampling::farthest_point::{check_start, fps_core, seeded_start};
use crate::sampling::input::{check_embeddings, eligible_mask};
use crate::sampling::rank::rank_order;
use crate::sampling::{Pick, SelectionInput};

/// Parameters of [`mcfps`]. Serde fills missing fields from [`Default`] and rejects
/// unknown ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McfpsParams {
    /// Number of farthest-point anchors `S`; `None` uses the budget (one anchor per pick).
    pub anchors: Option<usize>,
    /// Neighbourhood size `k`, the anchor itself included (default 16).
    pub neighbours: usize,
}

impl McfpsParams {
    /// Default neighbourhood size `k`.
    pub const DEFAULT_NEIGHBOURS: usize = 16;
}

impl Default for McfpsParams {
    /// `anchors: None` (= budget), `neighbours: 16`.
    fn default() -> Self {
        Self {
            anchors: None,
            neighbours: Self::DEFAULT_NEIGHBOURS,
        }
    }
}

/// Selects up to `budget` tiles by MCFPS (Pogorzelski & Arlinghaus, Algorithm 1; see the
/// module docs), with the first farthest-point anchor drawn uniformly among the eligible
/// tiles (ChaCha8 seeded with `seed`).
///
/// Steps, over the eligible tiles only:
/// 1. farthest-point sampling chooses `S = params.anchors.unwrap_or(budget)` anchors
///    (all eligible tiles when `S` exceeds them);
/// 2. each anchor's neighbourhood is its `k = params.neighbours` nearest eligible tiles by
///    Euclidean distance, the anchor included;
/// 3. anchors in FPS order each pick the most uncertain not-yet-picked tile of their
///    neighbourhood (equal uncertainty: lower index); an anchor whose neighbourhood is all
///    picked contributes nothing;
/// 4. picks are ranked by uncertainty, highest first (equal: lower index), each carrying
///    its anchor, and the top `budget` are kept.
///
/// So at most `min(S, budget)` tiles come back, and fewer when overlapping neighbourhoods
/// run out of untaken tiles; in particular a budget above the number of eligible tiles
/// returns all of them only when the neighbourhoods allow it (always with `k = 1`, or with
/// `k` at least the number of eligible tiles). Costs `O(S · N · D)` time (the FPS distances
/// are reused for the neighbour search) and `O(N)` memory.
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], [`SamplingError::ZeroAnchors`] (`anchors: Some(0)`),
/// [`SamplingError::ZeroNeighbours`], shape mismatches,
/// [`SamplingError::NoEmbeddingDimensions`], and non-finite uncertainty or embedding
/// values of eligible tiles.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::{McfpsParams, SelectionInput, mcfps};
///
/// // Two clusters in 2-D; the uncertainty is 1 − max mean probability.
/// let embeddings = array![[0.0_f32, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]];
/// let uncertainty = array![0.1_f32, 0.6, 0.4, 0.2];
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view());
/// let params = McfpsParams { anchors: None, neighbours: 2 };
/// let picks = mcfps(&input, 2, &params, 0)?;
/// // One tile per cluster, the most uncertain of each, most uncertain first.
/// assert_eq!(picks.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1, 2]);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn mcfps(
    input: &SelectionInput<'_>,
    budget: usize,
    params: &McfpsParams,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    let (anchors, eligible) = validate(input, budget, params)?;
    Ok(match seeded_start(&eligible, seed) {
        Some(first) => run(input, &eligible, budget, anchors, params.neighbours, first),
        None => Vec::new(),
    })
}

/// Like [`mcfps`] but with the first farthest-point anchor pinned to tile `first` instead
/// of a seeded random one (for reproducing a run by hand, or for tests).
///
/// # Errors
///
/// Those of [`mcfps`], plus [`SamplingError::IndexOutOfRange`] and
/// [`SamplingError::NotEligible`] for a bad `first`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::{McfpsParams, SelectionInput, mcfps_from};
///
/// let embeddings = array![[0.0_f32], [1.0], [10.0], [11.0]];
/// let uncertainty = array![0.3_f32, 0.1, 0.2, 0.4];
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view());
/// let params = McfpsParams { anchors: Some(2), neighbours: 2 };
/// let picks = mcfps_from(&input, 2, &params, 0)?;
/// // Anchor 0 (x = 0) sees {0, 1} and picks 0; anchor 3 (x = 11) sees {3, 2} and picks 3.
/// assert_eq!(picks[0].index, 3);
/// assert_eq!(picks[0].anchor, Some(3));
/// assert_eq!(picks[1].index, 0);
/// assert_eq!(picks[1].anchor, Some(0));
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn mcfps_from(
    input: &SelectionInput<'_>,
    budget: usize,
    params: &McfpsParams,
    first: usize,
) -> Result<Vec<Pick>, SamplingError> {
    let (anchors, eligible) = validate(input, budget, params)?;
    check_start(&eligible, first)?;
    Ok(run(
        input,
        &eligible,
        budget,
        anchors,
        params.neighbours,
        first,
    ))
}

/// Checks the budget, the parameters and the input; returns `S` and the eligibility mask.
fn validate(
    input: &SelectionInput<'_>,
    budget: usize,
    params: &McfpsParams,
) -> Result<(usize, Vec<bool>), SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    let anchors = params.anchors.unwrap_or(budget);
    if anchors == 0 {
        return Err(SamplingError::ZeroAnchors);
    }
    if params.neighbours == 0 {
        return Err(SamplingError::ZeroNeighbours);
    }
    let eligible = eligible_mask(input)?;
    check_embeddings(&input.embeddings, &eligible)?;
    Ok((anchors, eligible))
}

/// MCFPS on validated input from a validated start.
fn run(
    input: &SelectionInput<'_>,
    eligible: &[bool],
    budget: usize,
    anchors: usize,
    neighbours: usize,
    first: usize,
) -> Vec<Pick> {
    let u = &input.uncertainty;
    let mut picked = vec![false; eligible.len()];
    let mut picks = Vec::with_capacity(anchors.min(eligible.len()));
    fps_core(
        &input.embeddings,
        anchors,
        eligible,
        first,
        neighbours,
        |anchor, hood| {
            let best = hood
                .iter()
                .copied()
                .filter(|&i| picked.get(i) == Some(&false))
                .min_by(|&a, &b| rank_order(u[a], a, u[b], b));
            if let Some(index) = best {
                if let Some(taken) = picked.get_mut(index) {
                    *taken = true;
                }
                picks.push(Pick {
                    index,
                    score: u[index],
                    anchor: Some(anchor),
                    cluster: None,
                    covers: None,
                    stage: None,
                });
            }
        },
    );
    picks.sort_by(|a, b| rank_order(a.score, a.index, b.score, b.index));
    picks.truncate(budget);
    picks
}

#[cfg(test)]
mod tests {
    use crate::sampling::fixtures::{clusters, indices};
    use ndarray::{Array1, Array2, array};

    use super::*;
    use crate::sampling::farthest_point::farthest_point_sampling_from;
    use crate::sampling::knn::k_nearest_neighbours;

    /// Uncertainties (1 − max mean probability) of the nine tiles: the most uncertain tile
    /// of each cluster is 1 (A, 0.5), 5 (B, 0.6) and 6 (C, 0.7).
    fn uncertainty() -> Array1<f32> {
        array![0.1, 0.5, 0.3, 0.2, 0.4, 0.6, 0.7, 0.1, 0.2]
    }

    fn pick(index: usize, score: f32, anchor: usize) -> Pick {
        Pick {
            index,
            score,
            anchor: Some(anchor),
            cluster: None,
            covers: None,
            stage: None,
        }
    }

    #[test]
    fn hand_worked_three_clusters() {
        let emb = clusters();
        let unc = uncertainty();
        let all = [true; 9];
        // FPS from 0 (worked out in farthest_point.rs): 0, then 4 (121, tie with 8 -> lower
        // index), then 8 (121).
        assert_eq!(
            farthest_point_sampling_from(emb.view(), 3, &all, 0).unwrap(),
            vec![0, 4, 8]
        );
        // Neighbourhoods of size 3 are the anchors' own clusters:
        //   M_0 from (0, 0):  0: 0, 1: 1, 2: 1 (tie -> 1 before 2)
        //   M_4 from (11, 0): 4: 0, 3: 1, 5: 2
        //   M_8 from (0, 11): 8: 0, 6: 1, 7: 2
        assert_eq!(
            k_nearest_neighbours(emb.view(), 0, 3, &all).unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(
            k_nearest_neighbours(emb.view(), 4, 3, &all).unwrap(),
            vec![4, 3, 5]
        );
        assert_eq!(
            k_nearest_neighbours(emb.view(), 8, 3, &all).unwrap(),
            vec![8, 6, 7]
        );
        // Winners: M_0 {0.1, 0.5, 0.3} -> 1; M_4 {0.4, 0.2, 0.6} -> 5; M_8 {0.2, 0.7, 0.1}
        // -> 6. Ranked by uncertainty: 6 (0.7), 5 (0.6), 1 (0.5).
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = McfpsParams {
            anchors: None,
            neighbours: 3,
        };
        assert_eq!(
            mcfps_from(&input, 3, &params, 0).unwrap(),
            vec![pick(6, 0.7, 8), pick(5, 0.6, 4), pick(1, 0.5, 0)]
        );
    }

    #[test]
    fn more_anchors_than_budget_keeps_the_most_uncertain() {
        // S = 3 anchors as above, budget 2: keep 6 (0.7) and 5 (0.6), drop 1 (0.5).
        let emb = clusters();
        let unc = uncertainty();
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = McfpsParams {
            anchors: Some(3),
            neighbours: 3,
        };
        assert_eq!(
            mcfps_from(&input, 2, &params, 0).unwrap(),
            vec![pick(6, 0.7, 8), pick(5, 0.6, 4)]
        );
    }

    #[test]
    fn overlapping_neighbourhoods_take_the_next_best() {
        // Points on a line at x = 0, 1, 2, 5, 6 with uncertainties 0.1, 0.9, 0.8, 0.2, 0.3.
        // FPS from 0: the farthest is 4 (x = 6). Anchors [0, 4].
        // M_0 (k = 4): distances 0: 0, 1: 1, 2: 2, 3: 5           -> {0, 1, 2, 3}, best 1 (0.9)
        // M_4 (k = 4): distances 4: 0, 3: 1, 2: 4, 1: 5           -> {4, 3, 2, 1}, best 1 (0.9)
        //   but 1 is taken by anchor 0, so anchor 4 takes its next best, 2 (0.8).
        let emb = array![
            [0.0_f32, 0.0],
            [1.0, 0.0],
            [2.0, 0.0],
            [5.0, 0.0],
            [6.0, 0.0]
        ];
        let unc = array![0.1_f32, 0.9, 0.8, 0.2, 0.3];
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = McfpsParams {
            anchors: None,
            neighbours: 4,
        };
        assert_eq!(
            mcfps_from(&input, 2, &params, 0).unwrap(),
            vec![pick(1, 0.9, 0), pick(2, 0.8, 4)]
        );
    }

    #[test]
    fn exhausted_neighbourhood_contributes_nothing() {
        // Points at x = 0, 1, 2 with uncertainties 0.9, 0.5, 0.1; S = 3, k = 2, start 0.
        // FPS: 0, then 2 (distance 2), then 1.
        // M_0 = {0, 1}      -> 0 (0.9)
        // M_2 = {2, 1}      -> 1 (0.5)
        // M_1 = {1, 0} (0 and 2 tie at distance 1 -> 0): both taken -> nothing.
        // So a budget of 3 over 3 eligible tiles returns only 2; tile 2 is never picked.
        let emb = array![[0.0_f32], [1.0], [2.0]];
        let unc = array![0.9_f32, 0.5, 0.1];
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = McfpsParams {
            anchors: None,
            neighbours: 2,
        };
        assert_eq!(
            mcfps_from(&input, 3, &params, 0).unwrap(),
            vec![pick(0, 0.9, 0), pick(1, 0.5, 2)]
        );
    }

    #[test]
    fn excluded_tiles_are_never_picked() {
        // Tile 6 (the winner of cluster C) is already labelled. FPS from 0 is unchanged
        // (0, 4, 8). M_8 among eligible tiles: 8: 0, 7: 2, 2: 100 (squared) -> {8, 7, 2};
        // 2 (0.3) beats 8 (0.2) and 7 (0.1) and is not taken (M_0 took 1), so anchor 8
        // picks 2. Ranked: 5 (0.6), 1 (0.5), 2 (0.3).
        let emb = clusters();
        let unc = uncertainty();
        let mut excluded = [false; 9];
        excluded[6] = true;
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        let params = McfpsParams {
            anchors: None,
            neighbours: 3,
        };
        assert_eq!(
            mcfps_from(&input, 3, &params, 0).unwrap(),
            vec![pick(5, 0.6, 4), pick(1, 0.5, 0), pick(2, 0.3, 8)]
        );
        // Whatever the seed, 6 never comes back (and starting from it is refused).
        for seed in 0..25 {
            let picks = mcfps(&input, 5, &McfpsParams::default(), seed).unwrap();
            assert!(picks.iter().all(|p| p.index != 6 && p.anchor != Some(6)));
        }
        assert_eq!(
            mcfps_from(&input, 3, &params, 6),
            Err(SamplingError::NotEligible { index: 6 })
        );
    }

    #[test]
    fn seeded_runs_are_deterministic() {
        let emb = clusters();
        let unc = uncertainty();
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = McfpsParams {
            anchors: None,
            neighbours: 3,
        };
        let all = [true; 9];
        for seed in 0..20 {
            let a = mcfps(&input, 3, &params, seed).unwrap();
            assert_eq!(a, mcfps(&input, 3, &params, seed).unwrap());
            // The seeded start is the same one FPS uses, so pinning it reproduces the run.
            let first = seeded_start(&all, seed).unwrap();
            assert_eq!(a, mcfps_from(&input, 3, &params, first).unwrap());
            // With k = cluster size every anchor lands in a different cluster and each
            // cluster's most uncertain tile wins, whatever the start.
            assert_eq!(indices(&a), vec![6, 5, 1], "seed {seed}");
        }
    }

    #[test]
    fn budget_over_pool_returns_all_eligible_when_neighbourhoods_allow() {
        let emb = clusters();
        let unc = uncertainty();
        let mut excluded = [false; 9];
        excluded[2] = true;
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        // Ranked by (uncertainty desc, index asc) without tile 2:
        //   6 (0.7), 5 (0.6), 1 (0.5), 4 (0.4), 3 (0.2), 8 (0.2), 0 (0.1), 7 (0.1)
        let expected = vec![6, 5, 1, 4, 3, 8, 0, 7];
        // k = 1: every eligible tile becomes an anchor and picks itself.
        let k1 = McfpsParams {
            anchors: None,
            neighbours: 1,
        };
        let picks = mcfps(&input, 100, &k1, 3).unwrap();
        assert_eq!(indices(&picks), expected);
        assert!(picks.iter().all(|p| p.anchor == Some(p.index)));
        // Default k = 16 > 8 eligible: every neighbourhood is the whole pool, so each anchor
        // takes the most uncertain tile still free.
        let picks = mcfps(&input, 100, &McfpsParams::default(), 3).unwrap();
        assert_eq!(indices(&picks), expected);
    }

    #[test]
    fn degenerate_inputs() {
        let emb = clusters();
        let unc = uncertainty();
        let input = SelectionInput::new(emb.view(), unc.view());
        let params = McfpsParams::default();
        assert_eq!(mcfps(&input, 0, &params, 0), Err(SamplingError::ZeroBudget));
        let zero_anchors = McfpsParams {
            anchors: Some(0),
            neighbours: 3,
        };
        assert_eq!(
            mcfps(&input, 2, &zero_anchors, 0),
            Err(SamplingError::ZeroAnchors)
        );
        let zero_k = McfpsParams {
            anchors: None,
            neighbours: 0,
        };
        assert_eq!(
            mcfps(&input, 2, &zero_k, 0),
            Err(SamplingError::ZeroNeighbours)
        );
        assert_eq!(
            mcfps_from(&input, 2, &params, 42),
            Err(SamplingError::IndexOutOfRange {
                index: 42,
                tiles: 9
            })
        );

        let mut nan_unc = uncertainty();
        nan_unc[4] = f32::NAN;
        let input = SelectionInput::new(emb.view(), nan_unc.view());
        assert!(matches!(
            mcfps(&input, 2, &params, 0),
            Err(SamplingError::NonFiniteUncertainty { tile: 4, .. })
        ));

        let mut nan_emb = clusters();
        nan_emb[[7, 0]] = f32::NAN;
        let input = SelectionInput::new(nan_emb.view(), unc.view());
        assert!(matches!(
            mcfps(&input, 2, &params, 0),
            Err(SamplingError::NonFiniteEmbedding { tile: 7, .. })
        ));

        let flat = Array2::<f32>::zeros((9, 0));
        let input = SelectionInput::new(flat.view(), unc.view());
        assert_eq!(
            mcfps(&input, 2, &params, 0),
            Err(SamplingError::NoEmbeddingDimensions)
        );

        let short = Array1::<f32>::zeros(8);
        let input = SelectionInput::new(emb.view(), short.view());
        assert!(matches!(
            mcfps(&input, 2, &params, 0),
            Err(SamplingError::ShapeMismatch { .. })
        ));

        // Nothing eligible: nothing to pick, not an error.
        let excluded = [true; 9];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        assert_eq!(mcfps(&input, 2, &params, 0), Ok(vec![]));
    }
}
