//! The engine: the one pipeline the CLI and the daemon call to score a scene, as named
//! stages, each in its own module with what goes in and what comes out:
//!
//! ```text
//! ScoreRequest ─ prepare ─▶ Prepared ─ embed ─▶ Embedded ─ predict ─▶ Predicted
//!  (request)    scene/pair,  (scene,    cache or   (tiles ×   ONNX head,  (T × tiles ×
//!               models,      models,    encoder    D)         saved or    classes)
//!               bands,       grid)      workers               retrained
//!               checks, grid                                  head, T passes
//!
//!   ─ score ─▶ Uncertainties ─ select ─▶ Selected ─ (result) ─▶ ScoreResult ─ output ─▶ files
//!   (scores)   every metric,   (select)  picks      (result)    plain data    (outputs)
//!              predicted class           strategy                             heatmap, GeoJSON,
//!                                                                              CSV, summary
//! ```
//!
//! [`score`] runs them in that order; the daemon keeps a scored scene warm and runs
//! only select again ([`reselect`]), or for a round train → predict → score → select
//! on the warm embeddings ([`retrain_warm`]). Labels are mapped onto tiles by [`labels`](self)'s
//! helpers for predict (retraining) and select (labelled tiles, class balance).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;

mod embed;
mod input;
mod labels;
mod outputs;
mod predict;
mod prepare;
mod region;
mod request;
mod resample;
mod result;
mod round;
mod scenes;
mod scores;
mod select;

pub use crate::report::{
    BandCheck, InputReport, ModelSummary, Resample, ResampleReport, RetrainSummary, ScalingReport,
    SceneSummary, ScoreResult, SensorUse, Timings,
};
pub use embed::embed_workers;
pub use input::{CHECK_MAX_CLIPPED, CHECK_MAX_SIGMA, CHECK_TILES};
pub use labels::{LabelTiles, label_tiles};
pub use outputs::{OutputPaths, summary_json, write_outputs};
pub use region::{
    EmbedOutcome, StorePick, StoreSelect, StoreSelection, embed_to_store, scene_id, select_store,
    select_store_in_memory, store_file, write_store_suggestions,
};
pub use request::{
    DEFAULT_BATCH_SIZE, DEFAULT_BUDGET, DEFAULT_MAX_TILES, DEFAULT_MC_PASSES,
    DEFAULT_MIN_SPACING_M, DEFAULT_MIN_VALID, DEFAULT_SEED, DEFAULT_TILE_SIZE, MAX_AUTO_WORKERS,
    MAX_BUDGET, MAX_MC_PASSES, Retrain, ScoreRequest, check_tile_count, default_metric,
    defaults_json, too_many_tiles,
};
pub use resample::{RESAMPLE_FACTOR, scene_to_tile};
pub use round::retrain_warm;
pub use scenes::{
    AcrossPick, AcrossTraining, distance_across, repredict, reselect_across, retrain_across,
    stack_embeddings,
};
pub use select::{reselect, reselect_with};

/// Score a scene: prepare → embed → predict → score → select, gathered into a
/// [`ScoreResult`] (write it with [`write_outputs`]). `progress` is called from this
/// thread; set `cancel` from another thread to stop between batches with
/// [`Error::Cancelled`](crate::Error::Cancelled).
pub fn score(
    req: &ScoreRequest,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<ScoreResult> {
    let t0 = Instant::now();
    let mut p = prepare::prepare(req)?;
    let candidate_tiles = p.candidates.len();
    progress(Progress::Started {
        total: candidate_tiles,
    });
    for w in &p.warnings {
        tracing::warn!("{w}");
    }
    let setup_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let embedded = embed::embed(req, &mut p, progress, cancel)?;
    let embed_s = t1.elapsed().as_secs_f64();

    // Head × T on the embeddings (the encoder is not repeated).
    let t2 = Instant::now();
    progress(Progress::Head);
    let e = &embedded.embeddings;
    let places = predict::TilePlaces {
        grid: &p.grid,
        tiles: &e.tiles,
        crs_wkt: &p.scene.crs_wkt,
    };
    let predicted = predict::predict(req, &mut p.head, &e.embeddings, &places, &mut p.warnings)?;
    let head_s = t2.elapsed().as_secs_f64();

    let t3 = Instant::now();
    progress(Progress::Selecting);
    let multi_label = p.head.spec.multi_label;
    let (uncertainties, predicted_classes) =
        scores::score_tiles(&predicted.probs, multi_label, predicted.predicted_loss)?;
    let declared_reference =
        scores::declared_reference(&p.head.spec, &p.encoder.spec, e.embeddings.ncols())?;
    let training_distance = scores::training_distance(
        e.embeddings.view(),
        declared_reference.as_ref(),
        predicted.training_rows.as_deref(),
        true,
        &mut p.warnings,
    );
    let model_switch = p
        .head
        .spec
        .auto_switch_per_class
        .or(p.encoder.spec.auto_switch_per_class);
    let selected = select::select_stage(
        req,
        &select::Scored {
            grid: &p.grid,
            tiles: &e.tiles,
            crs_wkt: &p.scene.crs_wkt,
            size: (p.scene.width, p.scene.height),
            class_names: &p.head.spec.class_names,
            embeddings: e.embeddings.view(),
            uncertainties: &uncertainties,
            predicted: &predicted_classes,
            model_switch,
        },
        None,
    )?;
    let select_s = t3.elapsed().as_secs_f64();
    let timings = Timings {
        setup_s,
        embed_s,
        head_s,
        select_s,
        peak_rss_mib: peak_rss_mib(),
        workers: embedded.workers,
        batch_size: embedded.batch,
    };
    result::assemble(
        req,
        p,
        result::Stages {
            candidate_tiles,
            embedded,
            retrained: predicted.retrained,
            uncertainties,
            training_distance,
            declared_reference,
            predicted: predicted_classes,
            model_switch,
            selected,
            timings,
        },
    )
}

/// Progress events, for a progress bar or a job status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Progress {
    /// Scene opened, models loaded; `total` candidate tiles.
    Started {
        /// Candidate tiles.
        total: usize,
    },
    /// Tiles read and embedded so far.
    Embedding {
        /// Tiles done (read, including skipped).
        done: usize,
        /// Candidate tiles.
        total: usize,
    },
    /// MC passes of the head.
    Head,
    /// Selection.
    Selecting,
}

/// Peak resident set size of this process in MiB, from `/proc/self/status`
/// (`None` where that is not available).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_size_is_the_requests_then_the_encoders_then_the_default() {
        use super::request::{DEFAULT_BATCH_SIZE, batch_size};
        assert_eq!(batch_size(32, Some(16)), 32);
        assert_eq!(batch_size(0, Some(16)), 16);
        assert_eq!(batch_size(0, None), DEFAULT_BATCH_SIZE);
    }
}
