//! A minimum ground distance between picks, on top of any strategy.
//!
//! Neighbouring (or overlapping) tiles look alike and cost a labeller almost the same
//! trip twice, so a spacing in metres can be enforced on the ranked picks of any
//! [`Strategy`]: candidates are accepted in rank order when their centre is at least the
//! spacing away from every accepted pick and every labelled tile. The distance queries go
//! through an R*-tree (`rstar`) of the accepted and labelled centres.

use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::sampling::error::SamplingError;
use crate::sampling::input::{eligible_mask, labelled_mask};
use crate::sampling::{Pick, SelectionInput, Strategy, select};

/// A tile centre `[x, y]` in metres, with its tile index.
type Centre = GeomWithData<[f64; 2], usize>;

/// Selects up to `budget` tiles with `strategy` (as [`select`]) such that no two picks, and
/// no pick and a [`labelled`](SelectionInput::labelled) tile, have centres closer than
/// `min_spacing_m` metres; ranked (rank 1 first) in the strategy's order.
///
/// `centres_m` holds one `[x, y]` tile centre per tile in metres of a projected CRS
/// (distances are planar Euclidean). The strategy is asked for `2 · budget` ranked
/// candidates (at most the number of eligible tiles); they are accepted greedily in rank
/// order when their centre is at least `min_spacing_m` (exactly that distance is allowed)
/// from every accepted pick and every labelled tile. When fewer than `budget` are
/// accepted, the request is doubled and the acceptance redone on the new ranking, until
/// the budget is filled or the request covers every eligible tile; so fewer than `budget`
/// picks come back when the spacing leaves no more room. Each run of the strategy is
/// seeded with `seed`. The accepted [`Pick`]s keep their scores and anchors.
///
/// `min_spacing_m <= 0` turns the constraint off: the result is `select(strategy, input,
/// budget, seed)`. The arguments are validated either way.
///
/// Costs the strategy runs (at most `log2(N / budget) + 1` of them, each with at most
/// twice the previous request) plus `O(c · log a)` for `c` candidates and `a` accepted or
/// labelled centres.
///
/// # Errors
///
/// [`SamplingError::ZeroBudget`], [`SamplingError::CentresLengthMismatch`] when
/// `centres_m.len() != N`, [`SamplingError::NonFiniteCentre`] for an eligible or labelled
/// tile, [`SamplingError::InvalidSpacing`] for a NaN or infinite `min_spacing_m`, and the
/// strategy's own errors.
///
/// # Examples
///
/// ```
/// use ndarray::{Array2, array};
/// use nexttile::sampling::{SelectionInput, Strategy, select_with_spacing};
///
/// // Four tiles in a row, 100 m apart; tile 3 is labelled.
/// let embeddings = Array2::<f32>::zeros((4, 1));
/// let uncertainty = array![0.9_f32, 0.8, 0.7, 0.6];
/// let centres = [[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]];
/// let labelled = [false, false, false, true];
/// let input = SelectionInput::new(embeddings.view(), uncertainty.view()).with_labelled(&labelled);
/// let picks = select_with_spacing(&Strategy::TopK, &input, 3, 0, &centres, 150.0)?;
/// // 0 is accepted; 1 is 100 m from 0; 2 is 200 m from 0 but 100 m from labelled 3.
/// assert_eq!(picks.iter().map(|p| p.index).collect::<Vec<_>>(), vec![0]);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn select_with_spacing(
    strategy: &Strategy,
    input: &SelectionInput<'_>,
    budget: usize,
    seed: u64,
    centres_m: &[[f64; 2]],
    min_spacing_m: f64,
) -> Result<Vec<Pick>, SamplingError> {
    if budget == 0 {
        return Err(SamplingError::ZeroBudget);
    }
    if min_spacing_m.is_nan() || min_spacing_m == f64::INFINITY {
        return Err(SamplingError::InvalidSpacing {
            value: min_spacing_m,
        });
    }
    let eligible = eligible_mask(input)?;
    let labelled = labelled_mask(input);
    if centres_m.len() != eligible.len() {
        return Err(SamplingError::CentresLengthMismatch {
            centres: centres_m.len(),
            tiles: eligible.len(),
        });
    }
    for (tile, (&[x, y], (&e, &l))) in centres_m
        .iter()
        .zip(eligible.iter().zip(&labelled))
        .enumerate()
    {
        if (e || l) && !(x.is_finite() && y.is_finite()) {
            return Err(SamplingError::NonFiniteCentre { tile, x, y });
        }
    }
    if min_spacing_m <= 0.0 {
        return select(strategy, input, budget, seed);
    }
    let pool = eligible.iter().filter(|&&e| e).count();
    let labelled_centres: Vec<Centre> = labelled
        .iter()
        .zip(centres_m)
        .enumerate()
        .filter(|&(_, (&l, _))| l)
        .map(|(i, (_, &c))| Centre::new(c, i))
        .collect();
    let mut request = budget.saturating_mul(2).min(pool).max(1);
    loop {
        let candidates = select(strategy, input, request, seed)?;
        let accepted = accept(
            &candidates,
            labelled_centres.clone(),
            centres_m,
            min_spacing_m,
            budget,
        );
        if accepted.len() >= budget || request >= pool {
            return Ok(accepted);
        }
        request = request.saturating_mul(2).min(pool);
    }
}

/// Accepts `candidates` in order while fewer than `budget` are accepted, each one when no
/// centre of the tree (labelled tiles, then accepted picks) is closer than `min_spacing`.
fn accept(
    candidates: &[Pick],
    labelled: Vec<Centre>,
    centres: &[[f64; 2]],
    min_spacing: f64,
    budget: usize,
) -> Vec<Pick> {
    let limit = min_spacing * min_spacing;
    let mut tree = RTree::bulk_load(labelled);
    let mut accepted = Vec::with_capacity(budget.min(candidates.len()));
    for pick in candidates {
        if accepted.len() >= budget {
            break;
        }
        let Some(&c) = centres.get(pick.index) else {
            continue;
        };
        let too_close = tree
            .nearest_neighbor(&c)
            .is_some_and(|near| squared_distance(near.geom(), &c) < limit);
        if !too_close {
            tree.insert(Centre::new(c, pick.index));
            accepted.push(*pick);
        }
    }
    accepted
}

/// Squared planar distance of two points.
fn squared_distance(a: &[f64; 2], b: &[f64; 2]) -> f64 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    dx * dx + dy * dy
}

#[cfg(test)]
mod tests {
    use crate::sampling::fixtures::indices;
    use ndarray::{Array1, Array2, array};

    use super::*;
    use crate::sampling::McfpsParams;
    use crate::sampling::clustering::ClusteringParams;

    /// Six tiles on a 100 m grid row at x = 0, 100, ..., 500 (y = 0).
    fn row() -> Vec<[f64; 2]> {
        (0..6).map(|i| [100.0 * f64::from(i), 0.0]).collect()
    }

    #[test]
    fn top_k_with_spacing_hand_worked() {
        // Uncertainty ranks the tiles 1, 2, 0, 4, 3, 5 (0.9, 0.8, 0.7, 0.6, 0.5, 0.4).
        // Spacing 200 m, budget 3; first request 6 (2 · 3 capped at 6 tiles):
        //   1 (x = 100) accepted;
        //   2 (x = 200) is 100 m from 1 -> rejected;  0 (x = 0) 100 m from 1 -> rejected;
        //   4 (x = 400) is 300 m from 1 -> accepted;
        //   3 (x = 300) is 100 m from 4 -> rejected;  5 (x = 500) 100 m from 4 -> rejected.
        // Only 2 accepted, but the request already covers all 6 tiles: stop.
        let emb = Array2::<f32>::zeros((6, 1));
        let unc = array![0.7_f32, 0.9, 0.8, 0.5, 0.6, 0.4];
        let input = SelectionInput::new(emb.view(), unc.view());
        let centres = row();
        let picks = select_with_spacing(&Strategy::TopK, &input, 3, 0, &centres, 200.0).unwrap();
        assert_eq!(indices(&picks), vec![1, 4]);
        assert_eq!(picks[0].score, 0.9);
        // Exactly the spacing is allowed: at 100 m, 1 is accepted, then 2 (100 m from 1)
        // and 0 (100 m from 1, 200 m from 2), which fills the budget.
        let picks = select_with_spacing(&Strategy::TopK, &input, 3, 0, &centres, 100.0).unwrap();
        assert_eq!(indices(&picks), vec![1, 2, 0]);
        // Just over 100 m: 1, then 2 and 0 are too close, 4 is fine, 3 and 5 too close to 4.
        let picks = select_with_spacing(&Strategy::TopK, &input, 3, 0, &centres, 100.5).unwrap();
        assert_eq!(indices(&picks), vec![1, 4]);
    }

    #[test]
    fn the_request_grows_until_the_budget_is_filled() {
        // 20 tiles on a row 10 m apart, uncertainty falling with x, so top-k ranks them
        // 0, 1, 2, ...; spacing 25 m keeps every third tile: 0, 3, 6, 9.
        // Budget 4: request 8 (tiles 0..8) accepts 0, 3, 6 (9 is not in it); request 16
        // accepts 0, 3, 6, 9.
        let n = 20;
        let emb = Array2::<f32>::zeros((n, 1));
        let unc = Array1::from_shape_fn(n, |i| 1.0 - i as f32 / n as f32);
        let centres: Vec<[f64; 2]> = (0..n).map(|i| [10.0 * i as f64, 0.0]).collect();
        let input = SelectionInput::new(emb.view(), unc.view());
        let picks = select_with_spacing(&Strategy::TopK, &input, 4, 0, &centres, 25.0).unwrap();
        assert_eq!(indices(&picks), vec![0, 3, 6, 9]);
        // Budget 10 cannot be filled: 0, 3, ..., 18 is all there is.
        let picks = select_with_spacing(&Strategy::TopK, &input, 10, 0, &centres, 25.0).unwrap();
        assert_eq!(indices(&picks), vec![0, 3, 6, 9, 12, 15, 18]);
    }

    #[test]
    fn labelled_tiles_keep_picks_away() {
        // Tile 2 (x = 200) is labelled; spacing 150 m. Ranking by uncertainty: 1, 3, 0, 5, 4
        // (tile 2 cannot be picked). 1 is 100 m from 2 -> rejected; 3 likewise; 0 is 200 m
        // from 2 -> accepted; 5 is 300 m from 2 and 500 m from 0 -> accepted; budget 2 full.
        let emb = Array2::<f32>::zeros((6, 1));
        let unc = array![0.7_f32, 0.9, 0.95, 0.8, 0.5, 0.6];
        let labelled = [false, false, true, false, false, false];
        let input = SelectionInput::new(emb.view(), unc.view()).with_labelled(&labelled);
        let centres = row();
        let picks = select_with_spacing(&Strategy::TopK, &input, 2, 0, &centres, 150.0).unwrap();
        assert_eq!(indices(&picks), vec![0, 5]);
    }

    #[test]
    fn works_with_every_strategy() {
        let n = 30;
        let emb = Array2::from_shape_fn((n, 2), |(i, d)| ((i * 7 + d * 3) % 11) as f32);
        let unc = Array1::from_shape_fn(n, |i| ((i * 13) % 17) as f32 / 17.0);
        let centres: Vec<[f64; 2]> = (0..n)
            .map(|i| [50.0 * (i % 6) as f64, 50.0 * (i / 6) as f64])
            .collect();
        let mut labelled = vec![false; n];
        labelled[14] = true;
        let input = SelectionInput::new(emb.view(), unc.view()).with_labelled(&labelled);
        let strategies = [
            Strategy::TopK,
            Strategy::Random,
            Strategy::Mcfps(McfpsParams::default()),
            Strategy::Coreset,
            Strategy::Clustering(ClusteringParams::default()),
        ];
        for strategy in strategies {
            let picks = select_with_spacing(&strategy, &input, 5, 3, &centres, 120.0).unwrap();
            assert!(!picks.is_empty() && picks.len() <= 5, "{strategy}");
            let mut placed: Vec<usize> = indices(&picks);
            assert!(!placed.contains(&14), "{strategy}");
            placed.push(14);
            for (a, &i) in placed.iter().enumerate() {
                for &j in &placed[a + 1..] {
                    let d = squared_distance(&centres[i], &centres[j]).sqrt();
                    assert!(d >= 120.0, "{strategy}: {i} and {j} are {d} m apart");
                }
            }
            // Deterministic for a seed.
            assert_eq!(
                select_with_spacing(&strategy, &input, 5, 3, &centres, 120.0).unwrap(),
                picks
            );
        }
    }

    #[test]
    fn no_spacing_is_plain_select() {
        let emb = Array2::<f32>::zeros((6, 1));
        let unc = array![0.7_f32, 0.9, 0.8, 0.5, 0.6, 0.4];
        let input = SelectionInput::new(emb.view(), unc.view());
        let centres = row();
        for spacing in [0.0, -5.0, f64::NEG_INFINITY] {
            assert_eq!(
                select_with_spacing(&Strategy::TopK, &input, 4, 0, &centres, spacing),
                select(&Strategy::TopK, &input, 4, 0)
            );
        }
    }

    #[test]
    fn degenerate_inputs() {
        let emb = Array2::<f32>::zeros((6, 1));
        let unc = Array1::<f32>::zeros(6);
        let input = SelectionInput::new(emb.view(), unc.view());
        let mut centres = row();
        let s = Strategy::TopK;
        assert_eq!(
            select_with_spacing(&s, &input, 0, 0, &centres, 10.0),
            Err(SamplingError::ZeroBudget)
        );
        assert!(matches!(
            select_with_spacing(&s, &input, 2, 0, &centres, f64::NAN),
            Err(SamplingError::InvalidSpacing { value }) if value.is_nan()
        ));
        assert_eq!(
            select_with_spacing(&s, &input, 2, 0, &centres, f64::INFINITY),
            Err(SamplingError::InvalidSpacing {
                value: f64::INFINITY
            })
        );
        assert_eq!(
            select_with_spacing(&s, &input, 2, 0, &centres[..5], 10.0),
            Err(SamplingError::CentresLengthMismatch {
                centres: 5,
                tiles: 6
            })
        );
        centres[4] = [f64::NAN, 0.0];
        assert!(matches!(
            select_with_spacing(&s, &input, 2, 0, &centres, 10.0),
            Err(SamplingError::NonFiniteCentre { tile: 4, .. })
        ));
        // An excluded (not labelled) tile's centre is never used.
        let mut excluded = [false; 6];
        excluded[4] = true;
        let input = input.with_excluded(&excluded);
        assert_eq!(
            select_with_spacing(&s, &input, 2, 0, &centres, 10.0).map(|p| p.len()),
            Ok(2)
        );
        // Nothing eligible: no picks.
        let all = [true; 6];
        let input = SelectionInput::new(emb.view(), unc.view()).with_excluded(&all);
        assert_eq!(
            select_with_spacing(&s, &input, 2, 0, &row(), 10.0),
            Ok(vec![])
        );
    }
}
