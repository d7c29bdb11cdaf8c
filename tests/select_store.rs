//! `select` over an embedding store streams (issue 15): the picks of
//! `engine::select_store` (one pass, f16 rows kept, only the rows the strategy reads
//! widened) equal those of `engine::select_store_in_memory` (the whole store as one f32
//! matrix), also with `two_pass` (the needed rows read again from the files), for every
//! kind of strategy, with and without labelled tiles, and the
//! GeoPackage it writes opens with the picks. Real crops of the sample, the real encoder
//! and head, T = 1 (the deterministic head: MC passes are random by design).

mod common;

use std::path::{Path, PathBuf};

use gdal::vector::LayerAccess;
use nexttile::aoi::Labelled;
use nexttile::engine::{self, StoreSelect, StoreSelection};
use nexttile::model::SessionConfig;
use nexttile::sampling::{AutoParams, ClusteringParams, LowBudget, Strategy, TypiclustParams};
use nexttile::uncertainty::Metric;

/// A store of three 320 × 320 px crops of the sample (75 tiles), made with `nexttile embed`.
fn store(dir: &Path) -> PathBuf {
    let sample = common::sample_scene();
    let mut scenes = Vec::new();
    for (name, x, y) in [
        ("nw", "640", "640"),
        ("ne", "960", "640"),
        ("sw", "640", "960"),
    ] {
        let out = dir.join(format!("{name}.tif"));
        common::run_tool(
            "gdal_translate",
            &["-q", "-srcwin", x, y, "320", "320"]
                .into_iter()
                .chain([sample.to_str().unwrap(), out.to_str().unwrap()])
                .collect::<Vec<_>>(),
        );
        scenes.push(out);
    }
    let store = dir.join("store");
    let (enc, head, cache) = (common::encoder(), common::head(), dir.join("cache"));
    let mut args = vec!["embed", "--out", store.to_str().unwrap()];
    args.extend(scenes.iter().map(|s| s.to_str().unwrap()));
    args.extend([
        "--encoder",
        enc.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let (code, out, err) = common::run_nexttile(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    store
}

fn request(strategy: Strategy, labelled: Option<Labelled>) -> StoreSelect {
    StoreSelect {
        head: common::head(),
        session: SessionConfig::default(),
        mc_passes: 1,
        strategy,
        metric: Metric::Margin,
        budget: 4,
        seed: 11,
        min_spacing_m: 0.0,
        labelled,
        two_pass: false,
    }
}

/// A pick as compared: scene, tile, score bits, rank and its footprint's points.
type PickSummary = (String, String, u32, usize, Vec<(f64, f64)>);

/// The [`PickSummary`] of each pick.
fn summary(s: &StoreSelection) -> Vec<PickSummary> {
    s.picks
        .iter()
        .map(|p| {
            let ring = p
                .footprint
                .exterior()
                .coords()
                .map(|c| (c.x, c.y))
                .collect();
            (
                p.scene_id.clone(),
                p.tile.to_string(),
                p.score.to_bits(),
                p.rank,
                ring,
            )
        })
        .collect()
}

/// Points at the centres of `s`'s picks, as a labels file.
fn labels_at(s: &StoreSelection) -> Labelled {
    let features: Vec<serde_json::Value> = s
        .picks
        .iter()
        .map(|p| {
            let ring: Vec<_> = p.footprint.exterior().coords().collect();
            let n = (ring.len() - 1) as f64;
            let (x, y) = ring[..ring.len() - 1]
                .iter()
                .fold((0.0, 0.0), |(x, y), c| (x + c.x / n, y + c.y / n));
            serde_json::json!({"type": "Feature", "properties": {"class": "Forest"},
                "geometry": {"type": "Point", "coordinates": [x, y]}})
        })
        .collect();
    let text = serde_json::json!({"type": "FeatureCollection", "features": features}).to_string();
    Labelled::from_geojson(&text, None).unwrap()
}

#[test]
fn streaming_select_picks_what_the_in_memory_selection_picks() {
    let dir = common::tempdir();
    let store = store(dir.path());
    let typ = TypiclustParams {
        max_points: 30,
        ..TypiclustParams::default()
    };
    let auto = |switch| {
        Strategy::Auto(AutoParams {
            switch_per_class: Some(switch),
            low_budget: LowBudget::Typiclust(typ),
            ..AutoParams::default()
        })
    };
    // Twelve labelled tiles: the most uncertain ones.
    let top = engine::select_store_in_memory(
        &store,
        &StoreSelect {
            budget: 12,
            ..request(Strategy::TopK, None)
        },
    )
    .unwrap();
    let labels = labels_at(&top);
    let cases = [
        ("auto, no labels (TypiClust stage)", auto(20), None),
        (
            "auto, 12 labels (class-balanced stage)",
            auto(1),
            Some(labels.clone()),
        ),
        (
            "auto, 12 labels, TypiClust stage",
            auto(20),
            Some(labels.clone()),
        ),
        ("typiclust", Strategy::Typiclust(typ), Some(labels.clone())),
        (
            "clustering",
            Strategy::Clustering(ClusteringParams::default()),
            Some(labels.clone()),
        ),
        ("top_k", Strategy::TopK, Some(labels.clone())),
        ("random", Strategy::Random, None),
        ("coreset", Strategy::Coreset, Some(labels)),
    ];
    for (name, strategy, labelled) in cases {
        let sel = request(strategy, labelled);
        let stream = engine::select_store(&store, &sel).unwrap();
        let memory = engine::select_store_in_memory(&store, &sel).unwrap();
        let two_pass = engine::select_store(
            &store,
            &StoreSelect {
                two_pass: true,
                ..sel.clone()
            },
        )
        .unwrap();
        assert_eq!(summary(&two_pass), summary(&memory), "{name}, two passes");
        assert_eq!(two_pass.widened_rows, stream.widened_rows, "{name}");
        assert_eq!(stream.picks.len(), 4, "{name}");
        assert_eq!(summary(&stream), summary(&memory), "{name}");
        assert_eq!(stream.strategy, memory.strategy, "{name}");
        assert_eq!(
            (stream.tiles, stream.labelled_tiles),
            (memory.tiles, memory.labelled_tiles),
            "{name}"
        );
        assert_eq!(memory.widened_rows, 75, "{name}");
        match strategy {
            Strategy::TopK | Strategy::Random => assert_eq!(stream.widened_rows, 0, "{name}"),
            Strategy::Coreset => assert_eq!(stream.widened_rows, 75, "{name}"),
            _ => assert!(stream.widened_rows < 75, "{name}: {}", stream.widened_rows),
        }
        if sel.labelled.is_some() {
            assert_eq!(stream.labelled_tiles, 12, "{name}");
        }
    }
}

#[test]
fn select_writes_a_geopackage_of_the_picks() {
    let dir = common::tempdir();
    let store = store(dir.path());
    let out = dir.path().join("out");
    let (code, stdout, err) = common::run_nexttile(&[
        "select",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--budget",
        "5",
        "--mc-passes",
        "1",
        "--head",
        common::head().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{err}");
    let geojson: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("suggestions.geojson")).unwrap())
            .unwrap();
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), 5);
    let ds = gdal::Dataset::open(out.join("suggestions.gpkg")).unwrap();
    assert_eq!(ds.driver().short_name(), "GPKG");
    let mut layer = ds.layer_by_name("suggestions").unwrap();
    assert_eq!(layer.feature_count(), 5);
    assert_eq!(
        layer.defn().geom_fields().next().unwrap().field_type(),
        gdal::vector::OGRwkbGeometryType::wkbPolygon
    );
    let srs = layer.spatial_ref().unwrap();
    assert_eq!(srs.auth_code().unwrap(), 4326);
    for (f, g) in layer.features().zip(features) {
        let p = &g["properties"];
        assert_eq!(
            f.field_as_integer64(f.field_index("rank").unwrap())
                .unwrap(),
            p["rank"].as_i64()
        );
        assert_eq!(
            f.field_as_string(f.field_index("tile_id").unwrap())
                .unwrap()
                .as_deref(),
            p["tile_id"].as_str()
        );
        assert_eq!(
            f.field_as_string(f.field_index("scene_id").unwrap())
                .unwrap()
                .as_deref(),
            p["scene_id"].as_str()
        );
        let margin = f
            .field_as_double(f.field_index("margin").unwrap())
            .unwrap()
            .unwrap();
        assert!((margin - p["margin"].as_f64().unwrap()).abs() < 1e-9);
        let env = f.geometry().unwrap().envelope();
        let first = &g["geometry"]["coordinates"][0][0];
        assert!(env.MinX <= first[0].as_f64().unwrap() && first[0].as_f64().unwrap() <= env.MaxX);
    }
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        json["geopackage"]
            .as_str()
            .unwrap()
            .ends_with("suggestions.gpkg")
    );
}
