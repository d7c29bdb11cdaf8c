//! Opening a scene with GDAL and checking it can be scored.

use std::path::{Path, PathBuf};

use gdal::Dataset;
use gdal::Metadata;
use gdal::spatial_ref::SpatialRef;
use serde::Serialize;

use super::RasterError;
use super::bands::{canonical_band_name, default_band_names};
use super::confine::{Confinement, open_allowed};
use super::sensor::{DetectedSensor, SensorPreset, common_name_to_s2, detect_sensor};
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
    /// GDAL colour interpretation name (`Red`, `Gray`, `Undefined`, …).
    pub colour_interpretation: String,
    /// How [`name`](Self::name) was found: `description`, `band_metadata`,
    /// `colour_interpretation`, `s2_default_order`, `sensor_preset:<name>`,
    /// or empty when the band has no name.
    pub named_by: String,
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
    /// A sensor preset recognised from the dataset's metadata.
    pub detected_sensor: Option<DetectedSensor>,
    /// The dataset's metadata items (`KEY=value`, default and `IMAGERY`
    /// domains), for sensor recognition.
    pub metadata_items: Vec<String>,
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
            bands.push(band_info(index, &b));
        }
        let mut metadata_items: Vec<String> = dataset.metadata_domain("").unwrap_or_default();
        metadata_items.extend(dataset.metadata_domain("IMAGERY").unwrap_or_default());
        let detected_sensor = detect_sensor(&metadata_items);
        let mut names_assumed = false;
        if bands.iter().all(|b| b.name.is_empty())
            && let Some(names) = default_band_names(count)
        {
            for (b, n) in bands.iter_mut().zip(names) {
                b.name = n.to_string();
                b.named_by = "s2_default_order".into();
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
            detected_sensor,
            metadata_items,
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
            detected_sensor: self.detected_sensor.clone(),
            metadata_items: self.metadata_items.clone(),
        })
    }

    /// This scene's bands (their names and how they were found), CRS, sensor
    /// and metadata over another dataset of the same place and bands — a
    /// resampled VRT of it at `path` — with that dataset's size,
    /// geotransform, nodata and data types.
    pub fn over_dataset(&self, path: &Path, dataset: Dataset) -> Result<Scene, RasterError> {
        let shown = path.display().to_string();
        let gdal_err = |message: String| RasterError::Gdal {
            path: shown.clone(),
            message,
        };
        if dataset.raster_count() != self.bands.len() {
            return Err(gdal_err(format!(
                "has {} bands where {} has {}",
                dataset.raster_count(),
                self.path.display(),
                self.bands.len()
            )));
        }
        let (width, height) = dataset.raster_size();
        let gt = dataset
            .geo_transform()
            .map_err(|e| gdal_err(e.to_string()))?;
        let mut bands = self.bands.clone();
        for b in &mut bands {
            let rb = dataset
                .rasterband(b.index)
                .map_err(|e| gdal_err(e.to_string()))?;
            b.nodata = rb.no_data_value();
            b.data_type = rb.band_type().name();
        }
        Ok(Scene {
            path: path.to_path_buf(),
            dataset,
            width,
            height,
            geo_transform: GeoTransform(gt),
            crs_wkt: self.crs_wkt.clone(),
            crs_epsg: self.crs_epsg.clone(),
            bands,
            names_assumed: self.names_assumed,
            detected_sensor: self.detected_sensor.clone(),
            metadata_items: self.metadata_items.clone(),
        })
    }

    /// Name unnamed bands by a sensor preset's band order: when no band got a
    /// name from its description, metadata or colour interpretation (or the
    /// names are only the assumed Sentinel-2 order) and the raster has as many
    /// bands as the preset's full stack. Returns whether it named them.
    pub fn name_bands_by_preset(&mut self, preset: &SensorPreset) -> bool {
        let unnamed = self.names_assumed || self.bands.iter().all(|b| b.name.is_empty());
        if !unnamed || self.bands.len() != preset.bands.len() {
            return false;
        }
        for (b, n) in self.bands.iter_mut().zip(preset.bands) {
            b.name = n.to_string();
            b.named_by = format!("sensor_preset:{}", preset.name);
        }
        self.names_assumed = false;
        true
    }

    /// 1-based band indices for the model's band names, in the model's order.
    /// `overrides` (from `--bands`) maps positions directly to band indices.
    pub fn resolve_bands(
        &self,
        wanted: &[String],
        overrides: Option<&[usize]>,
    ) -> Result<Vec<usize>, RasterError> {
        Ok(self
            .match_bands(wanted, overrides)?
            .into_iter()
            .map(|m| m.raster_band)
            .collect())
    }

    /// The raster band for each of the model's band names, in the model's
    /// order, with how it was matched. `overrides` (from `--bands`) maps
    /// positions directly to band indices (`matched_by` = `--bands`); else a
    /// band matches by the name [`Scene::open`] (or
    /// [`Scene::name_bands_by_preset`]) gave it, in this order: description,
    /// band metadata, colour interpretation, sensor preset order, the
    /// Sentinel-2 default order.
    pub fn match_bands(
        &self,
        wanted: &[String],
        overrides: Option<&[usize]>,
    ) -> Result<Vec<BandMatch>, RasterError> {
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
            return Ok(wanted
                .iter()
                .zip(idx)
                .map(|(w, &i)| BandMatch {
                    model_band: w.clone(),
                    raster_band: i,
                    matched_by: "--bands".into(),
                    raster_label: self.bands.get(i - 1).map(label).unwrap_or_default(),
                })
                .collect());
        }
        let mut out = Vec::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for w in wanted {
            let key = canonical_band_name(w);
            let key = common_name_to_s2(&key).map_or(key, str::to_string);
            match self.bands.iter().find(|b| b.name == key) {
                Some(b) => out.push(BandMatch {
                    model_band: w.clone(),
                    raster_band: b.index,
                    matched_by: b.named_by.clone(),
                    raster_label: label(b),
                }),
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

/// How one of the model's bands was found in the raster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandMatch {
    /// The model's band name (`B04`).
    pub model_band: String,
    /// 1-based raster band.
    pub raster_band: usize,
    /// `--bands`, `description`, `band_metadata`, `colour_interpretation`,
    /// `sensor_preset:<name>` or `s2_default_order`.
    pub matched_by: String,
    /// What the raster says about the band (its description, else its colour
    /// interpretation), for reports.
    pub raster_label: String,
}

fn label(b: &BandInfo) -> String {
    if b.description.trim().is_empty() {
        b.colour_interpretation.clone()
    } else {
        b.description.clone()
    }
}

/// Band metadata keys whose value may name the band (as GDAL drivers, ENVI
/// headers and STAC-to-GDAL tools write them).
const NAME_KEYS: [&str; 6] = [
    "BANDNAME",
    "BAND_NAME",
    "NAME",
    "COMMON_NAME",
    "EO:COMMON_NAME",
    "STANDARD_NAME",
];

/// A band's model-facing name from a free-text label: a STAC common name
/// (`nir` → `B08`), else the canonical band name, unless the label is a
/// generic one such as `Band 1` or `Layer_2` that names nothing.
pub(super) fn name_from_label(raw: &str) -> Option<String> {
    let first_word = raw.split_whitespace().next().unwrap_or("");
    if let Some(s2) = common_name_to_s2(raw).or_else(|| common_name_to_s2(first_word)) {
        return Some(s2.to_string());
    }
    let canonical = canonical_band_name(raw);
    let generic = ["BAND", "LAYER", "CHANNEL"].iter().any(|g| {
        canonical.strip_prefix(g).is_some_and(|rest| {
            rest.trim_start_matches(['_', '-'])
                .chars()
                .all(|c| c.is_ascii_digit())
        })
    });
    (!canonical.is_empty() && !generic).then_some(canonical)
}

/// GDAL's colour interpretation name of a band (`Red`, `Gray`, …), read
/// without the gdal crate's enum (whose conversion panics on values newer
/// GDAL versions add, such as `NIR`).
fn colour_interpretation(b: &gdal::raster::RasterBand) -> String {
    // SAFETY: the band handle is valid for the lifetime of `b`; GDAL returns a
    // static, NUL-terminated string (or null) for any interpretation value.
    unsafe {
        let ci = gdal_sys::GDALGetRasterColorInterpretation(b.c_rasterband());
        let p = gdal_sys::GDALGetColorInterpretationName(ci);
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// What [`Scene::open`] knows about one band, and its name: from the
/// description, else a band metadata name item, else the colour
/// interpretation (`Red` → `B04`; `Gray`, `Alpha`, `Undefined` name nothing).
fn band_info(index: usize, b: &gdal::raster::RasterBand) -> BandInfo {
    let description = b.description().unwrap_or_default();
    let colour = colour_interpretation(b);
    let from_metadata = || {
        b.metadata().find_map(|entry| {
            let key = entry.key.to_ascii_uppercase();
            NAME_KEYS
                .contains(&key.as_str())
                .then(|| name_from_label(&entry.value))
                .flatten()
        })
    };
    let (name, named_by) = if let Some(n) = name_from_label(&description) {
        (n, "description")
    } else if let Some(n) = from_metadata() {
        (n, "band_metadata")
    } else if let Some(n) = common_name_to_s2(&colour) {
        (n.to_string(), "colour_interpretation")
    } else {
        (String::new(), "")
    };
    BandInfo {
        index,
        name,
        description,
        nodata: b.no_data_value(),
        data_type: b.band_type().name(),
        colour_interpretation: colour,
        named_by: named_by.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::name_from_label;

    #[test]
    fn labels() {
        assert_eq!(name_from_label("B4").as_deref(), Some("B04"));
        assert_eq!(name_from_label("nir").as_deref(), Some("B08"));
        assert_eq!(name_from_label("VV").as_deref(), Some("VV"));
        assert_eq!(name_from_label("Band 1"), None);
        assert_eq!(name_from_label("band_12"), None);
        assert_eq!(name_from_label("Layer_2"), None);
        assert_eq!(name_from_label(""), None);
        assert_eq!(name_from_label("  "), None);
    }
}
