//! ProbCover: greedy maximum coverage of δ-balls in embedding space — a low-budget
//! strategy that spreads picks over the dense regions of the pool.
//!
//! After Yehuda, Dekel, Hacohen & Weinshall 2022, *Active Learning Through a Covering
//! Lens* (NeurIPS), Sec. 4 and Algorithm 1: build the graph whose edges join tiles closer
//! than δ; remove every tile already covered by a labelled tile's ball; then repeatedly
//! pick the tile whose ball covers the most still-uncovered tiles and mark them covered.
//! When every tile is covered, the remaining budget is drawn uniformly at random (as in
//! the authors' implementation).
//!
//! **δ by the purity rule** (Sec. 4.1): a ball is *pure* when all its tiles share one
//! k-means cluster (k = the number of classes, a stand-in for the unknown labels);
//! δ is the largest radius at which at least α = 95 % of the balls are pure. A ball
//! around `x` is pure exactly when no tile of another cluster is nearer than δ, so with
//! `o(x)` the distance from `x` to the nearest tile of another cluster, purity(δ) is the
//! share of tiles with `o(x) ≥ δ`, and the rule's δ is the `(1 − α)` quantile of `o`.
//! That quantile is estimated on a seeded sample of at most
//! [`ProbcoverParams::purity_sample`] tiles, each `o(x)` measured exactly against every
//! candidate. An explicit [`ProbcoverParams::delta`] replaces the rule.
//!
//! **Large pools** (documented approximation): the graph is built on every labelled tile
//! plus a seeded uniform sample of at most [`ProbcoverParams::max_points`] eligible tiles
//! (default 10,000), so coverage is counted, and picks are made, on that sample.
//!
//! # References
//!
//! - O. Yehuda, A. Dekel, G. Hacohen, D. Weinshall, "Active Learning Through a Covering
//!   Lens", NeurIPS 2022, arXiv:2205.11320.

use ndarray::Axis;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::sampling::candidates::candidate_rows;
use crate::sampling::error::SamplingError;
use crate::sampling::input::{check_embeddings, eligible_mask, labelled_mask};
use crate::sampling::kmeans::kmeans;
use crate::sampling::pairwise::map_distance_rows;
use crate::sampling::{Pick, SelectionInput};

/// Parameters of [`probcover`]. Serde fills missing fields from [`Default`] and rejects
/// unknown ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbcoverParams {
    /// Ball radius in embedding units; `None` (default) = the purity rule.
    pub delta: Option<f32>,
    /// Purity α of the rule (default 0.95, the paper's).
    pub purity: f32,
    /// k of the purity rule's k-means (default 10; callers pass the head's class count).
    pub classes: usize,
    /// At most this many eligible tiles build the graph (default 10,000).
    pub max_points: usize,
    /// At most this many tiles estimate the purity quantile (default 2,000).
    pub purity_sample: usize,
}

impl Default for ProbcoverParams {
    /// `delta: None, purity: 0.95, classes: 10, max_points: 10000, purity_sample: 2000`.
    fn default() -> Self {
        Self {
            delta: None,
            purity: 0.95,
            classes: 10,
            max_points: 10_000,
            purity_sample: 2_000,
        }
    }
}

// f32 fields: equality and hashing by bit pattern, so that strategies stay usable as keys.
impl Eq for ProbcoverParams {}
impl std::hash::Hash for ProbcoverParams {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.delta.map(f32::to_bits).hash(h);
        self.purity.to_bits().hash(h);
        self.classes.hash(h);
        self.max_points.hash(h);
        self.purity_sample.hash(h);
    }
}

/// Selects up to `budget` tiles by ProbCover (Yehuda et al. 2022; see the module docs), in
/// selection order. Each [`Pick`] carries the number of uncovered candidates its ball
/// covered as `covers` and as `score` (0 for the random picks after full coverage).
/// Labelled tiles cover their balls from the start and are never picked; excluded tiles
/// take no part. Uncertainty is not used (only checked to be finite).
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], [`SamplingError::ZeroClusters`] for `classes == 0`,
/// [`SamplingError::InvalidParameter`] for a δ or α out of range, shape mismatches, and
/// non-finite values of eligible or labelled tiles.
///
/// # Examples
///
/// ```
/// use ndarray::{array, Array1};
/// use nexttile::sampling::{ProbcoverParams, probcover, SelectionInput};
///
/// // Three tiles close together and one far away; δ = 1.5 balls.
/// let emb = array![[0.0_f32], [1.0], [2.0], [10.0]];
/// let unc = Array1::<f32>::zeros(4);
/// let params = ProbcoverParams { delta: Some(1.5), ..ProbcoverParams::default() };
/// let picks = probcover(&SelectionInput::new(emb.view(), unc.view()), 2, &params, 0)?;
/// assert_eq!((picks[0].index, picks[0].covers), (1, Some(3))); // covers 0, 1, 2
/// assert_eq!((picks[1].index, picks[1].covers), (3, Some(1)));
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn probcover(
    input: &SelectionInput<'_>,
    budget: usize,
    params: &ProbcoverParams,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    if params.classes == 0 {
        return Err(SamplingError::ZeroClusters);
    }
    if params.delta.is_some_and(|d| !(d.is_finite() && d > 0.0))
        || !(params.purity > 0.0 && params.purity < 1.0)
    {
        return Err(SamplingError::InvalidParameter {
            message: format!(
                "ProbCover needs δ > 0 (got {:?}) and a purity α strictly between 0 and 1 (got {})",
                params.delta, params.purity
            ),
        });
    }
    let eligible = eligible_mask(input)?;
    let labelled = labelled_mask(input);
    let used: Vec<bool> = eligible
        .iter()
        .zip(&labelled)
        .map(|(&e, &l)| e || l)
        .collect();
    check_embeddings(&input.embeddings, &used)?;
    if !eligible.iter().any(|&e| e) {
        return Ok(Vec::new());
    }
    let rows = candidate_rows(&eligible, &labelled, params.max_points, seed);
    let x = input.embeddings.select(Axis(0), &rows);
    let delta = match params.delta {
        Some(d) => d,
        None => purity_delta(&x, params, seed)?,
    };
    let graph = BallGraph::build(&x, delta);
    let mut covered = vec![false; rows.len()];
    for (pos, &r) in rows.iter().enumerate() {
        if labelled[r] {
            for &j in graph.neighbours(pos) {
                covered[j as usize] = true;
            }
        }
    }
    let mut degree: Vec<usize> = (0..rows.len())
        .map(|i| {
            graph
                .neighbours(i)
                .iter()
                .filter(|&&j| !covered[j as usize])
                .count()
        })
        .collect();
    let mut taken = vec![false; rows.len()];
    let mut picks = Vec::with_capacity(budget);
    while picks.len() < budget {
        let best = (0..rows.len())
            .filter(|&i| eligible[rows[i]] && !taken[i] && degree[i] > 0)
            .max_by_key(|&i| (degree[i], std::cmp::Reverse(i)));
        let Some(i) = best else { break };
        let gain = degree[i];
        taken[i] = true;
        for &j in graph.neighbours(i) {
            let j = j as usize;
            if !covered[j] {
                covered[j] = true;
                for &k in graph.neighbours(j) {
                    degree[k as usize] -= 1;
                }
            }
        }
        picks.push(Pick {
            covers: Some(gain),
            ..Pick::new(rows[i], gain as f32)
        });
    }
    if picks.len() < budget {
        // Everything is covered: the rest uniformly at random among the eligible tiles.
        let chosen: Vec<usize> = picks.iter().map(|p| p.index).collect();
        let mut rest: Vec<usize> = (0..eligible.len())
            .filter(|&i| eligible[i] && !chosen.contains(&i))
            .collect();
        rest.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x9E37_79B9));
        let need = budget - picks.len();
        picks.extend(rest.into_iter().take(need).map(|i| Pick {
            covers: Some(0),
            ..Pick::new(i, 0.0)
        }));
    }
    Ok(picks)
}

/// δ by the purity rule (module docs): the `(1 − α)` quantile of the distance from a
/// sample of candidates to the nearest candidate of another k-means cluster.
fn purity_delta(
    x: &ndarray::Array2<f32>,
    params: &ProbcoverParams,
    seed: u64,
) -> Result<f32, SamplingError> {
    let km = kmeans(x.view(), params.classes.min(x.nrows()), 20, seed)?;
    let mut order: Vec<usize> = (0..x.nrows()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_D17A));
    order.truncate(params.purity_sample.max(1));
    order.sort_unstable();
    let sample = x.select(Axis(0), &order);
    let assignment = &km.assignment;
    let mut other: Vec<f32> = map_distance_rows(sample.view(), x.view(), |i, d| {
        let own = assignment[order[i]];
        d.iter()
            .zip(assignment)
            .filter(|&(_, &c)| c != own)
            .map(|(&v, _)| v)
            .fold(f32::INFINITY, f32::min)
            .sqrt()
    });
    other.sort_unstable_by(f32::total_cmp);
    let at = (((1.0 - f64::from(params.purity)) * other.len() as f64).floor() as usize)
        .min(other.len() - 1);
    let delta = other[at];
    if delta.is_finite() && delta > 0.0 {
        Ok(delta)
    } else {
        // One cluster only (all balls pure at any radius) or duplicates: the smallest
        // positive distance that exists, so that balls still separate distinct tiles.
        Ok(other
            .iter()
            .copied()
            .find(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(f32::MIN_POSITIVE))
    }
}

/// The symmetric δ-ball graph in compressed rows: `neighbours(i)` lists every `j` (itself
/// included) with `‖x_i − x_j‖ < δ`.
struct BallGraph {
    offsets: Vec<usize>,
    targets: Vec<u32>,
}

impl BallGraph {
    /// Builds it from the pairs `i < j` of each row's block (so both directions agree).
    fn build(x: &ndarray::Array2<f32>, delta: f32) -> Self {
        let d2 = delta * delta;
        let upper: Vec<Vec<u32>> = map_distance_rows(x.view(), x.view(), |i, d| {
            d.iter()
                .enumerate()
                .skip(i + 1)
                .filter(|&(_, &v)| v < d2)
                .map(|(j, _)| j as u32)
                .collect()
        });
        let n = x.nrows();
        let mut degree = vec![1_usize; n];
        for (i, list) in upper.iter().enumerate() {
            degree[i] += list.len();
            for &j in list {
                degree[j as usize] += 1;
            }
        }
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for d in &degree {
            offsets.push(offsets.last().copied().unwrap_or(0) + d);
        }
        let mut fill: Vec<usize> = offsets[..n].to_vec();
        let mut targets = vec![0_u32; offsets[n]];
        for (i, list) in upper.iter().enumerate() {
            targets[fill[i]] = i as u32;
            fill[i] += 1;
            for &j in list {
                targets[fill[i]] = j;
                fill[i] += 1;
                targets[fill[j as usize]] = i as u32;
                fill[j as usize] += 1;
            }
        }
        Self { offsets, targets }
    }

    fn neighbours(&self, i: usize) -> &[u32] {
        &self.targets[self.offsets[i]..self.offsets[i + 1]]
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, array};

    use super::*;

    #[test]
    fn greedy_coverage_counts() {
        // A chain 0-1-2-3 spaced 1 apart, and a pair 10, 10.5; δ = 1.2.
        let emb = array![[0.0_f32], [1.0], [2.0], [3.0], [10.0], [10.5]];
        let unc = Array1::<f32>::zeros(6);
        let params = ProbcoverParams {
            delta: Some(1.2),
            ..ProbcoverParams::default()
        };
        let input = SelectionInput::new(emb.view(), unc.view());
        let picks = probcover(&input, 3, &params, 0).unwrap();
        // 1 covers {0,1,2} (3; ties with 2's {1,2,3}, the lower index wins); then the pair:
        // 4 covers {4,5} (2); then 2, whose only uncovered neighbour is 3 (ties with 3).
        let got: Vec<(usize, Option<usize>)> = picks.iter().map(|p| (p.index, p.covers)).collect();
        assert_eq!(got, vec![(1, Some(3)), (4, Some(2)), (2, Some(1))]);
        // With everything covered the rest is random, covering nothing.
        let more = probcover(&input, 5, &params, 0).unwrap();
        assert_eq!(more.len(), 5);
        assert_eq!(more[3].covers, Some(0));
    }

    #[test]
    fn labelled_balls_start_covered_and_are_never_picked() {
        let emb = array![[0.0_f32], [1.0], [2.0], [3.0], [10.0], [10.5]];
        let unc = Array1::<f32>::zeros(6);
        let labelled = [false, true, false, false, false, false];
        let params = ProbcoverParams {
            delta: Some(1.2),
            ..ProbcoverParams::default()
        };
        let input = SelectionInput::new(emb.view(), unc.view()).with_labelled(&labelled);
        let picks = probcover(&input, 2, &params, 0).unwrap();
        // Tile 1's ball {0,1,2} is covered: the pair (2) first, then 2 or 3 covering {3}.
        assert_eq!((picks[0].index, picks[0].covers), (4, Some(2)));
        assert_eq!(picks[1].covers, Some(1));
        assert!(picks.iter().all(|p| p.index != 1));
    }

    #[test]
    fn purity_rule_separates_two_classes() {
        // Two tight groups far apart: with k = 2 every ball below the gap is pure, so δ is
        // the gap between the groups (9 here) and each group is one ball.
        let emb = array![[0.0_f32], [0.5], [1.0], [10.0], [10.5], [11.0]];
        let unc = Array1::<f32>::zeros(6);
        let params = ProbcoverParams {
            classes: 2,
            ..ProbcoverParams::default()
        };
        let picks = probcover(&SelectionInput::new(emb.view(), unc.view()), 2, &params, 0).unwrap();
        assert_eq!(picks[0].covers, Some(3));
        assert_eq!(picks[1].covers, Some(3));
    }

    #[test]
    fn bad_parameters() {
        let emb = array![[0.0_f32], [1.0]];
        let unc = Array1::<f32>::zeros(2);
        let input = SelectionInput::new(emb.view(), unc.view());
        let bad = ProbcoverParams {
            delta: Some(-1.0),
            ..ProbcoverParams::default()
        };
        assert!(matches!(
            probcover(&input, 1, &bad, 0),
            Err(SamplingError::InvalidParameter { .. })
        ));
        let bad = ProbcoverParams {
            purity: 1.0,
            ..ProbcoverParams::default()
        };
        assert!(matches!(
            probcover(&input, 1, &bad, 0),
            Err(SamplingError::InvalidParameter { .. })
        ));
    }
}
