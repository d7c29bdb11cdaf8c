//! Multi-label scoring with the shipped multi-label head and its
//! loss-prediction output, on the real sample scene (the real binary).

mod common;

use common::run_nexttile as run;

fn ml_head() -> String {
    common::root()
        .join("onnx/eurosat_multilabel/head.onnx")
        .display()
        .to_string()
}

#[test]
fn multi_label_head_scores_with_sigmoids_and_ranks_by_predicted_loss() {
    let out = common::tempdir();
    let dir = out.path().join("run");
    let scene = common::sample_scene();
    let (code, _, stderr) = run(&[
        "score",
        scene.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--encoder",
        common::encoder().to_str().unwrap(),
        "--head",
        &ml_head(),
        "--metric",
        "predicted_loss",
        "--strategy",
        "top_k",
        "--budget",
        "5",
        "--mc-passes",
        "8",
        "--no-cache",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let tiles: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tiles.geojson")).unwrap()).unwrap();
    let feats = tiles["features"].as_array().unwrap();
    assert_eq!(feats.len(), 900);
    let mut losses = Vec::new();
    let mut not_one = 0;
    for f in feats {
        let p = &f["properties"];
        assert_eq!(p["multi_label"], true);
        let probs = p["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 10);
        let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        if (sum - 1.0).abs() > 0.05 {
            not_one += 1;
        }
        // predicted_labels are exactly the classes at >= 0.5
        let mut want: Vec<&str> = probs
            .iter()
            .filter(|(_, v)| v.as_f64().unwrap() >= 0.5)
            .map(|(k, _)| k.as_str())
            .collect();
        let mut got: Vec<&str> = p["predicted_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        losses.push((
            p["uncertainty"]["predicted_loss"].as_f64().unwrap(),
            p["tile_id"].as_str().unwrap().to_string(),
        ));
    }
    assert!(
        not_one > 450,
        "sigmoid rows should not sum to 1; {not_one} of 900 do not"
    );
    losses.sort_by(|a, b| b.0.total_cmp(&a.0));
    let sugg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("suggestions.geojson")).unwrap())
            .unwrap();
    let picked: Vec<&str> = sugg["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["tile_id"].as_str().unwrap())
        .collect();
    let top: Vec<&str> = losses[..5].iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        picked, top,
        "top_k on predicted_loss picks the 5 highest predicted losses"
    );

    // the heatmap gains a predicted_loss band after predicted_class; the distance to
    // the training data stays last
    let ds = gdal::Dataset::open(dir.join("heatmap.tif")).unwrap();
    assert_eq!(ds.raster_count(), 8);
    use gdal::Metadata;
    assert_eq!(
        ds.rasterband(7).unwrap().description().unwrap(),
        "predicted_loss"
    );
    assert_eq!(
        ds.rasterband(8).unwrap().description().unwrap(),
        "distance_to_training"
    );
}

#[test]
fn predicted_loss_needs_a_loss_output_and_multi_label_heads_are_not_retrained() {
    let out = common::tempdir();
    let scene = common::sample_scene();
    let (code, _, stderr) = run(&[
        "score",
        scene.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--metric",
        "predicted_loss",
        "--quiet",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("has none") && stderr.contains("loss_output"),
        "{stderr}"
    );

    let labels = out.path().join("labels.geojson");
    std::fs::write(
        &labels,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},
           "geometry":{"type":"Point","coordinates":[-75.6,37.7]}}]}"#,
    )
    .unwrap();
    let (code, _, stderr) = run(&[
        "score",
        scene.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--encoder",
        common::encoder().to_str().unwrap(),
        "--head",
        &ml_head(),
        "--labelled",
        labels.to_str().unwrap(),
        "--retrain",
        "--quiet",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("multi-label head"), "{stderr}");
}
