//! Where the shipped models are: the demo pair and the folder that holds every shipped
//! model (`onnx/`), found the same way by the CLI and the daemon.

use std::path::{Path, PathBuf};

/// The shipped models' folder, relative to where NextTile is installed or built.
pub const SHIPPED_MODEL_DIR: &str = "onnx";

/// The default model pair, inside [`SHIPPED_MODEL_DIR`]: random convolutional features
/// behind a JPEG-like chroma stage (`onnx/rcf_chroma/`, Rolf et al. 2021) and their
/// MC-dropout head. It saves labels on the EuroSAT benchmark where the SimSiam pair
/// (`onnx/eurosat_simsiam/`, the default until 2026-12-06) does not, at about the same
/// cost, and its head reads the real sample's water and land as the scene's NDWI does
/// (README, "The default encoder").
pub const DEFAULT_MODEL_DIR: &str = "onnx/rcf_chroma";

/// Where `rel` (a path relative to the install) is: `./rel`, beside the repository the
/// binary was built in, or relative to the executable; `rel` itself when none exists.
fn locate(rel: &Path, exists: impl Fn(&Path) -> bool) -> PathBuf {
    let mut candidates = vec![rel.to_path_buf()];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("../..").join(rel));
        candidates.push(dir.join("../share/nexttile").join(rel));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel));
    candidates
        .into_iter()
        .find(|p| exists(p))
        .unwrap_or_else(|| rel.to_path_buf())
}

/// A file of the demo model pair (`encoder.onnx`, `head.onnx`): `./onnx/…`, beside the
/// repository the binary was built in, or relative to the executable.
pub fn default_model(file: &str) -> PathBuf {
    locate(&Path::new(DEFAULT_MODEL_DIR).join(file), Path::is_file)
}

/// The folder of the shipped models: the one that holds the demo pair's folder, so
/// that it always contains [`default_model`]'s files.
pub fn shipped_model_dir() -> PathBuf {
    default_model("encoder.onnx")
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| locate(Path::new(SHIPPED_MODEL_DIR), Path::is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_pair_is_inside_the_shipped_folder() {
        let dir = shipped_model_dir().canonicalize().unwrap();
        let encoder = default_model("encoder.onnx").canonicalize().unwrap();
        assert!(encoder.starts_with(&dir), "{encoder:?} {dir:?}");
        assert!(default_model("head.onnx").is_file());
    }
}
