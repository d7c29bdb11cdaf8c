//! Class-balanced uncertainty + clustering: the budget is shared out over the classes so
//! that the labelled set becomes as balanced as the pool allows, then each class's share
//! is picked by uncertainty + clustering among the tiles the head predicts for it.
//!
//! Why: on a long-tailed pool, uncertain tiles cluster around the boundaries of the
//! common classes, so plain uncertainty sampling keeps labelling those while the rare
//! classes, which count as much in a per-class score, stay under-represented. Bengar,
//! van de Weijer, Fuentes & Raducanu 2022 add a class-balancing term to the acquisition
//! (Sec. 3: the selected samples' predicted classes should fill each class up to
//! `(|L| + b) / C` labels) and show gains on long-tailed and balanced pools. This module
//! is a greedy, hard-label form of that idea, not their optimisation: the quota of class
//! `c` is filled one pick at a time, always for the class with the fewest labels plus
//! picks so far (water filling), limited by the eligible tiles predicted as `c`; each
//! class's quota is then picked by the clustering query of Möllenbrok, Sumbul & Demir
//! 2023 within that class.
//!
//! # References
//!
//! - J. Z. Bengar, J. van de Weijer, L. L. Fuentes, B. Raducanu, "Class-Balanced Active
//!   Learning for Image Classification", WACV 2022, pp. 1536–1545,
//!   doi:10.1109/WACV51458.2022.00376, arXiv:2110.04543.
//! - L. Möllenbrok, G. Sumbul, B. Demir, "Deep Active Learning for Multi-Label
//!   Classification of Remote Sensing Images", IEEE GRSL 2023, arXiv:2212.01165.

use crate::sampling::clustering::{ClusteringParams, cluster_pick, clustering};
use crate::sampling::error::SamplingError;
use crate::sampling::input::{check_embeddings, eligible_indices, eligible_mask, labelled_mask};
use crate::sampling::rank::rank_order;
use crate::sampling::{Pick, SelectionInput};

/// How many of `budget` picks go to each class: water filling from the labelled counts
/// `labelled[c]`, at most `available[c]` for class `c`; equal totals go to the lower
/// class index. The quotas sum to `min(budget, Σ available)`.
///
/// # Examples
///
/// ```
/// use nexttile::sampling::class_quotas;
///
/// // Class 0 has 5 labels, class 1 one, class 2 none; 6 picks fill 1 and 2 up first.
/// assert_eq!(class_quotas(&[5, 1, 0], &[100, 100, 100], 6), vec![0, 3, 3]);
/// // Only 2 tiles look like class 2: the rest goes to the next emptiest class.
/// assert_eq!(class_quotas(&[5, 1, 0], &[100, 100, 2], 6), vec![0, 4, 2]);
/// ```
pub fn class_quotas(labelled: &[usize], available: &[usize], budget: usize) -> Vec<usize> {
    let classes = labelled.len().min(available.len());
    let mut quota = vec![0usize; classes];
    for _ in 0..budget {
        let next = (0..classes)
            .filter(|&c| quota[c] < available[c])
            .min_by_key(|&c| (labelled[c] + quota[c], c));
        match next {
            Some(c) => quota[c] += 1,
            None => break,
        }
    }
    quota
}

/// Selects up to `budget` tiles by class-balanced uncertainty + clustering (see the module
/// docs), most uncertain first, over `classes` classes.
///
/// Steps, over the eligible tiles only (neither excluded nor labelled):
/// 1. `labelled[c]`: labelled tiles whose [`SelectionInput::classes`] entry is `c`;
///    `available[c]`: eligible tiles whose entry (the head's prediction) is `c`;
/// 2. the quotas of [`class_quotas`];
/// 3. for each class with a quota `q`, the most uncertain tile of each of `q` k-means
///    clusters of its `m · q` most uncertain eligible tiles (as in
///    [`clustering`](crate::sampling::clustering), seeded by `seed + c`);
/// 4. when empty clusters leave picks short of `budget`, the most uncertain remaining
///    eligible tiles fill up.
///
/// Without [`SelectionInput::classes`] it is plain [`clustering`]. Picks are ranked by
/// uncertainty, highest first (equal: lower index), carry the tile's uncertainty as
/// `score` and no anchor or cluster.
///
/// # Errors
///
/// Those of [`clustering`], [`SamplingError::MaskLengthMismatch`] for a `classes` slice
/// of the wrong length and [`SamplingError::ClassOutOfRange`] for an entry `>= classes`
/// of an eligible or labelled tile.
pub fn class_balanced(
    input: &SelectionInput<'_>,
    budget: usize,
    classes: usize,
    params: &ClusteringParams,
    seed: u64,
) -> Result<Vec<Pick>, SamplingError> {
    let Some(known) = input.classes else {
        return clustering(input, budget, params, seed);
    };
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    if params.m == 0 {
        return Err(SamplingError::ZeroCandidateFactor);
    }
    let eligible = eligible_mask(input)?;
    check_embeddings(&input.embeddings, &eligible)?;
    if known.len() != eligible.len() {
        return Err(SamplingError::MaskLengthMismatch {
            mask: "classes",
            mask_len: known.len(),
            tiles: eligible.len(),
        });
    }
    let labelled = labelled_mask(input);
    let mut labelled_per_class = vec![0usize; classes];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (tile, &class) in known.iter().enumerate() {
        if !(eligible[tile] || labelled[tile]) {
            continue;
        }
        if class >= classes {
            return Err(SamplingError::ClassOutOfRange {
                tile,
                class,
                classes,
            });
        }
        if labelled[tile] {
            labelled_per_class[class] += 1;
        } else {
            members[class].push(tile);
        }
    }
    let available: Vec<usize> = members.iter().map(Vec::len).collect();
    let quotas = class_quotas(&labelled_per_class, &available, budget);
    let mut chosen = Vec::with_capacity(budget);
    for (class, (tiles, &quota)) in members.into_iter().zip(&quotas).enumerate() {
        if quota > 0 {
            let class_seed = seed.wrapping_add(class as u64);
            chosen.extend(cluster_pick(input, tiles, quota, params, class_seed)?);
        }
    }
    let u = &input.uncertainty;
    let by_rank = |&a: &usize, &b: &usize| rank_order(u[a], a, u[b], b);
    if chosen.len() < budget {
        let mut taken = vec![false; eligible.len()];
        for &t in &chosen {
            taken[t] = true;
        }
        let mut rest: Vec<usize> = eligible_indices(&eligible)
            .into_iter()
            .filter(|&t| !taken[t])
            .collect();
        rest.sort_unstable_by(by_rank);
        let missing = budget - chosen.len();
        chosen.extend(rest.into_iter().take(missing));
    }
    chosen.sort_unstable_by(by_rank);
    Ok(chosen
        .into_iter()
        .map(|index| Pick::new(index, u[index]))
        .collect())
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, array};

    use super::*;

    #[test]
    fn quotas_fill_the_emptiest_classes_first() {
        assert_eq!(class_quotas(&[5, 1, 0], &[100, 100, 100], 6), vec![0, 3, 3]);
        assert_eq!(class_quotas(&[5, 1, 0], &[100, 100, 2], 6), vec![0, 4, 2]);
        // Equal counts: the lower class first; the budget beyond every tile is not spent.
        assert_eq!(class_quotas(&[0, 0], &[1, 1], 1), vec![1, 0]);
        assert_eq!(class_quotas(&[0, 0], &[1, 2], 10), vec![1, 2]);
        assert_eq!(class_quotas(&[3, 3], &[9, 9], 0), vec![0, 0]);
    }

    /// Six tiles of class 0 (two labelled) and four of class 1 (none labelled), each
    /// class with its own uncertainty order:
    ///   class 0 at x = 0..6:   tiles 0–5, uncertainty 0.9 .. 0.4 (0 and 1 labelled)
    ///   class 1 at x = 100..:  tiles 6–9, uncertainty 0.3, 0.2, 0.1, 0.05
    fn two_classes() -> (ndarray::Array2<f32>, Array1<f32>, Vec<usize>, Vec<bool>) {
        let emb = array![
            [0.0_f32],
            [1.0],
            [2.0],
            [3.0],
            [4.0],
            [5.0],
            [100.0],
            [101.0],
            [102.0],
            [103.0]
        ];
        let unc = array![0.9_f32, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05];
        let classes = vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
        let labelled = vec![
            true, true, false, false, false, false, false, false, false, false,
        ];
        (emb, unc, classes, labelled)
    }

    #[test]
    fn the_rare_class_gets_its_share_although_it_is_less_uncertain() {
        let (emb, unc, classes, labelled) = two_classes();
        let input = SelectionInput::new(emb.view(), unc.view())
            .with_labelled(&labelled)
            .with_classes(&classes);
        let params = ClusteringParams {
            m: 1,
            iterations: 0,
        };
        // 4 picks, class 0 has 2 labels and class 1 none: quotas 1 and 3 (2+1 = 0+3).
        let picks = class_balanced(&input, 4, 2, &params, 7).unwrap();
        let idx: Vec<usize> = picks.iter().map(|p| p.index).collect();
        // m = 1: the most uncertain of each class's share, ranked by uncertainty.
        assert_eq!(idx, vec![2, 6, 7, 8]);
        assert!(picks.iter().all(|p| !labelled[p.index]));
        // Plain uncertainty would have taken class 0 only.
        let top: Vec<usize> = clustering(&input, 4, &params, 7)
            .unwrap()
            .iter()
            .map(|p| p.index)
            .collect();
        assert_eq!(top, vec![2, 3, 4, 5]);
    }

    #[test]
    fn short_classes_fill_up_from_the_rest_and_no_classes_is_clustering() {
        let (emb, unc, classes, labelled) = two_classes();
        let input = SelectionInput::new(emb.view(), unc.view()).with_labelled(&labelled);
        let params = ClusteringParams {
            m: 1,
            iterations: 0,
        };
        let plain = class_balanced(&input, 3, 2, &params, 1).unwrap();
        assert_eq!(plain, clustering(&input, 3, &params, 1).unwrap());
        // 7 picks: class 1 has only 4 tiles, so class 0 takes the other 3.
        let input = input.with_classes(&classes);
        let picks = class_balanced(&input, 7, 2, &params, 1).unwrap();
        let mut idx: Vec<usize> = picks.iter().map(|p| p.index).collect();
        idx.sort_unstable();
        assert_eq!(idx, vec![2, 3, 4, 6, 7, 8, 9]);
    }

    #[test]
    fn bad_classes_are_errors() {
        let (emb, unc, mut classes, labelled) = two_classes();
        let params = ClusteringParams::default();
        let short = &classes[..3];
        let input = SelectionInput::new(emb.view(), unc.view()).with_classes(short);
        assert!(matches!(
            class_balanced(&input, 2, 2, &params, 0),
            Err(SamplingError::MaskLengthMismatch {
                mask: "classes",
                ..
            })
        ));
        classes[9] = 5;
        let input = SelectionInput::new(emb.view(), unc.view())
            .with_labelled(&labelled)
            .with_classes(&classes);
        assert_eq!(
            class_balanced(&input, 2, 2, &params, 0),
            Err(SamplingError::ClassOutOfRange {
                tile: 9,
                class: 5,
                classes: 2
            })
        );
    }
}
