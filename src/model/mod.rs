//! ONNX models through onnxruntime: the contract read from metadata, the
//! runtime library, and encoder / head sessions.

pub mod deepness;
mod files;
pub mod runtime;
mod session;
mod spec;

pub use files::{DEFAULT_MODEL_DIR, SHIPPED_MODEL_DIR, default_model, shipped_model_dir};
pub use runtime::RuntimeInfo;
pub use session::{
    DEFAULT_MAX_MODEL_BYTES, Encoder, Head, MC_BLOCK_ROWS, SessionConfig, inspect, inspect_with,
};
pub use spec::{BandFusion, IoInfo, Modality, ModelRole, ModelSpec, Preprocess};

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// onnxruntime's shared library could not be found or loaded.
    #[error("{0}")]
    RuntimeMissing(String),
    /// The model file could not be read.
    #[error("cannot read model {path}: {source}; check the path (see `nexttile models inspect`)")]
    Read {
        /// File path.
        path: String,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// The path is a device, FIFO, folder or socket: refused before it is read.
    #[error("model {path} is {kind}, not a regular file; give the path of an .onnx file")]
    NotAFile {
        /// File path.
        path: String,
        /// What it is instead ("a character device", "a FIFO", ...).
        kind: &'static str,
    },
    /// The file is larger than the configured cap: refused before it is read.
    #[error(
        "model {path} is {bytes} bytes, more than the limit of {max} bytes; if it really is the model, raise the limit (--max-model-bytes, or max_model_bytes in the daemon's configuration)"
    )]
    TooLarge {
        /// File path.
        path: String,
        /// Its size.
        bytes: u64,
        /// The cap.
        max: u64,
    },
    /// onnxruntime refused the file.
    #[error("{path} is not a loadable ONNX model: {message}")]
    NotOnnx {
        /// File path.
        path: String,
        /// onnxruntime's message.
        message: String,
    },
    /// The metadata does not fulfil the model contract.
    #[error("model {path} does not fit the NextTile model contract: {problem}")]
    Contract {
        /// File path.
        path: String,
        /// What is missing or wrong, and how to fix it.
        problem: String,
    },
    /// An encoder was given where a head was expected, or the reverse.
    #[error(
        "{path} is a {found:?} model but is used as the {expected:?}; swap --encoder and --head?"
    )]
    WrongRole {
        /// File path.
        path: String,
        /// Role the caller needed.
        expected: ModelRole,
        /// Role the metadata declares.
        found: ModelRole,
    },
    /// The tile size does not suit the encoder.
    #[error("tile size {tile} px cannot be fed to {model}: {why}")]
    TileSize {
        /// Encoder path.
        model: String,
        /// Requested tile size.
        tile: usize,
        /// Why, with the sizes that work.
        why: String,
    },
    /// onnxruntime failed while running.
    #[error("inference with {model} failed: {message}")]
    Inference {
        /// Model name.
        model: String,
        /// onnxruntime's message.
        message: String,
    },
}
