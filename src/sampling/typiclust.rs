//! TypiClust: the most typical tile of each of the largest clusters without labels — a
//! low-budget strategy that picks representative tiles while the model is still weak.
//!
//! After Hacohen, Dekel & Weinshall 2022, *Active Learning on a Budget: Opposite
//! Strategies Suit High and Low Budgets* (ICML), Sec. 4 and Algorithm 1: the embeddings
//! of labelled and unlabelled tiles are clustered by k-means into `|L| + B` clusters;
//! from each of the `B` largest clusters that hold no labelled tile, the most **typical**
//! tile is queried, typicality being the inverse mean distance to its `K` nearest
//! neighbours (Eq. 4, `K = 20`). As in the authors' implementation, the number of
//! clusters is capped (500) and clusters smaller than 5 are passed over while larger
//! ones remain; when every large cluster already holds a label (budget above the number
//! of uncovered clusters), the next pick comes from the cluster with the fewest labels
//! (then the largest), so the budget is always spent.
//!
//! Here typicality is measured among the members of the tile's own cluster (as the
//! authors' code does), which keeps the neighbour search `O(Σ size²)` instead of `O(N²)`.
//!
//! **Large pools** (documented approximation): clustering and typicality run on every
//! labelled tile plus a seeded uniform sample of at most
//! [`TypiclustParams::max_points`] eligible tiles (default 10,000), so picks come from
//! that sample. An optional cap per cluster ([`TypiclustParams::points_per_cluster`],
//! off by default) shrinks the sample when there are few clusters: 250 per cluster
//! halves a granule's first suggestion of 20 tiles (5,000 tiles), but on the
//! validation fold (10 initial labels, 10 per round, 20 seeds) it left `auto` behind
//! on the unbalanced pool at 20–40 labels (−1.7, −0.9, −0.8 points; 12–13 of 20 seeds
//! behind) while even on the balanced one (README, "Performance"), so it stays off. A uniform sample keeps the pool's density, which is what typicality
//! measures. The cap bounds the cost: Lloyd's iterations are `[n, D] × [D, k]` products;
//! with 10,000 points b = 1000 takes about 0.5 s at D = 256 on two cores (README,
//! "Performance"; the earlier 20,000 took 3.6 s with another job running).
//!
//! # References
//!
//! - G. Hacohen, A. Dekel, D. Weinshall, "Active Learning on a Budget: Opposite
//!   Strategies Suit High and Low Budgets", ICML 2022, PMLR 162, arXiv:2202.02794.

use ndarray::{ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::sampling::candidates::candidate_rows;
use crate::sampling::error::SamplingError;
use crate::sampling::input::{check_embeddings, eligible_mask, labelled_mask};
use crate::sampling::kmeans::kmeans;
use crate::sampling::pairwise::map_self_distance_rows;
use crate::sampling::{Pick, SelectionInput};

/// Parameters of [`typiclust`]. Serde fills missing fields from [`Default`] and rejects
/// unknown ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TypiclustParams {
    /// At most this many k-means clusters (default 500, the authors' cap).
    pub max_clusters: usize,
    /// `K` of the typicality (neighbours within the cluster; default 20, the paper's).
    pub neighbours: usize,
    /// Clusters with fewer members are used only when no larger one is left (default 5).
    pub min_cluster_size: usize,
    /// At most this many eligible tiles are clustered (default 10,000; see the module docs).
    pub max_points: usize,
    /// When not 0, also at most this many per cluster: the sample is capped at
    /// `points_per_cluster × k` eligible tiles for `k = min(|L| + B, max_clusters)`
    /// clusters. Off by default: 250 (5,000 tiles for a first suggestion of 20, twice as
    /// fast) lost on the validation fold's unbalanced pool (see the module docs).
    pub points_per_cluster: usize,
    /// Lloyd iterations after k-means++ seeding (default 20).
    pub iterations: usize,
}

impl Default for TypiclustParams {
    /// `max_clusters: 500, neighbours: 20, min_cluster_size: 5, max_points: 10000,
    /// points_per_cluster: 0, iterations: 20`.
    fn default() -> Self {
        Self {
            max_clusters: 500,
            neighbours: 20,
            min_cluster_size: 5,
            max_points: 10_000,
            points_per_cluster: 0,
            iterations: 20,
        }
    }
}

/// One k-means cluster during the selection.
struct Cluster {
    /// Positions (into the candidate rows) of its members.
    members: Vec<usize>,
    /// Labelled members.
    labels: usize,
    /// Eligible members.
    open: usize,
}

/// Selects up to `budget` tiles by TypiClust (Hacohen et al. 2022; see the module docs),
/// in selection order: rank 1 is the most typical tile of the largest cluster without
/// labels. Each [`Pick`] carries its typicality (inverse mean distance to its nearest
/// cluster neighbours; higher = more typical) as `score` and its k-means cluster as
/// `cluster`. Labelled tiles count as the clusters' labels and are never picked; excluded
/// tiles take no part. Returns every candidate when the budget exceeds them. Uncertainty
/// is not used (only checked to be finite).
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], [`SamplingError::ZeroClusters`] for `max_clusters == 0`,
/// [`SamplingError::ZeroNeighbours`] for `neighbours == 0`, shape mismatches, and
/// non-finite values of eligible or labelled tiles.
///
/// # Examples
///
/// ```
/// use ndarray::{Array1, Array2};
/// use nexttile::sampling::{TypiclustParams, typiclust, SelectionInput};
///
/// // A dense blob of 30 tiles around (0, 0) and a sparse one of 10 around (50, 50).
/// let emb = Array2::from_shape_fn((40, 2), |(i, d)| {
///     if i < 30 { ((i * 7 + d * 3) % 10) as f32 * 0.1 } else { 50.0 + ((i * 5 + d) % 10) as f32 * 2.0 }
/// });
/// let unc = Array1::<f32>::zeros(40);
/// let picks = typiclust(&SelectionInput::new(emb.view(), unc.view()), 2, &TypiclustParams::default(), 0)?;
/// // Two clusters, one pick each; the larger (dense) cluster comes first.
/// assert!(picks[0].index < 30 && picks[1].index >= 30);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn typiclust(
    input: &SelectionInput<'_>,
    budget: usize,
    params: &TypiclustParams,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    if params.max_clusters == 0 {
        return Err(SamplingError::ZeroClusters);
    }
    if params.neighbours == 0 {
        return Err(SamplingError::ZeroNeighbours);
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
    let rows = candidate_rows(
        &eligible,
        &labelled,
        sample_cap(params, &labelled, budget),
        seed,
    );
    let x = input.embeddings.select(Axis(0), &rows);
    let n_labelled = rows.iter().filter(|&&r| labelled[r]).count();
    let k = (n_labelled + budget)
        .min(params.max_clusters)
        .min(rows.len());
    let km = kmeans(x.view(), k, params.iterations, seed)?;
    let mut clusters: Vec<Cluster> = (0..km.clusters())
        .map(|_| Cluster {
            members: Vec::new(),
            labels: 0,
            open: 0,
        })
        .collect();
    for (pos, &c) in km.assignment.iter().enumerate() {
        if let Some(cluster) = clusters.get_mut(c) {
            cluster.members.push(pos);
            if labelled[rows[pos]] {
                cluster.labels += 1;
            }
            if eligible[rows[pos]] {
                cluster.open += 1;
            }
        }
    }
    let order = draw_order(&clusters, budget, params.min_cluster_size);
    let typicalities = order_typicalities(x.view(), &clusters, &order, params.neighbours);
    let mut taken = vec![false; rows.len()];
    let mut picks = Vec::with_capacity(budget);
    for ci in order {
        let Some(typicality) = &typicalities[ci] else {
            break;
        };
        // The most typical eligible member not yet taken (ties: the first member).
        let choice = clusters[ci]
            .members
            .iter()
            .zip(typicality.iter())
            .filter(|&(&p, _)| eligible[rows[p]] && !taken[p])
            .fold(None::<(usize, f32)>, |best, (&p, &t)| match best {
                Some((_, bt)) if bt >= t => best,
                _ => Some((p, t)),
            });
        let Some((pos, t)) = choice else { break };
        taken[pos] = true;
        picks.push(Pick {
            cluster: Some(ci),
            ..Pick::new(rows[pos], t)
        });
    }
    Ok(picks)
}

/// How many eligible tiles [`typiclust`] clusters: [`TypiclustParams::max_points`], and
/// at most [`TypiclustParams::points_per_cluster`] per cluster of the `|L| + B` it will
/// make (capped at `max_clusters`).
pub(crate) fn sample_cap(params: &TypiclustParams, labelled: &[bool], budget: usize) -> usize {
    if params.points_per_cluster == 0 {
        return params.max_points;
    }
    let clusters = (labelled.iter().filter(|&&l| l).count() + budget).min(params.max_clusters);
    params
        .max_points
        .min(params.points_per_cluster.saturating_mul(clusters))
}

/// The clusters [`typiclust`] draws its picks from, in order, each with its members:
/// while budget is left, the open cluster (an eligible member not yet picked) with the
/// fewest labels, then the largest; clusters under `min_cluster_size` members only when
/// no other is open; the lowest index on a tie. A cluster's labels count its picks.
/// Which cluster comes next never depends on typicality (only which member it gives),
/// so the typicalities of all the clusters drawn from can be measured side by side
/// before the first pick ([`order_typicalities`]).
fn draw_order(clusters: &[Cluster], budget: usize, min_cluster_size: usize) -> Vec<usize> {
    let mut open: Vec<usize> = clusters.iter().map(|c| c.open).collect();
    let mut labels: Vec<usize> = clusters.iter().map(|c| c.labels).collect();
    let mut order = Vec::with_capacity(budget);
    while order.len() < budget {
        let best = (0..clusters.len())
            .filter(|&i| open[i] > 0)
            .min_by_key(|&i| {
                let size = clusters[i].members.len();
                (
                    size < min_cluster_size,
                    labels[i],
                    std::cmp::Reverse(size),
                    i,
                )
            });
        let Some(ci) = best else { break };
        open[ci] -= 1;
        labels[ci] += 1;
        order.push(ci);
    }
    order
}

/// [`member_typicality`] of every cluster in `order` (`None` for the others), the
/// clusters side by side on the compute pool (each the same numbers as on its own).
fn order_typicalities(
    x: ArrayView2<'_, f32>,
    clusters: &[Cluster],
    order: &[usize],
    neighbours: usize,
) -> Vec<Option<Vec<f32>>> {
    use rayon::prelude::*;
    let mut drawn = vec![false; clusters.len()];
    for &ci in order {
        drawn[ci] = true;
    }
    clusters
        .par_iter()
        .zip(drawn)
        .map(|(c, d)| d.then(|| member_typicality(x, &c.members, neighbours)))
        .collect()
}

/// Typicality of each member of a cluster among its members: the inverse of the mean
/// Euclidean distance to its `min(k, size − 1)` nearest other members (Hacohen et al.
/// 2022, Eq. 4); `f32::MAX` when that mean is 0 (duplicates), 0 for a one-member cluster.
fn member_typicality(x: ArrayView2<'_, f32>, members: &[usize], k: usize) -> Vec<f32> {
    if members.len() < 2 {
        return vec![0.0; members.len()];
    }
    let m = x.select(Axis(0), members);
    let k = k.min(members.len() - 1);
    map_self_distance_rows(m.view(), |i, d| {
        let mean = nearest_sum(d, i, k) / k as f64;
        if mean > 0.0 {
            (1.0 / mean) as f32
        } else {
            f32::MAX
        }
    })
}

/// The sum in `f64` of the square roots of the `k` smallest squared distances `d`
/// leaving out position `skip` (the point itself), added smallest first. One pass
/// keeping the `k` smallest so far in order: most values are above the `k`-th and
/// cost one comparison. (The sum of `k` square roots of `f32` values is exact in `f64`
/// unless they span more than about `2²⁴`, so its order does not show.)
fn nearest_sum(d: &[f32], skip: usize, k: usize) -> f64 {
    let mut best: Vec<f32> = Vec::with_capacity(k + 1);
    for (j, &v) in d.iter().enumerate() {
        if j == skip || (best.len() == k && best.last().is_some_and(|&w| v >= w)) {
            continue;
        }
        let at = best.partition_point(|&w| w <= v);
        best.insert(at, v);
        best.truncate(k);
    }
    best.iter().map(|v| f64::from(v.sqrt())).sum()
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, array};

    use super::*;

    /// Blob A: 12 tiles on a 0.1-spaced grid near the origin with one central point;
    /// blob B: 6 tiles spread 2.0 apart around (100, 100) — well separated, different
    /// density.
    fn two_blobs() -> Array2<f32> {
        let mut rows = Vec::new();
        for i in 0..12 {
            let (a, b) = ((i % 4) as f32, (i / 4) as f32);
            rows.push([a * 0.1, b * 0.1]);
        }
        for i in 0..6 {
            rows.push([100.0 + (i % 3) as f32 * 2.0, 100.0 + (i / 3) as f32 * 2.0]);
        }
        Array2::from_shape_vec((18, 2), rows.into_iter().flatten().collect()).unwrap()
    }

    #[test]
    fn one_typical_pick_per_blob_largest_first() {
        let emb = two_blobs();
        let unc = Array1::<f32>::zeros(18);
        let p = TypiclustParams {
            neighbours: 4,
            ..TypiclustParams::default()
        };
        let picks = typiclust(&SelectionInput::new(emb.view(), unc.view()), 2, &p, 3).unwrap();
        assert_eq!(picks.len(), 2);
        // Rank 1 from the larger blob A (12 tiles): its most typical members are the two
        // interior grid points (1,1), (2,1), rows 5 and 6 (four neighbours at 0.1 each;
        // an edge point's fourth is a diagonal at 0.14).
        assert!([5, 6].contains(&picks[0].index), "{picks:?}");
        // Rank 2 from blob B: the middle column (rows 13, 16) has neighbours at 2, 2, 2,
        // 2√2 (mean 2.21) against a corner's 2, 2, 2√2, 4 (mean 2.71).
        assert!([13, 16].contains(&picks[1].index), "{picks:?}");
        assert!(picks[0].score > picks[1].score);
        assert_ne!(picks[0].cluster, picks[1].cluster);
    }

    #[test]
    fn labelled_blob_is_skipped_and_labels_never_picked() {
        let emb = two_blobs();
        let unc = Array1::<f32>::zeros(18);
        let mut labelled = vec![false; 18];
        labelled[5] = true; // blob A already has a label
        let p = TypiclustParams {
            neighbours: 4,
            ..TypiclustParams::default()
        };
        let input = SelectionInput::new(emb.view(), unc.view()).with_labelled(&labelled);
        // |L| + B = 2 clusters: the blobs; A holds a label, so B's typical tile comes first.
        let picks = typiclust(&input, 1, &p, 3).unwrap();
        assert!([13, 16].contains(&picks[0].index), "{picks:?}");
        // A budget above the pool returns every unlabelled tile once.
        let all = typiclust(&input, 50, &p, 3).unwrap();
        assert_eq!(all.len(), 17);
        assert!(all.iter().all(|q| q.index != 5));
    }

    #[test]
    fn the_sample_is_capped_per_cluster() {
        let p = TypiclustParams {
            points_per_cluster: 250,
            ..TypiclustParams::default()
        };
        let none = vec![false; 50];
        // 20 clusters × 250 = 5,000; 40 and more clusters: max_points.
        assert_eq!(sample_cap(&p, &none, 20), 5_000);
        assert_eq!(sample_cap(&p, &none, 40), 10_000);
        assert_eq!(sample_cap(&p, &none, 400), 10_000);
        let mut some = none.clone();
        some[..10].iter_mut().for_each(|l| *l = true);
        assert_eq!(sample_cap(&p, &some, 20), 7_500);
        let off = TypiclustParams {
            points_per_cluster: 0,
            ..p
        };
        assert_eq!(sample_cap(&off, &none, 20), 10_000);
    }

    #[test]
    fn excluded_and_empty() {
        let emb = array![[0.0_f32], [1.0], [2.0]];
        let unc = Array1::<f32>::zeros(3);
        let excluded = [true, true, true];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&excluded);
        assert_eq!(
            typiclust(&input, 2, &TypiclustParams::default(), 0),
            Ok(vec![])
        );
        let input = SelectionInput::new(emb.view(), unc.view());
        assert_eq!(
            typiclust(&input, 0, &TypiclustParams::default(), 0),
            Err(SamplingError::ZeroBudget)
        );
        let zero = TypiclustParams {
            neighbours: 0,
            ..TypiclustParams::default()
        };
        assert_eq!(
            typiclust(&input, 1, &zero, 0),
            Err(SamplingError::ZeroNeighbours)
        );
    }

    #[test]
    fn member_typicality_is_inverse_mean_knn_distance() {
        let x = array![[0.0_f32], [1.0], [3.0]];
        let t = member_typicality(x.view(), &[0, 1, 2], 1);
        // nearest others: 1, 1, 2 → typicality 1, 1, 0.5
        assert!(
            (t[0] - 1.0).abs() < 1e-5 && (t[1] - 1.0).abs() < 1e-5 && (t[2] - 0.5).abs() < 1e-5,
            "{t:?}"
        );
        let t2 = member_typicality(x.view(), &[0, 1, 2], 5);
        // k capped at 2: means 2, 1.5, 2.5
        assert!((t2[1] - 1.0 / 1.5).abs() < 1e-5, "{t2:?}");
    }
}
