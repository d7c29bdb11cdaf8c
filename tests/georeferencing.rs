//! Georeferencing of the outputs on the real Sentinel-2 sample (EPSG:32618):
//! footprints in the GeoJSON go back onto the tile's pixel window, a point
//! known in both CRSs lands in the right tile, and the heatmap sits on the
//! tile grid in the scene CRS.

mod common;

use std::sync::atomic::AtomicBool;

use geo::{Contains, Point};
use nexttile::crs::{Reprojector, parse_srs, wgs84};
use nexttile::engine::{ScoreRequest, score, write_outputs};
use nexttile::sampling::Strategy;
use nexttile::tiling::TileId;

#[test]
fn footprints_and_heatmap_are_georeferenced() {
    let out = common::tempdir();
    let mut req = ScoreRequest::new(common::sample_scene(), common::encoder(), common::head());
    req.mc_passes = 4;
    req.budget = 12;
    req.strategy = Strategy::TopK;
    let result = score(&req, &|_| {}, &AtomicBool::new(false)).expect("score the sample");
    let paths = write_outputs(&result, out.path()).expect("write outputs");

    // --- the heatmap: scene CRS, pixel = tile size × 10 m, origin = scene origin
    let hm = gdal::Dataset::open(&paths.heatmap).unwrap();
    let gt = hm.geo_transform().unwrap();
    assert_eq!(gt, [435_730.0, 640.0, 0.0, 4_179_460.0, 0.0, -640.0]);
    assert_eq!(hm.raster_size(), (result.grid.cols, result.grid.rows));
    let srs = hm.spatial_ref().unwrap();
    assert_eq!(srs.auth_code().unwrap(), 32618);
    use gdal::Metadata;
    let descs: Vec<String> = (1..=hm.raster_count())
        .map(|b| hm.rasterband(b).unwrap().description().unwrap())
        .collect();
    assert_eq!(
        descs,
        [
            "entropy",
            "bald",
            "margin",
            "least_confidence",
            "variation_ratio",
            "predicted_class",
            "distance_to_training"
        ]
    );
    assert!(paths.heatmap_style.is_file());

    // --- suggestions: footprint back in UTM == pixel window bounds (≤ 0.01 m)
    let text = std::fs::read_to_string(&paths.suggestions).unwrap();
    let fc: geojson::FeatureCollection = text
        .parse::<geojson::GeoJson>()
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(fc.features.len(), 12);
    let back = Reprojector::new(&wgs84().unwrap(), &parse_srs("EPSG:32618").unwrap()).unwrap();
    for (rank, f) in fc.features.iter().enumerate() {
        let p = f.properties.as_ref().unwrap();
        assert_eq!(p["rank"], rank + 1);
        let id: TileId = p["tile_id"].as_str().unwrap().parse().unwrap();
        let w = result.grid.window(id);
        let (x0, y0) = (
            435_730.0 + w.x_off as f64 * 10.0,
            4_179_460.0 - w.y_off as f64 * 10.0,
        );
        let (x1, y1) = (x0 + 640.0, y0 - 640.0);
        let geo: geo::Geometry<f64> = f.geometry.clone().unwrap().value.try_into().unwrap();
        let geo::Geometry::Polygon(poly) = geo else {
            panic!("not a polygon")
        };
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) =
            poly.exterior().coords().map(|c| (c.x, c.y)).unzip();
        assert!(
            xs.iter().all(|x| (-76.0..-75.0).contains(x)),
            "lon order: {xs:?}"
        );
        assert!(ys.iter().all(|y| (37.0..38.0).contains(y)), "lat order");
        back.transform(&mut xs, &mut ys).unwrap();
        let minx = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let maxx = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let miny = ys.iter().cloned().fold(f64::INFINITY, f64::min);
        let maxy = ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        for (got, want) in [(minx, x0), (maxx, x1), (miny, y1), (maxy, y0)] {
            assert!((got - want).abs() < 0.01, "tile {id}: {got} vs {want}");
        }
    }

    // --- a point known in both CRSs lands in the right tile.
    // UTM 18N (445000 E, 4170000 N) = (-75.6237017, 37.6755448) lon/lat, from
    // `echo 445000 4170000 | gdaltransform -s_srs EPSG:32618 -t_srs EPSG:4326 -output_xy`
    // (PROJ, independent of NextTile). Pixel (927, 946) → tile r14_c14.
    let expected = TileId { row: 14, col: 14 };
    let lonlat = Point::new(-75.623_701_7, 37.675_544_8);
    let tiles_text = std::fs::read_to_string(&paths.tiles_geojson).unwrap();
    let tiles: geojson::FeatureCollection = tiles_text
        .parse::<geojson::GeoJson>()
        .unwrap()
        .try_into()
        .unwrap();
    let hits: Vec<String> = tiles
        .features
        .iter()
        .filter(|f| {
            let g: geo::Geometry<f64> = f.geometry.clone().unwrap().value.try_into().unwrap();
            g.contains(&lonlat)
        })
        .map(|f| {
            f.properties.as_ref().unwrap()["tile_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(hits, vec![expected.to_string()]);
    assert_eq!(result.grid.tile_at(445_000.0, 4_170_000.0), Some(expected));
}

#[test]
fn geographic_scene_sen1floods11() {
    // EPSG:4326 chip, 512 x 512 px of ~10 m: 8 x 8 tiles of 64 px.
    let mut req = ScoreRequest::new(common::sen1floods_s2(), common::encoder(), common::head());
    req.mc_passes = 3;
    req.budget = 5;
    let result = score(&req, &|_| {}, &AtomicBool::new(false)).expect("score the chip");
    assert_eq!((result.grid.rows, result.grid.cols), (8, 8));
    assert_eq!(result.picks.len(), 5);
    assert!(
        result.warnings.iter().all(|w| !w.contains("trained at")),
        "{:?}",
        result.warnings
    );
    let out = common::tempdir();
    let paths = write_outputs(&result, out.path()).unwrap();
    let hm = gdal::Dataset::open(&paths.heatmap).unwrap();
    let gt = hm.geo_transform().unwrap();
    assert!(
        (gt[1] - 64.0 * 0.000_089_831_528_412).abs() < 1e-12,
        "{gt:?}"
    );
}
