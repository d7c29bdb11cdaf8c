//! Models that travel between NextTile and Deepness (issue 14, last section).
//!
//! Facts about Deepness this test relies on, from its documentation
//! (<https://qgis-plugin-deepness.readthedocs.io/en/latest/creators/creators_add_metadata_to_model.html>,
//! "Adding metadata to ONNX model") and the code that reads them
//! (`src/deepness/processing/models/model_base.py`, Deepness 0.6.5):
//!
//! - metadata values are written with `json.dumps` and read with `json.loads`:
//!   `model_type` is a JSON string (`"Recognition"` for embedding models;
//!   the documented types are Segmentor, Detector, Regressor, Recognition,
//!   Superresolution), `class_names` a JSON object index → name (a Python
//!   literal such as `{0: 'background'}` also loads, through `ast.literal_eval`),
//!   `resolution` a number in cm/px, `tiles_size` and `tiles_overlap` integers
//!   (the dialog reads the tile size from `tile_size`), `standardization_mean`
//!   and `standardization_std` lists with one number per input channel;
//! - the model has one input N × C × H × W; the recognition path resizes to its
//!   H × W (`cv2.resize(img, input_shape[2:4][::-1])`), so they must be numbers;
//! - the input is `raw / 255`, then `(x − mean) / std`.
//!
//! GeoDeep (`geodeep/inference.py`) reads `model_type` and `class_names` with
//! `json.loads`, `resolution` and `tiles_overlap` with `float()`, and tiles at
//! the input's last dimension.
//!
//! The shipped files carry JSON-encoded metadata (every `model_type` a JSON
//! string, asserted below); their dynamic height/width and NextTile's scaling
//! still keep them out of Deepness as they are, so an encoder goes to Deepness
//! through `python onnx/set_metadata.py ENCODER --deepness OUT`, whose
//! output `scripts/check_deepness.py` reads the way Deepness and GeoDeep do for
//! every shipped encoder (run by `scripts/test.sh`), and whose output for the
//! fixture below is checked here.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nexttile::model::deepness::{DEEPNESS_METADATA_DOC, DEEPNESS_MODEL_TYPES};
use nexttile::model::{ModelRole, inspect};
use serde_json::Value;

/// Deepness's documented keys and the JSON each value must decode to.
const DEEPNESS_KEYS: [(&str, Kind); 8] = [
    ("model_type", Kind::Str),
    ("class_names", Kind::IndexObject),
    ("resolution", Kind::Number),
    ("tiles_size", Kind::Integer),
    ("tile_size", Kind::Integer),
    ("tiles_overlap", Kind::Integer),
    ("standardization_mean", Kind::NumberList),
    ("standardization_std", Kind::NumberList),
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Str,
    IndexObject,
    Number,
    Integer,
    NumberList,
}

/// Whether `raw`, read with `json.loads`, is of `kind`.
fn fits(raw: &str, kind: Kind) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(raw) else {
        return false;
    };
    match kind {
        Kind::Str => v.is_string(),
        Kind::Number => v.is_number(),
        Kind::Integer => v.is_u64(),
        Kind::NumberList => v.as_array().is_some_and(|a| a.iter().all(Value::is_number)),
        Kind::IndexObject => v.as_object().is_some_and(|o| {
            (0..o.len()).all(|i| o.get(&i.to_string()).is_some_and(Value::is_string))
        }),
    }
}

/// Every shipped model (as tests/models.rs lists them).
fn shipped_models() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(common::root().join("onnx")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "onnx") {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_facts_link_to_deepness_docs() {
    assert!(DEEPNESS_METADATA_DOC.starts_with("https://qgis-plugin-deepness.readthedocs.io/"));
    assert!(DEEPNESS_MODEL_TYPES.contains(&"Recognition"));
}

/// Every shipped model against Deepness's key formats: every documented key it
/// carries decodes as Deepness decodes it, except the ones listed (the reason
/// the `--deepness` export exists), and NextTile reads each.
#[test]
fn every_shipped_model_against_deepness_key_formats() {
    let models = shipped_models();
    assert!(models.len() >= 13, "{models:?}");
    let mut encoders = 0;
    for path in &models {
        let spec = inspect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let m: &BTreeMap<String, String> = &spec.metadata;
        for (key, kind) in DEEPNESS_KEYS {
            let Some(v) = m.get(key) else { continue };
            if fits(v, kind) {
                continue;
            }
            // Known: heads' class-name lists (heads take N × D embeddings and a
            // dropout switch, two inputs: Deepness loads none of them). Every
            // model_type is a JSON string since 2026-12-07.
            let known = key == "class_names" && spec.role == ModelRole::Head;
            assert!(
                known,
                "{}: {key} = {v} is not a Deepness {kind:?}",
                path.display()
            );
        }
        match spec.role {
            ModelRole::Head => assert!(spec.inputs.len() == 2 || spec.inputs[0].shape.len() == 2),
            ModelRole::Encoder => {
                encoders += 1;
                // What Deepness would trip over is exactly what the export changes
                // (or, for the per-band encoder, why it cannot go to Deepness).
                for p in spec.deepness_problems() {
                    assert!(
                        p.contains("dynamic height/width")
                            || p.contains("raw / 255")
                            || p.contains("one band at a time"),
                        "{}: {p}",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(encoders >= 6, "{encoders} encoders");
}

/// The sample's true-colour bands as an 8-bit RGB GeoTIFF (0–255, colour
/// interpretation red/green/blue, no band descriptions): what Deepness expects.
fn rgb8(dir: &Path) -> PathBuf {
    let out = dir.join("rgb8.tif");
    let mut args: Vec<&str> = vec!["-q", "-srcwin", "0", "0", "640", "640"];
    args.extend(common::TRUE_COLOUR_BANDS);
    args.extend(common::TO_8_BIT);
    args.extend(["-colorinterp", "red,green,blue"]);
    let src = common::sample_scene();
    args.push(src.to_str().unwrap());
    args.push(out.to_str().unwrap());
    common::run_tool("gdal_translate", &args);
    out
}

/// Score and return summary.json and tiles.csv.
fn score(scene: &Path, encoder: &Path, head: &Path) -> (Value, String) {
    let out = common::tempdir();
    let (code, _, stderr) = common::run_nexttile(&[
        "score",
        scene.to_str().unwrap(),
        "--encoder",
        encoder.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--mc-passes",
        "1",
        "--no-cache",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{}: {stderr}", encoder.display());
    let summary =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    let tiles = std::fs::read_to_string(out.path().join("tiles.csv")).unwrap();
    (summary, tiles)
}

/// A model whose metadata is written the way Deepness's documentation shows
/// (`json.dumps` for each value, no NextTile keys) scores in NextTile with
/// Deepness's input (`raw / 255`, red/green/blue), and the older bare-text
/// form reads the same; a head with the Python-literal class names loads.
#[test]
fn a_deepness_style_model_scores() {
    let docs = common::fixture("deepness_recognition.onnx");
    let bare = common::fixture("deepness_recognition_bare.onnx");
    let spec = inspect(&docs).unwrap();
    assert!(
        spec.deepness_problems().is_empty(),
        "{:?}",
        spec.deepness_problems()
    );
    assert_eq!(spec.metadata["model_type"], "\"Recognition\"");
    let p = spec.preprocess.as_ref().unwrap();
    assert_eq!(p.bands, ["B04", "B03", "B02"]);
    assert!((p.scale - 1.0 / 255.0).abs() < 1e-9, "{}", p.scale);
    assert_eq!(spec.tile_size, Some(64));
    assert_eq!(spec.resolution_m, Some(10.0));
    let bare_problems = inspect(&bare).unwrap().deepness_problems();
    assert!(
        bare_problems.iter().any(|p| p.contains("bare text")),
        "{bare_problems:?}"
    );
    let head = common::fixture("sum_head_3.onnx");
    assert_eq!(inspect(&head).unwrap().class_names, ["land", "water"]);

    let dir = common::tempdir();
    let scene = rgb8(dir.path());
    let (s, tiles) = score(&scene, &docs, &head);
    let scale = s["input"]["scaling"]["scale"].as_f64().unwrap();
    assert!((scale - 1.0 / 255.0).abs() < 1e-7, "{}", s["input"]);
    assert_eq!(tiles.lines().count(), 101, "64 px tiles of a 640 px square");
    let (_, bare_tiles) = score(&scene, &bare, &head);
    assert_eq!(
        tiles, bare_tiles,
        "bare-text and JSON model_type must read the same"
    );
}

/// Columns of tiles.csv as numbers per tile id.
fn probabilities(tiles: &str) -> BTreeMap<String, Vec<f64>> {
    let mut lines = tiles.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let id = header.iter().position(|h| *h == "tile_id").unwrap();
    let cols: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.starts_with("p_") || h.starts_with("prob"))
        .map(|(i, _)| i)
        .collect();
    assert!(!cols.is_empty(), "no probability columns in {header:?}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let v = cols.iter().map(|c| f[*c].parse().unwrap()).collect();
            (f[id].to_string(), v)
        })
        .collect()
}

/// The metadata tool's Deepness export of a NextTile encoder (scale 1/2800,
/// clip [0, 1], standardisation) has nothing Deepness trips over, and NextTile
/// reading it the way Deepness does gets the source's predictions on the sample.
#[test]
fn the_deepness_export_keeps_the_input() {
    let source = common::fixture("channel_mean_rgb.onnx");
    let export = common::fixture("channel_mean_rgb_deepness.onnx");
    let src = inspect(&source).unwrap();
    let exp = inspect(&export).unwrap();
    assert!(
        exp.deepness_problems().is_empty(),
        "{:?}",
        exp.deepness_problems()
    );
    let problems = src.deepness_problems().join("\n");
    for want in ["bare text", "dynamic height/width", "raw / 255"] {
        assert!(problems.contains(want), "{want}: {problems}");
    }
    for (key, kind) in DEEPNESS_KEYS {
        let v = exp.metadata.get(key);
        let optional = key == "class_names";
        assert!(
            v.is_some_and(|v| fits(v, kind)) || (optional && v.is_none()),
            "{key} = {v:?}"
        );
    }
    assert_eq!(exp.fixed_input_size, Some(64));
    assert!(exp.is_or_derives_from(&src.sha256));
    let p = exp.preprocess.as_ref().unwrap();
    assert!(p.clip.is_none() && (p.scale - 1.0 / 255.0).abs() < 1e-9);

    let head = common::fixture("sum_head_3.onnx");
    let dir = common::tempdir();
    let scene = dir.path().join("window.tif");
    common::run_tool(
        "gdal_translate",
        &[
            "-q",
            "-srcwin",
            "0",
            "0",
            "640",
            "640",
            common::sample_scene().to_str().unwrap(),
            scene.to_str().unwrap(),
        ],
    );
    let (_, a) = score(&scene, &source, &head);
    let (_, b) = score(&scene, &export, &head);
    let (a, b) = (probabilities(&a), probabilities(&b));
    assert_eq!(a.len(), 100);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let worst = a
        .iter()
        .flat_map(|(k, v)| v.iter().zip(&b[k]).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "largest probability difference {worst}");
}
