//! The score stage: the head's probabilities → per-tile uncertainties (every metric)
//! and the predicted class of each tile; the embeddings → each tile's distance to the
//! training data.

use ndarray::{Array1, Array3, ArrayView2};

use crate::error::Result;
use crate::model::{ModelError, ModelRole, ModelSpec};
use crate::report::DeclaredReference;
use crate::uncertainty::{
    METADATA_MEAN, METADATA_STD, ReferenceKind, TrainingDistance, Uncertainties, compute_all,
    compute_all_multilabel, mahalanobis_diag, nearest_labelled, nearest_labelled_serial,
    predicted_class, reference_from_metadata, scene_stats,
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

/// The training-embedding statistics a model declares in its metadata
/// (`nexttile_embedding_mean`/`_std`): the head's, else the encoder's; `None` when
/// neither declares them. Read once when a scene is scored and kept in its result, so a
/// round on a warm scene measures distances in the same units without the models.
///
/// # Errors
///
/// A model whose embedding-reference metadata is malformed.
pub(super) fn declared_reference(
    head: &ModelSpec,
    encoder: &ModelSpec,
    dim: usize,
) -> Result<Option<DeclaredReference>> {
    for spec in [head, encoder] {
        if let Some(stats) = reference_from_metadata(&spec.metadata, dim).map_err(|problem| {
            ModelError::Contract {
                path: spec.path.display().to_string(),
                problem,
            }
        })? {
            let role = match spec.role {
                ModelRole::Encoder => "encoder",
                ModelRole::Head => "head",
            };
            return Ok(Some(DeclaredReference {
                role: role.into(),
                model: spec.name.clone(),
                stats,
            }));
        }
    }
    Ok(None)
}

/// The distance-to-training score of every tile (see
/// [`TrainingDistance`](crate::uncertainty::TrainingDistance)), against the first
/// reference there is: the labelled tiles a retrained head learnt from
/// (`training_rows`; nearest neighbour); the `declared` training-embedding statistics
/// ([`declared_reference`]; diagonal Mahalanobis); else the scene's own mean and
/// standard deviation. The far-share warning joins `warnings`. The nearest labelled
/// tiles are searched on the selection pool when `parallel`, else on the calling thread
/// alone (beside other work; the same numbers).
pub(super) fn training_distance(
    embeddings: ArrayView2<'_, f32>,
    declared: Option<&DeclaredReference>,
    training_rows: Option<&[bool]>,
    parallel: bool,
    warnings: &mut Vec<String>,
) -> TrainingDistance {
    let scale = || match declared {
        Some(d) => d.stats.std.clone(),
        None => scene_stats(embeddings).std,
    };
    let nearest = if parallel {
        nearest_labelled
    } else {
        nearest_labelled_serial
    };
    let labelled =
        training_rows.and_then(|rows| Some((nearest(embeddings, rows, &scale())?, rows)));
    let result = if let Some((values, rows)) = labelled {
        let n = rows.iter().filter(|r| **r).count();
        let units = match declared {
            Some(d) => format!("{} metadata {METADATA_STD}", d.role),
            None => "the scene's standard deviation".into(),
        };
        TrainingDistance::new(
            ReferenceKind::LabelledTiles,
            format!(
                "nearest of the {n} labelled tiles the head was retrained on, per-feature units of {units}"
            ),
            values,
        )
    } else if let Some(d) = declared {
        TrainingDistance::new(
            ReferenceKind::ModelMetadata,
            format!(
                "{} metadata {METADATA_MEAN}/{METADATA_STD} ({})",
                d.role, d.model
            ),
            mahalanobis_diag(embeddings, &d.stats),
        )
    } else {
        TrainingDistance::new(
            ReferenceKind::Scene,
            "the scene's own per-feature mean and standard deviation: neither model declares nexttile_embedding_mean/std and the head was not retrained, so this marks tiles atypical for the scene, not for the training data".into(),
            mahalanobis_diag(embeddings, &scene_stats(embeddings)),
        )
    };
    warnings.extend(result.warning());
    result
}
