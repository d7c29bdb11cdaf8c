//! Which embedding rows a selection reads, so that a caller holding many rows compactly
//! (e.g. `select` over an embedding store, f16) widens only those to f32.
//!
//! [`rows_needed`] looks at the masks, uncertainties and classes only (the input's
//! embeddings may be zero-width) and answers per strategy:
//!
//! | strategy | rows read |
//! | --- | --- |
//! | top-k, random | none (they never read an embedding) |
//! | TypiClust | every labelled row + the seeded uniform sample of ≤ `max_points` (and ≤ `points_per_cluster` per cluster) eligible rows (`candidate_rows`) |
//! | clustering | the `m · b` most uncertain eligible rows (+ the labelled ones) |
//! | `auto` | its stage's rows; the class-balanced stage: each class's `m · quota` most uncertain rows, the `b` most uncertain overall (its fill-up) and the labelled rows |
//! | coreset, MCFPS, ProbCover, any strategy but top-k/random with a spacing | all |
//!
//! [`select_needed_rows`] runs the strategy over just those rows and maps the picks back:
//! the same picks as [`select`] over every row (each subset is chosen so that the
//! strategy, run on it, takes the same decisions; `tests` check it for every strategy).

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::sampling::balanced::class_quotas;
use crate::sampling::candidates::candidate_rows;
use crate::sampling::error::SamplingError;
use crate::sampling::input::{eligible_mask, labelled_mask};
use crate::sampling::rank::rank_order;
use crate::sampling::schedule::{AutoParams, Stage};
use crate::sampling::typiclust::sample_cap;
use crate::sampling::{Pick, SelectionInput, Strategy, select, select_with_spacing};

/// The embedding rows a selection reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowsNeeded {
    /// No embedding: the strategy runs over every row with zero-width embeddings.
    NoEmbeddings,
    /// Only these rows (ascending): the strategy runs over them alone.
    Rows(Vec<usize>),
    /// Every row's embedding.
    All,
}

/// Which embedding rows `strategy` reads when selecting `budget` tiles from `input` with
/// `seed` (see the module docs); `spaced`: a minimum spacing will be enforced
/// ([`select_with_spacing`] reruns the strategy with growing requests, so only top-k and
/// random keep a subset then). Only the input's masks, uncertainty and classes are read.
/// Invalid input gives [`RowsNeeded::All`], so that the full selection reports the error.
pub fn rows_needed(
    strategy: &Strategy,
    input: &SelectionInput<'_>,
    budget: usize,
    seed: u64,
    spaced: bool,
) -> RowsNeeded {
    match strategy {
        Strategy::TopK | Strategy::Random => return RowsNeeded::NoEmbeddings,
        _ if spaced || budget == 0 => return RowsNeeded::All,
        _ => {}
    }
    let Ok(eligible) = eligible_mask(input) else {
        return RowsNeeded::All;
    };
    let labelled = labelled_mask(input);
    let rows = match strategy {
        Strategy::Typiclust(p) => Some(candidate_rows(
            &eligible,
            &labelled,
            sample_cap(p, &labelled, budget),
            seed,
        )),
        Strategy::Clustering(p) => Some(most_uncertain(
            input,
            &eligible,
            &labelled,
            p.m.saturating_mul(budget),
        )),
        Strategy::Auto(a) => return auto_rows(a, input, &eligible, &labelled, budget, seed),
        _ => None,
    };
    rows.map_or(RowsNeeded::All, RowsNeeded::Rows)
}

/// [`rows_needed`] of `auto`: the rows of the stage the labels call for (the labelled rows
/// always, so that the stage is the same over the subset).
fn auto_rows(
    a: &AutoParams,
    input: &SelectionInput<'_>,
    eligible: &[bool],
    labelled: &[bool],
    budget: usize,
    seed: u64,
) -> RowsNeeded {
    if a.classes == 0 {
        return RowsNeeded::All;
    }
    let in_selection = labelled.iter().filter(|&&l| l).count();
    let stage = a.stage_for(in_selection.max(a.known_labels));
    if a.balance
        && stage == Stage::Uncertainty
        && let Some(classes) = input.classes
    {
        return balanced_rows(input, eligible, labelled, classes, a, budget);
    }
    match a.stage_strategy(stage) {
        Strategy::TopK => RowsNeeded::NoEmbeddings,
        Strategy::Typiclust(p) => RowsNeeded::Rows(candidate_rows(
            eligible,
            labelled,
            sample_cap(&p, labelled, budget),
            seed,
        )),
        Strategy::Clustering(p) => RowsNeeded::Rows(most_uncertain(
            input,
            eligible,
            labelled,
            p.m.saturating_mul(budget),
        )),
        _ => RowsNeeded::All,
    }
}

/// The rows of the class-balanced stage: the labelled rows (the per-class label counts),
/// each class's `m · quota` most uncertain eligible rows (the quotas are those of the full
/// pool; over the subset, water filling gives them again since every class keeps at
/// least its quota), and the `budget` most uncertain eligible rows (its fill-up).
fn balanced_rows(
    input: &SelectionInput<'_>,
    eligible: &[bool],
    labelled: &[bool],
    known: &[usize],
    a: &AutoParams,
    budget: usize,
) -> RowsNeeded {
    if known.len() != eligible.len() {
        return RowsNeeded::All;
    }
    let mut labelled_per_class = vec![0usize; a.classes];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); a.classes];
    for (tile, &class) in known.iter().enumerate() {
        if !(eligible[tile] || labelled[tile]) {
            continue;
        }
        if class >= a.classes {
            return RowsNeeded::All;
        }
        if labelled[tile] {
            labelled_per_class[class] += 1;
        } else {
            members[class].push(tile);
        }
    }
    let available: Vec<usize> = members.iter().map(Vec::len).collect();
    let quotas = class_quotas(&labelled_per_class, &available, budget);
    let u = input.uncertainty;
    let mut rows: Vec<usize> = (0..labelled.len()).filter(|&i| labelled[i]).collect();
    for (tiles, &quota) in members.into_iter().zip(&quotas) {
        if quota > 0 {
            rows.extend(top_ranked(tiles, a.m.max(1).saturating_mul(quota), &u));
        }
    }
    let pool: Vec<usize> = (0..eligible.len()).filter(|&i| eligible[i]).collect();
    rows.extend(top_ranked(pool, budget, &u));
    rows.sort_unstable();
    rows.dedup();
    RowsNeeded::Rows(rows)
}

/// The labelled rows and the `wanted` most uncertain eligible ones, ascending.
fn most_uncertain(
    input: &SelectionInput<'_>,
    eligible: &[bool],
    labelled: &[bool],
    wanted: usize,
) -> Vec<usize> {
    let pool: Vec<usize> = (0..eligible.len()).filter(|&i| eligible[i]).collect();
    let mut rows = top_ranked(pool, wanted, &input.uncertainty);
    rows.extend((0..labelled.len()).filter(|&i| labelled[i]));
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// The `n` first of `tiles` in rank order (uncertainty descending, then index), as
/// [`clustering`](crate::sampling::clustering) ranks its candidates.
fn top_ranked(mut tiles: Vec<usize>, n: usize, u: &ndarray::ArrayView1<'_, f32>) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    if n < tiles.len() {
        tiles.select_nth_unstable_by(n - 1, |&a, &b| rank_order(u[a], a, u[b], b));
        tiles.truncate(n);
    }
    tiles
}

/// [`select`] (or [`select_with_spacing`] when `spacing` gives tile centres in metres and a
/// distance > 0) over `input`, whose embeddings may be zero-width: only the rows that
/// [`rows_needed`] names are widened by `embeddings_of` (`Some(rows)`: those rows, in
/// that order; `None`: every row), the strategy runs over them with the masks,
/// uncertainties, classes and centres of the same rows, and the picks' indices (and
/// MCFPS anchors) are mapped back to `input`'s rows. The picks are [`select`]'s over the
/// full embeddings.
///
/// # Errors
///
/// Those of [`select`] / [`select_with_spacing`], and [`SamplingError::ShapeMismatch`]
/// when `embeddings_of` returns the wrong number of rows.
pub fn select_needed_rows(
    strategy: &Strategy,
    input: &SelectionInput<'_>,
    budget: usize,
    seed: u64,
    spacing: Option<(&[[f64; 2]], f64)>,
    embeddings_of: impl FnOnce(Option<&[usize]>) -> Array2<f32>,
) -> Result<Vec<Pick>, SamplingError> {
    let spacing = spacing.filter(|(_, d)| *d != 0.0);
    let run = |input: &SelectionInput<'_>, centres: Option<&[[f64; 2]]>| match (spacing, centres) {
        (Some((_, d)), Some(c)) => select_with_spacing(strategy, input, budget, seed, c, d),
        _ => select(strategy, input, budget, seed),
    };
    let centres = spacing.map(|(c, _)| c);
    match rows_needed(strategy, input, budget, seed, spacing.is_some()) {
        RowsNeeded::NoEmbeddings => {
            let empty = Array2::<f32>::zeros((input.len(), 0));
            run(&with_embeddings(input, empty.view()), centres)
        }
        RowsNeeded::All => {
            let all = embeddings_of(None);
            run(&with_embeddings(input, all.view()), centres)
        }
        RowsNeeded::Rows(rows) => {
            let x = embeddings_of(Some(&rows));
            if x.nrows() != rows.len() {
                return Err(SamplingError::ShapeMismatch {
                    embedding_rows: x.nrows(),
                    uncertainty_len: rows.len(),
                });
            }
            let u: Array1<f32> = input.uncertainty.select(Axis(0), &rows);
            let gather = |m: Option<&[bool]>| m.map(|m| rows.iter().map(|&r| m[r]).collect());
            let excluded: Option<Vec<bool>> = gather(input.excluded);
            let labelled: Option<Vec<bool>> = gather(input.labelled);
            let classes: Option<Vec<usize>> =
                input.classes.map(|c| rows.iter().map(|&r| c[r]).collect());
            let sub_centres: Option<Vec<[f64; 2]>> =
                centres.map(|c| rows.iter().map(|&r| c[r]).collect());
            let sub = SelectionInput {
                embeddings: x.view(),
                uncertainty: u.view(),
                excluded: excluded.as_deref(),
                labelled: labelled.as_deref(),
                classes: classes.as_deref(),
            };
            let picks = run(&sub, sub_centres.as_deref())?;
            Ok(picks
                .into_iter()
                .map(|p| Pick {
                    index: rows[p.index],
                    anchor: p.anchor.and_then(|a| rows.get(a).copied()),
                    ..p
                })
                .collect())
        }
    }
}

/// `input` with `embeddings` in place of its own.
fn with_embeddings<'a: 'b, 'b>(
    input: &SelectionInput<'a>,
    embeddings: ArrayView2<'b, f32>,
) -> SelectionInput<'b> {
    SelectionInput {
        embeddings,
        uncertainty: input.uncertainty,
        excluded: input.excluded,
        labelled: input.labelled,
        classes: input.classes,
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array1;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::sampling::schedule::LowBudget;
    use crate::sampling::{ClusteringParams, McfpsParams, ProbcoverParams, TypiclustParams};

    /// `n` tiles in 4-d with three blobs, uncertainties with ties, 3 classes.
    fn pool(n: usize) -> (Array2<f32>, Array1<f32>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let emb =
            Array2::from_shape_fn((n, 4), |(i, _)| (i % 3) as f32 * 5.0 + rng.random::<f32>());
        let unc = Array1::from_shape_fn(n, |i| ((i * 37) % 101) as f32 / 101.0);
        let classes = (0..n).map(|i| (i * 7 / 3) % 3).collect();
        (emb, unc, classes)
    }

    fn strategies() -> Vec<Strategy> {
        let typ = TypiclustParams {
            max_points: 300,
            ..TypiclustParams::default()
        };
        let auto = |switch: usize, balance: bool, m: usize| {
            Strategy::Auto(AutoParams {
                classes: 3,
                switch_per_class: Some(switch),
                low_budget: LowBudget::Typiclust(typ),
                m,
                balance,
                known_labels: 0,
            })
        };
        vec![
            Strategy::TopK,
            Strategy::Random,
            Strategy::Coreset,
            Strategy::Mcfps(McfpsParams::default()),
            Strategy::Probcover(ProbcoverParams {
                classes: 3,
                max_points: 300,
                ..ProbcoverParams::default()
            }),
            Strategy::Clustering(ClusteringParams::default()),
            Strategy::Typiclust(typ),
            auto(1000, true, 3),
            auto(1, true, 3),
            auto(1, false, 3),
            auto(1, true, 1),
        ]
    }

    #[test]
    fn the_needed_rows_give_the_picks_of_every_row() {
        let n = 1200;
        let (emb, unc, classes) = pool(n);
        let labelled: Vec<bool> = (0..n).map(|i| i % 97 == 5).collect();
        let excluded: Vec<bool> = (0..n).map(|i| i % 11 == 0).collect();
        let centres: Vec<[f64; 2]> = (0..n)
            .map(|i| [(i % 40) as f64 * 100.0, (i / 40) as f64 * 100.0])
            .collect();
        let none = Array2::<f32>::zeros((n, 0));
        for with_labels in [false, true] {
            let full = SelectionInput::new(emb.view(), unc.view())
                .with_excluded(&excluded)
                .with_classes(&classes);
            let full = if with_labels {
                full.with_labelled(&labelled)
            } else {
                full
            };
            let scalars = with_embeddings(&full, none.view());
            for s in strategies() {
                for (budget, seed, spacing) in [(10, 0, 0.0), (25, 7, 0.0), (8, 1, 250.0)] {
                    let want =
                        select_with_spacing(&s, &full, budget, seed, &centres, spacing).unwrap();
                    let mut widened = 0;
                    let got = select_needed_rows(
                        &s,
                        &scalars,
                        budget,
                        seed,
                        Some((&centres, spacing)),
                        |rows| match rows {
                            Some(r) => {
                                widened = r.len();
                                emb.select(Axis(0), r)
                            }
                            None => {
                                widened = n;
                                emb.clone()
                            }
                        },
                    )
                    .unwrap();
                    assert_eq!(got, want, "{s:?} budget {budget} spacing {spacing}");
                    let needed = rows_needed(&s, &scalars, budget, seed, spacing > 0.0);
                    if let RowsNeeded::Rows(r) = needed {
                        assert_eq!(widened, r.len());
                        assert!(r.len() < n, "{s:?}: {} rows", r.len());
                    }
                }
            }
        }
    }

    #[test]
    fn top_k_and_random_read_no_embedding_and_coreset_reads_all() {
        let (_, unc, _) = pool(50);
        let none = Array2::<f32>::zeros((50, 0));
        let input = SelectionInput::new(none.view(), unc.view());
        for s in [Strategy::TopK, Strategy::Random] {
            assert_eq!(
                rows_needed(&s, &input, 5, 0, true),
                RowsNeeded::NoEmbeddings
            );
        }
        assert_eq!(
            rows_needed(&Strategy::Coreset, &input, 5, 0, false),
            RowsNeeded::All
        );
        let clustering = Strategy::Clustering(ClusteringParams {
            m: 2,
            iterations: 5,
        });
        match rows_needed(&clustering, &input, 5, 0, false) {
            RowsNeeded::Rows(r) => assert_eq!(r.len(), 10),
            other => panic!("{other:?}"),
        }
    }
}
