//! Every strategy runs on real embeddings and uncertainties of the sample, and
//! ground spacing holds on the map (distances in the scene's UTM metres).

mod common;

use std::sync::atomic::AtomicBool;

use nexttile::engine::{ScoreRequest, ScoreResult, score};
use nexttile::sampling::{Pick, SelectionInput, Strategy, select};

fn request(strategy: &str) -> ScoreRequest {
    let mut r = ScoreRequest::new(common::sample_scene(), common::encoder(), common::head());
    r.mc_passes = 5;
    r.budget = 15;
    r.strategy = strategy.parse::<Strategy>().unwrap();
    r
}

fn min_distance(r: &ScoreResult, picks: &[Pick]) -> f64 {
    let c: Vec<(f64, f64)> = picks
        .iter()
        .map(|p| r.grid.centre(r.tiles[p.index]))
        .collect();
    let mut best = f64::INFINITY;
    for (i, a) in c.iter().enumerate() {
        for b in &c[i + 1..] {
            best = best.min(((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt());
        }
    }
    best
}

#[test]
fn strategies_on_real_scores() {
    // One engine run with 2.5 km ground spacing ...
    let spacing = 2_500.0;
    let mut req = request("top_k");
    req.min_spacing_m = spacing;
    let r = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(
        r.picks.len(),
        15,
        "the sample has room for 15 tiles 2.5 km apart"
    );
    let d = min_distance(&r, &r.picks);
    assert!(d >= spacing, "two picks {d:.0} m apart");

    // ... and plain top-k on the same scores puts some picks closer (so the
    // spacing check above is not vacuous).
    let unc = r.uncertainties.get(r.metric);
    let input = SelectionInput::new(r.embeddings.view(), unc);
    let plain = select(&Strategy::TopK, &input, 15, 0).unwrap();
    assert!(min_distance(&r, &plain) < spacing);

    // Every strategy on these real embeddings: distinct tiles, within budget.
    for name in ["mcfps", "top_k", "random", "coreset", "clustering"] {
        let strategy: Strategy = name.parse().unwrap();
        let picks = select(&strategy, &input, 15, 0).unwrap();
        assert!(
            !picks.is_empty() && picks.len() <= 15,
            "{name}: {}",
            picks.len()
        );
        let mut idx: Vec<usize> = picks.iter().map(|p| p.index).collect();
        idx.sort_unstable();
        idx.dedup();
        assert_eq!(idx.len(), picks.len(), "{name} suggested a tile twice");
        assert_eq!(strategy.name(), name);
    }
}

#[test]
fn cli_rejects_bad_spacing() {
    let out = common::tempdir();
    let o = std::process::Command::new(common::bin())
        .args(["score", common::sample_scene().to_str().unwrap(), "--out"])
        .arg(out.path())
        .arg("--min-spacing=-5")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--min-spacing must be"));
}

#[test]
fn labelled_tiles_are_never_suggested_again() {
    let mut req = request("top_k");
    req.mc_passes = 1;
    let first = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    let taken: Vec<_> = first
        .picks
        .iter()
        .take(5)
        .map(|p| first.tiles[p.index])
        .collect();
    // The analyst labelled those five: one point each, in lon/lat (RFC 7946).
    let to_wgs84 = nexttile::crs::Reprojector::new(
        &nexttile::crs::parse_srs("EPSG:32618").unwrap(),
        &nexttile::crs::wgs84().unwrap(),
    )
    .unwrap();
    let features: Vec<String> = taken
        .iter()
        .map(|id| {
            let (x, y) = first.grid.centre(*id);
            let (lon, lat) = to_wgs84.point(x, y).unwrap();
            format!(
                r#"{{"type":"Feature","properties":{{"class":"Forest"}},"geometry":{{"type":"Point","coordinates":[{lon},{lat}]}}}}"#
            )
        })
        .collect();
    let dir = common::tempdir();
    let labels = dir.path().join("labels.geojson");
    std::fs::write(
        &labels,
        format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            features.join(",")
        ),
    )
    .unwrap();
    req.labelled = Some(nexttile::aoi::Labelled::from_file(&labels, None).unwrap());
    let second = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(second.labelled_tiles, 5);
    let suggested: Vec<_> = second.picks.iter().map(|p| second.tiles[p.index]).collect();
    assert_eq!(suggested.len(), 15);
    for id in &taken {
        assert!(
            !suggested.contains(id),
            "labelled tile {id} suggested again"
        );
    }
    // the rest of the ranking moves up: the 6th pick of the first run is now first
    assert_eq!(suggested[0], first.tiles[first.picks[5].index]);
}
