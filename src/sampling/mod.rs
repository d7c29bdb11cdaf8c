//! Selection strategies: which tiles to label next.
//!
//! A strategy takes a [`SelectionInput`] (per-tile embeddings, per-tile uncertainty where
//! higher means more uncertain, and optional masks of tiles that may not be picked:
//! excluded ones, and labelled ones, which also serve as existing centres), a budget and a
//! seed, and returns ranked [`Pick`]s, rank 1 first. [`select`] dispatches on
//! [`Strategy`]; each algorithm lives in its own file and can also be called directly:
//!
//! | strategy | function | idea |
//! |---|---|---|
//! | [`Strategy::TopK`] | [`top_k`] | most uncertain first |
//! | [`Strategy::Random`] | [`random_sample`] | seeded uniform sample |
//! | [`Strategy::Mcfps`] | [`mcfps`] | most uncertain tile in each farthest-point neighbourhood |
//! | [`Strategy::Coreset`] | [`coreset`] | k-center greedy from the labelled tiles (Sener & Savarese 2018) |
//! | [`Strategy::Clustering`] | [`clustering`] | most uncertain tile of each k-means++ cluster of the `m·b` most uncertain (Möllenbrok et al. 2023) |
//! | [`Strategy::Typiclust`] | [`typiclust`] | most typical tile of each of the largest clusters without labels (Hacohen et al. 2022) |
//! | [`Strategy::Probcover`] | [`probcover`] | greedy maximum coverage of δ-balls (Yehuda et al. 2022) |
//! | [`Strategy::Auto`] | [`auto`] | TypiClust while labels are few, then uncertainty + clustering, class-balanced ([`class_balanced`], Bengar et al. 2022) |
//!
//! [`select_with_spacing`] adds a minimum ground distance between picks (and to labelled
//! tiles) to any strategy. For the multi-label query functions LL+Clustering,
//! TPD+Clustering and MGE+Clustering, pass the matching uncertainty of
//! [`crate::uncertainty`] with [`Strategy::Clustering`]; the first TPD round has no
//! previous model and uses [`Strategy::Random`] ([`tpd_round_strategy`]).
//!
//! The building blocks [`farthest_point_sampling`], [`k_nearest_neighbours`],
//! [`kmeans_plus_plus`] and [`kmeans`] are public for reuse by later strategies.
//! Everything is deterministic for a given seed (ChaCha8).
//! Degenerate input (zero budget, shape mismatch, NaN values, ...) is a [`SamplingError`];
//! an empty pool is not: it yields no picks.
//!
//! To add a strategy: a file with its function, a [`Strategy`] variant (with a params
//! struct if it needs one), its name in [`Strategy::NAMES`], and an arm in [`select`].

mod balanced;
mod candidates;
mod clustering;
mod coreset;
mod distance;
mod dots;
mod error;
mod farthest_point;
#[cfg(test)]
mod fixtures;
mod input;
mod kmeans;
mod knn;
mod lloyd_bounds;
mod lloyd_step;
mod mcfps;
mod pairwise;
mod probcover;
mod random;
mod rank;
mod rows;
mod schedule;
mod sketch;
mod spacing;
mod strategy;
mod top_k;
mod traversal;
mod typiclust;

use ndarray::{ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

pub use crate::sampling::balanced::{class_balanced, class_quotas};
pub use crate::sampling::clustering::{ClusteringParams, clustering, tpd_round_strategy};
pub use crate::sampling::coreset::coreset;
pub use crate::sampling::error::SamplingError;
pub use crate::sampling::farthest_point::{farthest_point_sampling, farthest_point_sampling_from};
pub use crate::sampling::kmeans::{KMeans, kmeans, kmeans_plus_plus};
pub use crate::sampling::knn::k_nearest_neighbours;
pub use crate::sampling::mcfps::{McfpsParams, mcfps, mcfps_from};
pub use crate::sampling::probcover::{ProbcoverParams, probcover};
pub use crate::sampling::random::random_sample;
pub use crate::sampling::rows::{RowsNeeded, rows_needed, select_needed_rows};
pub use crate::sampling::schedule::{AutoParams, LowBudget, Stage, auto};
pub use crate::sampling::spacing::select_with_spacing;
pub use crate::sampling::strategy::Strategy;
pub use crate::sampling::top_k::top_k;
pub use crate::sampling::typiclust::{TypiclustParams, typiclust};
pub use crate::threads::{SELECTION_THREADS_ENV, on_selection_pool, selection_threads};

/// What a strategy selects from: `N` tiles, each with an embedding and an uncertainty.
#[derive(Debug, Clone, Copy)]
pub struct SelectionInput<'a> {
    /// `[N, D]` embeddings (e.g. of a contrastive encoder). Only distance-based strategies
    /// read them; the others only check that there are `N` rows (`D` may be 0 there).
    pub embeddings: ArrayView2<'a, f32>,
    /// `[N]` uncertainty, higher = more uncertain (e.g. a metric of
    /// [`crate::uncertainty`]). Must be finite for every tile that may be picked.
    pub uncertainty: ArrayView1<'a, f32>,
    /// `[N]` flags of tiles that may not be picked (skipped, no data, ...): `true` tiles
    /// are never picked. `None` means no tile is excluded.
    pub excluded: Option<&'a [bool]>,
    /// `[N]` flags of tiles already labelled: `true` tiles are never picked (like
    /// `excluded`) and, unlike excluded ones, act as existing centres: [`coreset`] covers
    /// the pool starting from them and [`select_with_spacing`] keeps picks away from them.
    /// `None` means no tile is labelled.
    pub labelled: Option<&'a [bool]>,
    /// `[N]` the class of each tile as far as the caller knows it: the analyst's label for
    /// labelled tiles, the head's predicted class for the others. Only the class-balanced
    /// stage of [`auto`] reads it ([`class_balanced`]); `None` means unknown.
    pub classes: Option<&'a [usize]>,
}

impl<'a> SelectionInput<'a> {
    /// An input where every tile may be picked.
    pub fn new(embeddings: ArrayView2<'a, f32>, uncertainty: ArrayView1<'a, f32>) -> Self {
        Self {
            embeddings,
            uncertainty,
            excluded: None,
            labelled: None,
            classes: None,
        }
    }

    /// The same input with `excluded` tiles (`true` = never picked).
    pub fn with_excluded(self, excluded: &'a [bool]) -> Self {
        Self {
            excluded: Some(excluded),
            ..self
        }
    }

    /// The same input with `labelled` tiles (`true` = already labelled: never picked, and
    /// an existing centre for [`coreset`] and [`select_with_spacing`]).
    pub fn with_labelled(self, labelled: &'a [bool]) -> Self {
        Self {
            labelled: Some(labelled),
            ..self
        }
    }

    /// The same input with the known or predicted `classes` of the tiles (see
    /// [`SelectionInput::classes`]).
    pub fn with_classes(self, classes: &'a [usize]) -> Self {
        Self {
            classes: Some(classes),
            ..self
        }
    }

    /// Number of tiles `N` (the length of the uncertainty vector).
    pub fn len(&self) -> usize {
        self.uncertainty.len()
    }

    /// Whether there are no tiles.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One selected tile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    /// Tile index into the input arrays.
    pub index: usize,
    /// The tile's uncertainty (the input value) for every strategy but
    /// [`Strategy::Coreset`], whose score is the embedding distance from the tile to its
    /// nearest centre when it was picked (`+∞` for a cold-start first pick).
    pub score: f32,
    /// MCFPS: the farthest-point anchor whose neighbourhood produced this pick;
    /// `None` for strategies without anchors.
    pub anchor: Option<usize>,
    /// TypiClust: the k-means cluster (an index into that run's clusters) whose most
    /// typical tile this is; `None` for other strategies.
    #[serde(default)]
    pub cluster: Option<usize>,
    /// ProbCover: how many not-yet-covered tiles (of the candidates it ran on) this pick's
    /// δ-ball covered when it was picked; `None` for other strategies.
    #[serde(default)]
    pub covers: Option<usize>,
    /// [`Strategy::Auto`]: which stage of the schedule chose this pick; `None` for the
    /// other strategies.
    #[serde(default)]
    pub stage: Option<Stage>,
}

impl Pick {
    /// A pick of tile `index` with `score` and no anchor, cluster, coverage or stage.
    pub fn new(index: usize, score: f32) -> Self {
        Self {
            index,
            score,
            anchor: None,
            cluster: None,
            covers: None,
            stage: None,
        }
    }
}

/// Selects up to `budget` tiles with `strategy`, ranked (rank 1 first), deterministic for a
/// given `seed` (used by [`Strategy::Random`], [`Strategy::Mcfps`], [`Strategy::Clustering`]
/// and, without labelled tiles, [`Strategy::Coreset`]).
///
/// Excluded and labelled tiles are never picked. When `budget` exceeds the number of
/// eligible tiles, [`Strategy::TopK`], [`Strategy::Random`], [`Strategy::Coreset`] and
/// [`Strategy::Clustering`] return all eligible tiles (not an error); [`Strategy::Mcfps`]
/// returns at most one tile per anchor and may return fewer when neighbourhoods overlap
/// (see [`mcfps`]). From a pool larger than the budget, [`Strategy::Clustering`] may also
/// return fewer, when clusters end up empty or candidates share embeddings (see
/// [`clustering`]). No eligible tile: no picks.
///
/// # Errors
///
/// [`SamplingError`] for a zero budget, zero anchors, neighbours or candidate factor,
/// mismatched lengths of embeddings, uncertainty and masks, or NaN / infinite values of
/// eligible tiles (and of labelled tiles' embeddings for [`Strategy::Coreset`]).
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::{SelectionInput, Strategy, select};
///
/// let embeddings = array![[0.0_f32, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]];
/// let uncertainty = array![0.1_f32, 0.6, 0.4, 0.5];
/// let labelled = [false, false, false, true];
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view()).with_labelled(&labelled);
///
/// let strategy: Strategy = "top_k".parse()?;
/// let picks = select(&strategy, &input, 2, 0)?;
/// assert_eq!(picks.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1, 2]);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn select(
    strategy: &Strategy,
    input: &SelectionInput<'_>,
    budget: usize,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    on_selection_pool(|| dispatch(strategy, input, budget, seed))
}

/// [`select`]'s work, on whatever pool the caller is on.
fn dispatch(
    strategy: &Strategy,
    input: &SelectionInput<'_>,
    budget: usize,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    match strategy {
        Strategy::TopK => top_k(input, budget),
        Strategy::Random => random_sample(input, budget, seed),
        Strategy::Mcfps(params) => mcfps(input, budget, params, seed),
        Strategy::Coreset => coreset(input, budget, seed),
        Strategy::Clustering(params) => clustering(input, budget, params, seed),
        Strategy::Typiclust(params) => typiclust(input, budget, params, seed),
        Strategy::Probcover(params) => probcover(input, budget, params, seed),
        Strategy::Auto(params) => auto(input, budget, params, seed),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, array};

    use super::*;

    #[test]
    fn dispatch_matches_the_direct_calls() {
        let emb = array![
            [0.0_f32, 0.0],
            [0.0, 1.0],
            [9.0, 9.0],
            [9.0, 8.0],
            [4.0, 4.0]
        ];
        let unc = array![0.1_f32, 0.6, 0.4, 0.5, 0.3];
        let excluded = [false, false, false, true, false];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        let params = McfpsParams {
            anchors: Some(2),
            neighbours: 2,
        };
        for seed in [0, 1, 99] {
            assert_eq!(select(&Strategy::TopK, &input, 3, seed), top_k(&input, 3));
            assert_eq!(
                select(&Strategy::Random, &input, 3, seed),
                random_sample(&input, 3, seed)
            );
            assert_eq!(
                select(&Strategy::Mcfps(params), &input, 3, seed),
                mcfps(&input, 3, &params, seed)
            );
            assert_eq!(
                select(&Strategy::Coreset, &input, 3, seed),
                coreset(&input, 3, seed)
            );
            let cp = ClusteringParams {
                m: 2,
                iterations: 5,
            };
            assert_eq!(
                select(&Strategy::Clustering(cp), &input, 2, seed),
                clustering(&input, 2, &cp, seed)
            );
        }
    }

    /// Every strategy, with default parameters.
    fn all_strategies() -> [Strategy; 8] {
        [
            Strategy::TopK,
            Strategy::Random,
            Strategy::Mcfps(McfpsParams::default()),
            Strategy::Coreset,
            Strategy::Clustering(ClusteringParams::default()),
            Strategy::Typiclust(TypiclustParams::default()),
            Strategy::Probcover(ProbcoverParams::default()),
            Strategy::Auto(AutoParams::default()),
        ]
    }

    /// Strategies whose score is not the tile's uncertainty.
    fn own_score(s: &Strategy) -> bool {
        matches!(
            s,
            Strategy::Coreset | Strategy::Typiclust(_) | Strategy::Probcover(_) | Strategy::Auto(_)
        )
    }

    #[test]
    fn every_strategy_respects_exclusion_budget_and_ranking() {
        let n = 40;
        let emb = Array2::from_shape_fn((n, 3), |(i, d)| ((i * 7 + d * 13) % 11) as f32);
        let unc = Array1::from_shape_fn(n, |i| ((i * 17) % 23) as f32 / 23.0);
        let excluded: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let labelled: Vec<bool> = (0..n).map(|i| i % 5 == 1).collect();
        let input = SelectionInput::new(emb.view(), unc.view())
            .with_excluded(&excluded)
            .with_labelled(&labelled);
        for strategy in all_strategies() {
            for seed in 0..5 {
                let picks = select(&strategy, &input, 8, seed).unwrap();
                assert!(!picks.is_empty() && picks.len() <= 8, "{strategy}");
                assert!(
                    picks
                        .iter()
                        .all(|p| !excluded[p.index] && !labelled[p.index]),
                    "{strategy}"
                );
                if !own_score(&strategy) {
                    assert!(picks.iter().all(|p| p.score == unc[p.index]), "{strategy}");
                }
                let mut seen: Vec<usize> = picks.iter().map(|p| p.index).collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), picks.len(), "{strategy}: duplicate picks");
                // Random and TypiClust rank in selection order.
                if !matches!(
                    strategy,
                    Strategy::Random | Strategy::Typiclust(_) | Strategy::Auto(_)
                ) {
                    assert!(
                        picks.windows(2).all(|w| w[0].score >= w[1].score),
                        "{strategy}: not ranked"
                    );
                }
            }
        }
    }

    #[test]
    fn budget_over_pool_returns_all_eligible() {
        let emb = Array2::<f32>::zeros((5, 1));
        let unc = array![0.5_f32, 0.1, 0.4, 0.3, 0.2];
        let excluded = [false, true, false, false, true];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        for strategy in all_strategies() {
            let mut got: Vec<usize> = select(&strategy, &input, 50, 4)
                .unwrap()
                .iter()
                .map(|p| p.index)
                .collect();
            got.sort_unstable();
            assert_eq!(got, vec![0, 2, 3], "{strategy}");
        }
    }

    #[test]
    fn input_helpers() {
        let emb = Array2::<f32>::zeros((2, 1));
        let unc = Array1::<f32>::zeros(2);
        let input = SelectionInput::new(emb.view(), unc.view());
        assert_eq!(input.len(), 2);
        assert!(!input.is_empty());
        assert!(input.excluded.is_none());
        assert!(input.labelled.is_none());
        assert_eq!(
            input.with_excluded(&[true, false]).excluded,
            Some(&[true, false][..])
        );
        let both = input
            .with_excluded(&[true, false])
            .with_labelled(&[false, true]);
        assert_eq!(both.labelled, Some(&[false, true][..]));
        assert_eq!(both.excluded, Some(&[true, false][..]));
    }
}
