//! Bad input: every case exits with code 3 and a message naming the problem
//! and the fix. Runs the real binary.

mod common;

use std::path::Path;
use std::process::Command;

/// Run `nexttile score <scene> ...` and return (exit code, stderr).
fn score(scene: &Path, extra: &[&str]) -> (i32, String) {
    let out = common::tempdir();
    let o = Command::new(common::bin())
        .arg("score")
        .arg(scene)
        .arg("--out")
        .arg(out.path())
        .args(["--encoder", common::encoder().to_str().unwrap()])
        .args(["--head", common::head().to_str().unwrap()])
        .args(["--mc-passes", "2", "--quiet"])
        .args(extra)
        .output()
        .expect("run nexttile");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_bad(res: (i32, String), needles: &[&str]) {
    let (code, err) = res;
    assert_eq!(code, 3, "exit code for: {err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

const UTM: Option<[f64; 6]> = Some([435_730.0, 10.0, 0.0, 4_179_460.0, 0.0, -10.0]);

#[test]
fn missing_file() {
    assert_bad(
        score(Path::new("/nonexistent/scene.tif"), &[]),
        &["no such file", "/nonexistent/scene.tif"],
    );
}

#[test]
fn not_a_raster() {
    let d = common::tempdir();
    let p = d.path().join("notes.tif");
    std::fs::write(&p, "this is not a GeoTIFF").unwrap();
    assert_bad(score(&p, &[]), &["not a raster GDAL can read"]);
}

#[test]
fn raster_without_crs() {
    let d = common::tempdir();
    let p = d.path().join("nocrs.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B03", "B02"],
        1000,
        None,
        UTM,
        None,
    );
    assert_bad(
        score(&p, &[]),
        &["no coordinate reference system", "gdal_edit.py -a_srs"],
    );
}

#[test]
fn raster_without_geotransform() {
    let d = common::tempdir();
    let p = d.path().join("nogt.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B03", "B02"],
        1000,
        Some(32618),
        None,
        None,
    );
    assert_bad(score(&p, &[]), &["no geotransform"]);
}

#[test]
fn fewer_bands_than_the_model_needs() {
    let d = common::tempdir();
    let p = d.path().join("two_bands.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B08"],
        1000,
        Some(32618),
        UTM,
        None,
    );
    assert_bad(
        score(&p, &[]),
        &["B03", "B02", "#1 B04", "#2 B08", "--bands"],
    );
}

#[test]
fn tile_size_the_model_cannot_take() {
    assert_bad(
        score(&common::sample_scene(), &["--tile-size", "40"]),
        &["tile size 40", "multiple of 16", "--tile-size 64"],
    );
}

#[test]
fn aoi_outside_the_scene() {
    let d = common::tempdir();
    let aoi = d.path().join("aoi.geojson");
    // a square in the Alps, far from Virginia
    std::fs::write(
        &aoi,
        r#"{"type":"Polygon","coordinates":[[[10,46],[10.1,46],[10.1,46.1],[10,46.1],[10,46]]]}"#,
    )
    .unwrap();
    assert_bad(
        score(&common::sample_scene(), &["--aoi", aoi.to_str().unwrap()]),
        &["does not overlap any whole tile", "check the AOI's CRS"],
    );
}

#[test]
fn all_nodata_scene() {
    let d = common::tempdir();
    let p = d.path().join("empty.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B03", "B02"],
        0,
        Some(32618),
        UTM,
        Some(0.0),
    );
    assert_bad(score(&p, &[]), &["all 4 candidate tiles are nodata"]);
}

#[test]
fn onnx_without_metadata() {
    let (code, err) = {
        let out = common::tempdir();
        let o = Command::new(common::bin())
            .args(["score", common::sample_scene().to_str().unwrap(), "--out"])
            .arg(out.path())
            .args([
                "--encoder",
                common::fixture("no_metadata.onnx").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_bad(
        (code, err),
        &["does not fit the NextTile model contract", "input_bands"],
    );
}

#[test]
fn unknown_strategy_lists_the_valid_ones() {
    let (code, err) = score(&common::sample_scene(), &["--strategy", "magic"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("mcfps") && err.contains("top_k"), "{err}");
}
