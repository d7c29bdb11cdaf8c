//! `nexttile eval`: measures how many labels each query function saves, by simulating
//! the labelling loop on a labelled image dataset (the labels play the analyst).
//!
//! Protocol (after seed 000, Sec. IV-A, and seed 004, Sec. III-A): every image is
//! embedded once with the encoder ([`embed`], cached); for each pool ([`pool`]:
//! balanced or an explicit long tail), query function ([`query`]) and seed, a uniform
//! initial set is labelled, the [`TrainableHead`](crate::head::TrainableHead) is trained
//! on it and scored on the untouched test split, `b` more samples are queried, and so on
//! for `R` rounds ([`run`]). [`report`] writes the per-round CSV, mean ± std over seeds,
//! the labels needed to reach a target score and a PNG of the curves ([`plot`]).
//! [`mosaic`] derives a multi-label benchmark (2 × 2 mosaics) from a single-label folder.

use std::path::PathBuf;

pub mod dataset;
pub mod embed;
pub mod job;
pub mod merge;
pub mod metrics;
pub mod mosaic;
pub mod plot;
pub mod pool;
pub mod query;
pub mod report;
pub mod run;

pub use dataset::{ImageFolder, Split};
pub use job::{EvalOutcome, EvalRequest, MosaicOptions, evaluate};
pub use pool::PoolKind;
pub use query::{Query, QueryParams};
pub use run::{EvalData, EvalProtocol, Labels, RoundRecord, run_eval};

/// What can go wrong in an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The dataset folder or its `splits.csv` is unusable.
    #[error("dataset {path}: {message}")]
    Dataset {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// An image could not be read.
    #[error("image {path}: {message}")]
    Image {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Inconsistent evaluation parameters.
    #[error("{0}")]
    Config(String),
    /// A result file could not be written.
    #[error("cannot write {path}: {message}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The encoder failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The head failed.
    #[error(transparent)]
    Head(#[from] crate::head::HeadError),
    /// A selection strategy failed.
    #[error(transparent)]
    Sampling(#[from] crate::sampling::SamplingError),
    /// An uncertainty could not be computed.
    #[error(transparent)]
    Uncertainty(#[from] crate::uncertainty::UncertaintyError),
}
