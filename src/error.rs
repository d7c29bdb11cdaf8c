//! The crate error: one variant per module error, plus request validation.

use crate::{aoi, crs, eval, head, model, output, raster, sampling, tiling, uncertainty};

/// Result with the crate [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error NextTile reports. Messages say what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Raster input.
    #[error(transparent)]
    Raster(#[from] raster::RasterError),
    /// Tile grid / AOI clipping.
    #[error(transparent)]
    Tiling(#[from] tiling::TilingError),
    /// AOI parsing.
    #[error(transparent)]
    Aoi(#[from] aoi::AoiError),
    /// CRS handling.
    #[error(transparent)]
    Crs(#[from] crs::CrsError),
    /// Models and onnxruntime.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// Uncertainty computation.
    #[error(transparent)]
    Uncertainty(#[from] uncertainty::UncertaintyError),
    /// Selection.
    #[error(transparent)]
    Sampling(#[from] sampling::SamplingError),
    /// Writing outputs.
    #[error(transparent)]
    Output(#[from] output::OutputError),
    /// The label-savings evaluation.
    #[error(transparent)]
    Eval(#[from] eval::EvalError),
    /// The trainable head.
    #[error(transparent)]
    Head(#[from] head::HeadError),
    /// File system.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// A request that makes no sense (bad parameter combination).
    #[error("{0}")]
    Invalid(String),
    /// A service cannot start: its port is taken, its database or data folder cannot
    /// be opened (not the caller's input: the environment).
    #[error("{0}")]
    Unavailable(String),
    /// Stopped on request.
    #[error("cancelled")]
    Cancelled,
    /// A bug: please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Process exit code for the CLI: 3 = bad input (fix the command or the
    /// data), 4 = onnxruntime missing (run the set-up), 5 = cannot write
    /// outputs, 6 = the daemon cannot start (port in use, database or data folder
    /// unusable), 130 = cancelled, 1 = internal.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Model(model::ModelError::RuntimeMissing(_)) => 4,
            Error::Model(model::ModelError::Inference { .. }) => 1,
            Error::Output(_) | Error::Io { .. } => 5,
            Error::Unavailable(_) => 6,
            Error::Cancelled => 130,
            Error::Eval(eval::EvalError::Output { .. }) => 5,
            Error::Eval(eval::EvalError::Model(model::ModelError::RuntimeMissing(_))) => 4,
            Error::Head(head::HeadError::Candle(_)) => 1,
            Error::Uncertainty(uncertainty::UncertaintyError::UnknownMetric { .. }) => 3,
            Error::Internal(_) | Error::Uncertainty(_) => 1,
            _ => 3,
        }
    }
}
