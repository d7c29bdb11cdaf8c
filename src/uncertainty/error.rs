//! Errors for degenerate input to the uncertainty metrics.

use thiserror::Error;

use crate::uncertainty::metric::Metric;
use crate::uncertainty::multilabel_metric::MultiLabelMetric;

/// Largest deviation tolerated when checking that probabilities lie in `[0, 1]` and that each
/// probability vector sums to 1 (f32 softmax outputs are accurate to about `1e-6`).
pub const PROBABILITY_TOLERANCE: f32 = 1e-3;

/// What can go wrong when computing uncertainty metrics from MC-dropout probabilities.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum UncertaintyError {
    /// The probability array has no MC-dropout passes (`T == 0`).
    #[error(
        "probabilities have shape [T=0, N={tiles}, C={classes}]: there are no MC-dropout \
         passes; run the model at least once (T >= 1) before computing uncertainty"
    )]
    NoPasses {
        /// Number of tiles `N` in the array.
        tiles: usize,
        /// Number of classes `C` in the array.
        classes: usize,
    },

    /// The class axis is too short for the requested computation.
    #[error(
        "probabilities have {classes} class(es) but at least {needed} are needed; \
         pass softmax outputs of shape [T, N, C] with C >= {needed} (a binary model \
         needs both columns [1 - p, p])"
    )]
    TooFewClasses {
        /// Number of classes `C` that was passed.
        classes: usize,
        /// Minimum number of classes needed.
        needed: usize,
    },

    /// A probability is NaN or infinite.
    #[error(
        "probability for tile {tile} (pass {pass}, class {class}) is {value}, which is not \
         finite; check the model output for that tile (NaN usually means an overflow in \
         the logits or a corrupt input tile)"
    )]
    NonFinite {
        /// MC-dropout pass index `t`.
        pass: usize,
        /// Tile index `n`.
        tile: usize,
        /// Class index `c`.
        class: usize,
        /// The offending value.
        value: f32,
    },

    /// A probability lies outside `[0, 1]` (beyond [`PROBABILITY_TOLERANCE`]).
    #[error(
        "probability for tile {tile} (pass {pass}, class {class}) is {value}, outside [0, 1]; \
         pass softmax probabilities, not logits"
    )]
    OutOfRange {
        /// MC-dropout pass index `t`.
        pass: usize,
        /// Tile index `n`.
        tile: usize,
        /// Class index `c`.
        class: usize,
        /// The offending value.
        value: f32,
    },

    /// A probability vector does not sum to 1 (beyond [`PROBABILITY_TOLERANCE`]).
    #[error(
        "probabilities for tile {tile} (pass {pass}) sum to {sum} instead of 1; apply a \
         softmax over the class axis (the last axis of [T, N, C]) first"
    )]
    NotNormalised {
        /// MC-dropout pass index `t`.
        pass: usize,
        /// Tile index `n`.
        tile: usize,
        /// The sum of the probability vector.
        sum: f64,
    },

    /// Two multi-label arrays that should describe the same tiles (and classes) differ in
    /// shape.
    #[error(
        "{what} has shape {found:?} but {expected:?} was expected; pass arrays that describe \
         the same tiles (rows) and classes (columns), in the same order"
    )]
    OutputShapeMismatch {
        /// Which array is off, e.g. `"previous outputs"`.
        what: &'static str,
        /// The shape it should have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },

    /// Multi-label outputs with no class column.
    #[error(
        "multi-label outputs have 0 classes; pass one sigmoid output per class, [N, C] (or \
         [T, N, C] for MC-dropout passes) with C >= 1"
    )]
    NoLabelClasses,

    /// A value of a multi-label output matrix is NaN or infinite.
    #[error(
        "{what} for tile {tile}, class {class} is {value}, which is not finite; check the \
         model output for that tile (NaN usually means an overflow in the logits or a \
         corrupt input tile)"
    )]
    NonFiniteOutput {
        /// Which array, e.g. `"sigmoid probability"`.
        what: &'static str,
        /// Tile index `n`.
        tile: usize,
        /// Class index `c`.
        class: usize,
        /// The offending value.
        value: f32,
    },

    /// A multi-label (sigmoid) probability lies outside `[0, 1]` (beyond
    /// [`PROBABILITY_TOLERANCE`]).
    #[error(
        "{what} for tile {tile}, class {class} is {value}, outside [0, 1]; pass sigmoid \
         probabilities (one independent probability per class), not logits"
    )]
    NotSigmoidProbability {
        /// Which array, e.g. `"sigmoid probability"`.
        what: &'static str,
        /// Tile index `n`.
        tile: usize,
        /// Class index `c`.
        class: usize,
        /// The offending value.
        value: f32,
    },

    /// A per-tile input value (predicted loss, feature norm) is NaN or infinite.
    #[error(
        "{what} of tile {tile} is {value}, which is not finite; check the model output for \
         that tile"
    )]
    NonFiniteScore {
        /// Which value, e.g. `"predicted loss"`.
        what: &'static str,
        /// Tile index `n`.
        tile: usize,
        /// The offending value.
        value: f32,
    },

    /// A hidden-feature norm is negative.
    #[error(
        "the hidden-feature norm of tile {tile} is {value}, but a norm is never negative; \
         pass ‖h‖₂ of the last layer's input, not a feature value or a logarithm"
    )]
    NegativeNorm {
        /// Tile index `n`.
        tile: usize,
        /// The offending value.
        value: f32,
    },

    /// The pseudo-label threshold is not a probability.
    #[error(
        "the pseudo-label threshold {threshold} is not in [0, 1]; use a probability (0.5 \
         as in Möllenbrok et al. 2023)"
    )]
    InvalidThreshold {
        /// The threshold that was given.
        threshold: f32,
    },

    /// A multi-label metric name could not be parsed.
    #[error(
        "unknown multi-label uncertainty {name:?}; expected one of: {}",
        MultiLabelMetric::names_list()
    )]
    UnknownMultiLabelMetric {
        /// The name that was given.
        name: String,
    },

    /// A metric name could not be parsed.
    #[error(
        "unknown uncertainty metric {name:?}; expected one of: {}",
        Metric::names_list()
    )]
    UnknownMetric {
        /// The name that was given.
        name: String,
    },

    /// `predicted_loss` ranking was asked of probabilities alone.
    #[error(
        "the predicted_loss metric comes from a head's loss-prediction output (metadata \
         loss_output), not from probabilities; use a head with a loss output or another metric"
    )]
    NeedsLossOutput,
}
