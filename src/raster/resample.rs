//! A scene warped on the fly to another pixel size (an encoder's resolution):
//! GDAL's warper writes a *warped VRT* (lazy: pixels are resampled when a
//! window is read; nothing is copied to disk) in the same CRS, with the
//! scene's origin and an exact target pixel size, so the tile grid built on it
//! is exactly georeferenced. Averaging when the pixels grow (downsampling),
//! bilinear when they shrink (upsampling); the source's nodata is carried over
//! and excluded from both.
//!
//! The VRT lives in GDAL's process-wide `/vsimem/` under a unique name, so
//! every reader thread opens its own dataset on it ([`Scene::reopen`]) and the
//! daemon never writes next to a client's raster; [`MemVrt`] deletes it
//! when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gdal::Dataset;
use gdal::spatial_ref::SpatialRef;
use serde::Serialize;

use super::stack::warp_to;
use super::{RasterError, Scene};

/// A resampling that was applied to a scene.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resampled {
    /// The scene's ground pixel size, metres.
    pub from_m: f64,
    /// The new ground pixel size, metres.
    pub to_m: f64,
    /// `average` (downsampling) or `bilinear` (upsampling).
    pub method: String,
    /// The source raster's size in pixels (width, height).
    pub source_size: (usize, usize),
    /// The source raster's pixel size in CRS units (x, y).
    pub source_pixel_size: (f64, f64),
}

impl Resampled {
    /// One line for reports: `resampled from 30 m to 10 m, bilinear`.
    pub fn describe(&self) -> String {
        format!(
            "resampled from {} m to {} m, {}",
            round_m(self.from_m),
            round_m(self.to_m),
            self.method
        )
    }
}

/// Metres for messages: at most three decimals, no trailing zeros.
fn round_m(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// An in-memory VRT (a resampled scene, a stacked STAC item) under a unique
/// `/vsimem/` name; deleted when dropped, so keep it alive while any reader
/// may (re)open the scene.
#[derive(Debug)]
pub struct MemVrt {
    path: PathBuf,
}

impl MemVrt {
    /// A fresh, unique path for a VRT of kind `tag` (nothing is written yet).
    pub(super) fn new(tag: &str) -> MemVrt {
        let n = NEXT_VRT.fetch_add(1, Ordering::Relaxed);
        MemVrt {
            path: PathBuf::from(format!(
                "/vsimem/nexttile/{tag}_{}_{n}.vrt",
                std::process::id()
            )),
        }
    }

    /// The VRT's `/vsimem/` path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MemVrt {
    fn drop(&mut self) {
        let _ = gdal::vsi::unlink_mem_file(&self.path);
    }
}

static NEXT_VRT: AtomicU64 = AtomicU64::new(0);

/// The target pixel size (x, y) in the scene's CRS units for a ground pixel
/// size of `target_m` metres.
fn target_pixel(scene: &Scene, target_m: f64) -> (f64, f64) {
    let (px, py) = scene.pixel_size();
    let (px, py) = (px.abs(), py.abs());
    let tx = if scene.is_geographic() {
        px * target_m / scene.ground_resolution_m()
    } else {
        let unit = SpatialRef::from_wkt(&scene.crs_wkt)
            .map(|s| s.linear_units())
            .unwrap_or(1.0);
        target_m / unit
    };
    let ty = if px == py { tx } else { py * tx / px };
    (tx, ty)
}

/// Warp `scene` to a ground pixel size of `target_m` metres (same CRS, same
/// origin, the scene's extent less any partial pixel at the right and bottom).
/// Returns the scene over the warped VRT — with `scene`'s band names, sensor
/// and metadata, so band matching is unchanged — the VRT (keep it alive while
/// the scene is read) and what was done.
///
/// # Errors
///
/// [`RasterError::Gdal`] when `target_m` is not a positive size, the scene is
/// smaller than one target pixel, or GDAL fails.
pub fn resample_scene(
    scene: &Scene,
    target_m: f64,
) -> Result<(Scene, MemVrt, Resampled), RasterError> {
    let from_m = scene.ground_resolution_m();
    let gdal_err = |message: String| RasterError::Gdal {
        path: scene.path.display().to_string(),
        message,
    };
    if !(target_m.is_finite() && target_m > 0.0) {
        return Err(gdal_err(format!(
            "cannot resample to a pixel size of {target_m} m; give a positive size"
        )));
    }
    let (tx, ty) = target_pixel(scene, target_m);
    let (px, py) = scene.pixel_size();
    // Whole target pixels inside the scene (a hair of tolerance for pixel
    // sizes that divide the extent exactly but not in binary).
    let w = (scene.width as f64 * px.abs() / tx + 1e-9).floor();
    let h = (scene.height as f64 * py.abs() / ty + 1e-9).floor();
    if !(w >= 1.0 && h >= 1.0) || w > i32::MAX as f64 || h > i32::MAX as f64 {
        return Err(gdal_err(format!(
            "a {}×{} px scene at {from_m:.3} m cannot be resampled to {target_m} m pixels (less than one pixel, or too many)",
            scene.width, scene.height
        )));
    }
    let gt = scene.geo_transform.0;
    // Top-left corner of the north-up bounding box: the new grid's origin.
    let x0 = if gt[1] >= 0.0 {
        gt[0]
    } else {
        gt[0] + gt[1] * scene.width as f64
    };
    let y1 = if gt[5] <= 0.0 {
        gt[3]
    } else {
        gt[3] + gt[5] * scene.height as f64
    };
    let method = if target_m > from_m {
        "average"
    } else {
        "bilinear"
    };
    let vrt = MemVrt::new("resample");
    // With both -te and -tr, gdalwarp uses the extent's corner as origin and
    // the resolution exactly: the grid is (x0, tx, 0, y1, 0, -ty).
    let args: Vec<String> = vec![
        "-of".into(),
        "VRT".into(),
        "-te".into(),
        format!("{x0:.17e}"),
        format!("{:.17e}", y1 - h * ty),
        format!("{:.17e}", x0 + w * tx),
        format!("{y1:.17e}"),
        "-tr".into(),
        format!("{tx:.17e}"),
        format!("{ty:.17e}"),
        "-r".into(),
        method.into(),
    ];
    warp_to(scene, vrt.path(), &args, "resampling")?;
    let dataset = Dataset::open(vrt.path()).map_err(|e| gdal_err(e.to_string()))?;
    let warped = scene.over_dataset(vrt.path(), dataset)?;
    let done = Resampled {
        from_m,
        to_m: target_m,
        method: method.into(),
        source_size: (scene.width, scene.height),
        source_pixel_size: scene.pixel_size(),
    };
    Ok((warped, vrt, done))
}

#[cfg(test)]
mod tests {
    use super::round_m;

    #[test]
    fn metres_for_messages() {
        assert_eq!(round_m(30.0), "30");
        assert_eq!(round_m(10.0000000001), "10");
        assert_eq!(round_m(0.1), "0.1");
        assert_eq!(round_m(2.5), "2.5");
    }
}
