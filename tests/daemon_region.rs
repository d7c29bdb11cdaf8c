//! Region projects (issue 15) through the real daemon: a project with three scenes
//! cut from the real sample (two side by side in its UTM CRS, one reprojected to Web
//! Mercator), suggestions and a round with `"scope": "project"` over all of them, and
//! the region heatmap read back with GDAL.

mod common;

use std::path::{Path, PathBuf};

use common::daemon::Daemon;
use serde_json::{Value, json};

/// `gdal_translate` a 640 × 640 px window of the sample at column `x`, row `y` into
/// `dir/name`.
fn window(dir: &Path, name: &str, x: usize, y: usize) -> PathBuf {
    let out = dir.join(name);
    let sample = common::sample_scene();
    let (x, y) = (x.to_string(), y.to_string());
    common::run_tool(
        "gdal_translate",
        &[
            "-q",
            "-srcwin",
            &x,
            &y,
            "640",
            "640",
            sample.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    out
}

/// The three scenes: A and B side by side, C below A and warped to EPSG:3857 (nearest
/// neighbour, 10 m pixels).
fn three_scenes(dir: &Path) -> [PathBuf; 3] {
    let a = window(dir, "a.tif", 0, 0);
    let b = window(dir, "b.tif", 640, 0);
    let c_utm = window(dir, "c_utm.tif", 0, 640);
    let c = dir.join("c_3857.tif");
    common::run_tool(
        "gdalwarp",
        &[
            "-q",
            "-t_srs",
            "EPSG:3857",
            "-tr",
            "10",
            "10",
            "-r",
            "near",
            c_utm.to_str().unwrap(),
            c.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&c_utm).unwrap();
    [a, b, c]
}

/// Centre (lon, lat) of a suggestion's footprint, from its bbox.
fn centre(f: &Value) -> (f64, f64) {
    let [w, s, e, n] = bbox(f);
    ((w + e) / 2.0, (s + n) / 2.0)
}

/// A suggestion footprint's (west, south, east, north).
fn bbox(f: &Value) -> [f64; 4] {
    let ring = f["geometry"]["coordinates"][0].as_array().expect("a ring");
    let xs: Vec<f64> = ring.iter().map(|c| c[0].as_f64().unwrap()).collect();
    let ys: Vec<f64> = ring.iter().map(|c| c[1].as_f64().unwrap()).collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    [min(&xs), min(&ys), max(&xs), max(&ys)]
}

fn features(fc: &Value) -> &Vec<Value> {
    fc["features"].as_array().expect("features")
}

/// The `scene_id`s of a region FeatureCollection, in rank order.
fn scenes_of(fc: &Value) -> Vec<i64> {
    features(fc)
        .iter()
        .map(|f| f["properties"]["scene_id"].as_i64().expect("scene_id"))
        .collect()
}

/// Point labels at the centres of `picks`, classes taken in turn from `classes`.
fn point_labels(picks: &[&Value], classes: &[String]) -> Value {
    let features: Vec<Value> = picks
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (lon, lat) = centre(f);
            json!({"type": "Feature", "properties": {"class": classes[i % 3]},
                   "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// (tile id, score) of each suggestion.
fn ranked(fc: &Value) -> Vec<(String, String)> {
    features(fc)
        .iter()
        .map(|f| (f["id"].to_string(), f["properties"]["score"].to_string()))
        .collect()
}

/// GETs the region heatmap and opens it with GDAL: its path.
fn fetch_region_heatmap(d: &Daemon, pid: i64, tmp: &Path) -> PathBuf {
    let mut r = d
        .agent
        .get(&format!("{}/projects/{pid}/heatmap", d.base))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r
        .body_mut()
        .with_config()
        .limit(100 << 20)
        .read_to_vec()
        .unwrap();
    let path = tmp.join("region_heatmap.tif");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Checks a region heatmap: it opens in GDAL, is in scene A's CRS (the sample's UTM
/// 18N), has the scenes' bands and covers the centre of a scene-C tile (C was in Web
/// Mercator) with a value.
fn check_region_heatmap(path: &Path, bands: usize, c_tile: (f64, f64)) {
    let ds = gdal::Dataset::open(path).expect("the region heatmap opens in GDAL");
    let srs = ds.spatial_ref().unwrap();
    assert_eq!(
        srs.auth_code().ok(),
        Some(32618),
        "{}",
        srs.to_wkt().unwrap()
    );
    assert_eq!(ds.raster_count(), bands);
    let to_utm = gdal::spatial_ref::CoordTransform::new(
        &gdal::spatial_ref::SpatialRef::from_epsg(4326).unwrap(),
        &srs,
    )
    .unwrap();
    let (mut xs, mut ys) = ([c_tile.1], [c_tile.0]);
    to_utm
        .transform_coords(&mut xs, &mut ys, &mut [0.0])
        .unwrap();
    let gt = ds.geo_transform().unwrap();
    let col = ((xs[0] - gt[0]) / gt[1]).floor() as isize;
    let row = ((ys[0] - gt[3]) / gt[5]).floor() as isize;
    let (w, h) = ds.raster_size();
    assert!(
        (0..w as isize).contains(&col) && (0..h as isize).contains(&row),
        "scene C's tile at {c_tile:?} is outside the mosaic ({col}, {row} of {w} × {h})"
    );
    let band = ds.rasterband(1).unwrap();
    let v = band
        .read_as::<f32>((col, row), (1, 1), (1, 1), None)
        .unwrap();
    assert!(
        v.data()[0] >= 0.0,
        "no value at scene C's tile: {:?}",
        v.data()
    );
}

/// Adds each scene to project `pid` and waits for it to be scored; their ids.
fn add_scenes(d: &Daemon, pid: i64, scenes: &[PathBuf]) -> Vec<i64> {
    let mut ids = Vec::new();
    for s in scenes {
        let (code, added) = d.post(
            &format!("/projects/{pid}/scenes"),
            &json!({"path": s.display().to_string()}),
        );
        assert_eq!(code, 202, "{added}");
        d.wait(added["job"].as_i64().unwrap());
        ids.push(added["scene"]["id"].as_i64().unwrap());
    }
    ids
}

/// The first region selection: 12 picks ranked 1…12, all in the project's scenes, from
/// at least two of them.
fn check_first_selection(first: &Value, ids: &[i64]) {
    let picked = scenes_of(first);
    assert_eq!(picked.len(), 12, "{first}");
    let mut distinct = picked.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 2, "every pick from one scene: {picked:?}");
    assert!(picked.iter().all(|s| ids.contains(s)), "{picked:?}");
    let ranks: Vec<i64> = features(first)
        .iter()
        .map(|f| f["properties"]["rank"].as_i64().unwrap())
        .collect();
    assert_eq!(ranks, (1..=12).collect::<Vec<i64>>());
}

/// Labels in B and C on the round's most uncertain tiles there: no scene's labelled
/// tile (these and `a_picks`) is suggested again. The new suggestions.
fn label_more_and_reselect(
    d: &Daemon,
    pid: i64,
    round: &Value,
    a_picks: &[&Value],
    classes: &[String],
    a: i64,
    ask: &Value,
) -> Value {
    let top: Vec<&Value> = features(&round["suggestions"])
        .iter()
        .filter(|f| f["properties"]["scene_id"] != a)
        .take(4)
        .collect();
    assert_eq!(top.len(), 4, "{round}");
    let (code, stored) = d.post(
        &format!("/projects/{pid}/labels"),
        &point_labels(&top, classes),
    );
    assert_eq!(code, 201, "{stored}");
    let (code, last) = d.post(&format!("/projects/{pid}/suggestions"), ask);
    assert_eq!(code, 200, "{last}");
    let points: Vec<(f64, f64)> = a_picks.iter().chain(&top).map(|f| centre(f)).collect();
    for f in features(&last) {
        let [w, s, e, n] = bbox(f);
        for (x, y) in &points {
            assert!(
                !(w < *x && *x < e && s < *y && *y < n),
                "labelled ground ({x}, {y}) suggested again: {f}"
            );
        }
    }
    assert_eq!(features(&last).len(), 20);
    last
}

/// A deleted project's region files go with it: a new project that gets the same id
/// has no region suggestions to export, and its scenes' latest suggestions are gone.
fn check_delete_and_reuse(d: &Daemon, tmp: &Path, pid: i64, scene: &Path, ids: &[i64]) {
    let (code, _) = d.delete(&format!("/projects/{pid}"));
    assert_eq!(code, 204);
    let (code, again) = d.post("/projects", &json!({"name": "region again"}));
    assert_eq!(code, 201, "{again}");
    assert_eq!(
        again["id"].as_i64(),
        Some(pid),
        "SQLite reuses the highest id"
    );
    let (code, _) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": scene.display().to_string()}),
    );
    assert_eq!(code, 202);
    let (code, none) = d.get(&format!("/projects/{pid}/export?format=csv&scope=project"));
    assert_eq!(code, 409, "{none}");
    let data = tmp.join("data").join("suggestions");
    for id in ids {
        assert!(
            !data.join(id.to_string()).exists(),
            "scene {id}'s latest suggestions kept"
        );
    }
}

#[test]
fn a_region_project_selects_and_retrains_across_three_scenes() {
    let tmp = common::tempdir();
    let rasters = tmp.path().join("rasters");
    std::fs::create_dir_all(&rasters).unwrap();
    let scenes = three_scenes(&rasters);
    let d = Daemon::start(&tmp.path().join("data"), &rasters, None);
    let (code, project) = d.post("/projects", &json!({"name": "region"}));
    assert_eq!(code, 201, "{project}");
    let pid = project["id"].as_i64().unwrap();
    let classes: Vec<String> = serde_json::from_value(project["classes"].clone()).unwrap();
    let ids = add_scenes(&d, pid, &scenes);
    let url = format!("/projects/{pid}/suggestions");

    // One selection over the three scenes: the default strategy spreads its picks.
    let (code, first) = d.post(&url, &json!({"scope": "project", "budget": 12}));
    assert_eq!(code, 200, "{first}");
    check_first_selection(&first, &ids);
    let (code, both) = d.post(&url, &json!({"scope": "project", "scene_id": ids[0]}));
    assert_eq!(code, 422, "{both}");
    check_spacing_across_scenes(&d, pid);

    // Scene B's own suggestions with the ONNX head, before any label.
    let ask_b = json!({"scene_id": ids[1], "strategy": "top_k", "budget": 10, "mc_passes": 1});
    let (code, before_b) = d.post(&url, &ask_b);
    assert_eq!(code, 200, "{before_b}");

    // Six labels, all in scene A, then a region round.
    let (code, a_picks) = d.post(
        &url,
        &json!({"scene_id": ids[0], "strategy": "top_k", "budget": 6, "mc_passes": 1}),
    );
    assert_eq!(code, 200, "{a_picks}");
    let a_picks: Vec<&Value> = features(&a_picks).iter().collect();
    check_region_aoi(&d, pid, &a_picks, ids[0]);
    let (code, stored) = d.post(
        &format!("/projects/{pid}/labels"),
        &point_labels(&a_picks, &classes),
    );
    assert_eq!(code, 201, "{stored}");
    let ask = json!({"scope": "project", "strategy": "top_k", "budget": 20, "mc_passes": 1});
    let (code, started) = d.post(&format!("/projects/{pid}/rounds"), &ask);
    assert_eq!(code, 202, "{started}");
    let round = d.wait(started["job"].as_i64().unwrap());
    assert_eq!(round["scope"], "project", "{round}");
    assert_eq!(round["retrained"]["labelled_tiles"], 6, "{round}");
    let trained: Vec<i64> = round["scenes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["trained_on"].as_i64().unwrap())
        .collect();
    assert_eq!(trained, vec![6, 0, 0], "{round}");
    let a_ids: Vec<String> = a_picks
        .iter()
        .map(|f| format!("{}:{}", ids[0], f["id"].as_str().unwrap()))
        .collect();
    for f in features(&round["suggestions"]) {
        assert!(
            !a_ids.contains(&f["id"].as_str().unwrap().to_string()),
            "{f}"
        );
    }

    // Labels on scene A retrained the head that scores scene B.
    let (code, after_b) = d.post(&url, &ask_b);
    assert_eq!(code, 200, "{after_b}");
    assert_ne!(
        ranked(&before_b),
        ranked(&after_b),
        "scene B unchanged by the round"
    );

    // The region heatmap: the round's file and GET /projects/{id}/heatmap.
    let c_tile = features(&round["suggestions"])
        .iter()
        .chain(features(&first))
        .find(|f| f["properties"]["scene_id"] == ids[2])
        .map(centre);
    let bands = gdal::Dataset::open(Path::new(round["scenes"][0]["heatmap"].as_str().unwrap()))
        .unwrap()
        .raster_count();
    if let Some(c) = c_tile {
        check_region_heatmap(Path::new(round["heatmap"].as_str().unwrap()), bands, c);
        check_region_heatmap(&fetch_region_heatmap(&d, pid, tmp.path()), bands, c);
    } else {
        panic!("no pick in scene C to locate it in the mosaic: {round}");
    }

    let last = label_more_and_reselect(&d, pid, &round, &a_picks, &classes, ids[0], &ask);
    check_region_export(&d, pid, &last);

    check_delete_and_reuse(&d, tmp.path(), pid, &scenes[0], &ids);
}

/// Ground spacing holds across scene borders: the most uncertain tiles at least
/// 1,500 m apart, over all three scenes (two of them in different CRSs).
fn check_spacing_across_scenes(d: &Daemon, pid: i64) {
    let ask = json!({"scope": "project", "strategy": "top_k", "budget": 10,
                     "mc_passes": 1, "min_spacing_m": 1500.0});
    let (code, spaced) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 200, "{spaced}");
    let centres: Vec<(f64, f64)> = features(&spaced).iter().map(centre).collect();
    assert_eq!(centres.len(), 10, "{spaced}");
    let mut scenes = scenes_of(&spaced);
    scenes.sort_unstable();
    scenes.dedup();
    assert!(scenes.len() >= 2, "{scenes:?}");
    // Metres on a sphere (haversine): far more exact than the 1 % margin needs.
    let metres = |a: (f64, f64), b: (f64, f64)| {
        let (p1, p2) = (a.1.to_radians(), b.1.to_radians());
        let (dp, dl) = (p2 - p1, (b.0 - a.0).to_radians());
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6_371_008.8 * h.sqrt().asin()
    };
    for (i, a) in centres.iter().enumerate() {
        for b in &centres[i + 1..] {
            let m = metres(*a, *b);
            assert!(
                m > 1500.0 * 0.99,
                "picks {a:?} and {b:?} are {m:.0} m apart"
            );
        }
    }
}

/// An AOI over some of scene A's tiles limits a region selection to them (the scenes
/// it misses add no tile); an AOI outside every scene is refused.
fn check_region_aoi(d: &Daemon, pid: i64, a_picks: &[&Value], a: i64) {
    let boxes: Vec<[f64; 4]> = a_picks.iter().map(|f| bbox(f)).collect();
    let w = boxes.iter().map(|b| b[0]).fold(f64::INFINITY, f64::min);
    let s = boxes.iter().map(|b| b[1]).fold(f64::INFINITY, f64::min);
    let e = boxes.iter().map(|b| b[2]).fold(f64::NEG_INFINITY, f64::max);
    let n = boxes.iter().map(|b| b[3]).fold(f64::NEG_INFINITY, f64::max);
    let aoi = |w: f64, s: f64, e: f64, n: f64| json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]});
    let url = format!("/projects/{pid}/suggestions");
    let ask = json!({"scope": "project", "budget": 3, "aoi": aoi(w, s, e, n)});
    let (code, inside) = d.post(&url, &ask);
    assert_eq!(code, 200, "{inside}");
    assert_eq!(scenes_of(&inside), vec![a, a, a], "{inside}");
    let far = json!({"scope": "project", "budget": 3, "aoi": aoi(10.0, 10.0, 10.1, 10.1)});
    let (code, outside) = d.post(&url, &far);
    assert_eq!(code, 422, "{outside}");
}

/// The region suggestions as a survey CSV: every pick once, named `<scene>:<tile>`.
fn check_region_export(d: &Daemon, pid: i64, last: &Value) {
    let url = format!("{}/projects/{pid}/export?format=csv&scope=project", d.base);
    let mut r = d.agent.get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csv = r.body_mut().read_to_string().unwrap();
    let mut rows: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().to_string())
        .collect();
    rows.sort();
    let mut want: Vec<String> = features(last)
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(rows, want, "{csv}");
    let (code, both) = d.get(&format!(
        "/projects/{pid}/export?format=csv&scope=project&scene_id=1"
    ));
    assert_eq!(code, 400, "{both}");
}
