//! The distance-to-training band (issue 14): the heatmap's last band,
//! `distance_to_training`, a `tiles.csv` column, a `tiles.geojson` property and a
//! `summary.json` entry naming the reference. On the real sample with the SimSiam pair
//! (no reference statistics in its metadata: the scene's own), and with the default
//! pair, whose head declares the training embeddings' statistics — the `rcf_chroma`
//! encoder standardises its embedding to the EuroSAT pool's mean 0 / variance 1 inside
//! the graph (onnx/rcf_chroma/README.md), so its head ships `nexttile_embedding_mean = 0`,
//! `nexttile_embedding_std = 1` — on which an 8-bit display copy of the sample fed with
//! the reflectance scale must score clearly farther than the sample.

mod common;

use std::path::{Path, PathBuf};

use gdal::Metadata;
use serde_json::Value;

/// The part of the sample used: 15 × 15 tiles of 64 px.
const WINDOW: [&str; 5] = ["-srcwin", "0", "0", "960", "960"];

/// `gdal_translate` the sample's window with `args` into `dir/name.tif`.
fn derive(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(format!("{name}.tif"));
    let src = common::sample_scene();
    let mut all: Vec<&str> = vec!["-q"];
    all.extend(WINDOW);
    all.extend(args);
    all.push(src.to_str().unwrap());
    all.push(out.to_str().unwrap());
    common::run_tool("gdal_translate", &all);
    out
}

/// Scores `scene` (T = 1, no cache) into `out` with `extra` arguments; returns
/// summary.json and stderr + the text report.
fn score(scene: &Path, out: &Path, extra: &[&str]) -> (Value, String) {
    let mut args: Vec<&str> = vec!["score", scene.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--mc-passes", "1"]);
    args.extend(["--no-cache", "--quiet"]);
    args.extend(extra);
    let (code, stdout, stderr) = common::run_nexttile(&args);
    assert_eq!(code, 0, "score {args:?}: {stderr}");
    let s = std::fs::read_to_string(out.join("summary.json")).unwrap();
    (
        serde_json::from_str(&s).unwrap(),
        format!("{stderr}\n{stdout}"),
    )
}

/// The heatmap's last band: its description and its values on scored tiles.
fn distance_band(out: &Path) -> (String, Vec<f32>) {
    let ds = gdal::Dataset::open(out.join("heatmap.tif")).unwrap();
    let band = ds.rasterband(ds.raster_count()).unwrap();
    let (w, h) = ds.raster_size();
    let values = band.read_as::<f32>((0, 0), (w, h), (w, h), None).unwrap();
    let scored = values
        .data()
        .iter()
        .copied()
        .filter(|v| *v != -1.0)
        .collect();
    (band.description().unwrap(), scored)
}

fn median(v: &[f32]) -> f32 {
    let mut v = v.to_vec();
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

#[test]
fn the_sample_gets_a_distance_band_column_and_summary_against_the_scene() {
    let d = common::tempdir();
    let scene = derive(d.path(), "window", &[]);
    let out = d.path().join("out");
    let simsiam = common::root().join("onnx/eurosat_simsiam");
    let (enc, head) = (simsiam.join("encoder.onnx"), simsiam.join("head.onnx"));
    let pair = [
        "--encoder",
        enc.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
    ];
    let (s, text) = score(&scene, &out, &pair);
    assert!(
        text.contains("distance:    to the training data (reference scene): median "),
        "{text}"
    );
    let (desc, values) = distance_band(&out);
    assert_eq!(desc, "distance_to_training");
    assert_eq!(values.len(), s["scored_tiles"].as_u64().unwrap() as usize);
    assert!(values.iter().all(|v| v.is_finite() && *v >= 0.0));
    // The SimSiam pair declares no training-embedding statistics: the reference is
    // the scene's own, said so, and no far-share warning is given for it.
    let t = &s["distance_to_training"];
    assert_eq!(t["reference"], "scene", "{t}");
    assert!(
        t["reference_detail"]
            .as_str()
            .unwrap()
            .contains("not for the training data")
    );
    assert_eq!(t["far_threshold"], 3.0);
    let p50 = t["quantiles"]["p50"].as_f64().unwrap();
    assert!((p50 - f64::from(median(&values))).abs() < 1e-3, "{t}");
    // tiles.csv's last column and tiles.geojson's property carry the same values.
    let csv = std::fs::read_to_string(out.join("tiles.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",distance_to_training")
    );
    let fc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tiles.geojson")).unwrap()).unwrap();
    let f0 = &fc["features"][0]["properties"];
    assert!(f0["distance_to_training"].as_f64().unwrap() >= 0.0, "{f0}");
    println!(
        "sample window, scene reference: quantiles {}",
        t["quantiles"]
    );
}

#[test]
fn an_8_bit_copy_fed_as_reflectance_is_far_from_the_declared_training_statistics() {
    let d = common::tempdir();
    // The default pair: its head declares the training embeddings' statistics.
    let head_arg: [&str; 0] = [];
    let scene = derive(d.path(), "window", &[]);
    let mut args8: Vec<&str> = common::TRUE_COLOUR_BANDS.to_vec();
    args8.extend(common::TO_8_BIT);
    args8.extend(["-colorinterp", "red,green,blue"]);
    let rgb8 = derive(d.path(), "rgb8", &args8);

    let (s, err) = score(&scene, &d.path().join("sample"), &head_arg);
    let t = &s["distance_to_training"];
    assert_eq!(t["reference"], "model_metadata", "{t}");
    assert!(
        t["reference_detail"]
            .as_str()
            .unwrap()
            .starts_with("head metadata nexttile_embedding_mean/nexttile_embedding_std"),
        "{t}"
    );
    assert!(!err.contains("far from the training data"), "{err}");
    let (_, sample) = distance_band(&d.path().join("sample"));

    let (s8, err8) = score(&rgb8, &d.path().join("rgb8"), &head_arg);
    let (_, eight) = distance_band(&d.path().join("rgb8"));
    let (m, m8) = (median(&sample), median(&eight));
    println!(
        "distance_to_training (head metadata mean 0 / std 1), median over {} tiles: sample {m:.3}, 8-bit copy as reflectance {m8:.3}; far share {} vs {}",
        sample.len(),
        t["far_share"],
        s8["distance_to_training"]["far_share"]
    );
    assert!(m8 > 2.0 * m, "sample {m}, 8-bit {m8}");
    assert!(err8.contains("far from the training data"), "{err8}");

    // Scaled right (`--sensor rgb`: 0–255 → [0, 1]) the copy is back near the sample.
    let mut fixed_args = head_arg.to_vec();
    fixed_args.extend(["--sensor", "rgb"]);
    let (sf, errf) = score(&rgb8, &d.path().join("fixed"), &fixed_args);
    let (_, fixed) = distance_band(&d.path().join("fixed"));
    let mf = median(&fixed);
    println!(
        "8-bit copy with --sensor rgb: median {mf:.3}, far share {}",
        sf["distance_to_training"]["far_share"]
    );
    assert!(mf < m8 / 2.0, "fixed {mf}, as reflectance {m8}");
    assert!(!errf.contains("far from the training data"), "{errf}");
}

#[test]
fn half_a_declared_reference_is_refused_with_the_key_named() {
    let d = common::tempdir();
    let head = d.path().join("head.onnx");
    common::with_metadata(
        &common::root().join("onnx/eurosat_simsiam/head.onnx"),
        &head,
        &[("nexttile_embedding_mean", "0")],
    );
    let scene = derive(d.path(), "window", &["-srcwin", "0", "0", "128", "128"]);
    let out = d.path().join("out");
    let encoder = common::root().join("onnx/eurosat_simsiam/encoder.onnx");
    let (code, _, stderr) = common::run_nexttile(&[
        "score",
        scene.to_str().unwrap(),
        "--encoder",
        encoder.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-cache",
        "--quiet",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("only one of nexttile_embedding_mean and nexttile_embedding_std"),
        "{stderr}"
    );
}
