//! Many STAC items at once (issue 14): an ItemCollection and a folder of item files
//! score item by item into `OUT/<item id>/` with `OUT/items.json`, a broken item is
//! reported without stopping the others, and an item's properties and `raster:bands`
//! choose the sensor preset and the L2A offset. Items are written by the test over real
//! single-band files cut from the sample scene with `gdal_translate`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// `gdal_translate` band `band` of the sample's window at (`x`, `y`), `size` px square,
/// into `dir/name` (extra `args` before the files, e.g. a `-scale`).
fn band_file(dir: &Path, name: &str, band: u32, window: (u32, u32, u32), args: &[&str]) {
    let sample = common::sample_scene();
    let (b, x, y, s) = (
        band.to_string(),
        window.0.to_string(),
        window.1.to_string(),
        window.2.to_string(),
    );
    let mut all = vec!["-q", "-b", &b, "-srcwin", &x, &y, &s, &s];
    all.extend(args);
    let out = dir.join(name);
    all.extend([sample.to_str().unwrap(), out.to_str().unwrap()]);
    common::run_tool("gdal_translate", &all);
}

/// The true-colour bands of a window as `prefix_b02.tif` … `prefix_b04.tif`.
fn rgb_files(dir: &Path, prefix: &str, window: (u32, u32, u32), args: &[&str]) {
    for band in [2, 3, 4] {
        band_file(dir, &format!("{prefix}_b0{band}.tif"), band, window, args);
    }
}

/// A STAC 1.0 item `id` over `prefix_b0N.tif` (hrefs relative to `href_dir`), with
/// `properties` and, on every asset, `raster` as its `raster:bands` entry.
fn item(id: &str, href_dir: &str, prefix: &str, properties: Value, raster: Option<Value>) -> Value {
    let mut assets = serde_json::Map::new();
    for (key, band) in [("blue", 2), ("green", 3), ("red", 4)] {
        let mut a = json!({
            "href": format!("{href_dir}{prefix}_b0{band}.tif"),
            "roles": ["data"],
            "eo:bands": [{"common_name": key}],
        });
        if let Some(r) = &raster {
            a["raster:bands"] = json!([r]);
        }
        assets.insert(key.to_string(), a);
    }
    let mut props = json!({"datetime": "2023-06-01T15:50:00Z"});
    if let (Some(p), Some(extra)) = (props.as_object_mut(), properties.as_object()) {
        p.extend(extra.clone());
    }
    json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "id": id,
        "geometry": null,
        "properties": props,
        "links": [],
        "assets": assets,
    })
}

fn write(path: &Path, v: &Value) -> PathBuf {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    path.to_path_buf()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `nexttile score input -o out` (demo models, T = 1) with `extra` flags: exit code and
/// stdout + stderr.
fn score(input: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "score",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mc-passes",
        "1",
    ];
    args.extend(extra);
    let (code, stdout, stderr) = common::run_nexttile(&args);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (code, format!("{stdout}\n{stderr}"))
}

/// Predicted class per tile id in `dir/tiles.csv`.
fn predicted(dir: &Path) -> BTreeMap<String, String> {
    let csv = std::fs::read_to_string(dir.join("tiles.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let id = header.iter().position(|h| *h == "tile_id").unwrap();
    let class = header.iter().position(|h| *h == "predicted_class").unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[id].to_string(), f[class].to_string())
        })
        .collect()
}

/// Each item's (id, status, folder, error) in `out/items.json`.
fn statuses(out: &Path) -> Vec<(String, String, Value, String)> {
    let index = read_json(&out.join("items.json"));
    index["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["folder"].clone(),
                i["error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The heatmap's geotransform and CRS (EPSG code), read with GDAL.
fn georeference(heatmap: &Path) -> ([f64; 6], Option<i32>) {
    let ds = gdal::Dataset::open(heatmap).unwrap();
    let srs = ds.spatial_ref().unwrap();
    (ds.geo_transform().unwrap(), srs.auth_code().ok())
}

#[test]
fn an_item_collection_and_a_folder_score_item_by_item() {
    let dir = common::tempdir();
    let d = dir.path();
    // Two real windows of the sample: its 640 px north-west corner, and a 320 px crop
    // east of it; the sample's origin is (435730, 4179460), 10 m pixels, UTM 18N.
    rgb_files(d, "corner", (0, 0, 640), &[]);
    rgb_files(d, "east", (640, 0, 320), &[]);
    let corner = item("S2B_corner", "", "corner", json!({}), None);
    let east = item("east/strip 1", "", "east", json!({}), None);
    let broken = item("broken", "", "missing", json!({}), None);
    let collection = write(
        &d.join("collection.json"),
        &json!({"type": "FeatureCollection", "features": [corner, east, broken]}),
    );
    let out = d.join("out");
    let cache = d.join("cache");
    let cache_flag = ["--cache-dir", cache.to_str().unwrap()];
    let (code, text) = score(&collection, &out, &cache_flag);
    assert_eq!(code, 3, "{text}");
    for needle in [
        "1 of 3 STAC items were not scored",
        "missing_b02.tif, which does not exist",
        "items.json",
    ] {
        assert!(text.contains(needle), "expected '{needle}' in {text}");
    }
    let got = statuses(&out);
    let summary: Vec<(&str, &str, Value)> = got
        .iter()
        .map(|(id, s, f, _)| (id.as_str(), s.as_str(), f.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("S2B_corner", "scored", json!("S2B_corner")),
            ("east/strip 1", "scored", json!("east_strip_1")),
            ("broken", "refused", Value::Null),
        ]
    );
    assert!(
        got[2].3.contains("collection.json#broken: asset 'blue'"),
        "{got:?}"
    );
    let index = read_json(&out.join("items.json"));
    assert_eq!(index["source"], "item_collection");
    assert_eq!(index["items"][2]["exit_code"], 3);
    // Each good item's outputs, on its own window's grid.
    for (folder, id, tiles, x0) in [
        ("S2B_corner", "S2B_corner", 100, 435_730.0),
        ("east_strip_1", "east/strip 1", 25, 435_730.0 + 6_400.0),
    ] {
        let s = read_json(&out.join(folder).join("summary.json"));
        assert_eq!(s["scene"]["stac_item"], id, "{s}");
        assert_eq!(s["scored_tiles"], tiles, "{s}");
        assert_eq!(s["embeddings_from_cache"], false);
        let (gt, epsg) = georeference(&out.join(folder).join("heatmap.tif"));
        assert_eq!(
            (gt[0], gt[3], epsg),
            (x0, 4_179_460.0, Some(32618)),
            "{folder}"
        );
        assert!(out.join(folder).join("suggestions.geojson").is_file());
    }

    // Again: every item's embeddings come from the cache, per item.
    let again = d.join("again");
    let (code, text) = score(&collection, &again, &cache_flag);
    assert_eq!(code, 3, "{text}");
    for folder in ["S2B_corner", "east_strip_1"] {
        let s = read_json(&again.join(folder).join("summary.json"));
        assert_eq!(s["embeddings_from_cache"], true, "{folder}: {s}");
        assert_eq!(predicted(&again.join(folder)), predicted(&out.join(folder)));
    }

    // The same items as files of a folder (sorted by name), with a JSON file that is no
    // item: the same per-item results, and a note for the other file.
    let items = d.join("items");
    std::fs::create_dir(&items).unwrap();
    for (name, doc) in [
        (
            "1-corner.json",
            item("S2B_corner", "../", "corner", json!({}), None),
        ),
        (
            "2-east.json",
            item("east/strip 1", "../", "east", json!({}), None),
        ),
        (
            "3-broken.json",
            item("broken", "../", "missing", json!({}), None),
        ),
        ("0-style.json", json!({"name": "not an item"})),
    ] {
        write(&items.join(name), &doc);
    }
    let from_folder = d.join("from_folder");
    let (code, text) = score(&items, &from_folder, &["--no-cache"]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("0-style.json is not a STAC item"), "{text}");
    let folder_got = statuses(&from_folder);
    let same: Vec<_> = folder_got.iter().map(|(i, s, f, _)| (i, s, f)).collect();
    assert_eq!(
        same,
        got.iter().map(|(i, s, f, _)| (i, s, f)).collect::<Vec<_>>()
    );
    assert!(
        folder_got[2]
            .3
            .contains("missing_b02.tif, which does not exist")
    );
    assert_eq!(
        read_json(&from_folder.join("items.json"))["source"],
        "folder"
    );
    for folder in ["S2B_corner", "east_strip_1"] {
        assert_eq!(
            predicted(&from_folder.join(folder)),
            predicted(&out.join(folder)),
            "{folder}"
        );
    }
}

#[test]
fn collections_and_folders_that_cannot_be_scored_are_refused() {
    let dir = common::tempdir();
    let d = dir.path();
    rgb_files(d, "corner", (0, 0, 320), &[]);
    let out = d.join("out");
    let empty = write(
        &d.join("empty.json"),
        &json!({"type": "FeatureCollection", "stac_version": "1.0.0", "features": []}),
    );
    let (code, text) = score(&empty, &out, &[]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("holds no items (features is empty)"),
        "{text}"
    );

    let notes = d.join("notes");
    std::fs::create_dir(&notes).unwrap();
    write(&notes.join("a.json"), &json!({"hello": 1}));
    std::fs::write(notes.join("b.json"), "not json").unwrap();
    let (code, text) = score(&notes, &out, &[]);
    assert_eq!(code, 3, "{text}");
    for needle in [
        "holds 2 JSON file(s) and no STAC item",
        "a.json: no stac_version",
        "b.json: not JSON",
        "give a folder of STAC Item files",
    ] {
        assert!(text.contains(needle), "expected '{needle}' in {text}");
    }

    // Items that share an id are both refused; the third is scored.
    let a = item("twin", "", "corner", json!({}), None);
    let c = item("other", "", "corner", json!({}), None);
    let twins = write(
        &d.join("twins.json"),
        &json!({"type": "FeatureCollection", "features": [a.clone(), a, c]}),
    );
    let (code, text) = score(&twins, &out, &["--no-cache"]);
    assert_eq!(code, 3, "{text}");
    let got = statuses(&out);
    assert_eq!(
        got.iter().map(|g| g.1.as_str()).collect::<Vec<_>>(),
        ["refused", "refused", "scored"]
    );
    assert!(
        got[0]
            .3
            .contains("2 items have the id 'twin' (feature 1, feature 2)")
            && got[0].3.contains("give each item its own id"),
        "{got:?}"
    );

    let labels = write(
        &d.join("labels.geojson"),
        &json!({"type": "FeatureCollection", "features": [{"type": "Feature",
            "properties": {"class": "Forest"},
            "geometry": {"type": "Point", "coordinates": [-75.7, 37.7]}}]}),
    );
    let (code, text) = score(
        &twins,
        &out,
        &[
            "--labelled",
            labels.to_str().unwrap(),
            "--retrain",
            "--save-head",
            "h.safetensors",
        ],
    );
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("--save-head names one file"), "{text}");
}

#[test]
fn the_sensor_and_the_l2a_offset_come_from_the_item() {
    let dir = common::tempdir();
    let d = dir.path();
    // The sample's 640 px corner as L1C (the reference) and as an L2A copy of baseline
    // 04.00 or later: DN + 1000, no nodata.
    rgb_files(d, "l1c", (0, 0, 640), &[]);
    let offset = ["-scale", "0", "10000", "1000", "11000", "-a_nodata", "none"];
    rgb_files(d, "l2a", (0, 0, 640), &offset);
    let items = d.join("items");
    std::fs::create_dir(&items).unwrap();
    let by_properties = json!({"platform": "sentinel-2b", "processing:level": "L2A",
        "s2:processing_baseline": "05.10"});
    let raster = json!({"data_type": "uint16", "scale": 0.0001, "offset": -0.1});
    for (name, doc) in [
        ("a.json", item("reference", "../", "l1c", json!({}), None)),
        (
            "b.json",
            item("by-properties", "../", "l2a", by_properties.clone(), None),
        ),
        (
            "c.json",
            item("by-raster-bands", "../", "l2a", json!({}), Some(raster)),
        ),
        (
            "d.json",
            item(
                "no-baseline",
                "../",
                "l2a",
                json!({"platform": "sentinel-2b", "processing:level": "L2A"}),
                None,
            ),
        ),
    ] {
        write(&items.join(name), &doc);
    }
    let out = d.join("out");
    let (code, text) = score(&items, &out, &["--no-cache"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("sensor:      s2-l2a (STAC properties: platform sentinel-2b, processing:level L2A, s2:processing_baseline 05.10;"),
        "{text}"
    );
    let summary = |id: &str| read_json(&out.join(id).join("summary.json"));
    let reference = predicted(&out.join("reference"));
    assert_eq!(reference.len(), 100);
    assert!(summary("reference")["input"]["sensor"].is_null());

    let s = summary("by-properties");
    assert_eq!(s["input"]["sensor"]["name"], "s2-l2a", "{s}");
    assert_eq!(
        s["input"]["sensor"]["source"],
        "STAC properties: platform sentinel-2b, processing:level L2A, s2:processing_baseline 05.10"
    );
    assert_eq!(s["input"]["scaling"]["source"], "sensor_preset:s2-l2a");
    let offset = s["input"]["scaling"]["offset"].as_f64().unwrap();
    assert!((offset + 1000.0 / 2800.0).abs() < 1e-5, "{offset}");
    assert_eq!(predicted(&out.join("by-properties")), reference);

    let s = summary("by-raster-bands");
    assert_eq!(s["input"]["sensor"]["name"], "stac", "{s}");
    assert_eq!(
        s["input"]["sensor"]["source"],
        "STAC properties: raster:bands scale 0.0001, offset -0.1"
    );
    assert_eq!(predicted(&out.join("by-raster-bands")), reference);

    // Without a baseline the offset is not guessed: the run says what to do.
    let s = summary("no-baseline");
    assert!(s["input"]["sensor"].is_null(), "{s}");
    assert!(s["warnings"].to_string().contains("--sensor s2-l2a"), "{s}");

    // The user's flags win over the item.
    let one = write(
        &d.join("one.json"),
        &item("x", "", "l2a", by_properties, None),
    );
    let flagged = d.join("flagged");
    let (code, text) = score(&one, &flagged, &["--no-cache", "--input-offset", "0"]);
    assert_eq!(code, 0, "{text}");
    let s = read_json(&flagged.join("summary.json"));
    assert!(s["input"]["sensor"].is_null(), "{s}");
    assert_eq!(s["input"]["scaling"]["source"], "model + --input-offset");
    let (code, text) = score(&one, &flagged, &["--no-cache", "--sensor", "s2-l1c"]);
    assert_eq!(code, 0, "{text}");
    let s = read_json(&flagged.join("summary.json"));
    assert_eq!(s["input"]["sensor"]["source"], "--sensor", "{s}");
}
