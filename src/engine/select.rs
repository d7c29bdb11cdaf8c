//! The select stage of scoring: the labelled tiles, what only the run knows for the
//! strategy (the head's classes, labels so far, the model's `auto` switch), the class of
//! each tile for class-balanced selection, then the picks (with ground spacing when
//! asked). On its own so the daemon can run it again on a scene it keeps warm
//! ([`reselect`]): new labels, strategy or budget need no encoder and no head pass.

use std::time::Instant;

use ndarray::ArrayView2;

use super::ScoreRequest;
use super::labels::{LabelTiles, known_classes, labelled_tiles, overlay_classes, usable_labels};
use crate::crs::LocalMetric;
use crate::error::{Error, Result};
use crate::report::ScoreResult;
use crate::sampling::{Pick, SelectionInput, Strategy, select, select_with_spacing};
use crate::tiling::{TileGrid, TileId};
use crate::uncertainty::Uncertainties;

/// What the select stage reads of a scored scene.
pub(super) struct Scored<'a> {
    /// The tile grid.
    pub grid: &'a TileGrid,
    /// Scored tiles, in the order of every per-tile array.
    pub tiles: &'a [TileId],
    /// The scene CRS (labels are matched to tiles in it).
    pub crs_wkt: &'a str,
    /// Scene width and height, pixels (the local metric is centred on the scene).
    pub size: (usize, usize),
    /// The head's classes.
    pub class_names: &'a [String],
    /// Embeddings, one row per scored tile.
    pub embeddings: ArrayView2<'a, f32>,
    /// Mean probabilities and every metric.
    pub uncertainties: &'a Uncertainties,
    /// Predicted class per scored tile.
    pub predicted: &'a [usize],
    /// The models' declared `auto` switch, if any.
    pub model_switch: Option<usize>,
}

impl<'a> Scored<'a> {
    /// What a scored scene's result gives the select stage, with `uncertainties` and
    /// `predicted` in place of the result's own (a round selects on its new predictions
    /// before it keeps them).
    pub(super) fn of(
        result: &'a ScoreResult,
        uncertainties: &'a Uncertainties,
        predicted: &'a [usize],
    ) -> Self {
        Scored {
            grid: &result.grid,
            tiles: &result.tiles,
            crs_wkt: &result.scene.crs_wkt,
            size: (result.scene.width, result.scene.height),
            class_names: &result.class_names,
            embeddings: result.embeddings.view(),
            uncertainties,
            predicted,
            model_switch: result.auto_switch_per_class,
        }
    }
}

/// What the select stage chose.
pub(super) struct Selected {
    /// Ranked picks.
    pub picks: Vec<Pick>,
    /// The strategy with the run's facts filled in.
    pub strategy: Strategy,
    /// Scored tiles that are labelled.
    pub labelled_tiles: usize,
}

/// Selects `req.budget` tiles of a scored scene with `req`'s strategy, metric, seed,
/// spacing and labels.
pub(super) fn select_stage(
    req: &ScoreRequest,
    s: &Scored<'_>,
    cached: Option<&LabelTiles>,
) -> Result<Selected> {
    let score_vec = s.uncertainties.get(req.metric);
    let (labelled_mask, known_labels) = match (cached, &req.labelled) {
        (Some(c), _) => (Some(c.mask.clone()), c.usable_labels),
        // auto and ProbCover need the head's classes; auto counts every label given so
        // far (all of the project's, in the daemon), not only this scene's. Labels of
        // the reserved `unusable` class say nothing about classes: not counted.
        (None, Some(l)) => (
            Some(labelled_tiles(l, s.grid, s.tiles, s.crs_wkt)?),
            usable_labels(l, s.class_names),
        ),
        (None, None) => (None, 0),
    };
    let labelled_count = labelled_mask
        .as_ref()
        .map_or(0, |m| m.iter().filter(|b| **b).count());
    let strategy = req.strategy.with_run_facts(
        s.class_names.len(),
        known_labels.max(labelled_count),
        s.model_switch,
    );
    let known = match &strategy {
        Strategy::Auto(a) if a.balance && !s.uncertainties.multi_label => Some(match cached {
            Some(c) => overlay_classes(s.predicted, c.classes.as_deref()),
            None => known_classes(
                s.predicted,
                req.labelled.as_ref(),
                (s.grid, s.tiles, s.crs_wkt),
                s.class_names,
            ),
        }),
        _ => None,
    };
    let input = SelectionInput {
        embeddings: s.embeddings,
        uncertainty: score_vec,
        excluded: None,
        labelled: labelled_mask.as_deref(),
        classes: known.as_deref(),
    };
    let picks = pick(&strategy, &input, req, || {
        let (cx, cy) = s
            .grid
            .geo_transform
            .apply(s.size.0 as f64 / 2.0, s.size.1 as f64 / 2.0);
        let metric = LocalMetric::new(s.crs_wkt, (cx, cy))?;
        Ok(s.tiles
            .iter()
            .map(|id| {
                let (x, y) = s.grid.centre(*id);
                metric.to_metres(x, y)
            })
            .collect())
    })?;
    Ok(Selected {
        picks,
        strategy,
        labelled_tiles: labelled_count,
    })
}

/// `req.budget` picks by `strategy` with `req`'s seed, kept `req.min_spacing_m` apart
/// on the ground when that is positive (`centres`, in metres, read only then).
pub(super) fn pick(
    strategy: &Strategy,
    input: &SelectionInput<'_>,
    req: &ScoreRequest,
    centres: impl FnOnce() -> Result<Vec<[f64; 2]>>,
) -> Result<Vec<Pick>> {
    Ok(if req.min_spacing_m > 0.0 {
        select_with_spacing(
            strategy,
            input,
            req.budget,
            req.seed,
            &centres()?,
            req.min_spacing_m,
        )?
    } else {
        select(strategy, input, req.budget, req.seed)?
    })
}

/// Runs the select stage again on a scored scene with `req`'s selection (strategy,
/// metric, budget, seed, spacing, labels) and replaces the result's picks: what the
/// daemon does for suggestions on a scene it keeps warm. The caller makes sure `req`
/// scores the same scene with the same models, AOI and MC passes as `result`.
///
/// # Errors
///
/// [`Error::Invalid`] for a metric the result does not have (e.g. `predicted_loss`
/// without a loss head), and those of the selection.
pub fn reselect(result: &mut ScoreResult, req: &ScoreRequest) -> Result<()> {
    reselect_with(result, req, None)
}

/// [`reselect`] with `req.labelled` already mapped onto the result's tiles
/// ([`label_tiles`](super::label_tiles)); `None` maps them here. The caller makes sure
/// `labels` were mapped from `req.labelled` onto this result.
///
/// # Errors
///
/// Those of [`reselect`].
pub fn reselect_with(
    result: &mut ScoreResult,
    req: &ScoreRequest,
    labels: Option<&LabelTiles>,
) -> Result<()> {
    let t = Instant::now();
    if req.metric == crate::uncertainty::Metric::PredictedLoss
        && result.uncertainties.predicted_loss.is_none()
    {
        return Err(Error::Invalid(
            "--metric predicted_loss needs a head with a loss output".into(),
        ));
    }
    let selected = select_stage(
        req,
        &Scored::of(result, &result.uncertainties, &result.predicted),
        labels,
    )?;
    apply_selection(
        result,
        selected.picks,
        selected.strategy,
        selected.labelled_tiles,
        req,
        t.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// Makes `picks` (chosen by `strategy` as `req` asked, `labelled_tiles` of the result's
/// tiles labelled) a warm result's selection, with the stage timings of a run that
/// only selected (`select_s` seconds).
pub(super) fn apply_selection(
    result: &mut ScoreResult,
    picks: Vec<Pick>,
    strategy: Strategy,
    labelled_tiles: usize,
    req: &ScoreRequest,
    select_s: f64,
) {
    result.picks = picks;
    result.strategy_params = serde_json::to_value(strategy).unwrap_or(serde_json::Value::Null);
    result.strategy = strategy;
    result.labelled_tiles = labelled_tiles;
    result.metric = req.metric;
    result.budget = req.budget;
    result.seed = req.seed;
    result.min_spacing_m = req.min_spacing_m;
    result.cache_hit = true;
    result.timings.setup_s = 0.0;
    result.timings.embed_s = 0.0;
    result.timings.head_s = 0.0;
    result.timings.workers = 0;
    result.timings.select_s = select_s;
}
