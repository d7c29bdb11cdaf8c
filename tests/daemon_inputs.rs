//! Issue 14 through the daemon: `POST /projects/{id}/scenes` takes `sensor`,
//! `resample`, `input_scale`/`input_offset` and STAC items (their assets
//! confined to the raster roots; an ItemCollection or a folder of items adds each
//! item as a scene), counts tiles on the resampled grid, and the
//! job result carries the input warnings. The real daemon binary on a free
//! loopback port, over rasters cut from the real sample scene.

mod common;

use common::daemon::Daemon;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// `gdal_translate` the sample's 640 × 640 px corner with `args` into `dir/name`.
fn cut(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let sample = common::sample_scene();
    let mut all = vec!["-q", "-srcwin", "0", "0", "640", "640"];
    all.extend(args);
    all.push(sample.to_str().unwrap());
    all.push(out.to_str().unwrap());
    common::run_tool("gdal_translate", &all);
    out
}

fn stac_item(assets: Value) -> Value {
    json!({"type": "Feature", "stac_version": "1.0.0", "id": "corner", "geometry": null,
        "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [], "assets": assets})
}

#[test]
fn stac_items_score_through_the_daemon_with_their_assets_under_the_roots() {
    let tmp = common::tempdir();
    let rasters = tmp.path().join("rasters");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&rasters).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    for (name, band) in [("b04.tif", "4"), ("b03.tif", "3"), ("b02.tif", "2")] {
        cut(&rasters, name, &["-b", band]);
    }
    let asset =
        |href: &str, common: &str| json!({"href": href, "eo:bands": [{"common_name": common}]});
    let item = rasters.join("item.json");
    let doc = stac_item(json!({"red": asset("b04.tif", "red"),
        "green": asset("b03.tif", "green"), "blue": asset("b02.tif", "blue")}));
    std::fs::write(&item, doc.to_string()).unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &rasters, None);
    let pid = d.project();
    let result = d.score(pid, &json!({"path": item.to_str().unwrap()}));
    let matched: Vec<&str> = result["scene"]["band_matching"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["matched_by"].as_str())
        .collect();
    assert_eq!(
        matched,
        ["stac_asset:red", "stac_asset:green", "stac_asset:blue"],
        "{result}"
    );
    assert_eq!(result["scored_tiles"].as_u64(), Some(100), "{result}");

    // An asset outside the roots is refused before GDAL opens it, and nothing is kept.
    let escaped = cut(&outside, "b04.tif", &["-b", "4"]);
    let bad = rasters.join("escape.json");
    let doc = stac_item(json!({"red": asset(escaped.to_str().unwrap(), "red"),
        "green": asset("b03.tif", "green"), "blue": asset("b02.tif", "blue")}));
    std::fs::write(&bad, doc.to_string()).unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": bad.to_str().unwrap()}),
    );
    assert_eq!(code, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("outside"), "{v}");
    let (_, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    assert_eq!(scenes.as_array().map(Vec::len), Some(1), "{scenes}");
}

#[test]
fn sensor_and_scaling_reach_the_job_and_its_warnings_the_result() {
    let tmp = common::tempdir();
    let rasters = tmp.path().join("rasters");
    std::fs::create_dir_all(&rasters).unwrap();
    let mut args: Vec<&str> = common::TRUE_COLOUR_BANDS.to_vec();
    args.extend(common::TO_8_BIT);
    args.extend(["-colorinterp", "red,green,blue"]);
    let rgb8 = cut(&rasters, "rgb8.tif", &args);
    let d = Daemon::start(&tmp.path().join("data"), &rasters, None);
    let pid = d.project();
    let path = rgb8.to_str().unwrap();

    // Fed with the reflectance scale, the job result says why the scores are nonsense.
    let plain = d.score(pid, &json!({"path": path}));
    let warnings = plain["warnings"].to_string();
    assert!(warnings.contains("8-bit display image"), "{warnings}");
    assert!(warnings.contains("--sensor rgb"), "{warnings}");

    // With the rgb preset: 0–255 onto the encoder's [0, 1], as the CLI does.
    let rgb = d.score(pid, &json!({"path": path, "sensor": "rgb"}));
    assert_eq!(
        rgb["input"]["scaling"]["source"], "sensor_preset:rgb",
        "{rgb}"
    );
    let scale = rgb["input"]["scaling"]["scale"].as_f64().unwrap();
    assert!((scale - 1.0 / 255.0).abs() < 1e-6, "{scale}");
    let (_, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    assert_eq!(scenes[1]["input"], json!({"sensor": "rgb"}), "{scenes}");
    assert_eq!(scenes[0]["input"], json!({}), "{scenes}");

    // An explicit scale and offset replace the model's.
    let scaled = d.score(
        pid,
        &json!({"path": path, "input_scale": 0.004, "input_offset": 0.0, "resample": "off"}),
    );
    let s = scaled["input"]["scaling"]["scale"].as_f64().unwrap();
    assert!((s - 0.004).abs() < 1e-6, "{scaled}");
    assert_eq!(scaled["scene"]["resampling"]["mode"], "off", "{scaled}");

    for (body, want) in [
        (
            json!({"path": path, "sensor": "sentinel-3"}),
            "is not a preset",
        ),
        (
            json!({"path": path, "resample": "banana"}),
            "resample must be auto, off",
        ),
        (
            json!({"path": path, "input_scale": 0.0}),
            "input_scale must be",
        ),
    ] {
        let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &body);
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{want}: {v}");
    }
}

#[test]
fn max_tiles_counts_the_resampled_grid() {
    let tmp = common::tempdir();
    let rasters = tmp.path().join("rasters");
    std::fs::create_dir_all(&rasters).unwrap();
    // 6 km of the sample's corner at 30 m: 200 × 200 px, 9 tiles of 64 px as it
    // is, 81 once `auto` brings it to the demo encoder's 10 m.
    let window = cut(&rasters, "window.tif", &[]);
    let coarse = rasters.join("coarse30.tif");
    common::run_tool(
        "gdalwarp",
        &[
            "-q",
            "-tr",
            "30",
            "30",
            "-r",
            "average",
            "-te",
            "435730",
            "4173460",
            "441730",
            "4179460",
            window.to_str().unwrap(),
            coarse.to_str().unwrap(),
        ],
    );
    let d = Daemon::start(&tmp.path().join("data"), &rasters, Some("max_tiles = 50\n"));
    let pid = d.project();
    let path = coarse.to_str().unwrap();
    let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &json!({"path": path}));
    assert_eq!(code, 413, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("81 tiles of 64 px") && msg.contains("limit of 50"),
        "{v}"
    );
    // Not resampled, its own grid fits.
    let result = d.score(pid, &json!({"path": path, "resample": "off"}));
    assert_eq!(result["scored_tiles"].as_u64(), Some(9), "{result}");
}

#[test]
fn an_item_collection_or_a_folder_of_items_adds_each_item_as_a_scene() {
    let tmp = common::tempdir();
    let rasters = tmp.path().join("rasters");
    let items = rasters.join("items");
    std::fs::create_dir_all(&items).unwrap();
    for (name, band) in [("b04.tif", "4"), ("b03.tif", "3"), ("b02.tif", "2")] {
        cut(&rasters, name, &["-b", band]);
    }
    let asset =
        |href: &str, common: &str| json!({"href": href, "eo:bands": [{"common_name": common}]});
    let doc = |id: &str, dir: &str, red: &str| {
        let mut d = stac_item(json!({"red": asset(&format!("{dir}{red}"), "red"),
            "green": asset(&format!("{dir}b03.tif"), "green"),
            "blue": asset(&format!("{dir}b02.tif"), "blue")}));
        d["id"] = json!(id);
        d
    };
    let collection = rasters.join("collection.json");
    let features = json!([doc("first", "", "b04.tif"), doc("second", "", "b04.tif")]);
    std::fs::write(
        &collection,
        json!({"type": "FeatureCollection", "features": features}).to_string(),
    )
    .unwrap();
    std::fs::write(items.join("a.json"), doc("a", "../", "b04.tif").to_string()).unwrap();
    std::fs::write(items.join("b.json"), doc("b", "../", "b04.tif").to_string()).unwrap();
    std::fs::write(items.join("readme.json"), "{}").unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &rasters, None);
    let pid = d.project();

    for (path, ids) in [
        (collection.to_str().unwrap(), ["first", "second"]),
        (items.to_str().unwrap(), ["a", "b"]),
    ] {
        let (code, added) = d.post(&format!("/projects/{pid}/scenes"), &json!({"path": path}));
        assert_eq!(code, 202, "{added}");
        let jobs: Vec<i64> = added["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j.as_i64().unwrap())
            .collect();
        assert_eq!(jobs.len(), 2, "{added}");
        for (job, id) in jobs.iter().zip(ids) {
            let result = d.wait(*job);
            assert_eq!(result["scene"]["stac_item"], id, "{result}");
            assert_eq!(result["scored_tiles"].as_u64(), Some(100), "{result}");
        }
    }
    let (_, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    let listed: Vec<(String, Value)> = scenes
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_string(),
                s["input"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("scored".to_string(), json!({"item": "first"})),
            ("scored".into(), json!({"item": "second"})),
            ("scored".into(), json!({})),
            ("scored".into(), json!({})),
        ],
        "{scenes}"
    );
    // An item of a collection is rescored as it was added: its own item.
    let second = scenes[1]["id"].as_i64().unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes/{second}/rescore"),
        &json!({}),
    );
    assert_eq!(code, 202, "{v}");
    let result = d.wait(v["job"].as_i64().unwrap());
    assert_eq!(result["scene"]["stac_item"], "second", "{result}");
    assert_eq!(result["embeddings_from_cache"], true, "{result}");

    // One broken item: 422 naming it, and nothing of the collection is added.
    let broken = rasters.join("broken.json");
    let features = json!([doc("fine", "", "b04.tif"), doc("lost", "", "missing.tif")]);
    std::fs::write(
        &broken,
        json!({"type": "FeatureCollection", "features": features}).to_string(),
    )
    .unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": broken.to_str().unwrap()}),
    );
    assert_eq!(code, 422, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("item 'lost'")
            && msg.contains("does not exist")
            && msg.contains("no scene was added"),
        "{v}"
    );
    // A folder without item files.
    let empty = rasters.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": empty.to_str().unwrap()}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("folder without .json files"),
        "{v}"
    );
    // More items than one request adds: refused before any is read.
    let many = rasters.join("many");
    std::fs::create_dir(&many).unwrap();
    for n in 0..101 {
        let item = doc(&format!("i{n:03}"), "../", "b04.tif");
        std::fs::write(many.join(format!("i{n:03}.json")), item.to_string()).unwrap();
    }
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": many.to_str().unwrap()}),
    );
    assert_eq!(code, 413, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("holds 101 STAC items, more than the 100"),
        "{v}"
    );
    let (_, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    assert_eq!(scenes.as_array().map(Vec::len), Some(4), "{scenes}");
}
