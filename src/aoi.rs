//! Areas of interest: GeoJSON polygons in any CRS, brought into the scene CRS.

use geo::{Densify, Euclidean, MultiPolygon, Polygon};
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
        let gj: GeoJson = text
            .parse()
            .map_err(|e: geojson::Error| AoiError::Parse(e.to_string()))?;
        let named = legacy_crs(text);
        let mut polys: Vec<Polygon<f64>> = Vec::new();
        let mut found = Vec::new();
        let mut push = |g: &geojson::Geometry| {
            found.push(g.value.type_name().to_string());
            match geo::Geometry::<f64>::try_from(g.value.clone()) {
                Ok(geo::Geometry::Polygon(p)) => polys.push(p),
                Ok(geo::Geometry::MultiPolygon(mp)) => polys.extend(mp.0),
                _ => {}
            }
        };
        match &gj {
            GeoJson::FeatureCollection(fc) => fc
                .features
                .iter()
                .filter_map(|f| f.geometry.as_ref())
                .for_each(&mut push),
            GeoJson::Feature(f) => f.geometry.iter().for_each(&mut push),
            GeoJson::Geometry(g) => push(g),
        }
        if polys.is_empty() {
            return Err(AoiError::NoPolygon(if found.is_empty() {
                "nothing".into()
            } else {
                found.join(", ")
            }));
        }
        let crs = crs_override
            .map(str::to_string)
            .or(named)
            .unwrap_or_else(|| "EPSG:4326".into());
        Ok(Aoi {
            polygons: MultiPolygon(polys),
            crs,
        })
    }

    /// Read a GeoJSON file.
    pub fn from_file(path: &std::path::Path, crs_override: Option<&str>) -> Result<Aoi, AoiError> {
        let text = std::fs::read_to_string(path).map_err(|e| AoiError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_geojson(&text, crs_override)
    }

    /// The AOI in the scene CRS; edges are densified before reprojection so
    /// long lon/lat edges bend correctly.
    pub fn to_scene_crs(&self, scene_wkt: &str) -> Result<MultiPolygon<f64>, AoiError> {
        let from = parse_srs(&self.crs)?;
        let to =
            gdal::spatial_ref::SpatialRef::from_wkt(scene_wkt).map_err(|e| CrsError::Unknown {
                definition: "scene CRS".into(),
                message: e.to_string(),
            })?;
        let r = Reprojector::new(&from, &to)?;
        let dense = if from.is_geographic() {
            Euclidean.densify(&self.polygons, 0.001)
        } else {
            Euclidean.densify(&self.polygons, 100.0)
        };
        Ok(r.multi_polygon(&dense)?)
    }
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
    fn point_only_is_refused() {
        let err = Aoi::from_geojson(r#"{"type":"Point","coordinates":[1,2]}"#, None).unwrap_err();
        assert!(err.to_string().contains("Point"), "{err}");
    }
}
