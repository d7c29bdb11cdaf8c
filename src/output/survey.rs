//! Exports for field-survey teams: the suggestions as a GeoPackage (with the labels as a
//! second layer; opens in QGIS and QField), GPX waypoints and a CSV, all in a short
//! **visit order** through the picks.
//!
//! The visit order is an open path starting at rank 1: nearest-neighbour construction,
//! then 2-opt moves (reverse a segment when that shortens the path) until none helps or
//! a pass budget runs out. Distances are on a local equirectangular plane around the
//! picks' centroid (metres; < 1 % error over a Sentinel-2 granule), which is what a
//! survey team drives across, not embedding space.

use std::path::Path;

use gdal::DriverManager;
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::vector::{
    Feature, Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType,
};
use serde_json::Value;

use super::OutputError;

/// Mean Earth radius, metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Upper bound on 2-opt improvement passes.
const MAX_TWO_OPT_PASSES: usize = 50;

/// One suggestion as a survey point.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyPoint {
    /// Suggestion rank (1 = most wanted).
    pub rank: u64,
    /// Tile id (`r<row>_c<col>`).
    pub tile_id: String,
    /// Tile centre longitude.
    pub lon: f64,
    /// Tile centre latitude.
    pub lat: f64,
    /// The strategy's score.
    pub score: f64,
    /// The head's predicted class, if any.
    pub predicted_class: Option<String>,
}

/// The survey points of a suggestions FeatureCollection (as `score` writes it), in rank
/// order.
///
/// # Errors
///
/// [`OutputError::Invalid`] when a feature lacks its centre or rank.
pub fn survey_points(suggestions: &Value) -> Result<Vec<SurveyPoint>, OutputError> {
    let features = suggestions["features"]
        .as_array()
        .ok_or_else(|| OutputError::Invalid("suggestions are not a FeatureCollection".into()))?;
    let mut out = Vec::with_capacity(features.len());
    for (i, f) in features.iter().enumerate() {
        let p = &f["properties"];
        let num = |k: &str| {
            p[k].as_f64()
                .ok_or_else(|| OutputError::Invalid(format!("suggestion {i} has no numeric `{k}`")))
        };
        out.push(SurveyPoint {
            rank: p["rank"].as_u64().unwrap_or(i as u64 + 1),
            // A pick of a selection over many scenes names its scene too.
            tile_id: match p["scene_id"].as_i64() {
                Some(scene) => format!("{scene}:{}", p["tile_id"].as_str().unwrap_or_default()),
                None => p["tile_id"].as_str().unwrap_or_default().to_string(),
            },
            lon: num("center_lon")?,
            lat: num("center_lat")?,
            score: p["score"].as_f64().unwrap_or(f64::NAN),
            predicted_class: p["predicted_class"].as_str().map(str::to_string),
        });
    }
    out.sort_by_key(|p| p.rank);
    Ok(out)
}

/// Positions on a local plane, metres.
fn local_xy(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let n = points.len().max(1) as f64;
    let lat0 = points.iter().map(|p| p.1).sum::<f64>() / n;
    let k = lat0.to_radians().cos();
    points
        .iter()
        .map(|&(lon, lat)| {
            (
                lon.to_radians() * k * EARTH_RADIUS_M,
                lat.to_radians() * EARTH_RADIUS_M,
            )
        })
        .collect()
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// Length in metres of the open path through `points` (lon, lat) in `order`.
pub fn path_length_m(points: &[(f64, f64)], order: &[usize]) -> f64 {
    let xy = local_xy(points);
    order.windows(2).map(|w| dist(xy[w[0]], xy[w[1]])).sum()
}

/// A short open path through `points` (lon, lat) starting at index 0: nearest neighbour,
/// then 2-opt. Returns the visiting order (indices into `points`).
pub fn visit_order(points: &[(f64, f64)]) -> Vec<usize> {
    let n = points.len();
    if n <= 2 {
        return (0..n).collect();
    }
    let xy = local_xy(points);
    let mut order = Vec::with_capacity(n);
    let mut used = vec![false; n];
    let mut current = 0;
    used[0] = true;
    order.push(0);
    for _ in 1..n {
        let next = (0..n)
            .filter(|&j| !used[j])
            .min_by(|&a, &b| dist(xy[current], xy[a]).total_cmp(&dist(xy[current], xy[b])))
            .unwrap_or(current);
        used[next] = true;
        order.push(next);
        current = next;
    }
    // 2-opt on an open path with a fixed start: reversing order[i..=j] replaces edges
    // (i-1, i) and (j, j+1) by (i-1, j) and (i, j+1); the last edge may be absent.
    for _ in 0..MAX_TWO_OPT_PASSES {
        let mut improved = false;
        for i in 1..n - 1 {
            for j in i + 1..n {
                let a = xy[order[i - 1]];
                let b = xy[order[i]];
                let c = xy[order[j]];
                let before = dist(a, b) + order.get(j + 1).map_or(0.0, |&d| dist(c, xy[d]));
                let after = dist(a, c) + order.get(j + 1).map_or(0.0, |&d| dist(b, xy[d]));
                if after + 1e-9 < before {
                    order[i..=j].reverse();
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    order
}

fn gdal_err(path: &Path, e: impl std::fmt::Display) -> OutputError {
    OutputError::Gdal {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn wgs84_traditional() -> Result<SpatialRef, gdal::errors::GdalError> {
    let mut srs = SpatialRef::from_epsg(4326)?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// Writes `visit,rank,tile_id,lon,lat,score,predicted_class` in visit order.
///
/// # Errors
///
/// [`OutputError::Io`] when the file cannot be written.
pub fn write_survey_csv(
    points: &[SurveyPoint],
    order: &[usize],
    path: &Path,
) -> Result<(), OutputError> {
    let mut text = String::from("visit,rank,tile_id,lon,lat,score,predicted_class\n");
    for (visit, &i) in order.iter().enumerate() {
        let p = &points[i];
        text.push_str(&format!(
            "{},{},{},{:.7},{:.7},{},{}\n",
            visit + 1,
            p.rank,
            p.tile_id,
            p.lon,
            p.lat,
            p.score,
            p.predicted_class.as_deref().unwrap_or("")
        ));
    }
    std::fs::write(path, text).map_err(|e| OutputError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

/// Writes GPX waypoints (GDAL's GPX driver) in visit order, named
/// `<visit>. rank <rank> <tile_id>`.
///
/// # Errors
///
/// [`OutputError::Gdal`] when GDAL cannot write it.
pub fn write_gpx(points: &[SurveyPoint], order: &[usize], path: &Path) -> Result<(), OutputError> {
    let driver = DriverManager::get_driver_by_name("GPX").map_err(|e| gdal_err(path, e))?;
    let mut ds = driver
        .create_vector_only(path)
        .map_err(|e| gdal_err(path, e))?;
    let srs = wgs84_traditional().map_err(|e| gdal_err(path, e))?;
    let layer = ds
        .create_layer(LayerOptions {
            name: "waypoints",
            srs: Some(&srs),
            ty: OGRwkbGeometryType::wkbPoint,
            options: None,
        })
        .map_err(|e| gdal_err(path, e))?;
    let defn = layer.defn();
    let name_idx = defn.field_index("name").map_err(|e| gdal_err(path, e))?;
    let desc_idx = defn.field_index("desc").map_err(|e| gdal_err(path, e))?;
    for (visit, &i) in order.iter().enumerate() {
        let p = &points[i];
        let mut f = Feature::new(defn).map_err(|e| gdal_err(path, e))?;
        f.set_field_string(
            name_idx,
            &format!("{}. rank {} {}", visit + 1, p.rank, p.tile_id),
        )
        .map_err(|e| gdal_err(path, e))?;
        f.set_field_string(
            desc_idx,
            &format!(
                "score {:.4}; predicted {}",
                p.score,
                p.predicted_class.as_deref().unwrap_or("?")
            ),
        )
        .map_err(|e| gdal_err(path, e))?;
        let mut g = Geometry::empty(OGRwkbGeometryType::wkbPoint).map_err(|e| gdal_err(path, e))?;
        g.add_point_2d((p.lon, p.lat));
        f.set_geometry(g).map_err(|e| gdal_err(path, e))?;
        f.create(&layer).map_err(|e| gdal_err(path, e))?;
    }
    ds.close().map_err(|e| gdal_err(path, e))
}

/// A new GeoPackage at `path` and EPSG:4326 in lon/lat order, for its layers.
fn create_geopackage(path: &Path) -> Result<(gdal::Dataset, SpatialRef), OutputError> {
    let driver = DriverManager::get_driver_by_name("GPKG").map_err(|e| gdal_err(path, e))?;
    let ds = driver
        .create_vector_only(path)
        .map_err(|e| gdal_err(path, e))?;
    let srs = wgs84_traditional().map_err(|e| gdal_err(path, e))?;
    Ok((ds, srs))
}

/// The GDAL field type of a JSON property: integers as 64-bit integers, other numbers as
/// reals, booleans as integers, anything else as a string.
fn field_type(v: &Value) -> OGRFieldType::Type {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => OGRFieldType::OFTInteger64,
        Value::Number(_) => OGRFieldType::OFTReal,
        Value::Bool(_) => OGRFieldType::OFTInteger64,
        _ => OGRFieldType::OFTString,
    }
}

/// The layer geometry type of `features`: their GeoJSON type when they all share one
/// of Point, LineString, Polygon or MultiPolygon, else any.
fn geometry_type(features: &[Value]) -> OGRwkbGeometryType::Type {
    let mut kinds = features.iter().map(|f| f["geometry"]["type"].as_str());
    let first = kinds.next().flatten();
    if !kinds.all(|k| k == first) {
        return OGRwkbGeometryType::wkbUnknown;
    }
    match first {
        Some("Point") => OGRwkbGeometryType::wkbPoint,
        Some("LineString") => OGRwkbGeometryType::wkbLineString,
        Some("Polygon") => OGRwkbGeometryType::wkbPolygon,
        Some("MultiPolygon") => OGRwkbGeometryType::wkbMultiPolygon,
        _ => OGRwkbGeometryType::wkbUnknown,
    }
}

/// Writes a GeoJSON FeatureCollection (lon/lat, RFC 7946) as the layer `layer` of a new
/// GeoPackage at `path` (EPSG:4326): one feature per feature, one field per property
/// (typed by its first non-null value: integer, real or string; null stays unset). What
/// `select` writes next to its GeoJSON.
///
/// # Errors
///
/// [`OutputError::Gdal`] when GDAL cannot write it, [`OutputError::Invalid`] for a
/// geometry GDAL cannot read.
pub fn write_features_geopackage(fc: &Value, layer: &str, path: &Path) -> Result<(), OutputError> {
    let features = fc["features"].as_array().cloned().unwrap_or_default();
    let mut fields: Vec<(String, OGRFieldType::Type)> = Vec::new();
    for f in &features {
        for (k, v) in f["properties"].as_object().into_iter().flatten() {
            if !v.is_null() && !fields.iter().any(|(n, _)| n == k) {
                fields.push((k.clone(), field_type(v)));
            }
        }
    }
    let (mut ds, srs) = create_geopackage(path)?;
    let lyr = ds
        .create_layer(LayerOptions {
            name: layer,
            srs: Some(&srs),
            ty: geometry_type(&features),
            options: None,
        })
        .map_err(|e| gdal_err(path, e))?;
    let defs: Vec<(&str, OGRFieldType::Type)> =
        fields.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    lyr.create_defn_fields(&defs)
        .map_err(|e| gdal_err(path, e))?;
    for (i, feat) in features.iter().enumerate() {
        let geom = Geometry::from_geojson(&feat["geometry"].to_string())
            .map_err(|e| OutputError::Invalid(format!("feature {}: {e}", i + 1)))?;
        let mut f = Feature::new(lyr.defn()).map_err(|e| gdal_err(path, e))?;
        for (k, (_, t)) in fields.iter().enumerate() {
            let v = &feat["properties"][fields[k].0.as_str()];
            let set = match (v, *t) {
                (Value::Null, _) => Ok(()),
                (Value::Bool(b), _) => f.set_field_integer64(k, i64::from(*b)),
                (v, OGRFieldType::OFTInteger64) if v.is_i64() => {
                    f.set_field_integer64(k, v.as_i64().unwrap_or_default())
                }
                (v, OGRFieldType::OFTInteger64 | OGRFieldType::OFTReal) if v.is_number() => {
                    f.set_field_double(k, v.as_f64().unwrap_or(f64::NAN))
                }
                (Value::String(s), _) => f.set_field_string(k, s),
                (v, _) => f.set_field_string(k, &v.to_string()),
            };
            set.map_err(|e| gdal_err(path, e))?;
        }
        f.set_geometry(geom).map_err(|e| gdal_err(path, e))?;
        f.create(&lyr).map_err(|e| gdal_err(path, e))?;
    }
    ds.close().map_err(|e| gdal_err(path, e))
}

/// Writes a GeoPackage with a `suggestions` layer (tile polygons with rank, visit, tile
/// id, score, predicted class and an empty `class` field for the analyst) and a `labels`
/// layer (the project's labels: class, author, created), both EPSG:4326.
///
/// # Errors
///
/// [`OutputError::Gdal`] when GDAL cannot write it, [`OutputError::Invalid`] for a
/// geometry GDAL cannot read.
pub fn write_geopackage(
    suggestions: &Value,
    points: &[SurveyPoint],
    order: &[usize],
    labels: &Value,
    path: &Path,
) -> Result<(), OutputError> {
    let (mut ds, srs) = create_geopackage(path)?;
    let mut visit_of = vec![0usize; points.len()];
    for (v, &i) in order.iter().enumerate() {
        visit_of[i] = v + 1;
    }
    {
        let layer = ds
            .create_layer(LayerOptions {
                name: "suggestions",
                srs: Some(&srs),
                ty: OGRwkbGeometryType::wkbPolygon,
                options: None,
            })
            .map_err(|e| gdal_err(path, e))?;
        layer
            .create_defn_fields(&[
                ("rank", OGRFieldType::OFTInteger),
                ("visit", OGRFieldType::OFTInteger),
                ("tile_id", OGRFieldType::OFTString),
                ("score", OGRFieldType::OFTReal),
                ("predicted_class", OGRFieldType::OFTString),
                ("class", OGRFieldType::OFTString),
            ])
            .map_err(|e| gdal_err(path, e))?;
        let features = suggestions["features"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, feat) in features.iter().enumerate() {
            let rank = feat["properties"]["rank"].as_u64().unwrap_or(i as u64 + 1);
            let Some(pi) = points.iter().position(|p| p.rank == rank) else {
                continue;
            };
            let p = &points[pi];
            let geom = Geometry::from_geojson(&feat["geometry"].to_string())
                .map_err(|e| OutputError::Invalid(format!("suggestion {rank}: {e}")))?;
            let mut f = Feature::new(layer.defn()).map_err(|e| gdal_err(path, e))?;
            f.set_field_integer(0, p.rank as i32)
                .map_err(|e| gdal_err(path, e))?;
            f.set_field_integer(1, visit_of[pi] as i32)
                .map_err(|e| gdal_err(path, e))?;
            f.set_field_string(2, &p.tile_id)
                .map_err(|e| gdal_err(path, e))?;
            f.set_field_double(3, p.score)
                .map_err(|e| gdal_err(path, e))?;
            f.set_field_string(4, p.predicted_class.as_deref().unwrap_or(""))
                .map_err(|e| gdal_err(path, e))?;
            f.set_geometry(geom).map_err(|e| gdal_err(path, e))?;
            f.create(&layer).map_err(|e| gdal_err(path, e))?;
        }
    }
    {
        let layer = ds
            .create_layer(LayerOptions {
                name: "labels",
                srs: Some(&srs),
                ty: OGRwkbGeometryType::wkbUnknown,
                options: None,
            })
            .map_err(|e| gdal_err(path, e))?;
        layer
            .create_defn_fields(&[
                ("label_id", OGRFieldType::OFTInteger64),
                ("class", OGRFieldType::OFTString),
                ("author", OGRFieldType::OFTString),
                ("created", OGRFieldType::OFTString),
            ])
            .map_err(|e| gdal_err(path, e))?;
        for feat in labels["features"].as_array().cloned().unwrap_or_default() {
            let p = &feat["properties"];
            let geom = Geometry::from_geojson(&feat["geometry"].to_string())
                .map_err(|e| OutputError::Invalid(format!("label: {e}")))?;
            let mut f = Feature::new(layer.defn()).map_err(|e| gdal_err(path, e))?;
            f.set_field_integer64(0, p["id"].as_i64().unwrap_or(0))
                .map_err(|e| gdal_err(path, e))?;
            f.set_field_string(1, p["class"].as_str().unwrap_or(""))
                .map_err(|e| gdal_err(path, e))?;
            f.set_field_string(2, p["author"].as_str().unwrap_or(""))
                .map_err(|e| gdal_err(path, e))?;
            f.set_field_string(3, p["created"].as_str().unwrap_or(""))
                .map_err(|e| gdal_err(path, e))?;
            f.set_geometry(geom).map_err(|e| gdal_err(path, e))?;
            f.create(&layer).map_err(|e| gdal_err(path, e))?;
        }
    }
    ds.close().map_err(|e| gdal_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visit_order_starts_at_rank_one_and_beats_rank_order() {
        // Points along a line in a scrambled rank order: the tour walks the line.
        let xs = [0.0, 0.04, 0.01, 0.03, 0.02, 0.05];
        let pts: Vec<(f64, f64)> = xs.iter().map(|&x| (-75.0 + x, 37.0)).collect();
        let order = visit_order(&pts);
        assert_eq!(order[0], 0);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>());
        assert_eq!(order, vec![0, 2, 4, 3, 1, 5]);
        let rank_len = path_length_m(&pts, &(0..6).collect::<Vec<_>>());
        let tour_len = path_length_m(&pts, &order);
        assert!(tour_len < rank_len);
        // 0.05 degrees of longitude at 37 N is about 4.44 km.
        assert!((tour_len - 4440.0).abs() < 30.0, "{tour_len}");
        assert_eq!(visit_order(&[]), Vec::<usize>::new());
        assert_eq!(visit_order(&[(1.0, 2.0)]), vec![0]);
    }

    #[test]
    fn two_opt_removes_a_crossing() {
        // A square visited corner to corner: NN from (0,0) may cross; 2-opt must not.
        let pts = vec![(0.0, 0.0), (0.01, 0.01), (0.01, 0.0), (0.0, 0.01)];
        let order = visit_order(&pts);
        let len = path_length_m(&pts, &order);
        // The shortest open path from (0,0) visits three unit edges of the square.
        let edge = path_length_m(&pts, &[0, 2]);
        assert!(len <= 3.0 * edge * 1.01, "{len} vs {edge}");
    }
}
