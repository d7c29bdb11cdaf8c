//! Coordinate reference systems and reprojection, through GDAL/OSR (which
//! wraps PROJ). GDAL is already linked for rasters, so using its
//! `CoordTransform` avoids a second PROJ binding; axis order is forced to
//! traditional GIS order (x = easting/longitude) everywhere.

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use geo::{Coord, LineString, MultiPolygon, Polygon};

/// Errors from parsing a CRS or transforming coordinates.
#[derive(Debug, thiserror::Error)]
pub enum CrsError {
    /// The CRS definition is not understood.
    #[error("unknown CRS '{definition}' ({message}); use e.g. EPSG:4326, EPSG:32618 or WKT")]
    Unknown {
        /// What was given.
        definition: String,
        /// GDAL's message.
        message: String,
    },
    /// Coordinates could not be transformed.
    #[error("cannot transform coordinates from {from} to {to}: {message}")]
    Transform {
        /// Source CRS (short form).
        from: String,
        /// Target CRS (short form).
        to: String,
        /// GDAL's message.
        message: String,
    },
}

/// Whether `def` is a CRS *definition* rather than something GDAL would fetch or read:
/// `AUTHORITY:CODE` (EPSG, ESRI, IAU, OGC), an `urn:ogc:def:crs:` URN, an
/// `http(s)://www.opengis.net/def/crs/` identifier, WKT, a PROJ string or PROJJSON.
/// GDAL's `SetFromUserInput` would also open file names and download URLs, which a
/// daemon must never do on a client's word.
fn is_inline_definition(def: &str) -> bool {
    let lower = def.to_ascii_lowercase();
    let auth_code = def.split_once(':').is_some_and(|(a, c)| {
        !a.is_empty()
            && a.chars().all(|ch| ch.is_ascii_alphabetic())
            && !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.')
    });
    auth_code
        || lower.starts_with("urn:ogc:def:crs:")
        || lower.starts_with("http://www.opengis.net/def/crs/")
        || lower.starts_with("https://www.opengis.net/def/crs/")
        || lower == "crs84"
        || def.starts_with("+proj=")
        || def.starts_with('{')
        || (def.contains('[') && def.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
}

/// Parse a user CRS definition (`EPSG:xxxx`, `urn:ogc:def:crs:…`, WKT, PROJ, PROJJSON)
/// with traditional GIS axis order. File names and URLs are refused (see
/// [`CrsError::Unknown`]): GDAL would read or download them.
pub fn parse_srs(definition: &str) -> Result<SpatialRef, CrsError> {
    let def = definition.trim();
    if !is_inline_definition(def) {
        return Err(CrsError::Unknown {
            definition: definition.chars().take(200).collect(),
            message: "not a CRS definition; give an EPSG code such as EPSG:32618, a URN, WKT or a PROJ string (file names and URLs are not read)".into(),
        });
    }
    // OGC CRS84 is WGS 84 in lon/lat order: the RFC 7946 default.
    let def = if def.eq_ignore_ascii_case("urn:ogc:def:crs:OGC:1.3:CRS84")
        || def.eq_ignore_ascii_case("CRS84")
    {
        "EPSG:4326"
    } else {
        def
    };
    let mut srs = SpatialRef::from_definition(def).map_err(|e| CrsError::Unknown {
        definition: definition.to_string(),
        message: e.to_string(),
    })?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

/// WGS 84 in lon/lat order.
pub fn wgs84() -> Result<SpatialRef, CrsError> {
    parse_srs("EPSG:4326")
}

/// A coordinate transformation between two CRSs (lon/lat order for geographic ones).
pub struct Reprojector {
    ct: CoordTransform,
    from: String,
    to: String,
}

fn short(srs: &SpatialRef) -> String {
    match (srs.auth_name(), srs.auth_code()) {
        (Some(a), Ok(c)) => format!("{a}:{c}"),
        _ => srs.name().unwrap_or_else(|| "custom CRS".into()),
    }
}

impl Reprojector {
    /// Build a transformation `from` → `to`.
    pub fn new(from: &SpatialRef, to: &SpatialRef) -> Result<Self, CrsError> {
        let (mut a, mut b) = (from.clone(), to.clone());
        a.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        b.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let ct = CoordTransform::new(&a, &b).map_err(|e| CrsError::Transform {
            from: short(&a),
            to: short(&b),
            message: e.to_string(),
        })?;
        Ok(Reprojector {
            ct,
            from: short(&a),
            to: short(&b),
        })
    }

    /// Build from the scene's WKT to another CRS.
    pub fn from_wkt(from_wkt: &str, to: &SpatialRef) -> Result<Self, CrsError> {
        let from = SpatialRef::from_wkt(from_wkt).map_err(|e| CrsError::Unknown {
            definition: "scene CRS".into(),
            message: e.to_string(),
        })?;
        Self::new(&from, to)
    }

    /// Transform coordinates in place.
    pub fn transform(&self, xs: &mut [f64], ys: &mut [f64]) -> Result<(), CrsError> {
        self.ct
            .transform_coords(xs, ys, &mut [])
            .map_err(|e| CrsError::Transform {
                from: self.from.clone(),
                to: self.to.clone(),
                message: e.to_string(),
            })
    }

    /// Transform one point.
    pub fn point(&self, x: f64, y: f64) -> Result<(f64, f64), CrsError> {
        let (mut xs, mut ys) = ([x], [y]);
        self.transform(&mut xs, &mut ys)?;
        Ok((xs[0], ys[0]))
    }

    /// Transform every vertex of a polygon (densify first for long edges).
    pub fn polygon(&self, p: &Polygon<f64>) -> Result<Polygon<f64>, CrsError> {
        let ring = |ls: &LineString<f64>| -> Result<LineString<f64>, CrsError> {
            let mut xs: Vec<f64> = ls.coords().map(|c| c.x).collect();
            let mut ys: Vec<f64> = ls.coords().map(|c| c.y).collect();
            self.transform(&mut xs, &mut ys)?;
            Ok(LineString::from(
                xs.into_iter()
                    .zip(ys)
                    .map(|(x, y)| Coord { x, y })
                    .collect::<Vec<_>>(),
            ))
        };
        let interiors = p
            .interiors()
            .iter()
            .map(ring)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Polygon::new(ring(p.exterior())?, interiors))
    }

    /// Transform a multipolygon.
    pub fn multi_polygon(&self, mp: &MultiPolygon<f64>) -> Result<MultiPolygon<f64>, CrsError> {
        Ok(MultiPolygon(
            mp.0.iter()
                .map(|p| self.polygon(p))
                .collect::<Result<_, _>>()?,
        ))
    }
}

/// Approximate metric coordinates for distances inside one scene: projected
/// CRSs are scaled by their linear unit; geographic ones use a local
/// equirectangular projection around the scene centre (error well under 1 %
/// across a Sentinel-2 granule), which is what ground spacing needs.
#[derive(Debug, Clone, Copy)]
pub struct LocalMetric {
    geographic: bool,
    unit_m: f64,
    origin: (f64, f64),
}

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

impl LocalMetric {
    /// For a CRS given as WKT, centred on `origin` (scene CRS coordinates).
    pub fn new(crs_wkt: &str, origin: (f64, f64)) -> Result<Self, CrsError> {
        let srs = SpatialRef::from_wkt(crs_wkt).map_err(|e| CrsError::Unknown {
            definition: "scene CRS".into(),
            message: e.to_string(),
        })?;
        Ok(LocalMetric {
            geographic: srs.is_geographic(),
            unit_m: if srs.is_geographic() {
                1.0
            } else {
                srs.linear_units()
            },
            origin,
        })
    }

    /// Metres east and north of the origin.
    pub fn to_metres(&self, x: f64, y: f64) -> [f64; 2] {
        if self.geographic {
            let k = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
            [
                (x - self.origin.0) * k * self.origin.1.to_radians().cos(),
                (y - self.origin.1) * k,
            ]
        } else {
            [
                (x - self.origin.0) * self.unit_m,
                (y - self.origin.1) * self.unit_m,
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_urls_are_not_read() {
        for bad in [
            "/etc/passwd",
            "../x.prj",
            "http://example.com/crs.wkt",
            "file.prj",
            "",
        ] {
            let msg = parse_srs(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains("not a CRS definition"), "{bad}: {msg}");
        }
        for good in [
            "EPSG:32618",
            "epsg:4326",
            "urn:ogc:def:crs:EPSG::32618",
            "http://www.opengis.net/def/crs/EPSG/0/4326",
            "+proj=longlat +datum=WGS84 +no_defs",
            "CRS84",
        ] {
            assert!(parse_srs(good).is_ok(), "{good}");
        }
        let wkt = parse_srs("EPSG:4326").unwrap().to_wkt().unwrap();
        assert!(parse_srs(&wkt).is_ok());
    }

    #[test]
    fn utm_to_lonlat_order() {
        let utm = parse_srs("EPSG:32618").unwrap();
        let r = Reprojector::new(&utm, &wgs84().unwrap()).unwrap();
        // central meridian of zone 18 is 75°W; 500000 E on the equator
        let (lon, lat) = r.point(500_000.0, 0.0).unwrap();
        assert!((lon + 75.0).abs() < 1e-9 && lat.abs() < 1e-9, "{lon} {lat}");
    }

    #[test]
    fn local_metric_geographic_and_projected() {
        let wgs = wgs84().unwrap().to_wkt().unwrap();
        let m = LocalMetric::new(&wgs, (0.0, 60.0)).unwrap();
        // one degree of longitude at 60° N is half of one at the equator
        let [x, y] = m.to_metres(1.0, 60.0);
        assert!((x - 55_597.5).abs() < 1.0, "{x}");
        assert_eq!(y, 0.0);
        let utm = parse_srs("EPSG:32618").unwrap().to_wkt().unwrap();
        let m = LocalMetric::new(&utm, (500_000.0, 0.0)).unwrap();
        assert_eq!(m.to_metres(500_100.0, 50.0), [100.0, 50.0]);
    }

    #[test]
    fn bad_definition_is_reported() {
        let err = parse_srs("EPSG:999999").unwrap_err().to_string();
        assert!(err.contains("EPSG:999999"), "{err}");
    }
}
