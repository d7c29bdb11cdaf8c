//! Opening a scene with GDAL and checking it can be scored.

use std::path::{Path, PathBuf};

use gdal::Dataset;
use gdal::Metadata;
use gdal::spatial_ref::SpatialRef;
use serde::Serialize;

use super::RasterError;
use super::bands::{canonical_band_name, default_band_names};
use super::confine::{Confinement, open_allowed};
use crate::tiling::GeoTransform;

/// One band of a scene.
#[derive(Debug, Clone, Serialize)]
pub struct BandInfo {
    /// 1-based GDAL band index.
    pub index: usize,
    /// Canonical name used to match models (`B04`, `B8A`, `VV`, …).
    pub name: String,
    /// The band description as stored in the file (may be empty).
    pub description: String,
    /// Declared nodata value, if any.
    pub nodata: Option<f64>,
    /// GDAL data type name.
    pub data_type: String,
}

/// An opened, georeferenced raster. `Dataset` is `Send` but not `Sync`: open
/// one `Scene` per thread that reads.
pub struct Scene {
    /// Path as given.
    pub path: PathBuf,
    /// The GDAL dataset.
    pub dataset: Dataset,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Pixel → CRS transform.
    pub geo_transform: GeoTransform,
    /// The CRS as WKT.
    pub crs_wkt: String,
    /// `EPSG:xxxx` when the CRS has an EPSG code.
    pub crs_epsg: Option<String>,
    /// Bands in file order.
    pub bands: Vec<BandInfo>,
    /// True when band names came from the Sentinel-2 default order rather
    /// than band descriptions.
    pub names_assumed: bool,
}

impl Scene {
    /// Open `path` and check it has a CRS and a north-up geotransform.
    pub fn open(path: &Path) -> Result<Scene, RasterError> {
        Scene::open_with(path, None)
    }

    /// [`Scene::open`], confined to `confine`'s roots when given (the daemon): every
    /// file the raster would make GDAL read is checked before GDAL opens it (VRT
    /// sources, recursively), only drivers that cannot reach the network are used,
    /// and GDAL's file list of the opened dataset is checked again.
    pub fn open_with(path: &Path, confine: Option<&Confinement>) -> Result<Scene, RasterError> {
        let shown = path.display().to_string();
        if !path.exists() && !shown.starts_with("/vsi") {
            return Err(RasterError::NotFound(shown));
        }
        let not_raster = |e: gdal::errors::GdalError| RasterError::NotRaster {
            path: shown.clone(),
            message: e.to_string(),
        };
        let dataset = match confine {
            Some(c) => {
                c.check(path)?;
                let ds = open_allowed(path).map_err(not_raster)?;
                c.check_file_list(path, &ds)?;
                ds
            }
            None => Dataset::open(path).map_err(not_raster)?,
        };
        let (width, height) = dataset.raster_size();
        if dataset.raster_count() == 0 || width == 0 || height == 0 {
            return Err(RasterError::NotRaster {
                path: shown,
                message: "it has no raster bands".into(),
            });
        }
        let crs_wkt = dataset.projection();
        if crs_wkt.trim().is_empty() {
            return Err(RasterError::NoCrs(shown));
        }
        let gt = dataset
            .geo_transform()
            .map_err(|_| RasterError::NoGeoTransform(shown.clone()))?;
        // GDAL reports (0,1,0,0,0,1) when there is none.
        if gt == [0.0, 1.0, 0.0, 0.0, 0.0, 1.0] {
            return Err(RasterError::NoGeoTransform(shown));
        }
        let geo_transform = GeoTransform(gt);
        if geo_transform.is_rotated() {
            return Err(RasterError::Rotated(shown));
        }
        let crs_epsg = SpatialRef::from_wkt(&crs_wkt).ok().and_then(|mut s| {
            let _ = s.auto_identify_epsg();
            match (s.auth_name(), s.auth_code()) {
                (Some(a), Ok(c)) => Some(format!("{a}:{c}")),
                _ => None,
            }
        });
        let count = dataset.raster_count();
        let mut bands = Vec::with_capacity(count);
        for index in 1..=count {
            let b = dataset.rasterband(index).map_err(|e| RasterError::Gdal {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            let description = b.description().unwrap_or_default();
            bands.push(BandInfo {
                index,
                name: canonical_band_name(&description),
                description,
                nodata: b.no_data_value(),
                data_type: b.band_type().name(),
            });
        }
        let mut names_assumed = false;
        if bands.iter().all(|b| b.name.is_empty())
            && let Some(names) = default_band_names(count)
        {
            for (b, n) in bands.iter_mut().zip(names) {
                b.name = n.to_string();
            }
            names_assumed = true;
            tracing::warn!(
                path = %shown,
                "bands have no descriptions; assuming the standard Sentinel-2 order of a {count}-band stack"
            );
        }
        Ok(Scene {
            path: path.to_path_buf(),
            dataset,
            width,
            height,
            geo_transform,
            crs_wkt,
            crs_epsg,
            bands,
            names_assumed,
        })
    }

    /// The same scene through a new GDAL dataset handle (for another thread):
    /// the file is opened again, but nothing else is looked up again (no CRS
    /// identification, which costs tens of milliseconds in PROJ). Refused when
    /// the file no longer matches (size or band count changed).
    pub fn reopen(&self) -> Result<Scene, RasterError> {
        let shown = self.path.display().to_string();
        let dataset = Dataset::open(&self.path).map_err(|e| RasterError::NotRaster {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        if dataset.raster_size() != (self.width, self.height)
            || dataset.raster_count() != self.bands.len()
        {
            return Err(RasterError::NotRaster {
                path: shown,
                message: "it changed while being read".into(),
            });
        }
        Ok(Scene {
            path: self.path.clone(),
            dataset,
            width: self.width,
            height: self.height,
            geo_transform: self.geo_transform,
            crs_wkt: self.crs_wkt.clone(),
            crs_epsg: self.crs_epsg.clone(),
            bands: self.bands.clone(),
            names_assumed: self.names_assumed,
        })
    }

    /// 1-based band indices for the model's band names, in the model's order.
    /// `overrides` (from `--bands`) maps positions directly to band indices.
    pub fn resolve_bands(
        &self,
        wanted: &[String],
        overrides: Option<&[usize]>,
    ) -> Result<Vec<usize>, RasterError> {
        if let Some(idx) = overrides {
            if idx.len() != wanted.len() {
                return Err(RasterError::BandOverride(format!(
                    "--bands gives {} indices but the model takes {} bands ({})",
                    idx.len(),
                    wanted.len(),
                    wanted.join(", ")
                )));
            }
            if let Some(bad) = idx.iter().find(|i| **i == 0 || **i > self.bands.len()) {
                return Err(RasterError::BandOverride(format!(
                    "--bands index {bad} is outside 1..={} of {}",
                    self.bands.len(),
                    self.path.display()
                )));
            }
            return Ok(idx.to_vec());
        }
        let mut out = Vec::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for w in wanted {
            let key = canonical_band_name(w);
            match self.bands.iter().find(|b| b.name == key) {
                Some(b) => out.push(b.index),
                None => missing.push(w.clone()),
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(RasterError::MissingBands {
                path: self.path.display().to_string(),
                missing,
                available: self
                    .bands
                    .iter()
                    .map(|b| {
                        if b.name.is_empty() {
                            format!("#{} (no description)", b.index)
                        } else {
                            format!("#{} {}", b.index, b.name)
                        }
                    })
                    .collect(),
            })
        }
    }

    /// Size (width, height) in pixels of the blocks GDAL reads, and
    /// decompresses, at once for these 1-based bands: the largest of them,
    /// (1, 1) when unknown.
    pub fn block_size(&self, bands: &[usize]) -> (usize, usize) {
        bands
            .iter()
            .filter_map(|&b| self.dataset.rasterband(b).ok())
            .map(|rb| rb.block_size())
            .fold((1, 1), |(w, h), (bw, bh)| (w.max(bw), h.max(bh)))
    }

    /// Pixel size in CRS units (x, y).
    pub fn pixel_size(&self) -> (f64, f64) {
        self.geo_transform.pixel_size()
    }

    /// Whether the CRS is geographic (degrees).
    pub fn is_geographic(&self) -> bool {
        SpatialRef::from_wkt(&self.crs_wkt).is_ok_and(|s| s.is_geographic())
    }

    /// Approximate ground sampling distance in metres (x), converting degrees
    /// at the scene centre for geographic CRSs.
    pub fn ground_resolution_m(&self) -> f64 {
        let (px, _) = self.pixel_size();
        if self.is_geographic() {
            let (_, lat) = self
                .geo_transform
                .apply(self.width as f64 / 2.0, self.height as f64 / 2.0);
            px * 111_320.0 * lat.to_radians().cos()
        } else {
            let unit = SpatialRef::from_wkt(&self.crs_wkt)
                .map(|s| s.linear_units())
                .unwrap_or(1.0);
            px * unit
        }
    }
}
