//! Errors of the trainable head.

use std::path::PathBuf;

/// What went wrong training, running, saving or loading a [`TrainableHead`](super::TrainableHead).
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The embeddings' width differs from the head's input width.
    #[error(
        "embeddings have {found} dimensions but the head takes {expected}; use the encoder the head was trained on"
    )]
    DimensionMismatch {
        /// The head's input width.
        expected: usize,
        /// The embeddings' width.
        found: usize,
    },
    /// The labels do not match the embeddings or the classes.
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// There is nothing to train on.
    #[error("no labelled samples to train on; label at least one tile first")]
    NoSamples,
    /// A configuration value is out of range.
    #[error("invalid head configuration: {0}")]
    InvalidConfig(String),
    /// An embedding or reference value is NaN or infinite.
    #[error(
        "embedding row {row} has a non-finite value; re-embed the scene (the cache may be corrupt)"
    )]
    NonFinite {
        /// The first offending row.
        row: usize,
    },
    /// The head has no loss-prediction branch but a predicted loss was asked for.
    #[error(
        "this head was built without a loss-prediction branch; build it with `loss_prediction: true` to use LL"
    )]
    NoLossBranch,
    /// A checkpoint could not be read or written.
    #[error("head checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// candle failed (a bug, or out of memory).
    #[error("training failed inside candle: {0}")]
    Candle(#[from] candle_core::Error),
}
