//! Two rasters on one grid: a second raster (e.g. Sentinel-1 beside a
//! Sentinel-2 scene) warped onto the first raster's grid and stacked after its
//! bands, as one virtual dataset the reader opens like any scene.
//!
//! The second raster is warped with GDAL's `gdalwarp` engine into a *warped
//! VRT* (lazy: pixels are warped when a window is read, so memory stays
//! bounded) with the first raster's CRS, extent and pixel size; nearest
//! neighbour for integer data (class codes, DN), bilinear for floating point
//! (backscatter in dB, reflectance). Its nodata is carried over (NaN for float
//! bands without one, 0 for integer bands without one, as Sentinel-2 marks
//! missing data), so pixels the second raster does not cover are nodata in
//! the stack and tiles made mostly of them are skipped. A plain VRT then lists
//! the first raster's bands followed by the warped ones, with their canonical
//! names as band descriptions, so band matching works across both files.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use gdal::Dataset;
use sha2::{Digest, Sha256};

use super::{Confinement, RasterError, Scene};
use crate::crs::Reprojector;

/// The first raster's bounding box in its CRS: (xmin, ymin, xmax, ymax).
fn bbox(scene: &Scene) -> (f64, f64, f64, f64) {
    let (x0, y0) = scene.geo_transform.apply(0.0, 0.0);
    let (x1, y1) = scene
        .geo_transform
        .apply(scene.width as f64, scene.height as f64);
    (x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1))
}

/// The second raster's footprint in the first one's CRS, from points along
/// its edges (a reprojected rectangle is not a rectangle).
fn footprint_in(second: &Scene, first_wkt: &str) -> Result<(f64, f64, f64, f64), RasterError> {
    let srs =
        gdal::spatial_ref::SpatialRef::from_wkt(first_wkt).map_err(|e| RasterError::Gdal {
            path: second.path.display().to_string(),
            message: e.to_string(),
        })?;
    let rp = Reprojector::from_wkt(&second.crs_wkt, &srs).map_err(|e| RasterError::Gdal {
        path: second.path.display().to_string(),
        message: e.to_string(),
    })?;
    let (w, h) = (second.width as f64, second.height as f64);
    let steps = 16;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..=steps {
        let f = i as f64 / steps as f64;
        for (c, r) in [(f * w, 0.0), (f * w, h), (0.0, f * h), (w, f * h)] {
            let (x, y) = second.geo_transform.apply(c, r);
            xs.push(x);
            ys.push(y);
        }
    }
    rp.transform(&mut xs, &mut ys)
        .map_err(|e| RasterError::Gdal {
            path: second.path.display().to_string(),
            message: e.to_string(),
        })?;
    let fold = |v: &[f64], f: fn(f64, f64) -> f64, init: f64| v.iter().copied().fold(init, f);
    Ok((
        fold(&xs, f64::min, f64::INFINITY),
        fold(&ys, f64::min, f64::INFINITY),
        fold(&xs, f64::max, f64::NEG_INFINITY),
        fold(&ys, f64::max, f64::NEG_INFINITY),
    ))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn gdal_err(path: &Path, message: impl Into<String>) -> RasterError {
    RasterError::Gdal {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Identity of a file for naming its stack: canonical path, size, mtime
/// (the path alone where it cannot be stat'ed).
fn identity(path: &Path) -> String {
    match crate::paths::file_identity(path) {
        Some((p, size, mtime)) => format!("{p}|{size}|{mtime}"),
        None => path.display().to_string(),
    }
}

/// Warp `second` onto `first`'s grid and stack it after `first`'s bands.
/// Returns the path of the stacked virtual dataset (in GDAL's `/vsimem/`,
/// process-wide, so every reader thread can open it).
///
/// # Errors
///
/// [`RasterError::NoOverlap`] when the two rasters share no ground;
/// the errors of [`Scene::open_with`] for the second raster (confined to `confine`'s
/// roots when given); GDAL failures.
pub fn stack_pair(
    first: &Scene,
    second_path: &Path,
    confine: Option<&Confinement>,
) -> Result<PathBuf, RasterError> {
    let second = Scene::open_with(second_path, confine)?;
    let (ax0, ay0, ax1, ay1) = bbox(first);
    let (bx0, by0, bx1, by1) = footprint_in(&second, &first.crs_wkt)?;
    let (ix0, iy0, ix1, iy1) = (ax0.max(bx0), ay0.max(by0), ax1.min(bx1), ay1.min(by1));
    let (px, py) = first.pixel_size();
    if !(ix1 - ix0 >= px && iy1 - iy0 >= py) {
        let crs = first
            .crs_epsg
            .clone()
            .unwrap_or_else(|| "the first raster's CRS".into());
        return Err(RasterError::NoOverlap {
            first: first.path.display().to_string(),
            second: second.path.display().to_string(),
            extents: format!(
                "in {crs} the first covers x {ax0:.6}..{ax1:.6}, y {ay0:.6}..{ay1:.6} and the second x {bx0:.6}..{bx1:.6}, y {by0:.6}..{by1:.6}"
            ),
        });
    }
    let mut h = Sha256::new();
    h.update(identity(&first.path));
    h.update(identity(&second.path));
    let tag: String = h
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    let warped = PathBuf::from(format!("/vsimem/nexttile/{tag}_second.vrt"));
    let stacked = PathBuf::from(format!("/vsimem/nexttile/{tag}_stack.vrt"));
    let mut made = STACKED.lock().unwrap_or_else(PoisonError::into_inner);
    if made.contains(&tag) {
        return Ok(stacked);
    }

    let any_float = second
        .bands
        .iter()
        .any(|b| b.data_type.starts_with("Float") || b.data_type.starts_with("CFloat"));
    let dst_nodata: Vec<String> = second
        .bands
        .iter()
        .map(|b| match b.nodata {
            Some(v) if v.is_nan() => "nan".to_string(),
            Some(v) => format!("{v}"),
            None if b.data_type.contains("Float") => "nan".to_string(),
            None => "0".to_string(),
        })
        .collect();
    let args: Vec<String> = vec![
        "-of".into(),
        "VRT".into(),
        "-t_srs".into(),
        first.crs_wkt.clone(),
        "-te".into(),
        format!("{ax0:.12}"),
        format!("{ay0:.12}"),
        format!("{ax1:.12}"),
        format!("{ay1:.12}"),
        "-ts".into(),
        first.width.to_string(),
        first.height.to_string(),
        "-r".into(),
        if any_float { "bilinear" } else { "near" }.into(),
        "-dstnodata".into(),
        dst_nodata.join(" "),
    ];
    warp_to(
        &second,
        &warped,
        &args,
        "warping onto the first raster's grid",
    )?;

    // The stack: the first raster's bands, then the warped ones.
    let first_abs = first
        .path
        .canonicalize()
        .unwrap_or_else(|_| first.path.clone());
    let gt = first.geo_transform.0;
    let mut xml = format!(
        "<VRTDataset rasterXSize=\"{}\" rasterYSize=\"{}\">\n  <SRS>{}</SRS>\n  <GeoTransform>{:.17e}, {:.17e}, {:.17e}, {:.17e}, {:.17e}, {:.17e}</GeoTransform>\n",
        first.width,
        first.height,
        xml_escape(&first.crs_wkt),
        gt[0],
        gt[1],
        gt[2],
        gt[3],
        gt[4],
        gt[5]
    );
    let mut n = 0;
    let sources = [
        (&first.bands, first_abs.display().to_string(), None),
        (
            &second.bands,
            warped.display().to_string(),
            Some(&dst_nodata),
        ),
    ];
    for (bands, file, nodata_override) in sources {
        for (i, b) in bands.iter().enumerate() {
            n += 1;
            let nodata = match nodata_override {
                Some(nd) => Some(nd[i].clone()),
                None => b.nodata.map(|v| {
                    if v.is_nan() {
                        "nan".into()
                    } else {
                        format!("{v}")
                    }
                }),
            };
            xml.push_str(&format!(
                "  <VRTRasterBand dataType=\"{}\" band=\"{n}\">\n    <Description>{}</Description>\n",
                b.data_type,
                xml_escape(&b.name)
            ));
            if let Some(nd) = nodata {
                xml.push_str(&format!("    <NoDataValue>{nd}</NoDataValue>\n"));
            }
            xml.push_str(&format!(
                "    <SimpleSource>\n      <SourceFilename relativeToVRT=\"0\">{}</SourceFilename>\n      <SourceBand>{}</SourceBand>\n    </SimpleSource>\n  </VRTRasterBand>\n",
                xml_escape(&file),
                b.index
            ));
        }
    }
    xml.push_str("</VRTDataset>\n");
    gdal::vsi::create_mem_file(&stacked, xml.into_bytes())
        .map_err(|e| gdal_err(&stacked, e.to_string()))?;
    made.insert(tag);
    Ok(stacked)
}

/// Tags of the pairs stacked in `/vsimem/` by this process. A pair's two VRTs are named
/// by the files' identity (path, size, modification time) and written once: stacking the
/// same pair again, on another thread, used to unlink and rewrite them while readers of
/// the first stack were opening them ("No such file or directory", seen in a parallel
/// test run). The lock is held while a pair is written, so a second caller waits for
/// the first and then reuses its files.
static STACKED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Run GDAL's warper (`gdalwarp` as a library call) from `src` into `dest`;
/// `what` names the step in an error message (`warping onto the first
/// raster's grid`).
pub(super) fn warp_to(
    src: &Scene,
    dest: &Path,
    args: &[String],
    what: &str,
) -> Result<(), RasterError> {
    warp_datasets(&[&src.dataset], &src.path, dest, args, what)
}

/// Warps every raster of `sources` into one new raster `dest` (`gdalwarp SOURCES…
/// DEST ARGS` as a library call; later sources are drawn over earlier ones where they
/// overlap, their nodata left out with `-srcnodata`), e.g. per-scene heatmaps into one
/// mosaic in one CRS. `what` names the step in an error message.
///
/// # Errors
///
/// [`RasterError::Gdal`] when a source does not open, the arguments are refused or
/// the warp fails.
pub fn warp_files(
    sources: &[&Path],
    dest: &Path,
    args: &[String],
    what: &str,
) -> Result<(), RasterError> {
    let first = sources
        .first()
        .ok_or_else(|| gdal_err(dest, format!("{what}: no source raster")))?;
    let opened = sources
        .iter()
        .map(|p| Dataset::open(p).map_err(|e| gdal_err(p, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&Dataset> = opened.iter().collect();
    warp_datasets(&refs, first, dest, args, what)
}

/// The warp itself: `sources` (open for the whole call) into `dest`; errors name
/// `source_path`.
fn warp_datasets(
    sources: &[&Dataset],
    source_path: &Path,
    dest: &Path,
    args: &[String],
    what: &str,
) -> Result<(), RasterError> {
    let c_args: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| gdal_err(source_path, "warp option with a NUL byte"))?;
    let mut ptrs: Vec<*mut std::ffi::c_char> =
        c_args.iter().map(|c| c.as_ptr() as *mut _).collect();
    ptrs.push(std::ptr::null_mut());
    let c_dest = CString::new(dest.display().to_string())
        .map_err(|_| gdal_err(dest, "path with a NUL byte"))?;
    let count = std::ffi::c_int::try_from(sources.len())
        .map_err(|_| gdal_err(source_path, "too many rasters to warp at once"))?;
    // SAFETY: every pointer is valid for the duration of the calls; the
    // options are freed below; the source handles outlive the warp because
    // `sources` are borrowed for the whole function.
    unsafe {
        let opts = gdal_sys::GDALWarpAppOptionsNew(ptrs.as_mut_ptr(), std::ptr::null_mut());
        if opts.is_null() {
            return Err(gdal_err(source_path, format!("bad warp options {args:?}")));
        }
        let mut handles: Vec<gdal_sys::GDALDatasetH> =
            sources.iter().map(|d| d.c_dataset()).collect();
        let mut usage_error: std::ffi::c_int = 0;
        let out = gdal_sys::GDALWarp(
            c_dest.as_ptr(),
            std::ptr::null_mut(),
            count,
            handles.as_mut_ptr(),
            opts,
            &mut usage_error,
        );
        gdal_sys::GDALWarpAppOptionsFree(opts);
        if out.is_null() {
            return Err(gdal_err(
                source_path,
                format!("{what} failed: {}", last_gdal_error()),
            ));
        }
        // Closing flushes the warped VRT to /vsimem.
        gdal_sys::GDALClose(out);
    }
    // Check that the result opens: a cheap guard against a bad VRT.
    Dataset::open(dest).map_err(|e| gdal_err(dest, e.to_string()))?;
    Ok(())
}

fn last_gdal_error() -> String {
    // SAFETY: CPLGetLastErrorMsg returns a pointer to a thread-local,
    // NUL-terminated buffer owned by GDAL.
    unsafe {
        let p = gdal_sys::CPLGetLastErrorMsg();
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}
