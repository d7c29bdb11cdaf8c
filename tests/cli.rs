//! The CLI end to end on the real sample: `score --json` and `models inspect`.

mod common;

use std::process::Command;

use common::run_nexttile as run;

#[test]
fn score_sample_with_aoi_prints_json_and_writes_outputs() {
    let out = common::tempdir();
    let aoi = out.path().join("aoi.geojson");
    // a UTM rectangle (named CRS) covering tile rows 2..4 and cols 3..5 partially
    std::fs::write(
        &aoi,
        r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"EPSG:32618"}},
           "features":[{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":
           [[[437700,4177900],[439500,4177900],[439500,4176300],[437700,4176300],[437700,4177900]]]}}]}"#,
    )
    .unwrap();
    let dir = out.path().join("run");
    let (code, stdout, stderr) = run(&[
        "score",
        common::sample_scene().to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--aoi",
        aoi.to_str().unwrap(),
        "--budget",
        "3",
        "--mc-passes",
        "5",
        "--max-tiles",
        "9",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // The limit counts the AOI's tiles, and the count is said up front.
    assert!(stderr.contains("9 tiles to score"), "{stderr}");
    let s: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary on stdout");
    // x 437700..439500 → px 197..377 → cols 3..5; y 4177900..4176300 → px 156..316 → rows 2..4
    assert_eq!(s["candidate_tiles"], 9);
    assert_eq!(s["suggestions"].as_array().unwrap().len(), 3);
    assert_eq!(s["mc_passes"], 5);
    // The default strategy is auto; with no labels its stage is TypiClust's, one
    // suggestion per cluster, ranked by margin once there are labels.
    assert_eq!(s["strategy"], "auto");
    assert_eq!(s["metric"], "margin");
    assert_eq!(s["scene"]["crs_epsg"], "EPSG:32618");
    // no GPU here: the summary must say the CPU provider ran, and why
    assert_eq!(s["runtime"]["provider"], "CPU");
    assert!(
        s["runtime"]["provider_reason"]
            .as_str()
            .unwrap()
            .contains("cuda")
    );
    for f in [
        "heatmap.tif",
        "heatmap.qml",
        "suggestions.geojson",
        "tiles.geojson",
        "tiles.csv",
        "summary.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("tiles.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 9);
    // Every suggestion says why it was picked: auto's stage and TypiClust's cluster.
    let fc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("suggestions.geojson")).unwrap()).unwrap();
    let feats = fc["features"].as_array().unwrap();
    assert!(
        feats
            .iter()
            .all(|f| f["properties"]["stage"] == "low_budget")
    );
    // TypiClust made |labelled| + budget = 3 clusters of the 9 tiles; each pick names
    // its cluster (several picks share one when the others are under the minimum size).
    let clusters: Vec<u64> = feats
        .iter()
        .map(|f| f["properties"]["cluster"].as_u64().expect("a cluster"))
        .collect();
    assert_eq!(clusters.len(), 3);
    assert!(clusters.iter().all(|c| *c < 3), "{clusters:?}");
    // tiles outside the AOI are nodata in the heatmap
    let hm = gdal::Dataset::open(dir.join("heatmap.tif")).unwrap();
    let band = hm.rasterband(4).unwrap();
    let buf = band.read_band_as::<f32>().unwrap();
    let scored = buf.data().iter().filter(|v| **v >= 0.0).count();
    assert_eq!(scored, 9);
}

#[test]
fn same_seed_same_suggestions() {
    let a = common::tempdir();
    let args = |d: &str| {
        vec![
            "score".to_string(),
            common::sen1floods_s2().display().to_string(),
            "--out".into(),
            d.to_string(),
            "--mc-passes".into(),
            "1".into(),
            "--json".into(),
            "--seed".into(),
            "7".into(),
        ]
    };
    let d1 = a.path().join("1");
    let d2 = a.path().join("2");
    let r1 = Command::new(common::bin())
        .args(args(d1.to_str().unwrap()))
        .output()
        .unwrap();
    let r2 = Command::new(common::bin())
        .args(args(d2.to_str().unwrap()))
        .output()
        .unwrap();
    let j1: serde_json::Value = serde_json::from_slice(&r1.stdout).unwrap();
    let j2: serde_json::Value = serde_json::from_slice(&r2.stdout).unwrap();
    assert_eq!(j1["suggestions"], j2["suggestions"]);
}

#[test]
fn models_inspect_prints_the_contract() {
    let (code, stdout, stderr) = run(&["models", "inspect", common::encoder().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("role:        Encoder"), "{stdout}");
    assert!(stdout.contains("bands:       B04, B03, B02"), "{stdout}");
    let (code, stdout, _) = run(&[
        "models",
        "inspect",
        common::head().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["class_names"].as_array().unwrap().len(), 10);
    assert_eq!(j["mc_dropout_input"], "mc_dropout");
    let (code, _, stderr) = run(&[
        "models",
        "inspect",
        common::fixture("no_metadata.onnx").to_str().unwrap(),
    ]);
    assert_eq!(code, 3);
    assert!(stderr.contains("input_bands"), "{stderr}");
}

#[test]
fn runtime_reports_provider() {
    let (code, stdout, stderr) = run(&["runtime", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // No GPU in CI: the CPU provider must be the one reported.
    assert_eq!(j["provider"], "CPU");
    assert!(j["library"].as_str().unwrap().contains("libonnxruntime"));
}

#[test]
fn missing_onnxruntime_says_what_to_install() {
    let empty = common::tempdir();
    let o = Command::new(common::bin())
        .args(["models", "inspect", common::encoder().to_str().unwrap()])
        .env(
            "ORT_DYLIB_PATH",
            empty.path().join("libonnxruntime.so.1.31.1"),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("scripts/setup.sh") && err.contains("pip install onnxruntime==1.31.1"),
        "{err}"
    );
    assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
}

/// Share of each 64-px tile's pixels that the scene's own physics calls water:
/// NDWI = (B03 − B08) / (B03 + B08) > 0 (McFeeters 1996, doi:10.1080/01431169608948714),
/// keyed by (row, col) of the default 64-px grid.
fn ndwi_water_share(scene: &std::path::Path) -> std::collections::BTreeMap<(usize, usize), f64> {
    let ds = gdal::Dataset::open(scene).unwrap();
    let (w, h) = ds.raster_size();
    let read = |band: usize| -> Vec<f64> {
        let b = ds.rasterband(band).unwrap();
        b.read_as::<f64>((0, 0), (w, h), (w, h), None)
            .unwrap()
            .data()
            .to_vec()
    };
    let (green, nir) = (read(3), read(8));
    let mut out = std::collections::BTreeMap::new();
    for row in 0..h / 64 {
        for col in 0..w / 64 {
            let mut wet = 0usize;
            for y in row * 64..(row + 1) * 64 {
                for x in col * 64..(col + 1) * 64 {
                    let (g, n) = (green[y * w + x], nir[y * w + x]);
                    wet += usize::from(g - n > 0.0);
                }
            }
            out.insert((row, col), wet as f64 / 4096.0);
        }
    }
    out
}

/// The default pair must say something plausible about the bundled real scene before
/// any label, checked against the scene's own physics rather than a fixed answer:
/// of the tiles that are over 90 % open water by NDWI, at least three quarters are
/// called SeaLake or River, and of the tiles under 5 % water at most a quarter are;
/// no class takes two thirds of the scene. (The previous default, the SimSiam pair,
/// calls 53 % of the dry tiles water; `rcf_fast`, without the chroma stage, calls
/// 5 % of the water tiles water and 669 of 900 tiles Highway; README, "The default
/// encoder".)
#[test]
fn the_default_pair_is_plausible_on_the_real_sample() {
    let out = common::tempdir();
    let dir = out.path().join("run");
    let (code, _, stderr) = run(&[
        "score",
        common::sample_scene().to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--mc-passes",
        "1",
        "--no-cache",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let water_share = ndwi_water_share(&common::sample_scene());
    let csv = std::fs::read_to_string(dir.join("tiles.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_row, c_col, c_class) = (at("row"), at("col"), at("predicted_class"));
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let (mut wet, mut wet_called_water, mut dry, mut dry_called_water) = (0, 0, 0, 0);
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let class = f[c_class];
        *counts.entry(class.to_string()).or_default() += 1;
        let key = (f[c_row].parse().unwrap(), f[c_col].parse().unwrap());
        let share = water_share[&key];
        let called_water = usize::from(class == "SeaLake" || class == "River");
        if share > 0.9 {
            wet += 1;
            wet_called_water += called_water;
        } else if share < 0.05 {
            dry += 1;
            dry_called_water += called_water;
        }
    }
    let total: usize = counts.values().sum();
    assert!(wet > 100 && dry > 100, "wet {wet}, dry {dry} tiles");
    assert!(
        4 * wet_called_water >= 3 * wet,
        "{wet_called_water} of {wet} open-water tiles called water: {counts:?}"
    );
    assert!(
        4 * dry_called_water <= dry,
        "{dry_called_water} of {dry} dry tiles called water: {counts:?}"
    );
    let top_n = counts.values().max().copied().unwrap_or(0);
    assert!(
        3 * top_n < 2 * total,
        "one class takes most tiles: {counts:?}"
    );
}
