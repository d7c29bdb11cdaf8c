//! Which raster paths a client may name: only files under the configured roots, never
//! through `..`, and no GDAL virtual file systems (`/vsicurl/`, `/vsis3/`, ...) unless
//! the configuration allows them.

use std::path::{Component, Path, PathBuf};

/// Why a raster path was refused (HTTP 403 or 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// No roots are configured.
    #[error(
        "this daemon reads no rasters: start it with --root DIR (or NEXTTILE_ROOTS) naming the folders it may read"
    )]
    NoRoots,
    /// A `..` component.
    #[error("raster path {0:?} contains `..`; give a path inside one of the raster roots")]
    ParentComponent(String),
    /// A GDAL virtual file system path.
    #[error(
        "raster path {0:?} uses a GDAL virtual file system (/vsi…), which this daemon does not allow; copy the file under a raster root or start the daemon with allow_vsi"
    )]
    Virtual(String),
    /// Not a file under any root.
    #[error(
        "raster path {path:?} is not under the raster roots ({roots}); move it there or add its folder with --root"
    )]
    OutsideRoots {
        /// The path as given.
        path: String,
        /// The roots, for the message.
        roots: String,
    },
    /// Does not exist.
    #[error("raster {0:?} does not exist")]
    Missing(String),
}

/// Checks `raw` against the policy and returns the canonical path to open.
///
/// # Errors
///
/// A [`PathError`] saying what is wrong and how to fix it.
pub fn check_raster_path(
    raw: &str,
    roots: &[PathBuf],
    allow_vsi: bool,
) -> Result<PathBuf, PathError> {
    let trimmed = raw.trim();
    if trimmed.starts_with("/vsi") || trimmed.contains("/vsi") {
        if allow_vsi {
            return Ok(PathBuf::from(trimmed));
        }
        return Err(PathError::Virtual(raw.to_string()));
    }
    let path = Path::new(trimmed);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(PathError::ParentComponent(raw.to_string()));
    }
    if roots.is_empty() {
        return Err(PathError::NoRoots);
    }
    let outside = || PathError::OutsideRoots {
        path: raw.to_string(),
        roots: roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    // Relative paths are relative to the first root.
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        roots[0].join(path)
    };
    let canonical = match joined.canonicalize() {
        Ok(c) => c,
        Err(_) => {
            // Do not reveal whether a file exists outside the roots.
            return if roots.iter().any(|r| joined.starts_with(r)) {
                Err(PathError::Missing(raw.to_string()))
            } else {
                Err(outside())
            };
        }
    };
    // Symlinks are resolved by canonicalize: a link inside a root pointing outside is refused.
    if roots.iter().any(|r| canonical.starts_with(r)) && canonical.is_file() {
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
            Err(PathError::ParentComponent(_))
        ));
        assert!(matches!(
            check_raster_path("/vsicurl/http://example.com/x.tif", &roots, false),
            Err(PathError::Virtual(_))
        ));
        assert!(check_raster_path("/vsicurl/http://example.com/x.tif", &roots, true).is_ok());
        assert!(matches!(
            check_raster_path("nope.tif", &roots, false),
            Err(PathError::Missing(_))
        ));
        assert_eq!(
            check_raster_path("a.tif", &[], false),
            Err(PathError::NoRoots)
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
}
