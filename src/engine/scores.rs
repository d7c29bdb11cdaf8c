//! The score stage: the head's probabilities → per-tile uncertainties (every metric)
//! and the predicted class of each tile; the embeddings → each tile's distance to the
//! training data.

use ndarray::{Array1, Array3, ArrayView2};

use crate::error::Result;
use crate::model::{ModelError, ModelRole, ModelSpec};
use crate::uncertainty::{
    METADATA_MEAN, METADATA_STD, ReferenceKind, TrainingDistance, Uncertainties, compute_all,
    compute_all_multilabel, mahalanobis_diag, nearest_labelled, predicted_class,
    reference_from_metadata, scene_stats,
};

/// The score stage. In: probabilities (passes × tiles × classes), whether the head is
/// multi-label, and the head's predicted loss per tile if it has one. Out: the
/// uncertainties of every metric and the predicted class per tile.
pub(super) fn score_tiles(
    probs: &Array3<f32>,
    multi_label: bool,
    predicted_loss: Option<Array1<f32>>,
) -> Result<(Uncertainties, Vec<usize>)> {
    // Retraining refuses multi-label heads (prepare's check_head_use), so multi-label
    // probabilities here always come from the ONNX head.
    let mut uncertainties = if multi_label {
        compute_all_multilabel(probs.view())?
    } else {
        compute_all(probs.view())?
    };
    uncertainties.predicted_loss = predicted_loss;
    let predicted = predicted_class(uncertainties.mean.view()).to_vec();
    Ok((uncertainties, predicted))
}

/// What the distance-to-training score reads.
pub(super) struct DistanceInputs<'a> {
    /// Embeddings, one row per scored tile.
    pub embeddings: ArrayView2<'a, f32>,
    /// The head's contract (its metadata is read first).
    pub head: &'a ModelSpec,
    /// The encoder's contract.
    pub encoder: &'a ModelSpec,
    /// Retrained: the scored tiles the head learnt from.
    pub training_rows: Option<&'a [bool]>,
}

/// The distance-to-training score of every tile (see
/// [`TrainingDistance`](crate::uncertainty::TrainingDistance)), against the first
/// reference there is: the labelled tiles a retrained head learnt from (nearest
/// neighbour); the training-embedding statistics in the head's, else the encoder's,
/// metadata (`nexttile_embedding_mean`/`_std`, diagonal Mahalanobis); else the scene's
/// own mean and standard deviation. The far-share warning joins `warnings`.
///
/// # Errors
///
/// A model whose embedding-reference metadata is malformed.
pub(super) fn training_distance(
    d: &DistanceInputs<'_>,
    warnings: &mut Vec<String>,
) -> Result<TrainingDistance> {
    let dim = d.embeddings.ncols();
    let mut declared = None;
    for spec in [d.head, d.encoder] {
        if let Some(stats) = reference_from_metadata(&spec.metadata, dim).map_err(|problem| {
            ModelError::Contract {
                path: spec.path.display().to_string(),
                problem,
            }
        })? {
            declared = Some((spec, stats));
            break;
        }
    }
    let role = |s: &ModelSpec| match s.role {
        ModelRole::Encoder => "encoder",
        ModelRole::Head => "head",
    };
    let scale = || match &declared {
        Some((_, stats)) => stats.std.clone(),
        None => scene_stats(d.embeddings).std,
    };
    let labelled = d
        .training_rows
        .and_then(|rows| Some((nearest_labelled(d.embeddings, rows, &scale())?, rows)));
    let result = if let Some((values, rows)) = labelled {
        let n = rows.iter().filter(|r| **r).count();
        let units = match &declared {
            Some((spec, _)) => format!("{} metadata {METADATA_STD}", role(spec)),
            None => "the scene's standard deviation".into(),
        };
        TrainingDistance::new(
            ReferenceKind::LabelledTiles,
            format!(
                "nearest of the {n} labelled tiles the head was retrained on, per-feature units of {units}"
            ),
            values,
        )
    } else if let Some((spec, stats)) = &declared {
        TrainingDistance::new(
            ReferenceKind::ModelMetadata,
            format!(
                "{} metadata {METADATA_MEAN}/{METADATA_STD} ({})",
                role(spec),
                spec.name
            ),
            mahalanobis_diag(d.embeddings, stats),
        )
    } else {
        TrainingDistance::new(
            ReferenceKind::Scene,
            "the scene's own per-feature mean and standard deviation: neither model declares nexttile_embedding_mean/std and the head was not retrained, so this marks tiles atypical for the scene, not for the training data".into(),
            mahalanobis_diag(d.embeddings, &scene_stats(d.embeddings)),
        )
    };
    warnings.extend(result.warning());
    Ok(result)
}
