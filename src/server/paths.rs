//! Which files a client may name: rasters only under the raster roots, models only
//! under the model roots; never through `..` or a symlink that leads out, and no GDAL
//! virtual file systems (`/vsicurl/`, `/vsis3/`, ...) unless the configuration allows
//! them for rasters (never for models).

use std::path::{Component, Path, PathBuf};

/// What a confined path names; the refusals name its roots, flag and variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A raster, under the raster roots (`--root`).
    Raster,
    /// An ONNX model, under the model roots (`--model-root`).
    Model,
}

impl PathKind {
    /// `raster` or `model`.
    pub fn noun(self) -> &'static str {
        match self {
            PathKind::Raster => "raster",
            PathKind::Model => "model",
        }
    }

    /// The `nexttile serve` flag that adds a root.
    pub fn flag(self) -> &'static str {
        match self {
            PathKind::Raster => "--root",
            PathKind::Model => "--model-root",
        }
    }

    /// The environment variable that lists the roots.
    pub fn env(self) -> &'static str {
        match self {
            PathKind::Raster => "NEXTTILE_ROOTS",
            PathKind::Model => "NEXTTILE_MODEL_ROOTS",
        }
    }

    fn vsi_hint(self) -> &'static str {
        match self {
            PathKind::Raster => {
                "copy the file under a raster root or start the daemon with allow_vsi"
            }
            PathKind::Model => "copy the file under a model root",
        }
    }
}

/// Why a path was refused (HTTP 403 or 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// No roots are configured.
    #[error(
        "this daemon reads no {}s: start it with {} DIR (or {}) naming the folders it may read",
        .0.noun(), .0.flag(), .0.env()
    )]
    NoRoots(PathKind),
    /// A `..` component.
    #[error(
        "{} path {path:?} contains `..`; give a path inside one of the {} roots",
        kind.noun(), kind.noun()
    )]
    ParentComponent {
        /// Raster or model.
        kind: PathKind,
        /// The path as given.
        path: String,
    },
    /// A GDAL virtual file system path.
    #[error(
        "{} path {path:?} uses a GDAL virtual file system (/vsi…), which this daemon does not allow; {}",
        kind.noun(), kind.vsi_hint()
    )]
    Virtual {
        /// Raster or model.
        kind: PathKind,
        /// The path as given.
        path: String,
    },
    /// Not a file under any root.
    #[error(
        "{} path {path:?} is not under the {} roots ({roots}); move it there or add its folder with {}",
        kind.noun(), kind.noun(), kind.flag()
    )]
    OutsideRoots {
        /// Raster or model.
        kind: PathKind,
        /// The path as given.
        path: String,
        /// The roots, for the message.
        roots: String,
    },
    /// Does not exist.
    #[error("{} {path:?} does not exist", kind.noun())]
    Missing {
        /// Raster or model.
        kind: PathKind,
        /// The path as given.
        path: String,
    },
}

/// Checks a raster path `raw` against the raster roots and returns the canonical path
/// to open (or the `/vsi…` path as given when `allow_vsi`).
///
/// # Errors
///
/// A [`PathError`] saying what is wrong and how to fix it.
pub fn check_raster_path(
    raw: &str,
    roots: &[PathBuf],
    allow_vsi: bool,
) -> Result<PathBuf, PathError> {
    check_path(raw, roots, allow_vsi, PathKind::Raster)
}

/// Checks a model path `raw` against the model roots (no `/vsi…` ever) and returns the
/// canonical path to open. A path inside the roots that is not a regular file (a FIFO,
/// a device) is returned: the model loader refuses it naming what it is.
///
/// # Errors
///
/// A [`PathError`] saying what is wrong and how to fix it.
pub fn check_model_path(raw: &str, roots: &[PathBuf]) -> Result<PathBuf, PathError> {
    check_path(raw, roots, false, PathKind::Model)
}

/// Checks a folder of STAC item files `raw` against the raster roots by the rules of
/// [`check_raster_path`] (no `..`, no link out of the roots, never `/vsi…`) and returns
/// the canonical folder; every item file in it is checked again when it is read.
///
/// # Errors
///
/// A [`PathError`] saying what is wrong and how to fix it.
pub fn check_raster_folder(raw: &str, roots: &[PathBuf]) -> Result<PathBuf, PathError> {
    check_path_as(raw, roots, false, PathKind::Raster, Path::is_dir)
}

/// The roots, comma-separated, for messages.
pub fn roots_text(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one policy behind [`check_raster_path`] and [`check_model_path`]; `roots` must be
/// canonical (the configuration canonicalises them). Rasters must be regular files; the
/// model loader says what else a model path is.
fn check_path(
    raw: &str,
    roots: &[PathBuf],
    allow_vsi: bool,
    kind: PathKind,
) -> Result<PathBuf, PathError> {
    let usable = match kind {
        PathKind::Raster => Path::is_file,
        PathKind::Model => |p: &Path| !p.is_dir(),
    };
    check_path_as(raw, roots, allow_vsi, kind, usable)
}

/// [`check_path`] with `usable` saying what the canonical path must be.
fn check_path_as(
    raw: &str,
    roots: &[PathBuf],
    allow_vsi: bool,
    kind: PathKind,
    usable: fn(&Path) -> bool,
) -> Result<PathBuf, PathError> {
    let trimmed = raw.trim();
    if trimmed.starts_with("/vsi") || trimmed.contains("/vsi") {
        if allow_vsi {
            return Ok(PathBuf::from(trimmed));
        }
        return Err(PathError::Virtual {
            kind,
            path: raw.to_string(),
        });
    }
    let path = Path::new(trimmed);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(PathError::ParentComponent {
            kind,
            path: raw.to_string(),
        });
    }
    let Some(first) = roots.first() else {
        return Err(PathError::NoRoots(kind));
    };
    let outside = || PathError::OutsideRoots {
        kind,
        path: raw.to_string(),
        roots: roots_text(roots),
    };
    // Relative paths are relative to the first root.
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        first.join(path)
    };
    let canonical = match joined.canonicalize() {
        Ok(c) => c,
        Err(_) => {
            // Do not reveal whether a file exists outside the roots.
            return if roots.iter().any(|r| joined.starts_with(r)) {
                Err(PathError::Missing {
                    kind,
                    path: raw.to_string(),
                })
            } else {
                Err(outside())
            };
        }
    };
    // Symlinks are resolved by canonicalize: a link inside a root pointing outside is
    // refused.
    let inside = roots.iter().any(|r| canonical.starts_with(r));
    if inside && usable(&canonical) {
        Ok(canonical)
    } else {
        Err(outside())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.tif"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.tif"), b"x").unwrap();
        let roots = vec![root.canonicalize().unwrap()];
        let a = root.join("a.tif");
        assert_eq!(
            check_raster_path(a.to_str().unwrap(), &roots, false).unwrap(),
            a.canonicalize().unwrap()
        );
        assert!(check_raster_path("a.tif", &roots, false).is_ok());
        let secret = dir.path().join("secret.tif");
        assert!(matches!(
            check_raster_path(secret.to_str().unwrap(), &roots, false),
            Err(PathError::OutsideRoots { .. })
        ));
        assert!(matches!(
            check_raster_path(&format!("{}/../secret.tif", root.display()), &roots, false),
            Err(PathError::ParentComponent { .. })
        ));
        assert!(matches!(
            check_raster_path("/vsicurl/http://example.com/x.tif", &roots, false),
            Err(PathError::Virtual { .. })
        ));
        assert!(check_raster_path("/vsicurl/http://example.com/x.tif", &roots, true).is_ok());
        // A folder (of STAC items) only through check_raster_folder, by the same rules.
        std::fs::create_dir(root.join("items")).unwrap();
        assert!(check_raster_path("items", &roots, false).is_err());
        assert!(check_raster_folder("items", &roots).is_ok());
        assert!(check_raster_folder("a.tif", &roots).is_err());
        assert!(check_raster_folder(dir.path().to_str().unwrap(), &roots).is_err());
        assert!(check_raster_folder("/vsicurl/http://example.com/", &roots).is_err());
        assert!(matches!(
            check_raster_path("nope.tif", &roots, false),
            Err(PathError::Missing { .. })
        ));
        assert_eq!(
            check_raster_path("a.tif", &[], false),
            Err(PathError::NoRoots(PathKind::Raster))
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&secret, root.join("link.tif")).unwrap();
            assert!(matches!(
                check_raster_path("link.tif", &roots, false),
                Err(PathError::OutsideRoots { .. })
            ));
        }
    }

    /// Models get the rasters' rules (`..`, symlinks out, outside, /vsi even when
    /// rasters may use it) with messages that name the model roots and `--model-root`.
    #[test]
    fn model_paths_are_confined_like_rasters() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("models");
        std::fs::create_dir_all(root.join("pair")).unwrap();
        std::fs::write(root.join("pair/encoder.onnx"), b"x").unwrap();
        let secret = dir.path().join("secret.onnx");
        std::fs::write(&secret, b"x").unwrap();
        let roots = vec![root.canonicalize().unwrap()];
        let inside = root.join("pair/encoder.onnx").canonicalize().unwrap();
        assert_eq!(check_model_path("pair/encoder.onnx", &roots), Ok(inside));
        let err = check_model_path(secret.to_str().unwrap(), &roots).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PathError::OutsideRoots { .. }), "{msg}");
        assert!(
            msg.contains("model path")
                && msg.contains("not under the model roots")
                && msg.contains(&roots[0].display().to_string())
                && msg.contains("--model-root"),
            "{msg}"
        );
        let up = format!("{}/../secret.onnx", root.display());
        assert!(
            check_model_path(&up, &roots)
                .unwrap_err()
                .to_string()
                .contains("inside one of the model roots")
        );
        assert!(matches!(
            check_model_path("/vsicurl/http://example.com/m.onnx", &roots),
            Err(PathError::Virtual { .. })
        ));
        assert!(matches!(
            check_model_path("pair", &roots),
            Err(PathError::OutsideRoots { .. })
        ));
        assert!(matches!(
            check_model_path("/etc/passwd", &roots),
            Err(PathError::OutsideRoots { .. })
        ));
        assert!(
            check_model_path("x.onnx", &[])
                .unwrap_err()
                .to_string()
                .contains("--model-root DIR (or NEXTTILE_MODEL_ROOTS)")
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&secret, root.join("link.onnx")).unwrap();
            assert!(matches!(
                check_model_path("link.onnx", &roots),
                Err(PathError::OutsideRoots { .. })
            ));
        }
    }
}
