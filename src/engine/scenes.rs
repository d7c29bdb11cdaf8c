//! Many scored scenes as one pool: what a region project (issue 15) runs over every
//! scored scene of the project at once, on the results the daemon keeps warm.
//!
//! - [`reselect_across`]: the select stage once over the union of the scenes' scored
//!   tiles: one budget; diversity, class balance and ground spacing across scene
//!   borders (tile centres on one local tangent plane); every scene's labelled tiles
//!   excluded.
//! - [`retrain_across`]: the head retrained once on the labels of every scene, then
//!   [`repredict`] on each scene and [`distance_across`] to the tiles it learnt from.
//!
//! **Overlapping scenes**: a label trains on the tile of the most recently added scene
//! that covers it (the last of `results` whose scored tiles it touches) and on no other,
//! so ground seen twice is not learnt twice; it still excludes the tiles it touches in
//! every scene, so that ground is not suggested again from another date.

use std::collections::HashSet;
use std::time::Instant;

use geo::MultiPolygon;
use ndarray::{Array1, Array2, ArrayView2, Axis, concatenate};

use super::labels::{LabelTiles, overlay_classes, tile_classes};
use super::predict::{PredictHead, retrain_head};
use super::request::{Retrain, ScoreRequest};
use super::select::{apply_selection, pick};
use crate::aoi::Labelled;
use crate::crs::{Reprojector, wgs84};
use crate::error::{Error, Result};
use crate::head::TrainableHead;
use crate::report::{RetrainSummary, ScoreResult};
use crate::sampling::{Pick, SelectionInput, Strategy};
use crate::tiling::{TileId, tiles_in_aoi};
use crate::uncertainty::{Metric, ReferenceKind, TrainingDistance, nearest_labelled, scene_stats};

/// Where a pick of a selection over many scenes lies: which scene (an index into the
/// results) and which of that scene's picks (its `picks[k]`, in rank order).
pub type AcrossPick = (usize, usize);

/// Checks that `results` can share one pool: at least one scene, one embedding width
/// and one set of classes.
fn check_pool(results: &[ScoreResult]) -> Result<()> {
    let first = results
        .first()
        .ok_or_else(|| Error::Invalid("no scored scene to select from".into()))?;
    for r in results {
        if r.embeddings.ncols() != first.embeddings.ncols() || r.class_names != first.class_names {
            return Err(Error::Invalid(format!(
                "scenes {} and {} were scored with different models ({}-d embeddings, classes {}; {}-d, classes {}): one pool needs one encoder and head",
                first.scene.path,
                r.scene.path,
                first.embeddings.ncols(),
                first.class_names.join(", "),
                r.embeddings.ncols(),
                r.class_names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Every scene's embeddings stacked, one row per scored tile, scenes in order: what the
/// `*_across` stages read. Stack once per request: embeddings do not change when a
/// round retrains the head and predicts again.
///
/// # Errors
///
/// [`Error::Invalid`] for no scene or scenes of different models.
pub fn stack_embeddings(results: &[ScoreResult]) -> Result<Array2<f32>> {
    check_pool(results)?;
    let views: Vec<ArrayView2<'_, f32>> = results.iter().map(|r| r.embeddings.view()).collect();
    concatenate(Axis(0), &views)
        .map_err(|e| Error::Internal(format!("stacking the scenes' embeddings: {e}")))
}

/// Checks that `embeddings` are `results`' as [`stack_embeddings`] stacks them.
fn check_stacked(results: &[ScoreResult], embeddings: ArrayView2<'_, f32>) -> Result<()> {
    check_pool(results)?;
    let tiles: usize = results.iter().map(|r| r.tiles.len()).sum();
    let dim = results[0].embeddings.ncols();
    if embeddings.dim() != (tiles, dim) {
        return Err(Error::Internal(format!(
            "stacked embeddings are {:?}, the scenes have {tiles} tiles of {dim}-d",
            embeddings.dim()
        )));
    }
    Ok(())
}

/// Each tile centre of every scene (in order) as metres on one local tangent plane at
/// the mean of all centres, for ground spacing across scene borders.
fn centres_across(results: &[ScoreResult]) -> Result<Vec<[f64; 2]>> {
    let lonlat = wgs84()?;
    let mut centres = Vec::new();
    for r in results {
        let to = Reprojector::from_wkt(&r.scene.crs_wkt, &lonlat)?;
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) =
            r.tiles.iter().map(|id| r.grid.centre(*id)).unzip();
        to.transform(&mut xs, &mut ys)?;
        centres.extend(xs.into_iter().zip(ys));
    }
    super::region::centres_in_metres(&centres)
}

/// The select stage once over the union of `results` (see the module doc), with
/// `req`'s strategy, metric, budget, seed and spacing; `labels[i]` are the project's
/// labels mapped onto `results[i]` ([`label_tiles`](super::label_tiles)). Each result's
/// picks become its share of the union's (its own tile indices, in union rank order;
/// an MCFPS anchor in another scene is dropped). Out: the union's picks in rank order.
///
/// # Errors
///
/// [`Error::Invalid`] for no scene, scenes of different models, or a metric a scene
/// lacks; those of the selection.
pub fn reselect_across(
    results: &mut [ScoreResult],
    embeddings: ArrayView2<'_, f32>,
    labels: &[Option<LabelTiles>],
    req: &ScoreRequest,
) -> Result<Vec<AcrossPick>> {
    let t = Instant::now();
    check_stacked(results, embeddings)?;
    if req.metric == Metric::PredictedLoss
        && results
            .iter()
            .any(|r| r.uncertainties.predicted_loss.is_none())
    {
        return Err(Error::Invalid(
            "--metric predicted_loss needs a head with a loss output".into(),
        ));
    }
    let label_of = |i: usize| labels.get(i).and_then(Option::as_ref);
    let uncertainty: Array1<f32> = results
        .iter()
        .flat_map(|r| r.uncertainties.get(req.metric).to_vec())
        .collect();
    let masks: Vec<Vec<bool>> = results
        .iter()
        .enumerate()
        .map(|(i, r)| label_of(i).map_or_else(|| vec![false; r.tiles.len()], |l| l.mask.clone()))
        .collect();
    let labelled: Vec<bool> = masks.concat();
    let labelled_count = labelled.iter().filter(|b| **b).count();
    let usable = (0..results.len())
        .filter_map(|i| label_of(i).map(|l| l.usable_labels))
        .max()
        .unwrap_or(0);
    let first = &results[0];
    let strategy = req.strategy.with_run_facts(
        first.class_names.len(),
        usable.max(labelled_count),
        first.auto_switch_per_class,
    );
    let known: Option<Vec<usize>> = match &strategy {
        Strategy::Auto(a) if a.balance && !first.uncertainties.multi_label => Some(
            results
                .iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    overlay_classes(&r.predicted, label_of(i).and_then(|l| l.classes.as_deref()))
                })
                .collect(),
        ),
        _ => None,
    };
    let input = SelectionInput {
        embeddings,
        uncertainty: uncertainty.view(),
        excluded: None,
        labelled: Some(&labelled),
        classes: known.as_deref(),
    };
    let picks = pick(&strategy, &input, req, || centres_across(results))?;
    let starts: Vec<usize> = results
        .iter()
        .scan(0, |at, r| {
            let s = *at;
            *at += r.tiles.len();
            Some(s)
        })
        .collect();
    let scene_of = |g: usize| starts.partition_point(|&s| s <= g).saturating_sub(1);
    let mut shares: Vec<Vec<Pick>> = vec![Vec::new(); results.len()];
    let mut order = Vec::with_capacity(picks.len());
    for p in picks {
        let i = scene_of(p.index);
        let local = Pick {
            index: p.index - starts[i],
            anchor: p
                .anchor
                .filter(|a| scene_of(*a) == i)
                .map(|a| a - starts[i]),
            ..p
        };
        order.push((i, shares[i].len()));
        shares[i].push(local);
    }
    let elapsed = t.elapsed().as_secs_f64();
    for ((r, share), mask) in results.iter_mut().zip(shares).zip(&masks) {
        let count = mask.iter().filter(|b| **b).count();
        apply_selection(r, share, strategy, count, req, elapsed);
    }
    Ok(order)
}

/// Which scene each label trains in: the last of `results` whose scored tiles it
/// touches (points first, then polygons, in [`Labelled`]'s order); `None` outside
/// every scene.
fn label_owners(labelled: &Labelled, results: &[ScoreResult]) -> Result<Vec<Option<usize>>> {
    let points = labelled.points.len();
    let mut owners = vec![None; points + labelled.polygons.0.len()];
    for (i, r) in results.iter().enumerate().rev() {
        let scored: HashSet<TileId> = r.tiles.iter().copied().collect();
        let (polygons, xy) = labelled.to_scene_crs(&r.scene.crs_wkt)?;
        for (k, (x, y)) in xy.iter().enumerate() {
            if owners[k].is_none() && r.grid.tile_at(*x, *y).is_some_and(|t| scored.contains(&t)) {
                owners[k] = Some(i);
            }
        }
        for (k, poly) in polygons.0.iter().enumerate() {
            if owners[points + k].is_some() {
                continue;
            }
            match tiles_in_aoi(&r.grid, &MultiPolygon(vec![poly.clone()])) {
                Ok(ids) if ids.iter().any(|t| scored.contains(t)) => owners[points + k] = Some(i),
                Ok(_) | Err(crate::tiling::TilingError::AoiOutsideScene { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(owners)
}

/// The labels [`label_owners`] gave to scene `scene`.
fn labels_of(labelled: &Labelled, owners: &[Option<usize>], scene: usize) -> Labelled {
    let points = labelled.points.len();
    let mine = |k: usize| owners.get(k).copied().flatten() == Some(scene);
    let keep = |n: usize, off: usize| (0..n).filter(move |&k| mine(off + k));
    Labelled {
        points: keep(points, 0).map(|k| labelled.points[k]).collect(),
        point_classes: keep(points, 0)
            .map(|k| labelled.point_classes[k].clone())
            .collect(),
        polygons: MultiPolygon(
            keep(labelled.polygons.0.len(), points)
                .map(|k| labelled.polygons.0[k].clone())
                .collect(),
        ),
        polygon_classes: keep(labelled.polygons.0.len(), points)
            .map(|k| labelled.polygon_classes[k].clone())
            .collect(),
        crs: labelled.crs.clone(),
    }
}

/// What [`retrain_across`] trained.
pub struct AcrossTraining {
    /// The head, trained on the labelled tiles of every scene.
    pub head: TrainableHead,
    /// What training did (labelled tiles over all scenes, per class, the run).
    pub summary: RetrainSummary,
    /// Per scene, per scored tile: whether the head learnt from it.
    pub rows: Vec<Vec<bool>>,
    /// Labelled tiles per scene (scenes in order).
    pub per_scene: Vec<usize>,
    /// Warnings (tiles with labels of several classes).
    pub warnings: Vec<String>,
}

/// Retrains the head once on the labels of every scene (each label on the tile of the
/// scene that owns it: see the module doc), standardised over every scene's tiles, as
/// `retrain` says (continued from `retrain.warm_from`, saved to `retrain.save_to`).
///
/// # Errors
///
/// [`Error::Invalid`] for no scene, scenes of different models, a label class the head
/// does not know, or no labelled tile with a class; those of training and saving.
pub fn retrain_across(
    results: &[ScoreResult],
    embeddings: ArrayView2<'_, f32>,
    labelled: &Labelled,
    retrain: &Retrain,
    seed: u64,
) -> Result<AcrossTraining> {
    check_stacked(results, embeddings)?;
    let owners = label_owners(labelled, results)?;
    let class_names = results[0].class_names.clone();
    let mut warnings = Vec::new();
    let mut classes: Vec<Option<usize>> = Vec::new();
    let mut rows = Vec::with_capacity(results.len());
    for (i, r) in results.iter().enumerate() {
        let mine = labels_of(labelled, &owners, i);
        let c = tile_classes(
            &mine,
            &r.grid,
            &r.tiles,
            &r.scene.crs_wkt,
            &class_names,
            &mut warnings,
        )?;
        rows.push(c.iter().map(Option::is_some).collect::<Vec<bool>>());
        classes.extend(c);
    }
    let (head, summary) = retrain_head(retrain, embeddings, &classes, &class_names, seed)?;
    let per_scene = rows
        .iter()
        .map(|r| r.iter().filter(|b| **b).count())
        .collect();
    Ok(AcrossTraining {
        head,
        summary,
        rows,
        per_scene,
        warnings,
    })
}

/// The predict and score stages again on a scored scene with a head NextTile trained:
/// `passes` MC passes (masks from `seed`), every metric, the predicted classes; the
/// result records `summary` as its retraining. Its picks are left as they were.
///
/// # Errors
///
/// [`Error::Invalid`] when the head was trained on another width; those of the head.
pub fn repredict(
    result: &mut ScoreResult,
    head: &mut TrainableHead,
    passes: usize,
    seed: u64,
    summary: &RetrainSummary,
) -> Result<()> {
    if head.spec().input_dim != result.embeddings.ncols() {
        return Err(Error::Invalid(format!(
            "the retrained head takes {}-d embeddings, scene {} has {}-d",
            head.spec().input_dim,
            result.scene.path,
            result.embeddings.ncols()
        )));
    }
    let (probs, loss) = head.mc_passes(result.embeddings.view(), passes, seed)?;
    let (uncertainties, predicted) = super::scores::score_tiles(&probs, false, loss)?;
    result.uncertainties = uncertainties;
    result.predicted = predicted;
    result.mc_passes = passes.max(1);
    result.seed = seed;
    result.retrained = Some(summary.clone());
    Ok(())
}

/// Each scene's distance to the training data after [`retrain_across`]: every tile's
/// distance to the nearest tile the head learnt from, in any scene, in units of the
/// region's per-feature standard deviation (`rows` as [`AcrossTraining::rows`]).
/// Scenes are left as they were when no tile was learnt from.
///
/// # Errors
///
/// [`Error::Internal`] when `embeddings` are not the results' stacked.
pub fn distance_across(
    results: &mut [ScoreResult],
    embeddings: ArrayView2<'_, f32>,
    rows: &[Vec<bool>],
) -> Result<()> {
    check_stacked(results, embeddings)?;
    let learnt: Vec<bool> = rows.concat();
    let n = learnt.iter().filter(|b| **b).count();
    let scale = scene_stats(embeddings).std;
    let Some(values) = nearest_labelled(embeddings, &learnt, &scale) else {
        return Ok(());
    };
    let scenes = results.len();
    let mut at = 0;
    for r in results.iter_mut() {
        let len = r.tiles.len();
        r.training_distance = TrainingDistance::new(
            ReferenceKind::LabelledTiles,
            format!(
                "nearest of the {n} labelled tiles of the project's {scenes} scenes the head was retrained on, per-feature units of their standard deviation"
            ),
            values
                .get(at..at + len)
                .map(<[f32]>::to_vec)
                .unwrap_or_default(),
        );
        at += len;
    }
    Ok(())
}
