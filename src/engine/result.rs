//! The stages' outputs gathered into the plain [`ScoreResult`] the output stage and the
//! shells read.

use crate::error::Result;
use crate::report::{
    DeclaredReference, InputReport, RetrainSummary, SceneSummary, ScoreResult, Timings,
};
use crate::uncertainty::{TrainingDistance, Uncertainties};

use super::embed::Embedded;
use super::prepare::Prepared;
use super::request::ScoreRequest;
use super::select::Selected;

/// What the stages after prepare produced.
pub(super) struct Stages {
    /// Candidate tiles (in the AOI) before embedding.
    pub candidate_tiles: usize,
    /// The embed stage's output.
    pub embedded: Embedded,
    /// What retraining did, if the head was retrained.
    pub retrained: Option<RetrainSummary>,
    /// The score stage's uncertainties.
    pub uncertainties: Uncertainties,
    /// The score stage's distance of each tile to the training data.
    pub training_distance: TrainingDistance,
    /// The models' declared training-embedding statistics, if any.
    pub declared_reference: Option<DeclaredReference>,
    /// The predicted class per scored tile.
    pub predicted: Vec<usize>,
    /// The models' declared `auto` switch (the head's, else the encoder's).
    pub model_switch: Option<usize>,
    /// The select stage's picks.
    pub selected: Selected,
    /// Seconds per stage, memory, workers.
    pub timings: Timings,
}

/// Gathers a run into a [`ScoreResult`]. In: the request, the prepared scene and the
/// later stages' outputs. Out: the result (the onnxruntime in use is read here).
pub(super) fn assemble(req: &ScoreRequest, p: Prepared, s: Stages) -> Result<ScoreResult> {
    let crate::store::CachedEmbeddings {
        tiles,
        valid_fraction,
        skipped_nodata,
        embeddings,
    } = s.embedded.embeddings;
    let scene = &p.scene;
    let band_names = p
        .bands
        .iter()
        .map(|b| {
            scene
                .bands
                .get(b - 1)
                .map(|i| i.name.clone())
                .unwrap_or_default()
        })
        .collect();
    let (check_tiles, band_checks, data_type) = p.input_check;
    Ok(ScoreResult {
        scene: SceneSummary {
            path: req.scene.display().to_string(),
            width: scene.width,
            height: scene.height,
            crs_wkt: scene.crs_wkt.clone(),
            crs_epsg: scene.crs_epsg.clone(),
            pixel_size: scene.pixel_size(),
            band_names,
            bands_used: p.bands,
            band_matching: p.matches,
            pair: req.pair.as_ref().map(|p| p.display().to_string()),
            resampling: p.resampling,
            stac_item: p.stac.as_ref().and_then(|s| s.id.clone()),
            stac: p.stac.map(|s| s.bands),
        },
        grid: p.grid,
        tiles,
        valid_fraction,
        embeddings,
        uncertainties: s.uncertainties,
        training_distance: s.training_distance,
        declared_reference: s.declared_reference,
        predicted: s.predicted,
        class_names: p.head.spec.class_names.clone(),
        auto_switch_per_class: s.model_switch,
        candidate_tiles: s.candidate_tiles,
        skipped_nodata,
        labelled_tiles: s.selected.labelled_tiles,
        cache_hit: s.embedded.cache_hit,
        picks: s.selected.picks,
        strategy_params: serde_json::to_value(s.selected.strategy)
            .unwrap_or(serde_json::Value::Null),
        strategy: s.selected.strategy,
        metric: req.metric,
        budget: req.budget,
        min_spacing_m: req.min_spacing_m,
        seed: req.seed,
        mc_passes: req.mc_passes.max(1),
        encoder: (&p.encoder.spec).into(),
        head: (&p.head.spec).into(),
        runtime: crate::model::runtime::init()?,
        warnings: p.warnings,
        input: InputReport {
            sensor: p.sensor_use,
            scaling: p.scaling,
            data_type,
            check_tiles,
            check: band_checks,
        },
        timings: s.timings,
        retrained: s.retrained,
    })
}
