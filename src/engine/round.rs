//! A labelling round on a scored scene kept in memory: train → predict → score →
//! select on the result's own embeddings, the stages [`score`](super::score) runs with
//! `req.retrain` set, without preparing the scene, loading the ONNX models or reading
//! the embedding cache again (what the daemon's `POST rounds` does on a warm scene).

use std::time::Instant;

use super::labels::{LabelTiles, tile_classes};
use super::predict::{PredictHead, retrain_head};
use super::request::ScoreRequest;
use super::scores::{score_tiles, training_distance};
use super::select::{Scored, apply_selection, select_stage};
use crate::error::{Error, Result};
use crate::report::ScoreResult;

/// Retrains the head on `req.labelled` over `result`'s embeddings as `req.retrain`
/// says, runs `req.mc_passes` passes of it (masks from `req.seed`), scores every metric
/// and the distance to the labelled tiles, and selects again with `req`'s selection
/// (`labels`: `req.labelled` already mapped onto the result, as for [`reselect_with`](super::reselect_with)).
/// The numbers are those [`score`](super::score) gives for the same request: the same
/// functions run on the same embeddings. `result` keeps the scoring's warnings (but the
/// replaced distance's) and adds the round's. Out: the trained head, with `result` holding the round.
///
/// # Errors
///
/// [`Error::Invalid`] without `req.retrain` or `req.labelled`, for a label class the
/// head does not know or no labelled tile; those of training, saving and selection.
pub fn retrain_warm(
    result: &mut ScoreResult,
    req: &ScoreRequest,
    labels: Option<&LabelTiles>,
) -> Result<crate::head::TrainableHead> {
    let t0 = Instant::now();
    let (Some(retrain), Some(labelled)) = (&req.retrain, &req.labelled) else {
        return Err(Error::Invalid(
            "a round needs labels and a retraining request".into(),
        ));
    };
    let mut warnings = Vec::new();
    let classes = tile_classes(
        labelled,
        &result.grid,
        &result.tiles,
        &result.scene.crs_wkt,
        &result.class_names,
        &mut warnings,
    )?;
    // The distance to the labelled tiles needs no head: it is measured beside the
    // training, which keeps one core busy (candle's products run on one thread,
    // `src/main.rs`), on the others. The same numbers as one after the other.
    let rows: Vec<bool> = classes.iter().map(Option::is_some).collect();
    let (trained, measured) = std::thread::scope(|s| {
        let distance = s.spawn(|| {
            let mut warnings = Vec::new();
            let d = training_distance(
                result.embeddings.view(),
                result.declared_reference.as_ref(),
                Some(&rows),
                false,
                &mut warnings,
            );
            (d, warnings)
        });
        let trained = retrain_head(
            retrain,
            result.embeddings.view(),
            &classes,
            &result.class_names,
            req.seed,
        );
        (trained, distance.join())
    });
    let (distance, distance_warnings) = measured.map_err(|_| {
        Error::Internal("measuring the distance to the labelled tiles panicked".into())
    })?;
    let (mut head, summary) = trained?;
    let (probs, predicted_loss) =
        head.mc_passes(result.embeddings.view(), req.mc_passes, req.seed)?;
    let head_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (uncertainties, predicted) = score_tiles(&probs, false, predicted_loss)?;
    warnings.extend(distance_warnings);
    let selected = select_stage(req, &Scored::of(result, &uncertainties, &predicted), labels)?;
    // Every fallible step is done: only now does `result` change.
    // The scoring's far-share warning was about the distance this one replaces.
    if let Some(old) = result.training_distance.warning() {
        result.warnings.retain(|w| *w != old);
    }
    result.training_distance = distance;
    result.uncertainties = uncertainties;
    result.predicted = predicted;
    result.mc_passes = req.mc_passes.max(1);
    result.retrained = Some(summary);
    apply_selection(
        result,
        selected.picks,
        selected.strategy,
        selected.labelled_tiles,
        req,
        t1.elapsed().as_secs_f64(),
    );
    result.timings.head_s = head_s;
    for w in warnings {
        if !result.warnings.contains(&w) {
            result.warnings.push(w);
        }
    }
    Ok(head)
}
