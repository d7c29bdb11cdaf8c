//! The daemon's configuration: defaults (named constants), a TOML file, environment
//! variables and command-line flags, merged in that order of precedence (later wins) in
//! one place, then validated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default listen address: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:7878";
/// Default request body limit (labels, AOIs): 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default bound on queued + running jobs; more get HTTP 429.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4;
/// Default cap on the tiles one scene may have (a full Sentinel-2 granule at 64 px is
/// about 29,000); the CLI's `--max-tiles` default is the same.
pub const DEFAULT_MAX_TILES: usize = crate::engine::DEFAULT_MAX_TILES;
/// Default cap on the features of one labels request.
pub const DEFAULT_MAX_LABELS: usize = 10_000;
/// Default seconds a client has to send a request's headers (and an idle keep-alive
/// connection to start its next request) before the daemon closes the connection.
pub const DEFAULT_HEADER_READ_TIMEOUT_S: u64 = 10;
/// Default memory for scored scenes kept warm on the engine thread, bytes (512 MiB).
pub const DEFAULT_WARM_SCENE_BYTES: u64 = 512 << 20;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is invalid or unsafe.
    #[error("{0}")]
    Invalid(String),
}

/// Everything the daemon needs, after merging.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Listen address.
    pub bind: SocketAddr,
    /// Bearer token required on every request when set (required for a non-loopback bind).
    pub token: Option<String>,
    /// Folders whose rasters may be read (canonicalised). Empty: no raster can be added.
    pub roots: Vec<PathBuf>,
    /// Folders whose ONNX files projects may use (canonicalised): the shipped `onnx/`
    /// folder first (when it exists), then the configured ones.
    pub model_roots: Vec<PathBuf>,
    /// Folder for the database, embedding cache, outputs and trained heads.
    pub data_dir: PathBuf,
    /// Allow GDAL virtual file systems (`/vsicurl/`, `/vsis3/`, ...) as raster paths.
    pub allow_vsi: bool,
    /// Request body limit in bytes.
    pub max_body_bytes: usize,
    /// Bound on queued + running jobs.
    pub queue_capacity: usize,
    /// Cap on tiles per scene.
    pub max_tiles: usize,
    /// Cap on features per labels request.
    pub max_labels: usize,
    /// Cap on the size of a project's model files, bytes.
    pub max_model_bytes: u64,
    /// Seconds a client has to send a request's headers before its connection is closed.
    pub header_read_timeout_s: u64,
    /// Memory for scored scenes kept warm for suggestions, bytes (0 = none kept).
    pub warm_scene_bytes: u64,
    /// Warnings from merging (unknown keys), for the log.
    pub warnings: Vec<String>,
}

/// Values as they come from one source; `None` = not given there.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConfigLayer {
    /// Listen address.
    pub bind: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// Raster roots.
    pub roots: Option<Vec<PathBuf>>,
    /// Model roots besides the shipped `onnx/` folder.
    pub model_roots: Option<Vec<PathBuf>>,
    /// Data folder.
    pub data_dir: Option<PathBuf>,
    /// Allow `/vsi…` paths.
    pub allow_vsi: Option<bool>,
    /// Body limit.
    pub max_body_bytes: Option<usize>,
    /// Job queue bound.
    pub queue_capacity: Option<usize>,
    /// Tiles per scene.
    pub max_tiles: Option<usize>,
    /// Features per labels request.
    pub max_labels: Option<usize>,
    /// Model file size cap, bytes.
    pub max_model_bytes: Option<u64>,
    /// Header-read timeout, seconds.
    pub header_read_timeout_s: Option<u64>,
    /// Memory for warm scenes, bytes.
    pub warm_scene_bytes: Option<u64>,
}

const KNOWN_KEYS: [&str; 13] = [
    "bind",
    "token",
    "roots",
    "model_roots",
    "data_dir",
    "allow_vsi",
    "max_body_bytes",
    "queue_capacity",
    "max_tiles",
    "max_labels",
    "max_model_bytes",
    "header_read_timeout_s",
    "warm_scene_bytes",
];

impl ConfigLayer {
    /// Reads a TOML file; unknown keys are returned as warnings, not errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError::File`] when it cannot be read or is not valid TOML of the right types.
    pub fn from_toml_file(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let bad = |m: String| ConfigError::File {
            path: path.to_path_buf(),
            message: m,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let raw: BTreeMap<String, toml::Value> =
            toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let warnings = raw
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|k| {
                format!(
                    "{}: unknown key `{k}` ignored (known: {})",
                    path.display(),
                    KNOWN_KEYS.join(", ")
                )
            })
            .collect();
        let layer: ConfigLayer = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Ok((layer, warnings))
    }

    /// Values from `NEXTTILE_BIND`, `NEXTTILE_TOKEN`, `NEXTTILE_ROOTS` and
    /// `NEXTTILE_MODEL_ROOTS` (`:`-separated), `NEXTTILE_DATA_DIR` and
    /// `NEXTTILE_ALLOW_VSI` (`1`/`true`).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        ConfigLayer {
            bind: var("NEXTTILE_BIND"),
            token: var("NEXTTILE_TOKEN"),
            roots: var("NEXTTILE_ROOTS").map(|v| std::env::split_paths(&v).collect()),
            model_roots: var("NEXTTILE_MODEL_ROOTS").map(|v| std::env::split_paths(&v).collect()),
            data_dir: var("NEXTTILE_DATA_DIR").map(PathBuf::from),
            allow_vsi: var("NEXTTILE_ALLOW_VSI")
                .map(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            ..ConfigLayer::default()
        }
    }

    /// `other`'s values where it has them, ours elsewhere.
    pub fn overlay(self, other: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            bind: other.bind.or(self.bind),
            token: other.token.or(self.token),
            roots: other.roots.or(self.roots),
            model_roots: other.model_roots.or(self.model_roots),
            data_dir: other.data_dir.or(self.data_dir),
            allow_vsi: other.allow_vsi.or(self.allow_vsi),
            max_body_bytes: other.max_body_bytes.or(self.max_body_bytes),
            queue_capacity: other.queue_capacity.or(self.queue_capacity),
            max_tiles: other.max_tiles.or(self.max_tiles),
            max_labels: other.max_labels.or(self.max_labels),
            max_model_bytes: other.max_model_bytes.or(self.max_model_bytes),
            header_read_timeout_s: other.header_read_timeout_s.or(self.header_read_timeout_s),
            warm_scene_bytes: other.warm_scene_bytes.or(self.warm_scene_bytes),
        }
    }
}

impl ServerConfig {
    /// The roots and `allow_vsi` as the raster layer's [`Confinement`](crate::raster::Confinement).
    pub fn confinement(&self) -> crate::raster::Confinement {
        crate::raster::Confinement {
            roots: self.roots.clone(),
            allow_vsi: self.allow_vsi,
        }
    }

    /// Merges file < environment < flags over the defaults and validates: a
    /// non-loopback bind needs a token; roots must exist (they are canonicalised).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the bad value and how to fix it.
    pub fn resolve(
        file: Option<&Path>,
        env: ConfigLayer,
        flags: ConfigLayer,
    ) -> Result<Self, ConfigError> {
        let (file_layer, warnings) = match file {
            Some(p) => ConfigLayer::from_toml_file(p)?,
            None => (ConfigLayer::default(), Vec::new()),
        };
        let merged = file_layer.overlay(env).overlay(flags);
        let bind_text = merged.bind.unwrap_or_else(|| DEFAULT_BIND.to_string());
        let bind: SocketAddr = bind_text.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "bind address {bind_text:?} is not IP:PORT (e.g. {DEFAULT_BIND})"
            ))
        })?;
        let token = merged.token.filter(|t| !t.trim().is_empty());
        if !bind.ip().is_loopback() && token.is_none() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {bind} (reachable from other machines) without a token: set --token or NEXTTILE_TOKEN, or bind to 127.0.0.1"
            )));
        }
        if let Some(t) = &token
            && t.len() < 16
        {
            return Err(ConfigError::Invalid(
                "the token must be at least 16 characters".into(),
            ));
        }
        let roots = canonical_folders(merged.roots.unwrap_or_default(), "raster root")?;
        // The shipped models are always usable; a missing shipped folder (an install
        // without models) just leaves the configured ones.
        let mut model_roots: Vec<PathBuf> = crate::model::shipped_model_dir()
            .canonicalize()
            .ok()
            .filter(|d| d.is_dir())
            .into_iter()
            .collect();
        for r in canonical_folders(merged.model_roots.unwrap_or_default(), "model root")? {
            if !model_roots.contains(&r) {
                model_roots.push(r);
            }
        }
        let data_dir = merged
            .data_dir
            .unwrap_or_else(|| crate::model::runtime::nexttile_home().join("server"));
        let positive = |v: Option<usize>, d: usize, name: &str| match v {
            Some(0) => Err(ConfigError::Invalid(format!("{name} must be at least 1"))),
            Some(v) => Ok(v),
            None => Ok(d),
        };
        Ok(ServerConfig {
            bind,
            token,
            roots,
            model_roots,
            data_dir,
            allow_vsi: merged.allow_vsi.unwrap_or(false),
            max_body_bytes: positive(
                merged.max_body_bytes,
                DEFAULT_MAX_BODY_BYTES,
                "max_body_bytes",
            )?,
            queue_capacity: positive(
                merged.queue_capacity,
                DEFAULT_QUEUE_CAPACITY,
                "queue_capacity",
            )?,
            max_tiles: positive(merged.max_tiles, DEFAULT_MAX_TILES, "max_tiles")?,
            max_labels: positive(merged.max_labels, DEFAULT_MAX_LABELS, "max_labels")?,
            max_model_bytes: match merged.max_model_bytes {
                Some(0) => {
                    return Err(ConfigError::Invalid(
                        "max_model_bytes must be at least 1".into(),
                    ));
                }
                Some(v) => v,
                None => crate::model::DEFAULT_MAX_MODEL_BYTES,
            },
            header_read_timeout_s: match merged.header_read_timeout_s {
                Some(0) => {
                    return Err(ConfigError::Invalid(
                        "header_read_timeout_s must be at least 1 (seconds)".into(),
                    ));
                }
                Some(v) => v,
                None => DEFAULT_HEADER_READ_TIMEOUT_S,
            },
            warm_scene_bytes: merged.warm_scene_bytes.unwrap_or(DEFAULT_WARM_SCENE_BYTES),
            warnings,
        })
    }
}

/// Canonicalises each folder of `list`; `what` names them in the error.
fn canonical_folders(list: Vec<PathBuf>, what: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for r in list {
        let c = r
            .canonicalize()
            .map_err(|e| ConfigError::Invalid(format!("{what} {}: {e}", r.display())))?;
        if !c.is_dir() {
            return Err(ConfigError::Invalid(format!(
                "{what} {} is not a folder",
                r.display()
            )));
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_without_token() {
        let c =
            ServerConfig::resolve(None, ConfigLayer::default(), ConfigLayer::default()).unwrap();
        assert!(c.bind.ip().is_loopback());
        assert!(c.token.is_none() && c.roots.is_empty() && !c.allow_vsi);
        // Models: the shipped folder only.
        let shipped = crate::model::shipped_model_dir().canonicalize().unwrap();
        assert_eq!(c.model_roots, vec![shipped]);
    }

    #[test]
    fn model_roots_come_after_the_shipped_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nexttile.toml");
        std::fs::write(&file, format!("model_roots = [{:?}]\n", dir.path())).unwrap();
        let c = ServerConfig::resolve(Some(&file), ConfigLayer::default(), ConfigLayer::default())
            .unwrap();
        let shipped = crate::model::shipped_model_dir().canonicalize().unwrap();
        assert_eq!(
            c.model_roots,
            vec![shipped.clone(), dir.path().canonicalize().unwrap()]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // The shipped folder named again is not listed twice; a missing folder is refused.
        let flags = ConfigLayer {
            model_roots: Some(vec![shipped.clone()]),
            ..ConfigLayer::default()
        };
        let c = ServerConfig::resolve(None, ConfigLayer::default(), flags).unwrap();
        assert_eq!(c.model_roots, vec![shipped]);
        let flags = ConfigLayer {
            model_roots: Some(vec![dir.path().join("nope")]),
            ..ConfigLayer::default()
        };
        let msg = ServerConfig::resolve(None, ConfigLayer::default(), flags)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("model root"), "{msg}");
    }

    #[test]
    fn header_read_timeout_defaults_to_10_s_and_0_is_refused() {
        let c =
            ServerConfig::resolve(None, ConfigLayer::default(), ConfigLayer::default()).unwrap();
        assert_eq!(c.header_read_timeout_s, DEFAULT_HEADER_READ_TIMEOUT_S);
        assert_eq!(DEFAULT_HEADER_READ_TIMEOUT_S, 10);
        let flags = ConfigLayer {
            header_read_timeout_s: Some(0),
            ..ConfigLayer::default()
        };
        let msg = ServerConfig::resolve(None, ConfigLayer::default(), flags)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("header_read_timeout_s"), "{msg}");
    }

    #[test]
    fn public_bind_needs_a_token() {
        let flags = ConfigLayer {
            bind: Some("0.0.0.0:7878".into()),
            ..ConfigLayer::default()
        };
        let msg = ServerConfig::resolve(None, ConfigLayer::default(), flags.clone())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("without a token"), "{msg}");
        let with = ConfigLayer {
            token: Some("0123456789abcdef-token".into()),
            ..flags
        };
        assert!(ServerConfig::resolve(None, ConfigLayer::default(), with).is_ok());
    }

    #[test]
    fn file_then_env_then_flags_and_unknown_keys_warn() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nexttile.toml");
        std::fs::write(
            &file,
            format!(
                "bind = \"127.0.0.1:9000\"\nqueue_capacity = 2\nroots = [{:?}]\nbogus = 1\n",
                dir.path()
            ),
        )
        .unwrap();
        let env = ConfigLayer {
            queue_capacity: Some(3),
            ..ConfigLayer::default()
        };
        let flags = ConfigLayer {
            bind: Some("127.0.0.1:9001".into()),
            ..ConfigLayer::default()
        };
        let c = ServerConfig::resolve(Some(&file), env, flags).unwrap();
        assert_eq!(c.bind.port(), 9001);
        assert_eq!(c.queue_capacity, 3);
        assert_eq!(c.roots, vec![dir.path().canonicalize().unwrap()]);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("bogus"));
    }
}
