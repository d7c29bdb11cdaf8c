//! The layer rule of `src/`, kept by a test (issue 17): a module names (`use crate::…`,
//! `crate::x::…` paths in code) only modules of lower layers, plus the few sideways
//! arrows listed here with their reason; the shells (`cli`, `server`) name no GDAL or
//! onnxruntime type. Doc comments are not code and are not read.
//!
//! ```text
//! 7 shells      cli, server
//! 6 pipeline    engine, eval, error (the crate error gathers every module's error)
//! 5 outputs     output (heatmap, GeoJSON, exports of a score result)
//! 4 results     report (what a scoring run produced, as plain data)
//! 3 io          raster (GDAL), model (onnxruntime), store (SQLite, cache files), head
//! 2 geo         crs, aoi (GDAL/PROJ coordinate helpers)
//! 1 pure        tiling, uncertainty, sampling, preprocess, paths
//! 0 threads     the compute thread pool every layer may use
//!   simd        which vector units the CPU has (for loops compiled twice)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every top-level module of `src/` and its layer (higher may name lower).
const LAYERS: &[(&str, u8)] = &[
    ("threads", 0),
    ("simd", 0),
    ("paths", 1),
    ("preprocess", 1),
    ("tiling", 1),
    ("uncertainty", 1),
    ("sampling", 1),
    ("crs", 2),
    ("aoi", 2),
    ("raster", 3),
    ("model", 3),
    ("store", 3),
    ("head", 3),
    ("report", 4),
    ("output", 5),
    ("engine", 6),
    ("eval", 6),
    ("error", 6),
    ("cli", 7),
    ("server", 7),
];

/// Arrows within a layer that are allowed, with why.
const SIDEWAYS: &[(&str, &str, &str)] = &[
    ("aoi", "crs", "an area of interest is read in a CRS"),
    (
        "error",
        "eval",
        "the crate error wraps every module's error type",
    ),
    ("cli", "server", "`nexttile serve` starts the daemon"),
    ("engine", "error", "the pipeline returns the crate error"),
];

/// Files whose arrows are exempt, with why (test-only code).
const EXEMPT_FILES: &[(&str, &str, &str)] = &[(
    "src/head/tests.rs",
    "eval",
    "the head's unit tests score it with the evaluation's metrics",
)];

/// Breaks of the rule that are known and not fixed yet. The test fails when one of them
/// is gone, so that it is removed from this list and can never come back. (Empty since
/// `ScoreResult` moved from `engine` to `report`; issue 17 listed `output` → `engine`,
/// `raster` → `model`/`store`, `store` → `model` and `server` → `cli`.)
const KNOWN_BREAKS: &[(&str, &str)] = &[];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().nth(1)?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The code of a line: nothing for comment lines, the part before `//` otherwise.
fn code(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with("//") {
        return "";
    }
    match line.find("//") {
        Some(i) if !line[..i].contains('"') => &line[..i],
        _ => line,
    }
}

/// Modules a piece of code names: `crate::x` and each `x` of `crate::{x, y::z}`.
fn named_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Every arrow (from module, to module, file, line) in `src/`.
fn arrows() -> Vec<(String, String, String, usize)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap().to_path_buf();
        let Some(from) = module_of(&rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        // Multi-line `use crate::{…}` groups: join each statement before reading it.
        let mut statement = String::new();
        let mut start = 0;
        for (n, line) in text.lines().enumerate() {
            let c = code(line);
            if statement.is_empty() {
                start = n + 1;
            }
            statement.push_str(c);
            statement.push(' ');
            let open = statement.matches('{').count() > statement.matches('}').count();
            if statement.trim_start().starts_with("use crate::") && open {
                continue;
            }
            for to in named_modules(&statement) {
                if to != from {
                    out.push((from.clone(), to, rel.display().to_string(), start));
                }
            }
            statement.clear();
        }
    }
    out
}

#[test]
fn every_module_has_a_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(f.strip_prefix(root).unwrap()))
        .collect();
    for m in &modules {
        assert!(
            layer(m).is_some(),
            "src/{m} has no layer in tests/layers.rs: add it to LAYERS"
        );
    }
}

#[test]
fn no_module_names_a_higher_layer() {
    let mut breaks = Vec::new();
    let mut known_seen = BTreeSet::new();
    for (from, to, file, line) in arrows() {
        let (Some(lf), Some(lt)) = (layer(&from), layer(&to)) else {
            continue; // not a module of src/ (e.g. a local item named like one)
        };
        let allowed = lt < lf
            || SIDEWAYS.iter().any(|(f, t, _)| *f == from && *t == to)
            || EXEMPT_FILES.iter().any(|(p, t, _)| *p == file && *t == to);
        if allowed {
            continue;
        }
        if KNOWN_BREAKS.contains(&(from.as_str(), to.as_str())) {
            known_seen.insert((from, to));
            continue;
        }
        breaks.push(format!(
            "{file}:{line}: {from} (layer {lf}) names {to} (layer {lt})"
        ));
    }
    assert!(
        breaks.is_empty(),
        "imports against the layer rule (see the top of tests/layers.rs):\n{}",
        breaks.join("\n")
    );
    for (from, to) in KNOWN_BREAKS {
        assert!(
            known_seen.contains(&(from.to_string(), to.to_string())),
            "{from} -> {to} is fixed: remove it from KNOWN_BREAKS"
        );
    }
}

#[test]
fn shells_name_no_gdal_or_onnxruntime_type() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for shell in ["src/cli", "src/server"] {
        rust_files(&root.join(shell), &mut files);
    }
    files.push(root.join("src/main.rs"));
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let c = code(line);
            if ["gdal::", "gdal_sys::", "ort::"]
                .iter()
                .any(|p| c.contains(p) && !c.contains(&format!("_{p}")))
            {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "shells must leave GDAL and onnxruntime to the layers below:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reader_sees_through_groups_and_comments() {
    assert_eq!(
        named_modules("use crate::{aoi, crs::Local, eval};"),
        vec!["aoi", "crs", "eval"]
    );
    assert_eq!(
        named_modules("let x = crate::model::inspect(p);"),
        vec!["model"]
    );
    assert_eq!(code("/// [`x`](crate::engine::ScoreResult)"), "");
    assert_eq!(code("let a = 1; // crate::engine"), "let a = 1; ");
}
