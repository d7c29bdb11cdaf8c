//! Areas of interest: GeoJSON polygons in any CRS, brought into the scene CRS.

use geo::{Densify, Euclidean, MultiPolygon, Point, Polygon};
use geojson::GeoJson;

use crate::crs::{CrsError, Reprojector, parse_srs};

/// Errors from reading an AOI.
#[derive(Debug, thiserror::Error)]
pub enum AoiError {
    /// The file could not be read.
    #[error("cannot read AOI file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// Not GeoJSON.
    #[error("the AOI is not valid GeoJSON: {0}")]
    Parse(String),
    /// No usable geometry in a labels file.
    #[error("the labels file holds no Point or Polygon features (found {0})")]
    NoLabels(String),
    /// No polygon in it.
    #[error("the AOI holds no Polygon or MultiPolygon (found {0}); draw the area as a polygon")]
    NoPolygon(String),
    /// CRS problem.
    #[error(transparent)]
    Crs(#[from] CrsError),
}

/// An AOI as given: polygons plus the CRS they are in.
#[derive(Debug, Clone)]
pub struct Aoi {
    /// The polygons (all features merged).
    pub polygons: MultiPolygon<f64>,
    /// CRS definition (`EPSG:4326` unless the GeoJSON names another).
    pub crs: String,
}

impl Aoi {
    /// Parse GeoJSON text (FeatureCollection, Feature or bare geometry).
    /// RFC 7946 GeoJSON is WGS 84 lon/lat; a legacy `"crs": {"type": "name",
    /// "properties": {"name": "EPSG:32618"}}` member, or `crs_override`,
    /// names another CRS.
    pub fn from_geojson(text: &str, crs_override: Option<&str>) -> Result<Aoi, AoiError> {
        let g = Geometries::parse(text, crs_override)?;
        if g.polygons.0.is_empty() {
            return Err(AoiError::NoPolygon(g.found_list()));
        }
        Ok(Aoi {
            polygons: g.polygons,
            crs: g.crs,
        })
    }

    /// Read a GeoJSON file.
    pub fn from_file(path: &std::path::Path, crs_override: Option<&str>) -> Result<Aoi, AoiError> {
        Self::from_geojson(&read_text(path)?, crs_override)
    }

    /// The AOI in the scene CRS; edges are densified before reprojection so
    /// long lon/lat edges bend correctly.
    pub fn to_scene_crs(&self, scene_wkt: &str) -> Result<MultiPolygon<f64>, AoiError> {
        polygons_to_scene(&self.polygons, &self.crs, scene_wkt)
    }
}

/// Polygons and points of a GeoJSON document, with its CRS.
struct Geometries {
    polygons: MultiPolygon<f64>,
    points: Vec<Point<f64>>,
    /// The `class` property of the feature each polygon came from.
    polygon_classes: Vec<Option<String>>,
    /// The `class` property of the feature each point came from.
    point_classes: Vec<Option<String>>,
    found: Vec<String>,
    crs: String,
}

/// The `class` property of a feature: a string, or a number written as text.
fn class_of(f: &geojson::Feature) -> Option<String> {
    match f.property(LABEL_CLASS_PROPERTY)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Geometries {
    /// The geometry types found, for error messages.
    fn found_list(&self) -> String {
        if self.found.is_empty() {
            "nothing".into()
        } else {
            self.found.join(", ")
        }
    }

    fn parse(text: &str, crs_override: Option<&str>) -> Result<Geometries, AoiError> {
        let gj: GeoJson = text
            .parse()
            .map_err(|e: geojson::Error| AoiError::Parse(e.to_string()))?;
        let mut polys: Vec<Polygon<f64>> = Vec::new();
        let mut points: Vec<Point<f64>> = Vec::new();
        let mut polygon_classes = Vec::new();
        let mut point_classes = Vec::new();
        let mut found = Vec::new();
        let mut push = |g: &geojson::Geometry, class: Option<String>| {
            found.push(g.value.type_name().to_string());
            let (np, nq) = (polys.len(), points.len());
            match geo::Geometry::<f64>::try_from(g.value.clone()) {
                Ok(geo::Geometry::Polygon(p)) => polys.push(p),
                Ok(geo::Geometry::MultiPolygon(mp)) => polys.extend(mp.0),
                Ok(geo::Geometry::Point(p)) => points.push(p),
                Ok(geo::Geometry::MultiPoint(mp)) => points.extend(mp.0),
                _ => {}
            }
            polygon_classes.resize(polygon_classes.len() + polys.len() - np, class.clone());
            point_classes.resize(point_classes.len() + points.len() - nq, class);
        };
        match &gj {
            GeoJson::FeatureCollection(fc) => {
                for f in &fc.features {
                    if let Some(g) = &f.geometry {
                        push(g, class_of(f));
                    }
                }
            }
            GeoJson::Feature(f) => {
                if let Some(g) = &f.geometry {
                    push(g, class_of(f));
                }
            }
            GeoJson::Geometry(g) => push(g, None),
        }
        let crs = crs_override
            .map(str::to_string)
            .or_else(|| legacy_crs(text))
            .unwrap_or_else(|| "EPSG:4326".into());
        Ok(Geometries {
            polygons: MultiPolygon(polys),
            points,
            polygon_classes,
            point_classes,
            found,
            crs,
        })
    }
}

/// Polygons and points `(x, y)` in a scene's CRS.
pub type SceneGeometries = (MultiPolygon<f64>, Vec<(f64, f64)>);

/// Areas and points that are already labelled (e.g. an earlier round's
/// labels): the tiles they touch are never suggested again and count as
/// existing centres for core-set and ground spacing.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// Labelled polygons.
    pub polygons: MultiPolygon<f64>,
    /// Labelled points.
    pub points: Vec<Point<f64>>,
    /// The `class` property of each polygon's feature (`None` when it has none), in
    /// the order of `polygons`.
    pub polygon_classes: Vec<Option<String>>,
    /// The `class` property of each point's feature, in the order of `points`.
    pub point_classes: Vec<Option<String>>,
    /// Their CRS.
    pub crs: String,
}

/// The feature property that carries a label's class name.
pub const LABEL_CLASS_PROPERTY: &str = "class";

/// The reserved class an analyst gives a tile that cannot be labelled (cloud, nodata,
/// a sensor artefact): accepted by every project, it excludes its tile from
/// suggestions like any label, but head training and class-balanced selection skip it
/// (unless the head itself has a class of that name, which then is a real class).
pub const UNUSABLE_CLASS: &str = "unusable";

impl Labelled {
    /// Read a GeoJSON file of Point/MultiPoint/Polygon/MultiPolygon features.
    pub fn from_file(
        path: &std::path::Path,
        crs_override: Option<&str>,
    ) -> Result<Labelled, AoiError> {
        Self::from_geojson(&read_text(path)?, crs_override)
    }

    /// Parse GeoJSON text of Point/MultiPoint/Polygon/MultiPolygon features (same CRS
    /// rules as [`Aoi::from_geojson`]); each feature's `class` property is kept.
    pub fn from_geojson(text: &str, crs_override: Option<&str>) -> Result<Labelled, AoiError> {
        let g = Geometries::parse(text, crs_override)?;
        if g.polygons.0.is_empty() && g.points.is_empty() {
            return Err(AoiError::NoLabels(g.found_list()));
        }
        Ok(Labelled {
            polygons: g.polygons,
            points: g.points,
            polygon_classes: g.polygon_classes,
            point_classes: g.point_classes,
            crs: g.crs,
        })
    }

    /// Polygons and points in the scene CRS.
    pub fn to_scene_crs(&self, scene_wkt: &str) -> Result<SceneGeometries, AoiError> {
        let polygons = polygons_to_scene(&self.polygons, &self.crs, scene_wkt)?;
        let r = Reprojector::new(&parse_srs(&self.crs)?, &scene_srs(scene_wkt)?)?;
        let points = self
            .points
            .iter()
            .map(|p| r.point(p.x(), p.y()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((polygons, points))
    }
}

fn read_text(path: &std::path::Path) -> Result<String, AoiError> {
    std::fs::read_to_string(path).map_err(|e| AoiError::Read {
        path: path.display().to_string(),
        source: e,
    })
}

fn scene_srs(scene_wkt: &str) -> Result<gdal::spatial_ref::SpatialRef, CrsError> {
    gdal::spatial_ref::SpatialRef::from_wkt(scene_wkt).map_err(|e| CrsError::Unknown {
        definition: "scene CRS".into(),
        message: e.to_string(),
    })
}

/// Densify (so long lon/lat edges bend correctly) and reproject polygons.
fn polygons_to_scene(
    polygons: &MultiPolygon<f64>,
    crs: &str,
    scene_wkt: &str,
) -> Result<MultiPolygon<f64>, AoiError> {
    let from = parse_srs(crs)?;
    let r = Reprojector::new(&from, &scene_srs(scene_wkt)?)?;
    let dense = if from.is_geographic() {
        Euclidean.densify(polygons, 0.001)
    } else {
        Euclidean.densify(polygons, 100.0)
    };
    Ok(r.multi_polygon(&dense)?)
}

fn legacy_crs(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("crs")?
        .get("properties")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_feature_collection_with_named_crs() {
        let text = r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"EPSG:32618"}},
          "features":[{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}"#;
        let a = Aoi::from_geojson(text, None).unwrap();
        assert_eq!(a.crs, "EPSG:32618");
        assert_eq!(a.polygons.0.len(), 1);
    }

    #[test]
    fn label_classes_follow_their_features() {
        let text = r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"MultiPoint","coordinates":[[1,2],[3,4]]}},
          {"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
          {"type":"Feature","properties":{"class":7},"geometry":{"type":"Point","coordinates":[5,6]}}]}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.geojson");
        std::fs::write(&path, text).unwrap();
        let l = Labelled::from_file(&path, None).unwrap();
        assert_eq!(
            l.point_classes,
            vec![
                Some("Forest".into()),
                Some("Forest".into()),
                Some("7".into())
            ]
        );
        assert_eq!(l.polygon_classes, vec![None]);
    }

    #[test]
    fn point_only_is_refused() {
        let err = Aoi::from_geojson(r#"{"type":"Point","coordinates":[1,2]}"#, None).unwrap_err();
        assert!(err.to_string().contains("Point"), "{err}");
    }
}
