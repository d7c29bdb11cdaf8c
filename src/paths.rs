//! Where NextTile keeps its files, and how a file's version is recognised: plain
//! filesystem helpers below every layer that reads rasters, runs models or stores state.

use std::path::{Path, PathBuf};

/// `NEXTTILE_HOME`, else `$XDG_DATA_HOME/nexttile`, else `~/.local/share/nexttile`.
pub fn nexttile_home() -> PathBuf {
    if let Some(h) = std::env::var_os("NEXTTILE_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("nexttile");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/nexttile")
}

/// A file's canonical path, size and modification time (ns since the epoch);
/// `None` when it cannot be stat'ed.
pub fn file_identity(path: &Path) -> Option<(String, u64, u128)> {
    let canonical = path.canonicalize().ok()?;
    let meta = std::fs::metadata(&canonical).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((canonical.display().to_string(), meta.len(), mtime))
}
