//! A region's heatmap: the per-scene heatmap COGs of a project warped into one
//! Cloud-Optimized GeoTIFF in the first scene's CRS (scenes of other CRSs are
//! reprojected, nearest neighbour, so each tile keeps its value), the bands, nodata
//! and QGIS style of the scenes' heatmaps.

use std::path::Path;

use gdal::raster::RasterCreationOptions;
use gdal::{Dataset, DatasetOptions, DriverManager, GdalOpenFlags, Metadata};

use super::OutputError;
use super::heatmap::HEATMAP_NODATA;

/// Writes the mosaic of `heatmaps` (per-scene heatmap COGs, one band layout) to `out`
/// as a COG, with `out`'s `.qml` style copied from the first heatmap's when it has one.
/// Where scenes overlap, the later one's value is kept.
///
/// # Errors
///
/// [`OutputError::Invalid`] for no heatmap or heatmaps of different band counts;
/// [`OutputError::Gdal`] when one does not open or the warp or the copy fails.
pub fn write_mosaic(heatmaps: &[&Path], out: &Path) -> Result<(), OutputError> {
    let gerr = |path: &Path, e: &dyn std::fmt::Display| OutputError::Gdal {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let first = heatmaps
        .first()
        .ok_or_else(|| OutputError::Invalid("a mosaic needs at least one heatmap".into()))?;
    let reference = Dataset::open(first).map_err(|e| gerr(first, &e))?;
    let bands = reference.raster_count();
    for h in &heatmaps[1..] {
        let n = Dataset::open(h).map_err(|e| gerr(h, &e))?.raster_count();
        if n != bands {
            return Err(OutputError::Invalid(format!(
                "{} has {n} bands, {} has {bands}: the scenes' heatmaps come from different heads",
                h.display(),
                first.display()
            )));
        }
    }
    let wkt = reference
        .spatial_ref()
        .and_then(|s| s.to_wkt())
        .map_err(|e| gerr(first, &e))?;
    let staged = format!("/vsimem/nexttile-mosaic-{}.tif", std::process::id());
    let args: Vec<String> = [
        "-of",
        "GTiff",
        "-t_srs",
        &wkt,
        "-r",
        "near",
        "-srcnodata",
        "-1",
        "-dstnodata",
        "-1",
        "-overwrite",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    crate::raster::warp_files(
        heatmaps,
        Path::new(&staged),
        &args,
        "mosaicking the heatmaps",
    )
    .map_err(|e| gerr(out, &e))?;
    let copied = (|| -> gdal::errors::Result<()> {
        let mut ds = Dataset::open_ex(
            &staged,
            DatasetOptions {
                open_flags: GdalOpenFlags::GDAL_OF_UPDATE | GdalOpenFlags::GDAL_OF_RASTER,
                ..Default::default()
            },
        )?;
        for b in 1..=bands {
            let from = reference.rasterband(b)?;
            let mut to = ds.rasterband(b)?;
            to.set_description(&from.description()?)?;
            to.set_no_data_value(Some(HEATMAP_NODATA))?;
        }
        for entry in reference.metadata() {
            if entry.key.starts_with("NEXTTILE_") && entry.key != "NEXTTILE_SCENE" {
                ds.set_metadata_item(&entry.key, &entry.value, "")?;
            }
        }
        let cog = DriverManager::get_driver_by_name("COG")?;
        let opts = RasterCreationOptions::from_iter([
            "COMPRESS=DEFLATE",
            "PREDICTOR=YES",
            "OVERVIEWS=AUTO",
        ]);
        ds.create_copy(&cog, out, &opts)?;
        Ok(())
    })();
    let _ = gdal::vsi::unlink_mem_file(&staged);
    copied.map_err(|e| gerr(out, &e))?;
    let style = first.with_extension("qml");
    if style.is_file() {
        std::fs::copy(&style, out.with_extension("qml")).map_err(|e| OutputError::Io {
            path: out.with_extension("qml").display().to_string(),
            source: e,
        })?;
    }
    Ok(())
}
