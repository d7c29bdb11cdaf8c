//! Finding and loading the onnxruntime shared library, once per process.
//!
//! NextTile links onnxruntime at run time (`ort`'s `load-dynamic`), so the
//! binary builds without it and says what to install when it is missing.
//! The library is looked for, in this order:
//!
//! 1. `ORT_DYLIB_PATH` (a file, or a folder holding `libonnxruntime.so*`);
//!    when set, it is the only place tried;
//! 2. beside the executable, then in `../lib` relative to it;
//! 3. `$NEXTTILE_HOME/lib`, where `NEXTTILE_HOME` defaults to
//!    `$XDG_DATA_HOME/nexttile` or `~/.local/share/nexttile`; this is where
//!    `scripts/setup.sh` puts the library from the PyPI `onnxruntime` wheel;
//! 4. the `onnxruntime` package of a Python interpreter on `PATH`
//!    (`…/site-packages/onnxruntime/capi/`);
//! 5. the system loader's own search (`LD_LIBRARY_PATH`, `/usr/lib`, …).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use serde::Serialize;

use super::ModelError;

/// The onnxruntime version this build was checked against.
pub const ORT_VERSION: &str = "1.31.1";

/// Which onnxruntime library was loaded and which execution provider runs.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    /// Path of the loaded `libonnxruntime` shared library.
    pub library: PathBuf,
    /// How it was found (`ORT_DYLIB_PATH`, `NEXTTILE_HOME`, …).
    pub found_via: String,
    /// Execution provider sessions run on: `"CUDA"` or `"CPU"`.
    pub provider: String,
    /// Why that provider (e.g. "built without the `cuda` feature").
    pub provider_reason: String,
}

struct Runtime {
    env: Environment,
    info: RuntimeInfo,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Initialise onnxruntime (idempotent) and return what was loaded. When a
/// session could not register the CUDA provider and fell back to CPU, the
/// answer says so.
pub fn init() -> Result<RuntimeInfo, ModelError> {
    #[allow(unused_mut)]
    let mut info = runtime().map(|r| r.info.clone())?;
    #[cfg(feature = "cuda")]
    if let Some(why) = CUDA_FALLBACK.get() {
        info.provider = "CPU".into();
        info.provider_reason = format!("CUDA provider failed to register, fell back to CPU: {why}");
    }
    Ok(info)
}

#[cfg(feature = "cuda")]
static CUDA_FALLBACK: OnceLock<String> = OnceLock::new();

/// Record that a session fell back from CUDA to CPU (first reason wins).
#[cfg(feature = "cuda")]
pub(crate) fn note_cuda_fallback(why: String) {
    let _ = CUDA_FALLBACK.set(why);
}

/// The process-wide onnxruntime environment.
pub(crate) fn environment() -> Result<&'static Environment, ModelError> {
    runtime().map(|r| &r.env)
}

/// The provider chosen at start-up and why (read by the session builder).
#[cfg(feature = "cuda")]
pub(crate) fn provider_decision() -> (String, String) {
    match runtime() {
        Ok(r) => (r.info.provider.clone(), r.info.provider_reason.clone()),
        Err(_) => ("CPU".into(), "onnxruntime not loaded".into()),
    }
}

fn runtime() -> Result<&'static Runtime, ModelError> {
    RUNTIME
        .get_or_init(load)
        .as_ref()
        .map_err(|m| ModelError::RuntimeMissing(m.clone()))
}

fn load() -> Result<Runtime, String> {
    let mut tried = Vec::new();
    let cheap = candidates();
    let late = std::iter::once(()).flat_map(|()| late_candidates());
    for (path, via) in cheap.into_iter().chain(late) {
        let (path, via) = (&path, &via);
        let bare = path.parent().is_none_or(|d| d.as_os_str().is_empty());
        if !bare && !path.is_file() {
            tried.push(format!("{} ({via}): not there", path.display()));
            continue;
        }
        match ort::init_from(path) {
            Ok(builder) => {
                let env = builder.with_name("nexttile").build().map_err(|e| {
                    format!("onnxruntime at {} failed to start: {e}", path.display())
                })?;
                let (provider, provider_reason) = provider_choice();
                tracing::info!(library = %path.display(), found_via = %via, %provider, reason = %provider_reason, "onnxruntime loaded");
                return Ok(Runtime {
                    env,
                    info: RuntimeInfo {
                        library: path.clone(),
                        found_via: via.clone(),
                        provider,
                        provider_reason,
                    },
                });
            }
            Err(e) => tried.push(format!("{} ({via}): {e}", path.display())),
        }
    }
    Err(format!(
        "could not load the onnxruntime {ORT_VERSION} shared library. Run `scripts/setup.sh` (it installs it into {}), \
         or `pip install onnxruntime=={ORT_VERSION}` and set ORT_DYLIB_PATH to its capi/libonnxruntime.so.{ORT_VERSION}. Tried:\n  {}",
        home_lib().display(),
        tried.join("\n  ")
    ))
}

#[cfg(feature = "cuda")]
fn provider_choice() -> (String, String) {
    use ort::ep::ExecutionProvider;
    match ort::ep::CUDA::is_available() {
        Ok(true) => (
            "CUDA".into(),
            "built with the `cuda` feature and the loaded onnxruntime has the CUDA provider (falls back to CPU per session if no GPU answers)".into(),
        ),
        Ok(false) => (
            "CPU".into(),
            "built with `cuda`, but the loaded onnxruntime has no CUDA provider: install the onnxruntime-gpu wheel's library".into(),
        ),
        Err(e) => ("CPU".into(), format!("CUDA provider check failed: {e}")),
    }
}

#[cfg(not(feature = "cuda"))]
fn provider_choice() -> (String, String) {
    (
        "CPU".into(),
        "built without the `cuda` feature (cargo build --features cuda for GPU)".into(),
    )
}

/// `$NEXTTILE_HOME/lib`: where set-up installs the library.
pub fn home_lib() -> PathBuf {
    nexttile_home().join("lib")
}

pub use crate::paths::nexttile_home;

/// The library file inside `dir`, preferring the exact version.
fn lib_in(dir: &Path) -> PathBuf {
    let exact = dir.join(format!("libonnxruntime.so.{ORT_VERSION}"));
    if exact.is_file() {
        return exact;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return p;
        }
    }
    dir.join("libonnxruntime.so")
}

fn candidates() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    // An explicit ORT_DYLIB_PATH is an override: nothing else is tried.
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        let p = if p.is_dir() { lib_in(&p) } else { p };
        out.push((p, "ORT_DYLIB_PATH".to_string()));
        return out;
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push((lib_in(&dir), "beside the executable".into()));
        out.push((
            lib_in(&dir.join("../lib")),
            "../lib beside the executable".into(),
        ));
    }
    out.push((lib_in(&home_lib()), "NEXTTILE_HOME/lib".into()));
    out
}

/// Places tried only when the cheap ones failed: asking python3 where its
/// onnxruntime lives costs a process start.
fn late_candidates() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    if std::env::var_os("ORT_DYLIB_PATH").is_some_and(|p| !p.is_empty()) {
        return out;
    }
    if let Some(p) = python_onnxruntime() {
        out.push((p, "python onnxruntime package".into()));
    }
    // Let the system loader search its own paths last.
    out.push((
        PathBuf::from("libonnxruntime.so"),
        "system library path".into(),
    ));
    out
}

fn python_onnxruntime() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u, os; s = u.find_spec('onnxruntime'); print(os.path.join(os.path.dirname(s.origin), 'capi') if s else '')",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!dir.is_empty()).then(|| lib_in(Path::new(&dir)))
}
