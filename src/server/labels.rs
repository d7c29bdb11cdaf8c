//! Parsing the labels clients post: a GeoJSON FeatureCollection of points or polygons,
//! each with a `class` property naming one of the project's classes, in EPSG:4326 or a
//! CRS named by the legacy `crs` member or the request. Stored geometries are EPSG:4326.
//!
//! This is the daemon's main untrusted-input parser; it never panics (fuzzed by
//! `fuzz/fuzz_targets/labels.rs`) and names the offending feature in every error.

use serde_json::Value;

use crate::aoi::{LABEL_CLASS_PROPERTY, UNUSABLE_CLASS};
use crate::crs::{Reprojector, parse_srs, wgs84};
use crate::store::NewLabel;

/// Why a labels document was refused (HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Not JSON / not a FeatureCollection.
    #[error("labels must be a GeoJSON FeatureCollection: {0}")]
    NotFeatureCollection(String),
    /// No features.
    #[error("the FeatureCollection has no features")]
    Empty,
    /// Too many features.
    #[error("{found} features in one request; send at most {max} per request")]
    TooMany {
        /// Features sent.
        found: usize,
        /// Limit.
        max: usize,
    },
    /// A feature is unusable.
    #[error("feature {index}: {message}")]
    Feature {
        /// 0-based feature index.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The CRS cannot be used.
    #[error("CRS {crs:?}: {message}")]
    Crs {
        /// The CRS as given.
        crs: String,
        /// Why.
        message: String,
    },
}

const GEOMETRY_TYPES: [&str; 4] = ["Point", "MultiPoint", "Polygon", "MultiPolygon"];

/// Parses `body` into labels for a project with `classes` (or the reserved
/// [`UNUSABLE_CLASS`]), reprojecting to EPSG:4326.
/// `crs_param` (e.g. from `?crs=EPSG:32618`) wins over a legacy `crs` member.
///
/// # Errors
///
/// A [`LabelError`] naming the first bad feature and, for an unknown class, the
/// valid classes.
pub fn parse_labels(
    body: &[u8],
    classes: &[String],
    crs_param: Option<&str>,
    max: usize,
) -> Result<Vec<NewLabel>, LabelError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| LabelError::NotFeatureCollection(format!("not JSON ({e})")))?;
    if doc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(LabelError::NotFeatureCollection(
            "its \"type\" is not \"FeatureCollection\"".into(),
        ));
    }
    let features = doc
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| LabelError::NotFeatureCollection("\"features\" is not an array".into()))?;
    if features.is_empty() {
        return Err(LabelError::Empty);
    }
    if features.len() > max {
        return Err(LabelError::TooMany {
            found: features.len(),
            max,
        });
    }
    let crs = crs_param.map(str::to_string).or_else(|| {
        doc.get("crs")
            .and_then(|c| c.get("properties"))
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let reprojector = match crs.as_deref() {
        None => None,
        Some(c) if is_wgs84(c) => None,
        Some(c) => {
            let bad = |m: String| LabelError::Crs {
                crs: c.to_string(),
                message: m,
            };
            let from = parse_srs(c).map_err(|e| bad(e.to_string()))?;
            let to = wgs84().map_err(|e| bad(e.to_string()))?;
            Some(Reprojector::new(&from, &to).map_err(|e| bad(e.to_string()))?)
        }
    };
    let mut out = Vec::with_capacity(features.len());
    for (index, f) in features.iter().enumerate() {
        let bad = |m: String| LabelError::Feature { index, message: m };
        if f.get("type").and_then(Value::as_str) != Some("Feature") {
            return Err(bad("not a Feature".into()));
        }
        let props = f.get("properties").and_then(Value::as_object);
        let class = match props.and_then(|p| p.get(LABEL_CLASS_PROPERTY)) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(bad(format!(
                    "no \"{LABEL_CLASS_PROPERTY}\" property; set it to one of: {} (or \"{UNUSABLE_CLASS}\" for a tile that cannot be labelled)",
                    classes.join(", ")
                )));
            }
        };
        if !classes.contains(&class) && class != UNUSABLE_CLASS {
            return Err(bad(format!(
                "class {class:?} is not one of this project's classes: {} (or \"{UNUSABLE_CLASS}\" for a tile that cannot be labelled: never suggested again, never trained on)",
                classes.join(", ")
            )));
        }
        let geometry = f
            .get("geometry")
            .filter(|g| !g.is_null())
            .ok_or_else(|| bad("no geometry".into()))?;
        let kind = geometry.get("type").and_then(Value::as_str).unwrap_or("");
        if !GEOMETRY_TYPES.contains(&kind) {
            return Err(bad(format!(
                "geometry type {kind:?} is not one of {}",
                GEOMETRY_TYPES.join(", ")
            )));
        }
        // Validate the structure with the geojson crate (rings closed etc. are not
        // required; nesting and numbers are).
        serde_json::from_value::<geojson::Geometry>(geometry.clone())
            .map_err(|e| bad(format!("invalid {kind}: {e}")))?;
        let mut coords = geometry.get("coordinates").cloned().unwrap_or(Value::Null);
        let mut count = 0usize;
        transform(&mut coords, &mut |x, y| {
            count += 1;
            if !x.is_finite() || !y.is_finite() {
                return Err("a coordinate is not a finite number".to_string());
            }
            match &reprojector {
                Some(r) => r.point(x, y).map_err(|e| e.to_string()),
                None => Ok((x, y)),
            }
        })
        .map_err(bad)?;
        if count == 0 {
            return Err(bad("geometry has no coordinates".into()));
        }
        if reprojector.is_none() {
            let mut outside = false;
            transform(&mut coords.clone(), &mut |x, y| {
                outside |= !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y);
                Ok((x, y))
            })
            .map_err(bad)?;
            if outside {
                return Err(bad(
                    "coordinates are outside lon/lat range; name the CRS (e.g. ?crs=EPSG:32618 or a \"crs\" member)".into(),
                ));
            }
        }
        let text = |k: &str| {
            props
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(200).collect::<String>())
        };
        out.push(NewLabel {
            class,
            geometry: serde_json::json!({"type": kind, "coordinates": coords}),
            author: text("author"),
            source: text("source"),
        });
    }
    Ok(out)
}

/// A lon/lat bounding box `[min_lon, min_lat, max_lon, max_lat]` (EPSG:4326).
pub type Bbox = [f64; 4];

/// Parses a `bbox` query value, `min_lon,min_lat,max_lon,max_lat` in EPSG:4326.
///
/// # Errors
///
/// A message saying what a valid box looks like.
pub fn parse_bbox(text: &str) -> Result<Bbox, String> {
    let bad = || {
        format!(
            "bbox must be min_lon,min_lat,max_lon,max_lat in EPSG:4326 (four numbers, min <= max, lon within ±180, lat within ±90), got {:?}",
            text.chars().take(100).collect::<String>()
        )
    };
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [x0, y0, x1, y1] = <[f64; 4]>::try_from(parts).map_err(|_| bad())?;
    let lon = -180.0..=180.0;
    let lat = -90.0..=90.0;
    let ok = [x0, x1].iter().all(|x| lon.contains(x))
        && [y0, y1].iter().all(|y| lat.contains(y))
        && x0 <= x1
        && y0 <= y1;
    if ok { Ok([x0, y0, x1, y1]) } else { Err(bad()) }
}

/// The bounding box of a stored label geometry, `None` when it has no position.
pub fn geometry_bbox(geometry: &Value) -> Option<Bbox> {
    fn walk(v: &Value, b: &mut Option<Bbox>) {
        match v {
            Value::Array(items) if items.len() >= 2 && items.iter().all(Value::is_number) => {
                let (Some(x), Some(y)) = (items[0].as_f64(), items[1].as_f64()) else {
                    return;
                };
                let next = match *b {
                    None => [x, y, x, y],
                    Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
                };
                *b = Some(next);
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, b)),
            _ => {}
        }
    }
    let mut b = None;
    walk(geometry.get("coordinates")?, &mut b);
    b
}

/// Whether two boxes share a point (touching counts).
pub fn bboxes_meet(a: &Bbox, b: &Bbox) -> bool {
    a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3]
}

fn is_wgs84(crs: &str) -> bool {
    let c = crs.trim().to_ascii_uppercase();
    c == "EPSG:4326" || c.ends_with("CRS84") || c.ends_with("EPSG::4326")
}

/// Applies `f` to every `[x, y, ...]` position inside a geometry value.
fn transform(
    v: &mut Value,
    f: &mut dyn FnMut(f64, f64) -> Result<(f64, f64), String>,
) -> Result<(), String> {
    match v {
        Value::Array(items) if items.len() >= 2 && items.iter().all(Value::is_number) => {
            let x = items[0].as_f64().unwrap_or(f64::NAN);
            let y = items[1].as_f64().unwrap_or(f64::NAN);
            let (nx, ny) = f(x, y)?;
            items[0] = serde_json::json!(nx);
            items[1] = serde_json::json!(ny);
            items.truncate(2);
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|i| transform(i, f)),
        Value::Object(map) => map.values_mut().try_for_each(|i| transform(i, f)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        vec!["Forest".into(), "SeaLake".into()]
    }

    #[test]
    fn accepts_points_and_polygons_and_reprojects() {
        let body = br#"{"type":"FeatureCollection","features":[
          {"type":"Feature","properties":{"class":"Forest","author":"ana"},"geometry":{"type":"Point","coordinates":[-75.6,37.8]}},
          {"type":"Feature","properties":{"class":"SeaLake"},"geometry":{"type":"Polygon","coordinates":[[[-75.6,37.8],[-75.5,37.8],[-75.5,37.9],[-75.6,37.8]]]}}]}"#;
        let l = parse_labels(body, &classes(), None, 100).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].author.as_deref(), Some("ana"));
        assert_eq!(l[1].geometry["type"], "Polygon");
        // UTM 18N metres -> lon/lat.
        let utm = br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":[440000,4170000]}}]}"#;
        let l = parse_labels(utm, &classes(), Some("EPSG:32618"), 100).unwrap();
        let lon = l[0].geometry["coordinates"][0].as_f64().unwrap();
        let lat = l[0].geometry["coordinates"][1].as_f64().unwrap();
        assert!(
            (lon + 75.68).abs() < 0.05 && (lat - 37.68).abs() < 0.05,
            "{lon} {lat}"
        );
    }

    #[test]
    fn bboxes_of_geometries_and_queries() {
        assert_eq!(
            parse_bbox(" -76, 37.5,-75,38 "),
            Ok([-76.0, 37.5, -75.0, 38.0])
        );
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "a,b,c,d",
            "3,0,1,1",
            "0,0,200,1",
            "0,NaN,1,1",
        ] {
            assert!(parse_bbox(bad).unwrap_err().contains("min_lon"), "{bad}");
        }
        let point = serde_json::json!({"type": "Point", "coordinates": [1.0, 2.0]});
        assert_eq!(geometry_bbox(&point), Some([1.0, 2.0, 1.0, 2.0]));
        let poly = serde_json::json!({"type": "MultiPolygon", "coordinates": [[[[0, 0], [3, 1], [1, -2], [0, 0]]]]});
        let b = geometry_bbox(&poly).unwrap();
        assert_eq!(b, [0.0, -2.0, 3.0, 1.0]);
        assert!(bboxes_meet(&b, &[3.0, 1.0, 4.0, 4.0]));
        assert!(!bboxes_meet(&b, &[3.1, 1.0, 4.0, 4.0]));
        assert_eq!(geometry_bbox(&serde_json::json!({"type": "Point"})), None);
    }

    #[test]
    fn refuses_bad_input_with_a_useful_message() {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"not json", "not JSON"),
            (br#"{"type":"Feature"}"#, "FeatureCollection"),
            (br#"{"type":"FeatureCollection","features":[]}"#, "no features"),
            (br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Glacier"},"geometry":{"type":"Point","coordinates":[1,2]}}]}"#, "Forest, SeaLake"),
            (br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}]}"#, "no \"class\""),
            (br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"LineString","coordinates":[[1,2],[3,4]]}}]}"#, "LineString"),
            (br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},"geometry":null}]}"#, "no geometry"),
            (br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":[440000,4170000]}}]}"#, "outside lon/lat"),
            (br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":"x"}}]}"#, "invalid Point"),
        ];
        for (body, needle) in cases {
            let msg = parse_labels(body, &classes(), None, 100)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(needle), "{msg} should mention {needle}");
        }
        let many = format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            [r#"{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":[1,2]}}"#; 3].join(",")
        );
        assert!(matches!(
            parse_labels(many.as_bytes(), &classes(), None, 2),
            Err(LabelError::TooMany { found: 3, max: 2 })
        ));
        assert!(parse_labels(br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":[1,2]}}]}"#, &classes(), Some("EPSG:999999"), 10).is_err());
    }
}
