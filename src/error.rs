//! The crate error: one variant per module error, plus request validation.

use crate::{aoi, crs, eval, head, model, output, raster, sampling, store, tiling, uncertainty};

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
    /// The GeoParquet embedding store.
    #[error(transparent)]
    Store(#[from] store::StoreError),
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
    /// Some items of a STAC ItemCollection or folder were not scored (the others were).
    #[error(
        "{failed} of {total} STAC items were not scored; the first: {first}. Every item's status and message is in {index}: fix those items (or the flags), then score again"
    )]
    Items {
        /// Items not scored.
        failed: usize,
        /// Items listed.
        total: usize,
        /// The first failure, `item 'id': message`.
        first: String,
        /// The index file that lists every item.
        index: String,
        /// The first failure's kind (the exit code).
        kind: ErrorKind,
    },
}

/// What kind of failure an error is, whoever reports it: the CLI turns a kind into an
/// exit code ([`ErrorKind::exit_code`]), the daemon into an HTTP status
/// (`server::error::status_for`), each in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller's input is wrong (command, request body, raster, model, labels): fix it.
    BadInput,
    /// What the request names does not exist (a project, scene, label or job).
    NotFound,
    /// The request conflicts with the state (e.g. a name already taken).
    Conflict,
    /// onnxruntime is missing: run the set-up.
    RuntimeMissing,
    /// Outputs cannot be written (disk, permissions).
    CannotWrite,
    /// A service cannot start or is busy: its port is taken, its database or data
    /// folder cannot be opened, its queue is full (the environment, not the input).
    Unavailable,
    /// Stopped on request.
    Cancelled,
    /// A bug: please report it.
    Internal,
}

impl ErrorKind {
    /// The CLI's exit code for this kind, the one table of them: 3 = bad input (fix the
    /// command or the data; not found and conflicts are bad input to the CLI), 4 =
    /// onnxruntime missing (run the set-up), 5 = cannot write outputs, 6 = the daemon
    /// cannot start (port in use, database or data folder unusable), 130 = cancelled,
    /// 1 = internal.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::BadInput | ErrorKind::NotFound | ErrorKind::Conflict => 3,
            ErrorKind::RuntimeMissing => 4,
            ErrorKind::CannotWrite => 5,
            ErrorKind::Unavailable => 6,
            ErrorKind::Cancelled => 130,
            ErrorKind::Internal => 1,
        }
    }
}

impl Error {
    /// The kind of this error (what the CLI and the daemon report it as).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Model(model::ModelError::RuntimeMissing(_)) => ErrorKind::RuntimeMissing,
            Error::Model(model::ModelError::Inference { .. }) => ErrorKind::Internal,
            Error::Output(_) | Error::Io { .. } => ErrorKind::CannotWrite,
            Error::Store(store::StoreError::Write { .. }) => ErrorKind::CannotWrite,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Eval(eval::EvalError::Output { .. }) => ErrorKind::CannotWrite,
            Error::Eval(eval::EvalError::Model(model::ModelError::RuntimeMissing(_))) => {
                ErrorKind::RuntimeMissing
            }
            Error::Head(head::HeadError::Candle(_)) => ErrorKind::Internal,
            Error::Uncertainty(uncertainty::UncertaintyError::UnknownMetric { .. }) => {
                ErrorKind::BadInput
            }
            Error::Internal(_) | Error::Uncertainty(_) => ErrorKind::Internal,
            Error::Items { kind, .. } => *kind,
            _ => ErrorKind::BadInput,
        }
    }

    /// Process exit code for the CLI: [`ErrorKind::exit_code`] of [`kind`](Self::kind).
    pub fn exit_code(&self) -> i32 {
        self.kind().exit_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit codes the CLI has always used, now read from the kinds.
    #[test]
    fn exit_codes_come_from_the_kinds() {
        assert_eq!(Error::Invalid("x".into()).exit_code(), 3);
        assert_eq!(Error::Unavailable("x".into()).exit_code(), 6);
        assert_eq!(Error::Cancelled.exit_code(), 130);
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
        let io = Error::Io {
            path: "x".into(),
            source: std::io::Error::other("x"),
        };
        assert_eq!((io.kind(), io.exit_code()), (ErrorKind::CannotWrite, 5));
        assert_eq!(ErrorKind::NotFound.exit_code(), 3);
        assert_eq!(ErrorKind::RuntimeMissing.exit_code(), 4);
    }
}
