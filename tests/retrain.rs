//! `score` with `retrain`: the head retrains on the analyst's class labels from the
//! cached embeddings of the real sample scene, and its predictions follow those labels.

mod common;

use std::sync::atomic::AtomicBool;

use nexttile::engine::{Retrain, ScoreRequest, ScoreResult, score};
use nexttile::sampling::Strategy;

fn request() -> ScoreRequest {
    let mut r = ScoreRequest::new(common::sample_scene(), common::encoder(), common::head());
    r.mc_passes = 5;
    r.budget = 12;
    r.strategy = Strategy::TopK;
    r
}

/// Writes point labels at the centres of `tiles` with the given class names (lon/lat).
fn write_labels(r: &ScoreResult, labels: &[(usize, String)], path: &std::path::Path) {
    let to_wgs84 = nexttile::crs::Reprojector::new(
        &nexttile::crs::parse_srs("EPSG:32618").unwrap(),
        &nexttile::crs::wgs84().unwrap(),
    )
    .unwrap();
    let features: Vec<String> = labels
        .iter()
        .map(|(i, class)| {
            let (x, y) = r.grid.centre(r.tiles[*i]);
            let (lon, lat) = to_wgs84.point(x, y).unwrap();
            format!(
                r#"{{"type":"Feature","properties":{{"class":"{class}"}},"geometry":{{"type":"Point","coordinates":[{lon},{lat}]}}}}"#
            )
        })
        .collect();
    std::fs::write(
        path,
        format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            features.join(",")
        ),
    )
    .unwrap();
}

#[test]
fn retrained_head_follows_the_labels_and_warm_starts_next_round() {
    let dir = common::tempdir();
    let cache = dir.path().join("cache");
    let mut req = request();
    req.cache = Some(cache.clone());
    let first = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(first.retrained.is_none());
    // The analyst labels the 8 top suggestions, each with a class the demo head did
    // NOT predict there, so only a retrained head can predict them.
    let classes = first.class_names.clone();
    let labels: Vec<(usize, String)> = first.picks[..8]
        .iter()
        .map(|p| {
            let other = (first.predicted[p.index] + 1 + p.index % 3) % classes.len();
            (p.index, classes[other].clone())
        })
        .collect();
    let path = dir.path().join("labels.geojson");
    write_labels(&first, &labels, &path);
    let head_file = dir.path().join("head.safetensors");
    req.labelled = Some(nexttile::aoi::Labelled::from_file(&path, None).unwrap());
    req.retrain = Some(Retrain {
        save_to: Some(head_file.clone()),
        ..Retrain::default()
    });
    let second = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(second.cache_hit, "retraining reuses the cached embeddings");
    let info = second.retrained.as_ref().expect("retrained");
    assert_eq!(info.labelled_tiles, 8);
    assert_eq!(info.per_class.iter().map(|(_, n)| n).sum::<usize>(), 8);
    assert!(!info.report.warm_start);
    assert!(head_file.is_file());
    for (i, class) in &labels {
        // Same scene, same grid, same tile order.
        assert_eq!(&second.class_names[second.predicted[*i]], class, "tile {i}");
    }
    let suggested: Vec<usize> = second.picks.iter().map(|p| p.index).collect();
    assert!(labels.iter().all(|(i, _)| !suggested.contains(i)));
    let json = nexttile::engine::summary_json(&second, None);
    assert_eq!(json["retrained"]["labelled_tiles"], 8);

    // Next round: label two more tiles and continue from the saved head.
    let mut more = labels.clone();
    for p in second.picks.iter().take(2) {
        more.push((p.index, classes[0].clone()));
    }
    write_labels(&second, &more, &path);
    req.labelled = Some(nexttile::aoi::Labelled::from_file(&path, None).unwrap());
    req.retrain = Some(Retrain {
        warm_from: Some(head_file.clone()),
        ..Retrain::default()
    });
    let third = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    let info = third.retrained.as_ref().unwrap();
    assert_eq!(info.labelled_tiles, 10);
    assert!(info.report.warm_start);
}

#[test]
fn unknown_class_and_missing_classes_are_refused_with_the_valid_names() {
    let dir = common::tempdir();
    let mut req = request();
    req.mc_passes = 1;
    let first = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    let path = dir.path().join("labels.geojson");
    write_labels(&first, &[(first.picks[0].index, "Glacier".into())], &path);
    req.labelled = Some(nexttile::aoi::Labelled::from_file(&path, None).unwrap());
    req.retrain = Some(Retrain::default());
    let err = score(&req, &|_| {}, &AtomicBool::new(false))
        .err()
        .expect("unknown class refused")
        .to_string();
    assert!(err.contains("Glacier") && err.contains("SeaLake"), "{err}");
    // Labels without any class: nothing to train on.
    std::fs::write(
        &path,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[-75.6,37.8]}}]}"#,
    )
    .unwrap();
    req.labelled = Some(nexttile::aoi::Labelled::from_file(&path, None).unwrap());
    let err = score(&req, &|_| {}, &AtomicBool::new(false))
        .err()
        .expect("no class refused")
        .to_string();
    assert!(err.contains("class"), "{err}");
    // The CLI requires --labelled with --retrain.
    let out = std::process::Command::new(common::bin())
        .args(["score", "x.tif", "-o", "out", "--retrain"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--labelled"));
}

/// Issue 17: a round on a warm result (`retrain_warm`, what the daemon's `POST rounds`
/// runs on a scene it keeps in memory) gives the numbers of the whole pipeline run
/// from the embedding cache with the same request: probabilities, every metric, the
/// distance to the labelled tiles, the predictions, the picks and the trained head.
#[test]
fn a_round_on_the_warm_result_equals_the_round_from_the_cache() {
    let dir = common::tempdir();
    let mut req = request();
    req.cache = Some(dir.path().join("cache"));
    req.strategy = Strategy::product_default();
    req.metric = nexttile::engine::default_metric(&req.strategy);
    let mut warm = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    let classes = warm.class_names.clone();
    let labels: Vec<(usize, String)> = (0..warm.tiles.len())
        .step_by(37)
        .map(|i| (i, classes[i % 4].clone()))
        .collect();
    let path = dir.path().join("labels.geojson");
    write_labels(&warm, &labels, &path);
    req.labelled = Some(nexttile::aoi::Labelled::from_file(&path, None).unwrap());
    let (cold_head, warm_head) = (
        dir.path().join("cold.safetensors"),
        dir.path().join("warm.safetensors"),
    );
    req.retrain = Some(Retrain {
        save_to: Some(cold_head.clone()),
        ..Retrain::default()
    });
    let cold = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    req.retrain = Some(Retrain {
        save_to: Some(warm_head.clone()),
        ..Retrain::default()
    });
    nexttile::engine::retrain_warm(&mut warm, &req, None).unwrap();
    assert_eq!(
        warm.retrained.as_ref().unwrap().labelled_tiles,
        labels.len()
    );
    assert_eq!(warm.uncertainties.mean, cold.uncertainties.mean);
    for m in cold.uncertainties.metrics() {
        assert_eq!(
            warm.uncertainties.get(m),
            cold.uncertainties.get(m),
            "{m:?}"
        );
    }
    assert_eq!(warm.predicted, cold.predicted);
    assert_eq!(warm.training_distance.values, cold.training_distance.values);
    assert_eq!(
        warm.training_distance.reference,
        cold.training_distance.reference
    );
    let picks = |r: &ScoreResult| r.picks.iter().map(|p| p.index).collect::<Vec<_>>();
    assert_eq!(picks(&warm), picks(&cold));
    assert_eq!(warm.labelled_tiles, cold.labelled_tiles);
    // The same weights: the files' tensor bytes (after the JSON header, whose metadata
    // keys safetensors writes in hash-map order) are equal.
    let tensors = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + header..].to_vec()
    };
    assert!(
        tensors(&warm_head) == tensors(&cold_head),
        "the same head is trained"
    );

    // A label of a class the head does not know: an error, and the warm result is left
    // as it was.
    let before = warm.uncertainties.mean.clone();
    write_labels(&warm, &[(3, "NotAClass".into())], &path);
    req.labelled = Some(nexttile::aoi::Labelled::from_file(&path, None).unwrap());
    assert!(nexttile::engine::retrain_warm(&mut warm, &req, None).is_err());
    assert_eq!(warm.uncertainties.mean, before);
}
