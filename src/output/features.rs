//! Suggestions and tiles as RFC 7946 GeoJSON (EPSG:4326, lon/lat) and CSV.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use geojson::{Feature, FeatureCollection, Geometry, GeometryValue, JsonObject};
use serde_json::json;

use super::OutputError;
use crate::crs::{Reprojector, wgs84};
use crate::report::ScoreResult;
use crate::tiling::{TileGrid, TileId};

/// Points per tile edge in the reprojected footprints (so that a footprint
/// follows the curved image of a straight scene-CRS edge).
pub const FOOTPRINT_POINTS_PER_EDGE: usize = 8;

/// Tiles per parallel task of [`tiles_collection`] (each task builds one coordinate
/// transformation; the sample's 900 tiles are two tasks, so the golden digests of
/// `tiles.geojson` cover the joining of tasks).
const TILE_FEATURES_PER_TASK: usize = 512;

/// Decimal places of lon/lat in GeoJSON output: 1e-8° ≈ 1 mm.
pub const COORD_DECIMALS: i32 = 8;

fn round(v: f64) -> f64 {
    let f = 10f64.powi(COORD_DECIMALS);
    (v * f).round() / f
}

/// Footprint of a tile as a lon/lat polygon (closed ring, densified).
pub fn footprint_lonlat(
    result: &ScoreResult,
    to_wgs84: &Reprojector,
    id: TileId,
) -> Result<Geometry, OutputError> {
    let poly = to_wgs84.polygon(&result.grid.footprint(id, FOOTPRINT_POINTS_PER_EDGE))?;
    let ring: Vec<geojson::Position> = poly
        .exterior()
        .coords()
        .map(|c| geojson::Position::from([round(c.x), round(c.y)]))
        .collect();
    Ok(Geometry::new(GeometryValue::Polygon {
        coordinates: vec![ring],
    }))
}

/// Properties shared by suggestion and tile features for scored tile `i`.
fn tile_properties(
    result: &ScoreResult,
    (lon, lat): (f64, f64),
    i: usize,
) -> Result<JsonObject, OutputError> {
    let id = result.tiles[i];
    let mean = result.uncertainties.mean.row(i);
    let probs: serde_json::Map<String, serde_json::Value> = result
        .class_names
        .iter()
        .zip(mean.iter())
        .map(|(c, p)| (c.clone(), json!(round6(*p))))
        .collect();
    let unc: serde_json::Map<String, serde_json::Value> = result
        .uncertainties
        .metrics()
        .iter()
        .map(|m| {
            (
                m.name().to_string(),
                json!(round6(result.uncertainties.get(*m)[i])),
            )
        })
        .collect();
    let pred = result.predicted[i];
    let mut p = JsonObject::new();
    p.insert("tile_id".into(), json!(id.to_string()));
    p.insert("row".into(), json!(id.row));
    p.insert("col".into(), json!(id.col));
    p.insert("scene".into(), json!(result.scene.path));
    p.insert(
        "predicted_class".into(),
        json!(result.class_names.get(pred)),
    );
    p.insert("predicted_index".into(), json!(pred));
    p.insert("probabilities".into(), serde_json::Value::Object(probs));
    if result.uncertainties.multi_label {
        // Multi-label heads: every class whose MC-mean sigmoid is at least 0.5.
        let labels: Vec<&String> = result
            .class_names
            .iter()
            .zip(mean.iter())
            .filter(|(_, p)| **p >= 0.5)
            .map(|(c, _)| c)
            .collect();
        p.insert("predicted_labels".into(), json!(labels));
    }
    p.insert(
        "multi_label".into(),
        json!(result.uncertainties.multi_label),
    );
    p.insert("uncertainty".into(), serde_json::Value::Object(unc));
    p.insert(
        "distance_to_training".into(),
        json!(round6(result.training_distance.values[i])),
    );
    p.insert(
        "valid_fraction".into(),
        json!(round6(result.valid_fraction[i])),
    );
    p.insert("center_lon".into(), json!(round(lon)));
    p.insert("center_lat".into(), json!(round(lat)));
    Ok(p)
}

fn round6(v: f32) -> f64 {
    ((v as f64) * 1e6).round() / 1e6
}

/// The ranked "label next" FeatureCollection.
pub fn suggestions_collection(result: &ScoreResult) -> Result<FeatureCollection, OutputError> {
    let to_wgs84 = Reprojector::from_wkt(&result.scene.crs_wkt, &wgs84()?)?;
    let mut features = Vec::with_capacity(result.picks.len());
    let mut bbox = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for (rank, pick) in result.picks.iter().enumerate() {
        let i = pick.index;
        let geometry = footprint_lonlat(result, &to_wgs84, result.tiles[i])?;
        if let GeometryValue::Polygon { coordinates: rings } = &geometry.value {
            for c in &rings[0] {
                bbox = [
                    bbox[0].min(c[0]),
                    bbox[1].min(c[1]),
                    bbox[2].max(c[0]),
                    bbox[3].max(c[1]),
                ];
            }
        }
        let (cx, cy) = result.grid.centre(result.tiles[i]);
        let mut p = tile_properties(result, to_wgs84.point(cx, cy)?, i)?;
        p.insert("rank".into(), json!(rank + 1));
        p.insert("score".into(), json!(round6(pick.score)));
        p.insert(
            "anchor_tile".into(),
            json!(pick.anchor.map(|a| result.tiles[a].to_string())),
        );
        p.insert("strategy".into(), json!(result.strategy.name()));
        // Why this tile: the auto schedule's stage, TypiClust's cluster, ProbCover's ball.
        p.insert("stage".into(), json!(pick.stage.map(|s| s.name())));
        p.insert("cluster".into(), json!(pick.cluster));
        p.insert("covers".into(), json!(pick.covers));
        p.insert("strategy_params".into(), result.strategy_params.clone());
        p.insert("metric".into(), json!(result.metric.name()));
        p.insert("mc_passes".into(), json!(result.mc_passes));
        p.insert("seed".into(), json!(result.seed));
        p.insert("min_spacing_m".into(), json!(result.min_spacing_m));
        p.insert("encoder_sha256".into(), json!(result.encoder.sha256));
        p.insert("head_sha256".into(), json!(result.head.sha256));
        p.insert("class".into(), serde_json::Value::Null);
        features.push(Feature {
            bbox: None,
            geometry: Some(geometry),
            id: Some(geojson::feature::Id::String(result.tiles[i].to_string())),
            properties: Some(p),
            foreign_members: None,
        });
    }
    Ok(FeatureCollection {
        bbox: bbox[0]
            .is_finite()
            .then(|| bbox.iter().map(|v| round(*v)).collect()),
        features,
        foreign_members: None,
    })
}

/// The ranked "label next" FeatureCollection of one selection over many scenes:
/// `results[i]` holds scene `i`'s share of the picks, `scene_ids[i]` names it, and
/// `order` lists, in rank order, which scene and which of its picks each one is (as
/// [`reselect_across`](crate::engine::reselect_across) returns them). Each feature is
/// as in [`suggestions_collection`], its `rank` over all scenes, with the scene's
/// `scene_id` and the id `<scene id>:<tile id>`.
///
/// # Errors
///
/// Those of [`suggestions_collection`]; [`OutputError::Invalid`] when `order` names a
/// pick no result has.
pub fn region_collection(
    results: &[ScoreResult],
    scene_ids: &[i64],
    order: &[(usize, usize)],
) -> Result<FeatureCollection, OutputError> {
    let mut per_scene = results
        .iter()
        .map(|r| suggestions_collection(r).map(|c| c.features.into_iter().map(Some).collect()))
        .collect::<Result<Vec<Vec<Option<Feature>>>, _>>()?;
    let mut features = Vec::with_capacity(order.len());
    for (rank, &(scene, k)) in order.iter().enumerate() {
        let mut f = per_scene
            .get_mut(scene)
            .and_then(|s| s.get_mut(k))
            .and_then(Option::take)
            .ok_or_else(|| OutputError::Invalid(format!("no pick {k} in scene {scene}")))?;
        let id = scene_ids.get(scene).copied().unwrap_or_default();
        if let Some(p) = f.properties.as_mut() {
            p.insert("rank".into(), json!(rank + 1));
            p.insert("scene_id".into(), json!(id));
            p.insert("scene_path".into(), json!(results[scene].scene.path));
        }
        let tile = match &f.id {
            Some(geojson::feature::Id::String(t)) => t.clone(),
            _ => String::new(),
        };
        f.id = Some(geojson::feature::Id::String(format!("{id}:{tile}")));
        features.push(f);
    }
    let mut bbox = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for f in &features {
        if let Some(GeometryValue::Polygon { coordinates: rings }) =
            f.geometry.as_ref().map(|g| &g.value)
        {
            for c in rings.iter().flatten() {
                bbox = [
                    bbox[0].min(c[0]),
                    bbox[1].min(c[1]),
                    bbox[2].max(c[0]),
                    bbox[3].max(c[1]),
                ];
            }
        }
    }
    Ok(FeatureCollection {
        bbox: bbox[0].is_finite().then(|| bbox.to_vec()),
        features,
        foreign_members: None,
    })
}

/// Every scored tile as a FeatureCollection (no ranking).
pub fn tiles_collection(result: &ScoreResult) -> Result<FeatureCollection, OutputError> {
    let chunks = tile_chunks(result, Ok)?;
    Ok(FeatureCollection {
        bbox: None,
        features: chunks.into_iter().flatten().collect(),
        foreign_members: None,
    })
}

/// Writes every scored tile as GeoJSON: the bytes [`write_collection`] writes for
/// [`tiles_collection`], with the features built and serialised chunk by chunk on the
/// compute pool (a full granule's 29,241 footprints make a 46 MB file).
pub fn write_tiles_geojson(result: &ScoreResult, path: &Path) -> Result<(), OutputError> {
    let io = |e: std::io::Error| OutputError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let chunks = tile_chunks(result, |features| {
        let mut json = Vec::new();
        for (k, f) in features.iter().enumerate() {
            if k > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, f).map_err(|e| io(e.into()))?;
        }
        Ok(json)
    })?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    // What serde writes for a FeatureCollection without bbox and foreign members.
    w.write_all(br#"{"type":"FeatureCollection","features":["#)
        .map_err(io)?;
    for (k, chunk) in chunks.iter().filter(|c| !c.is_empty()).enumerate() {
        if k > 0 {
            w.write_all(b",").map_err(io)?;
        }
        w.write_all(chunk).map_err(io)?;
    }
    w.write_all(b"]}\n").map_err(io)?;
    w.flush().map_err(io)
}

/// Every scored tile's feature, in chunks of [`TILE_FEATURES_PER_TASK`] tiles that run
/// side by side on the compute pool (footprints and centres from [`projected`]), each
/// turned into `T` by `finish`; the chunks come back in tile order, the same as one
/// after another.
fn tile_chunks<T: Send>(
    result: &ScoreResult,
    finish: impl Fn(Vec<Feature>) -> Result<T, OutputError> + Sync,
) -> Result<Vec<T>, OutputError> {
    use rayon::prelude::*;
    let places = projected(result)?;
    let indices: Vec<usize> = (0..result.tiles.len()).collect();
    crate::threads::on_selection_pool(|| {
        indices
            .par_chunks(TILE_FEATURES_PER_TASK)
            .map(|chunk| {
                let features = chunk
                    .iter()
                    .map(|&i| {
                        Ok(Feature {
                            bbox: None,
                            geometry: Some(places.footprints[i].clone()),
                            id: Some(geojson::feature::Id::String(result.tiles[i].to_string())),
                            properties: Some(tile_properties(result, places.centres[i], i)?),
                            foreign_members: None,
                        })
                    })
                    .collect::<Result<Vec<_>, OutputError>>()?;
                finish(features)
            })
            .collect()
    })
}

/// Reprojects every scored tile's footprint and centre once, for
/// [`write_tiles_geojson`] and [`write_tiles_csv`] to share when they run side by side
/// (each would otherwise reproject them on a first call).
///
/// # Errors
///
/// [`OutputError`] when the scene's CRS cannot be transformed to lon/lat.
pub fn project_tiles(result: &ScoreResult) -> Result<(), OutputError> {
    projected(result).map(|_| ())
}

/// Every scored tile's footprint ([`footprint_lonlat`]) and centre in lon/lat, for one
/// scene grid and set of tiles.
struct Projected {
    crs_wkt: String,
    grid: TileGrid,
    tiles: Vec<TileId>,
    footprints: Vec<Geometry>,
    centres: Vec<(f64, f64)>,
}

/// [`Projected`] for `result`: reprojected in chunks of [`TILE_FEATURES_PER_TASK`]
/// tiles side by side on the compute pool (each with its own coordinate transformation:
/// GDAL's are not shared between threads), and kept for the next outputs of the same
/// grid, CRS and tiles. The daemon writes every round's `tiles.geojson` and `tiles.csv`
/// for the same scene, and reprojecting a granule's 29,241 footprints was about a fifth
/// of writing them. One scene is kept (15 MB for a granule); the numbers are those of
/// reprojecting every time.
fn projected(result: &ScoreResult) -> Result<Arc<Projected>, OutputError> {
    use rayon::prelude::*;
    static LAST: Mutex<Option<Arc<Projected>>> = Mutex::new(None);
    let same = |p: &Projected| {
        p.crs_wkt == result.scene.crs_wkt && p.grid == result.grid && p.tiles == result.tiles
    };
    if let Some(p) = LAST.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
        && same(p)
    {
        return Ok(Arc::clone(p));
    }
    let indices: Vec<usize> = (0..result.tiles.len()).collect();
    let chunks: Vec<Vec<(Geometry, (f64, f64))>> = crate::threads::on_selection_pool(|| {
        indices
            .par_chunks(TILE_FEATURES_PER_TASK)
            .map(|chunk| {
                let to_wgs84 = Reprojector::from_wkt(&result.scene.crs_wkt, &wgs84()?)?;
                chunk
                    .iter()
                    .map(|&i| {
                        let id = result.tiles[i];
                        let (cx, cy) = result.grid.centre(id);
                        Ok((
                            footprint_lonlat(result, &to_wgs84, id)?,
                            to_wgs84.point(cx, cy)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, OutputError>>()
            })
            .collect::<Result<Vec<_>, OutputError>>()
    })?;
    let (footprints, centres) = chunks.into_iter().flatten().unzip();
    let places = Arc::new(Projected {
        crs_wkt: result.scene.crs_wkt.clone(),
        grid: result.grid.clone(),
        tiles: result.tiles.clone(),
        footprints,
        centres,
    });
    *LAST.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&places));
    Ok(places)
}

/// Write a FeatureCollection as pretty-printed JSON.
pub fn write_collection(fc: &FeatureCollection, path: &Path) -> Result<(), OutputError> {
    let io = |e: std::io::Error| OutputError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut w, fc).map_err(|e| io(e.into()))?;
    w.write_all(b"\n").map_err(io)?;
    w.flush().map_err(io)
}

/// Write `tiles.csv`: one row per scored tile with centre lon/lat, class,
/// metrics, per-class probabilities and, last, the distance to the training data.
pub fn write_tiles_csv(result: &ScoreResult, path: &Path) -> Result<(), OutputError> {
    let io = |e: std::io::Error| OutputError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let places = projected(result)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let mut header = vec![
        "tile_id",
        "row",
        "col",
        "center_lon",
        "center_lat",
        "valid_fraction",
        "predicted_class",
    ]
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>();
    let metrics = result.uncertainties.metrics();
    header.extend(metrics.iter().map(|m| m.name().to_string()));
    header.extend(result.class_names.iter().map(|c| format!("p_{c}")));
    // Last, so that the earlier columns keep their positions.
    header.push(super::DISTANCE_BAND.to_string());
    writeln!(w, "{}", header.join(",")).map_err(io)?;
    for (i, id) in result.tiles.iter().enumerate() {
        let (lon, lat) = places.centres[i];
        let mut row = vec![
            id.to_string(),
            id.row.to_string(),
            id.col.to_string(),
            format!("{:.8}", lon),
            format!("{:.8}", lat),
            format!("{:.4}", result.valid_fraction[i]),
            result
                .class_names
                .get(result.predicted[i])
                .cloned()
                .unwrap_or_default(),
        ];
        row.extend(
            metrics
                .iter()
                .map(|m| format!("{:.6}", result.uncertainties.get(*m)[i])),
        );
        row.extend(
            result
                .uncertainties
                .mean
                .row(i)
                .iter()
                .map(|p| format!("{p:.6}")),
        );
        row.push(format!("{:.6}", result.training_distance.values[i]));
        writeln!(w, "{}", row.join(",")).map_err(io)?;
    }
    w.flush().map_err(io)
}
