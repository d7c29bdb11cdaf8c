//! Rasters as analysts have them (issue 14), built from the real sample scene
//! and the real Sen1Floods11 chip with `gdal_translate`: an 8-bit RGB image
//! with colour interpretation and no band descriptions, a Float32 0–1
//! reflectance copy, a Sentinel-2 L2A-style copy with the +1000 offset, and
//! the chip without band descriptions. Each scores with no flags or only
//! `--sensor`; the band matching, the scaling and the input-distribution
//! check are read back from `summary.json`, and predictions of rescaled
//! copies are compared with the original's, tile by tile.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The part of the sample every copy is cut from: 15 × 15 tiles of 64 px.
const WINDOW: [&str; 5] = ["-srcwin", "0", "0", "960", "960"];

/// `gdal_translate` the sample (window [`WINDOW`]) with `args` into
/// `dir/name`, through a VRT from which band descriptions and the
/// `PRODUCT` metadata item (which names Sentinel-2 L1C) are removed unless
/// `keep_names` — the copies then carry only what the options give them.
fn derive(dir: &Path, name: &str, src: &Path, args: &[&str], keep_names: bool) -> PathBuf {
    let vrt = dir.join(format!("{name}.vrt"));
    let mut all: Vec<&str> = vec!["-q", "-of", "VRT"];
    all.extend(args);
    all.push(src.to_str().unwrap());
    all.push(vrt.to_str().unwrap());
    common::run_tool("gdal_translate", &all);
    if !keep_names {
        let text = std::fs::read_to_string(&vrt).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("<Description>") && !l.contains("key=\"PRODUCT\""))
            .collect();
        std::fs::write(&vrt, kept.join("\n")).unwrap();
    }
    let out = dir.join(format!("{name}.tif"));
    common::run_tool(
        "gdal_translate",
        &["-q", vrt.to_str().unwrap(), out.to_str().unwrap()],
    );
    out
}

/// Score `scene` with the demo models (deterministic head, no cache) and
/// return summary.json, stderr + the text report, and the predicted class per
/// tile id (from tiles.csv).
fn score(scene: &Path, extra: &[&str]) -> (Value, String, HashMap<String, String>) {
    let out = common::tempdir();
    let mut args: Vec<&str> = vec!["score", scene.to_str().unwrap()];
    let out_s = out.path().to_str().unwrap().to_string();
    args.extend(["--out", &out_s, "--mc-passes", "1", "--no-cache", "--quiet"]);
    args.extend(extra);
    let (code, stdout, stderr) = common::run_nexttile(&args);
    assert_eq!(code, 0, "score {args:?} failed: {stderr}");
    assert!(stdout.contains("bands:"), "{stdout}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    // Predicted class per tile id, from tiles.csv.
    let csv = std::fs::read_to_string(out.path().join("tiles.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let id = header.iter().position(|h| *h == "tile_id").unwrap();
    let class = header.iter().position(|h| *h == "predicted_class").unwrap();
    let predicted = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[id].to_string(), f[class].to_string())
        })
        .collect();
    (summary, format!("{stderr}\n{stdout}"), predicted)
}

fn matched_by(summary: &Value) -> Vec<(String, u64, String)> {
    summary["scene"]["band_matching"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["model_band"].as_str().unwrap().to_string(),
                m["raster_band"].as_u64().unwrap(),
                m["matched_by"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn warnings(summary: &Value) -> String {
    summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Share of the original's tiles whose predicted class the copy repeats.
fn agreement(a: &HashMap<String, String>, b: &HashMap<String, String>) -> f64 {
    let same = a.iter().filter(|(k, v)| b.get(*k) == Some(v)).count();
    same as f64 / a.len().max(1) as f64
}

const DISTRIBUTION: &str = "does not look like the encoder's training data";
const EIGHT_BIT: &str = "this looks like an 8-bit display image (GDAL type Byte, values 0–255) but the encoder expects Sentinel-2 reflectance";

/// The original window, its descriptions and metadata kept: matched by
/// description, L1C recognised from metadata, and the check silent.
fn original(dir: &Path) -> (Value, HashMap<String, String>) {
    let src = common::sample_scene();
    let orig = derive(dir, "orig", &src, &WINDOW, true);
    let (s, text, pred) = score(&orig, &[]);
    let m = matched_by(&s);
    assert_eq!(
        m,
        [
            ("B04".into(), 4, "description".into()),
            ("B03".into(), 3, "description".into()),
            ("B02".into(), 2, "description".into())
        ]
    );
    assert_eq!(s["input"]["sensor"]["name"], "s2-l1c", "{}", s["input"]);
    assert!(
        s["input"]["sensor"]["source"]
            .as_str()
            .unwrap()
            .starts_with("metadata PRODUCT=Sentinel-2 L1C"),
        "{}",
        s["input"]
    );
    assert!(
        !text.contains(DISTRIBUTION) && !text.contains("8-bit"),
        "{text}"
    );
    for c in s["input"]["check"].as_array().unwrap() {
        assert!(c["sigma"].as_f64().unwrap().abs() < 3.0, "{c}");
    }
    assert_eq!(s["input"]["check_tiles"], 64);
    (s, pred)
}

#[test]
fn eight_bit_rgb_by_colour_interpretation() {
    let d = common::tempdir();
    let (_, base) = original(d.path());
    let mut args = WINDOW.to_vec();
    args.extend(common::TRUE_COLOUR_BANDS);
    args.extend(common::TO_8_BIT);
    args.extend(["-colorinterp", "red,green,blue"]);
    let rgb = derive(d.path(), "rgb8", &common::sample_scene(), &args, false);

    // No flags: matched by colour interpretation, scaled as reflectance, and
    // the specific 8-bit warning in summary.json and on stderr.
    let (s, text, plain) = score(&rgb, &[]);
    let by = |v: &str| {
        [
            ("B04".to_string(), 1, v.to_string()),
            ("B03".into(), 2, v.into()),
            ("B02".into(), 3, v.into()),
        ]
    };
    assert_eq!(matched_by(&s), by("colour_interpretation"));
    assert!(warnings(&s).contains(EIGHT_BIT), "{}", warnings(&s));
    assert!(text.contains(&format!("warning: {EIGHT_BIT}")), "{text}");
    assert!(text.contains("--sensor rgb"), "{text}");
    assert!(
        text.contains("B04 = band 1 (colour_interpretation: Red)"),
        "{text}"
    );
    assert_eq!(s["input"]["data_type"], "Byte");

    // --sensor rgb: 0–255 → [0, 1] (the EuroSAT-RGB JPEGs' scaling), said to
    // be an approximation; no distribution warning.
    let (s, text, fixed) = score(&rgb, &["--sensor", "rgb"]);
    assert_eq!(matched_by(&s), by("colour_interpretation"));
    assert_eq!(s["input"]["scaling"]["source"], "sensor_preset:rgb");
    let scale = s["input"]["scaling"]["scale"].as_f64().unwrap();
    assert!((scale - 1.0 / 255.0).abs() < 1e-7, "{scale}");
    assert!(warnings(&s).contains("colour-stretched approximation"));
    assert!(
        !text.contains(DISTRIBUTION) && !text.contains(EIGHT_BIT),
        "{text}"
    );

    let (a_plain, a_fixed) = (agreement(&base, &plain), agreement(&base, &fixed));
    println!(
        "8-bit RGB copy vs original, predicted class agreement over {} tiles: no flags {a_plain:.3}, --sensor rgb {a_fixed:.3}",
        base.len()
    );
    assert!(a_fixed > 0.8 && a_fixed > a_plain, "{a_fixed} vs {a_plain}");
}

#[test]
fn float_reflectance_copy() {
    let d = common::tempdir();
    let (_, base) = original(d.path());
    let mut args = WINDOW.to_vec();
    args.extend(common::TRUE_COLOUR_BANDS);
    args.extend([
        "-ot",
        "Float32",
        "-scale",
        "0",
        "10000",
        "0",
        "1",
        "-colorinterp",
        "red,green,blue",
    ]);
    let refl = derive(d.path(), "refl", &common::sample_scene(), &args, false);
    let (s, text, plain) = score(&refl, &[]);
    assert_eq!(s["input"]["data_type"], "Float32");
    assert!(text.contains(DISTRIBUTION), "{text}");
    assert!(text.contains("look like reflectance 0–1"), "{text}");
    assert!(text.contains("--sensor reflectance"), "{text}");

    let (s, text, fixed) = score(&refl, &["--sensor", "reflectance"]);
    assert_eq!(s["input"]["scaling"]["source"], "sensor_preset:reflectance");
    assert!(!text.contains(DISTRIBUTION), "{text}");
    // The same through --input-scale (10000 / 2800).
    let (s2, _, by_scale) = score(&refl, &["--input-scale", "3.5714285"]);
    assert_eq!(s2["input"]["scaling"]["source"], "model + --input-scale");
    let (a_plain, a_fixed, a_scale) = (
        agreement(&base, &plain),
        agreement(&base, &fixed),
        agreement(&base, &by_scale),
    );
    println!(
        "Float32 0–1 copy vs original, agreement over {} tiles: no flags {a_plain:.3}, --sensor reflectance {a_fixed:.3}, --input-scale {a_scale:.3}",
        base.len()
    );
    assert!(a_fixed > 0.9 && a_scale > 0.9 && a_fixed > a_plain);
    assert_eq!(matched_by(&s)[0].2, "colour_interpretation");
}

#[test]
fn l2a_offset_copy_without_descriptions() {
    let d = common::tempdir();
    let (_, base) = original(d.path());
    // 12 bands (no B10), DN + 1000 as baseline 04.00 L2A, no descriptions.
    let mut args = WINDOW.to_vec();
    for b in [
        "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "12", "13",
    ] {
        args.extend(["-b", b]);
    }
    args.extend(["-scale", "0", "10000", "1000", "11000", "-a_nodata", "none"]);
    let l2a = derive(d.path(), "l2a", &common::sample_scene(), &args, false);

    let (s, _, plain) = score(&l2a, &[]);
    let m = matched_by(&s);
    assert_eq!(m[0], ("B04".into(), 4, "s2_default_order".into()));
    // Without --sensor the offset shows in the input check (B02 lands about
    // 3 σ high); whether it crosses the line is printed, not asserted.
    println!(
        "L2A-offset copy, no flags: sigma per band {:?}; distribution warning: {}",
        s["input"]["check"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (
                c["band"].as_str().unwrap().to_string(),
                (c["sigma"].as_f64().unwrap() * 100.0).round() / 100.0
            ))
            .collect::<Vec<_>>(),
        warnings(&s).contains(DISTRIBUTION)
    );
    let (s, text, fixed) = score(&l2a, &["--sensor", "s2-l2a"]);
    let m = matched_by(&s);
    assert_eq!(
        m,
        [
            ("B04".to_string(), 4, "sensor_preset:s2-l2a".to_string()),
            ("B03".into(), 3, "sensor_preset:s2-l2a".into()),
            ("B02".into(), 2, "sensor_preset:s2-l2a".into())
        ]
    );
    let offset = s["input"]["scaling"]["offset"].as_f64().unwrap();
    assert!((offset + 1000.0 / 2800.0).abs() < 1e-5, "{offset}");
    assert!(!text.contains(DISTRIBUTION), "{text}");
    assert!(text.contains("sensor:      s2-l2a (--sensor;"), "{text}");
    let (a_plain, a_fixed) = (agreement(&base, &plain), agreement(&base, &fixed));
    println!(
        "L2A-offset copy vs original, agreement over {} tiles: no flags {a_plain:.3}, --sensor s2-l2a {a_fixed:.3}",
        base.len()
    );
    assert!(
        a_fixed > 0.95 && a_fixed > a_plain,
        "{a_fixed} vs {a_plain}"
    );
}

#[test]
fn sen1floods_chip_without_descriptions() {
    let d = common::tempdir();
    let chip = common::sen1floods_s2();
    let bare = derive(d.path(), "chip", &chip, &[], false);
    let (s, _, pred) = score(&bare, &[]);
    assert_eq!(
        matched_by(&s),
        [
            ("B04".to_string(), 4, "s2_default_order".to_string()),
            ("B03".into(), 3, "s2_default_order".into()),
            ("B02".into(), 2, "s2_default_order".into())
        ]
    );
    assert!(warnings(&s).contains("no band descriptions"));
    let (s2, _, pred2) = score(&bare, &["--sensor", "s2-l1c"]);
    assert_eq!(matched_by(&s2)[0].2, "sensor_preset:s2-l1c");
    assert_eq!(s2["input"]["data_type"], "Int16");
    // The chip's own descriptions (B1…B12) give the same bands and scores.
    let (s3, _, pred3) = score(&chip, &[]);
    assert_eq!(matched_by(&s3)[0], ("B04".into(), 4, "description".into()));
    assert_eq!(pred, pred3);
    assert_eq!(pred2, pred3);
    println!(
        "Sen1Floods11 chip: input check {}",
        serde_json::to_string(&s3["input"]["check"]).unwrap()
    );
}

/// A Landsat Collection 2 Level-2-style copy of the sample's bands:
/// reflectance = L1C DN / 10000 re-encoded as DN = (reflectance + 0.2) /
/// 0.0000275 (UInt16), `bands` (1-based sample bands) in the preset's order,
/// no descriptions.
fn landsat_copy(dir: &Path, name: &str, bands: &[&str]) -> PathBuf {
    let mut args = WINDOW.to_vec();
    for b in bands {
        args.extend(["-b", b]);
    }
    // 0 → 0.2 / 0.0000275 = 7272.73, 10000 → 1.2 / 0.0000275 = 43636.36.
    args.extend([
        "-ot",
        "UInt16",
        "-scale",
        "0",
        "10000",
        "7272.73",
        "43636.36",
        "-a_nodata",
        "none",
    ]);
    derive(dir, name, &common::sample_scene(), &args, false)
}

#[test]
fn landsat_copies_with_their_presets() {
    let d = common::tempdir();
    let (_, base) = original(d.path());
    // OLI SR_B1…SR_B7 ≙ B01 B02 B03 B04 B08 B11 B12 (sample bands 1 2 3 4 8 12 13).
    let oli = landsat_copy(d.path(), "oli", &["1", "2", "3", "4", "8", "12", "13"]);
    let (s, text, pred) = score(&oli, &["--sensor", "landsat8"]);
    assert_eq!(
        matched_by(&s),
        [
            ("B04".to_string(), 4, "sensor_preset:landsat8".to_string()),
            ("B03".into(), 3, "sensor_preset:landsat8".into()),
            ("B02".into(), 2, "sensor_preset:landsat8".into())
        ]
    );
    assert!(!text.contains(DISTRIBUTION), "{text}");
    let a_oli = agreement(&base, &pred);

    // ETM+ SR_B1…B5, B7 ≙ B02 B03 B04 B08 B11 B12, through the six-band
    // encoder (NIR and SWIR included), against the original with that encoder.
    let enc = common::root().join("onnx/ukis_csmask/encoder.onnx");
    let head = common::root().join("onnx/ukis_csmask/head.onnx");
    let (enc, head) = (enc.to_str().unwrap(), head.to_str().unwrap());
    let orig = d.path().join("orig.tif");
    let (_, _, base6) = score(&orig, &["--encoder", enc, "--head", head]);
    let etm = landsat_copy(d.path(), "etm", &["2", "3", "4", "8", "12", "13"]);
    let (s, text, pred6) = score(
        &etm,
        &["--sensor", "landsat7", "--encoder", enc, "--head", head],
    );
    let bands: Vec<(String, u64)> = matched_by(&s).into_iter().map(|m| (m.0, m.1)).collect();
    assert_eq!(
        bands,
        [
            ("B02".to_string(), 1),
            ("B03".into(), 2),
            ("B04".into(), 3),
            ("B08".into(), 4),
            ("B11".into(), 5),
            ("B12".into(), 6)
        ]
    );
    assert!(!text.contains(DISTRIBUTION), "{text}");
    let (_, _, plain6) = score(
        &etm,
        &["--bands", "1,2,3,4,5,6", "--encoder", enc, "--head", head],
    );
    let (a_etm, a_plain6) = (agreement(&base6, &pred6), agreement(&base6, &plain6));
    println!(
        "Landsat-style copies vs original, agreement over {} tiles: OLI --sensor landsat8 (demo encoder) {a_oli:.3}; ETM+ --sensor landsat7 (ukis_csmask encoder) {a_etm:.3}, the same with --bands only (L1C scaling) {a_plain6:.3}",
        base.len()
    );
    assert!(a_oli > 0.95 && a_etm > 0.95, "{a_oli} {a_etm}");
}

/// NIR named only by band metadata (`BANDNAME=nir`, GDAL 3.6 has no NIR
/// colour interpretation), SWIR by STAC common names as descriptions, RGB by
/// colour interpretation: the six-band encoder finds all six.
#[test]
fn common_names_band_metadata_and_colour_interpretation_together() {
    let d = common::tempdir();
    original(d.path());
    let vrt = d.path().join("mixed.vrt");
    let mut args: Vec<&str> = vec!["-q", "-of", "VRT"];
    args.extend(WINDOW);
    for b in ["4", "3", "2", "8", "12", "13"] {
        args.extend(["-b", b]);
    }
    args.extend([
        "-colorinterp",
        "red,green,blue,undefined,undefined,undefined",
    ]);
    let src = common::sample_scene();
    args.extend([src.to_str().unwrap(), vrt.to_str().unwrap()]);
    common::run_tool("gdal_translate", &args);
    let text = std::fs::read_to_string(&vrt).unwrap();
    let edited: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("key=\"PRODUCT\""))
        .filter_map(|l| match l.trim() {
            "<Description>B04</Description>"
            | "<Description>B03</Description>"
            | "<Description>B02</Description>" => None,
            "<Description>B08</Description>" => {
                Some("    <Metadata><MDI key=\"BANDNAME\">nir</MDI></Metadata>".to_string())
            }
            "<Description>B11</Description>" => {
                Some("    <Description>swir16</Description>".into())
            }
            "<Description>B12</Description>" => {
                Some("    <Description>swir22</Description>".into())
            }
            _ => Some(l.to_string()),
        })
        .collect();
    std::fs::write(&vrt, edited.join("\n")).unwrap();
    let mixed = d.path().join("mixed.tif");
    common::run_tool(
        "gdal_translate",
        &["-q", vrt.to_str().unwrap(), mixed.to_str().unwrap()],
    );
    let enc = common::root().join("onnx/ukis_csmask/encoder.onnx");
    let head = common::root().join("onnx/ukis_csmask/head.onnx");
    let (enc, head) = (enc.to_str().unwrap(), head.to_str().unwrap());
    let (s, _, pred) = score(&mixed, &["--encoder", enc, "--head", head]);
    assert_eq!(
        matched_by(&s),
        [
            ("B02".to_string(), 3, "colour_interpretation".to_string()),
            ("B03".into(), 2, "colour_interpretation".into()),
            ("B04".into(), 1, "colour_interpretation".into()),
            ("B08".into(), 4, "band_metadata".into()),
            ("B11".into(), 5, "description".into()),
            ("B12".into(), 6, "description".into())
        ]
    );
    let orig = d.path().join("orig.tif");
    let (_, _, base6) = score(&orig, &["--encoder", enc, "--head", head]);
    assert_eq!(pred, base6);
}
