//! `nexttile serve`: start the HTTP daemon.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::server::{self, ConfigLayer, ServerConfig};

/// Arguments of `nexttile serve`; each also comes from a TOML file (`--config`) and
/// the environment (`NEXTTILE_BIND`, `NEXTTILE_TOKEN`, `NEXTTILE_ROOTS`,
/// `NEXTTILE_MODEL_ROOTS`, `NEXTTILE_DATA_DIR`, `NEXTTILE_ALLOW_VSI`); flags win over
/// the environment, which wins over the file.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (keys: bind, token, roots, model_roots, data_dir,
    /// allow_vsi, max_body_bytes, queue_capacity, max_tiles, max_labels,
    /// max_model_bytes, header_read_timeout_s).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:7878; port 0 picks a free port).
    #[arg(long)]
    bind: Option<String>,
    /// Bearer token required on every request (required to bind beyond loopback).
    #[arg(long)]
    token: Option<String>,
    /// A folder whose rasters may be scored (repeat for several).
    #[arg(long = "root")]
    roots: Vec<PathBuf>,
    /// A folder whose ONNX files projects may use, besides the shipped onnx/ folder
    /// (repeat for several).
    #[arg(long = "model-root")]
    model_roots: Vec<PathBuf>,
    /// Folder for the database, embedding cache, outputs and trained heads
    /// (default $NEXTTILE_HOME/server).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Allow GDAL virtual file system paths (/vsicurl/, /vsis3/, ...).
    #[arg(long)]
    allow_vsi: bool,
    /// Bound on queued jobs; more are answered with 429.
    #[arg(long)]
    queue_capacity: Option<usize>,
    /// Request body limit in bytes.
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Largest model file a project may name, bytes (default 2 GiB).
    #[arg(long)]
    max_model_bytes: Option<u64>,
    /// Seconds a client has to send a request's headers, and an idle keep-alive
    /// connection to start its next request, before the connection is closed (default 10).
    #[arg(long)]
    header_read_timeout_s: Option<u64>,
    /// Memory for scored scenes kept warm so suggestions run only the selection, bytes
    /// (default 512 MiB; 0 keeps none).
    #[arg(long)]
    warm_scene_bytes: Option<u64>,
}

pub(crate) fn run(a: ServeArgs) -> Result<()> {
    let flags = ConfigLayer {
        bind: a.bind,
        token: a.token,
        roots: (!a.roots.is_empty()).then_some(a.roots),
        model_roots: (!a.model_roots.is_empty()).then_some(a.model_roots),
        data_dir: a.data_dir,
        allow_vsi: a.allow_vsi.then_some(true),
        queue_capacity: a.queue_capacity,
        max_body_bytes: a.max_body_bytes,
        max_model_bytes: a.max_model_bytes,
        header_read_timeout_s: a.header_read_timeout_s,
        warm_scene_bytes: a.warm_scene_bytes,
        ..ConfigLayer::default()
    };
    let config = ServerConfig::resolve(a.config.as_deref(), ConfigLayer::from_env(), flags)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    server::serve(config).map_err(|e| match e {
        server::ServerError::Model(m) => Error::Model(m),
        server::ServerError::Config(c) => Error::Invalid(c.to_string()),
        // The port, the database, the data folder, threads: the environment, not the
        // command (exit 6, not 3).
        other @ (server::ServerError::Db(_) | server::ServerError::Io { .. }) => {
            Error::Unavailable(format!("cannot start the daemon: {other}"))
        }
    })
}
