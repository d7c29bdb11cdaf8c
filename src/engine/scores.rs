//! The score stage: the head's probabilities → per-tile uncertainties (every metric)
//! and the predicted class of each tile.

use ndarray::{Array1, Array3};

use crate::error::Result;
use crate::uncertainty::{Uncertainties, compute_all, compute_all_multilabel, predicted_class};

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
