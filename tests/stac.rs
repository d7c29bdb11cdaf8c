//! STAC items as scenes (issue 14): items written by the test over real
//! single-band files cut from the sample scene with `gdal_translate -b N`
//! (band descriptions removed, so the names can only come from the item).
//! The stacked item must predict exactly what the sample window predicts, and
//! items NextTile cannot read locally are refused with what to do.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// `gdal_translate` band `band` of the sample's 960 × 960 px window into
/// `dir/name` without its band description, optionally at `res` metres.
fn band_file(dir: &Path, name: &str, band: u32, res: Option<&str>) -> PathBuf {
    let sample = common::sample_scene();
    let vrt = dir.join(format!("{name}.vrt"));
    let b = band.to_string();
    common::run_tool(
        "gdal_translate",
        &[
            "-q",
            "-of",
            "VRT",
            "-b",
            &b,
            "-srcwin",
            "0",
            "0",
            "960",
            "960",
            sample.to_str().unwrap(),
            vrt.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&vrt).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("<Description>"))
        .collect();
    std::fs::write(&vrt, kept.join("\n")).unwrap();
    let out = dir.join(name);
    match res {
        None => common::run_tool(
            "gdal_translate",
            &["-q", vrt.to_str().unwrap(), out.to_str().unwrap()],
        ),
        Some(r) => common::run_tool(
            "gdalwarp",
            &[
                "-q",
                "-tr",
                r,
                r,
                "-r",
                "average",
                vrt.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        ),
    }
    out
}

/// The window itself (with its descriptions), the reference.
fn window(dir: &Path) -> PathBuf {
    let out = dir.join("window.tif");
    let sample = common::sample_scene();
    common::run_tool(
        "gdal_translate",
        &[
            "-q",
            "-srcwin",
            "0",
            "0",
            "960",
            "960",
            sample.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    out
}

fn item(assets: Value) -> Value {
    json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "id": "chincoteague-window",
        "geometry": null,
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": assets,
    })
}

fn write(path: &Path, v: &Value) -> PathBuf {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    path.to_path_buf()
}

/// Score (default models, T = 1, no cache): exit code, summary, stderr and
/// predicted class per tile id.
fn score(scene: &Path) -> (i32, Value, String, HashMap<String, String>) {
    let out = common::tempdir();
    let (code, stdout, stderr) = common::run_nexttile(&[
        "score",
        scene.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--mc-passes",
        "1",
        "--no-cache",
        "--quiet",
    ]);
    if code != 0 {
        return (code, Value::Null, stderr, HashMap::new());
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
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
    (code, summary, format!("{stderr}\n{stdout}"), predicted)
}

#[test]
fn a_stac_1_0_item_with_relative_hrefs_scores_like_the_window() {
    let dir = common::tempdir();
    let d = dir.path();
    for (name, band) in [
        ("b02.tif", 2),
        ("b03.tif", 3),
        ("b04.tif", 4),
        ("b08.tif", 8),
    ] {
        band_file(d, name, band, None);
    }
    let it = write(
        &d.join("item.json"),
        &item(json!({
            "thumbnail": {"href": "https://example.com/thumb.png", "roles": ["thumbnail"]},
            "blue": {"href": "b02.tif", "roles": ["data"], "eo:bands": [{"name": "B02", "common_name": "blue"}]},
            "green": {"href": "./b03.tif", "roles": ["data"], "eo:bands": [{"name": "B03", "common_name": "green"}]},
            "red": {"href": "b04.tif", "roles": ["data"], "eo:bands": [{"name": "B04", "common_name": "red"}]},
            "nir": {"href": "b08.tif", "roles": ["data"], "eo:bands": [{"name": "B08", "common_name": "nir"}]},
        })),
    );
    let (code, summary, text, predicted) = score(&it);
    assert_eq!(code, 0, "{text}");
    let (_, reference, _, expected) = score(&window(d));
    let matching: Vec<(String, String)> = summary["scene"]["band_matching"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["model_band"].as_str().unwrap().to_string(),
                m["matched_by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        matching,
        [
            ("B04", "stac_asset:red"),
            ("B03", "stac_asset:green"),
            ("B02", "stac_asset:blue")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(summary["scene"]["stac"].as_array().unwrap().len(), 4);
    assert_eq!(summary["scene"]["width"], reference["scene"]["width"]);
    let same = expected
        .iter()
        .filter(|(id, c)| predicted.get(*id) == Some(c))
        .count();
    println!(
        "STAC 1.0 item vs the window: same predicted class on {same} of {} tiles",
        expected.len()
    );
    assert_eq!(expected.len(), 225);
    assert_eq!(same, expected.len());
}

#[test]
fn a_stac_1_1_item_with_absolute_hrefs_and_a_coarser_asset_scores_like_the_window() {
    let dir = common::tempdir();
    let d = dir.path();
    let abs = |p: PathBuf| p.canonicalize().unwrap().display().to_string();
    let red = abs(band_file(d, "red.tif", 4, None));
    let green = abs(band_file(d, "green.tif", 3, None));
    let blue = abs(band_file(d, "blue.tif", 2, None));
    // A 20 m SWIR band the RGB encoder does not use: the stack keeps the
    // finest (10 m) grid.
    let swir = abs(band_file(d, "swir.tif", 11, Some("20")));
    let it = write(
        &d.join("item11.json"),
        &json!({
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": "w",
            "geometry": null,
            "properties": {"datetime": "2020-01-01T00:00:00Z"},
            "links": [],
            "assets": {
                "swir16": {"href": swir, "bands": [{"name": "B11", "eo:common_name": "swir16"}]},
                "red": {"href": format!("file://{red}"), "bands": [{"name": "SR_B4", "eo:common_name": "red"}]},
                "green": {"href": green, "bands": [{"name": "green band", "eo:common_name": "green"}]},
                "blue": {"href": blue, "bands": [{"name": "B02"}]},
            },
        }),
    );
    let (code, summary, text, predicted) = score(&it);
    assert_eq!(code, 0, "{text}");
    assert_eq!(summary["scene"]["width"], 960, "{summary}");
    assert_eq!(summary["scene"]["pixel_size"], json!([10.0, 10.0]));
    let (_, _, _, expected) = score(&window(d));
    let same = expected
        .iter()
        .filter(|(id, c)| predicted.get(*id) == Some(c))
        .count();
    println!(
        "STAC 1.1 item vs the window: same predicted class on {same} of {} tiles",
        expected.len()
    );
    assert_eq!(same, expected.len());
}

#[test]
fn items_that_cannot_be_read_locally_are_refused() {
    let dir = common::tempdir();
    let d = dir.path();
    let b04 = band_file(d, "b04.tif", 4, None);
    let wgs84 = d.join("b02_wgs84.tif");
    common::run_tool(
        "gdalwarp",
        &[
            "-q",
            "-t_srs",
            "EPSG:4326",
            b04.to_str().unwrap(),
            wgs84.to_str().unwrap(),
        ],
    );
    let with_red = |href: &str| {
        item(json!({
            "red": {"href": href, "eo:bands": [{"common_name": "red"}]},
        }))
    };
    let cases: [(Value, &[&str]); 6] = [
        (
            with_red("https://example.com/B04.tif"),
            &[
                "asset 'red' is at https://example.com/B04.tif, which is not a local file",
                "download them",
            ],
        ),
        (
            with_red("/vsicurl/https://example.com/B04.tif"),
            &["is at /vsicurl/", "not a local file"],
        ),
        (
            with_red("missing.tif"),
            &["missing.tif, which does not exist", "check the href"],
        ),
        (
            json!({"type": "FeatureCollection", "stac_version": "1.0.0", "features": []}),
            &[
                "this STAC ItemCollection holds no items",
                "nothing to score",
            ],
        ),
        (
            item(json!({
                "blue": {"href": "b02_wgs84.tif", "eo:bands": [{"common_name": "blue"}]},
                "red": {"href": "b04.tif", "eo:bands": [{"common_name": "red"}]},
            })),
            &[
                "assets 'blue' and 'red' are in different CRSs",
                "gdalwarp -t_srs",
            ],
        ),
        (
            item(json!({"data": {"href": "b04.tif"}})),
            &["names no band", "eo:bands", "gdalbuildvrt -separate"],
        ),
    ];
    for (i, (doc, expected)) in cases.iter().enumerate() {
        let p = write(&d.join(format!("bad{i}.json")), doc);
        let (code, _, stderr, _) = score(&p);
        assert_eq!(code, 3, "{doc}: {stderr}");
        for e in *expected {
            assert!(stderr.contains(e), "{doc}: expected '{e}' in {stderr}");
        }
    }
}
