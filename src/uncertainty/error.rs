//! Errors for degenerate input to the uncertainty metrics.

use thiserror::Error;

use crate::uncertainty::metric::Metric;

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

    /// A metric name could not be parsed.
    #[error(
        "unknown uncertainty metric {name:?}; expected one of: {}",
        Metric::names_list()
    )]
    UnknownMetric {
        /// The name that was given.
        name: String,
    },
}
