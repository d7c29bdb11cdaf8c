//! A STAC Item as a scene: its assets' bands, named by the item's band
//! metadata, stacked into one in-memory VRT (what `gdalbuildvrt -separate`
//! makes) that the reader opens like any raster.
//!
//! Band names come from each asset's `eo:bands` (STAC 1.0 eo extension:
//! `common_name`, `name`) or `bands` (STAC 1.1: `eo:common_name`, `name`),
//! common name first (`red` → `B04`, through the same table as band
//! descriptions), so a Landsat item's `red` lands where the model wants
//! `B04`. Single-band assets come first; a name two assets give is taken from
//! the first. Assets are read from local files only: an href relative to the
//! item file, an absolute path or a `file://` URL; `http(s)://`, `s3://` and
//! GDAL's `/vsi…` paths are refused (download the assets first). Every asset
//! must be in the same CRS; the stack takes the finest pixel size among them
//! and the union of their extents (coarser assets are repeated, nearest
//! neighbour, as `gdalbuildvrt` does).

use std::path::{Path, PathBuf};

use gdal::Dataset;
use gdal::spatial_ref::SpatialRef;
use serde::Serialize;
use serde_json::Value;

use super::RasterError;
use super::bands::canonical_band_name;
use super::resample::MemVrt;
use super::scene::name_from_label;
use super::sensor::common_name_to_s2;
use super::stac_sensor::{StacRadiometry, stac_radiometry};

/// Largest STAC item file read (an item is a few kilobytes).
pub(super) const MAX_ITEM_BYTES: u64 = 16 << 20;

/// One band of the stack and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct StacBand {
    /// The band's name for matching (`B04`).
    pub name: String,
    /// The asset key in the item (`red`, `B04`).
    pub asset: String,
    /// The asset's file.
    pub file: String,
    /// 1-based band in that file.
    pub band: usize,
}

/// A STAC item stacked into a VRT: keep it alive while the scene is read.
#[derive(Debug)]
pub struct StacStack {
    /// The stacked VRT in `/vsimem/`.
    pub vrt: MemVrt,
    /// Its bands, in order.
    pub bands: Vec<StacBand>,
    /// The sensor and scaling its properties and assets say, and what they leave open.
    pub radiometry: StacRadiometry,
    /// The item's `id`.
    pub id: Option<String>,
}

pub(super) fn stac_err(item: &Path, message: impl Into<String>) -> RasterError {
    RasterError::Stac {
        item: item.display().to_string(),
        message: message.into(),
    }
}

/// What a JSON file is, as far as STAC goes.
pub(super) enum StacDoc {
    /// A STAC Item (`type: Feature` with `stac_version`).
    Item(Value),
    /// A STAC ItemCollection (`type: FeatureCollection` whose features, or itself, carry
    /// `stac_version`).
    Collection(Value),
    /// Another STAC document (a Collection, a Catalog): its `type`.
    Other(String),
    /// Not STAC: not a `.json`/`.geojson` file, not JSON, no `stac_version`, or larger
    /// than `max` bytes.
    NotStac(&'static str),
}

/// Reads `path` (at most `max` bytes) and says what STAC document it is.
///
/// # Errors
///
/// [`RasterError::Stac`] when a file that is there cannot be read.
pub(super) fn read_stac_doc(path: &Path, max: u64) -> Result<StacDoc, RasterError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("json" | "geojson")) || !path.is_file() {
        return Ok(StacDoc::NotStac("not a .json file"));
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > max {
        return Ok(StacDoc::NotStac("too large for a STAC item"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| stac_err(path, format!("cannot read it: {e}")))?;
    let Ok(doc) = serde_json::from_str::<Value>(&text) else {
        return Ok(StacDoc::NotStac("not JSON"));
    };
    let stac = |v: &Value| v.get("stac_version").is_some();
    let kind = doc.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "FeatureCollection" {
        let features = doc.get("features").and_then(Value::as_array);
        return Ok(
            if stac(&doc) || features.is_some_and(|f| f.iter().any(stac)) {
                StacDoc::Collection(doc)
            } else {
                StacDoc::NotStac("a GeoJSON FeatureCollection without STAC items")
            },
        );
    }
    if !stac(&doc) {
        return Ok(StacDoc::NotStac("no stac_version: not a STAC document"));
    }
    Ok(match kind {
        "Feature" => StacDoc::Item(doc),
        other => StacDoc::Other(other.to_string()),
    })
}

/// Refuses a STAC item that is not a Feature or lists no assets (STAC Item spec: `type`
/// is `Feature`, `assets` an object).
pub(super) fn check_item(item: &Path, doc: &Value) -> Result<(), RasterError> {
    if doc.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(stac_err(
            item,
            "this is not a STAC Item (type Feature); give an item's JSON",
        ));
    }
    if !doc.get("assets").is_some_and(Value::is_object) {
        return Err(stac_err(
            item,
            "this STAC item has no assets; give an item that lists its band files",
        ));
    }
    Ok(())
}

/// The STAC Item at `path` when it is one (a `.json`/`.geojson` file with
/// `stac_version` and `type: Feature`), else `None` (not STAC: GDAL decides).
///
/// # Errors
///
/// [`RasterError::Stac`] for a STAC ItemCollection (one item at a time here: the CLI
/// and the daemon list its items with [`list_stac_items`](super::list_stac_items)),
/// another STAC document, an item without assets, or an unreadable file.
pub fn read_stac_item(path: &Path) -> Result<Option<Value>, RasterError> {
    match read_stac_doc(path, MAX_ITEM_BYTES)? {
        StacDoc::Item(doc) => {
            check_item(path, &doc)?;
            Ok(Some(doc))
        }
        StacDoc::NotStac(_) => Ok(None),
        StacDoc::Collection(_) => Err(stac_err(
            path,
            "this is a STAC ItemCollection, and one scoring run takes one item: `nexttile score COLLECTION.json -o OUT/` scores each of its items as its own scene, and the daemon adds each as a scene",
        )),
        StacDoc::Other(kind) => Err(stac_err(
            path,
            format!(
                "this has stac_version but is a STAC {kind}, not an Item (type Feature); give an item's JSON file, an ItemCollection or a folder of items"
            ),
        )),
    }
}

/// The names an asset's band metadata gives its bands, in file order (empty
/// when it has none): `eo:bands` (STAC 1.0) or `bands` (STAC 1.1).
fn asset_band_names(asset: &Value) -> Vec<Option<String>> {
    let list = asset
        .get("eo:bands")
        .or_else(|| asset.get("bands"))
        .and_then(Value::as_array);
    let Some(list) = list else {
        return Vec::new();
    };
    list.iter()
        .map(|b| {
            let common = b
                .get("common_name")
                .or_else(|| b.get("eo:common_name"))
                .and_then(Value::as_str)
                .and_then(common_name_to_s2)
                .map(str::to_string);
            common.or_else(|| {
                b.get("name")
                    .and_then(Value::as_str)
                    .and_then(name_from_label)
                    .map(|n| canonical_band_name(&n))
            })
        })
        .collect()
}

/// A local file for an asset href: relative to the item's folder, absolute,
/// or `file://`; remote and `/vsi…` hrefs are refused.
fn local_file(item: &Path, key: &str, href: &str) -> Result<PathBuf, RasterError> {
    let lower = href.trim().to_ascii_lowercase();
    let remote = ["http://", "https://", "s3://", "gs://", "az://", "ftp://"];
    if remote.iter().any(|r| lower.starts_with(r)) || lower.starts_with("/vsi") {
        return Err(stac_err(
            item,
            format!(
                "asset '{key}' is at {href}, which is not a local file; NextTile reads STAC assets from disk only: download them (e.g. `stac-asset download`) and point the hrefs at the local files (relative to the item or absolute)"
            ),
        ));
    }
    let path = PathBuf::from(href.trim().strip_prefix("file://").unwrap_or(href.trim()));
    let path = if path.is_absolute() {
        path
    } else {
        item.parent().unwrap_or(Path::new(".")).join(path)
    };
    if !path.is_file() {
        return Err(stac_err(
            item,
            format!(
                "asset '{key}' points at {}, which does not exist; check the href (relative hrefs are read from the folder of the item's JSON file)",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// One opened asset file and what the stack needs of it.
struct AssetFile {
    path: PathBuf,
    size: (usize, usize),
    gt: [f64; 6],
    srs: SpatialRef,
    wkt: String,
    /// Per file band: (GDAL type name, nodata).
    bands: Vec<(String, Option<f64>)>,
}

fn open_asset(item: &Path, key: &str, path: &Path) -> Result<AssetFile, RasterError> {
    let bad = |m: String| stac_err(item, format!("asset '{key}' ({}): {m}", path.display()));
    let ds = Dataset::open(path).map_err(|e| bad(format!("not a raster GDAL can read ({e})")))?;
    let gt = ds
        .geo_transform()
        .map_err(|_| bad("has no geotransform".into()))?;
    if gt[2] != 0.0 || gt[4] != 0.0 {
        return Err(bad(
            "has a rotated geotransform; warp it north-up first".into()
        ));
    }
    let wkt = ds.projection();
    let srs = SpatialRef::from_wkt(&wkt).map_err(|_| bad("has no CRS".into()))?;
    let mut bands = Vec::new();
    for i in 1..=ds.raster_count() {
        let b = ds.rasterband(i).map_err(|e| bad(e.to_string()))?;
        bands.push((b.band_type().name(), b.no_data_value()));
    }
    Ok(AssetFile {
        path: path.to_path_buf(),
        size: ds.raster_size(),
        gt,
        srs,
        wkt,
        bands,
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Stack the item at `item` (read by [`read_stac_item`]) into a VRT of every
/// asset band its metadata names.
///
/// # Errors
///
/// [`RasterError::Stac`] for remote or missing asset files, assets in
/// different CRSs, an item that names no band, or GDAL failures.
pub fn stack_stac_item(item: &Path, doc: &Value) -> Result<StacStack, RasterError> {
    stack_stac_item_with(item, doc, None)
}

/// [`stack_stac_item`], with every asset file checked against `confine` (the
/// daemon's raster roots) before GDAL opens it.
///
/// # Errors
///
/// As [`stack_stac_item`], and [`RasterError::Confined`] for an asset outside the
/// roots or virtual.
pub fn stack_stac_item_with(
    item: &Path,
    doc: &Value,
    confine: Option<&super::Confinement>,
) -> Result<StacStack, RasterError> {
    let assets = doc
        .get("assets")
        .and_then(Value::as_object)
        .ok_or_else(|| stac_err(item, "this STAC item has no assets"))?;
    // (asset key, href, band names), single-band assets first.
    let mut listed: Vec<(&String, &str, Vec<Option<String>>)> = assets
        .iter()
        .filter_map(|(k, a)| {
            let names = asset_band_names(a);
            let href = a.get("href").and_then(Value::as_str)?;
            (names.iter().any(Option::is_some)).then_some((k, href, names))
        })
        .collect();
    listed.sort_by_key(|(_, _, names)| names.len() > 1);
    let mut files: Vec<AssetFile> = Vec::new();
    let mut bands: Vec<(StacBand, usize)> = Vec::new();
    for (key, href, names) in listed {
        let wanted: Vec<(usize, String)> = names
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i + 1, n)))
            .filter(|(_, n)| !bands.iter().any(|(b, _)| &b.name == n))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let path = local_file(item, key, href)?;
        if let Some(c) = confine {
            c.check(&path.canonicalize().unwrap_or_else(|_| path.clone()))?;
        }
        let file = open_asset(item, key, &path)?;
        if let Some(first) = files.first()
            && first.srs != file.srs
        {
            return Err(stac_err(
                item,
                format!(
                    "assets '{}' and '{key}' are in different CRSs; warp them to one CRS first (gdalwarp -t_srs)",
                    bands.first().map(|(b, _)| b.asset.as_str()).unwrap_or("")
                ),
            ));
        }
        for (band, name) in wanted {
            if band > file.bands.len() {
                return Err(stac_err(
                    item,
                    format!(
                        "asset '{key}' lists {} bands but {} has {}",
                        band,
                        path.display(),
                        file.bands.len()
                    ),
                ));
            }
            bands.push((
                StacBand {
                    name,
                    asset: key.clone(),
                    file: path
                        .canonicalize()
                        .unwrap_or_else(|_| path.clone())
                        .display()
                        .to_string(),
                    band,
                },
                files.len(),
            ));
        }
        files.push(file);
    }
    if bands.is_empty() {
        return Err(stac_err(
            item,
            "this STAC item names no band: none of its assets has eo:bands (STAC 1.0) or bands (STAC 1.1) with a common_name or name; add them, or stack the files yourself (gdalbuildvrt -separate) with band descriptions",
        ));
    }
    let xml = stack_xml(&files, &bands);
    let vrt = MemVrt::new("stac");
    gdal::vsi::create_mem_file(vrt.path(), xml.into_bytes())
        .map_err(|e| stac_err(item, format!("cannot write its VRT: {e}")))?;
    let bands: Vec<StacBand> = bands.into_iter().map(|(b, _)| b).collect();
    Ok(StacStack {
        vrt,
        radiometry: stac_radiometry(doc, &bands),
        id: doc.get("id").and_then(Value::as_str).map(str::to_string),
        bands,
    })
}

/// The VRT XML: finest pixel size, union of the extents, one band per entry.
fn stack_xml(files: &[AssetFile], bands: &[(StacBand, usize)]) -> String {
    let res_x = files
        .iter()
        .map(|f| f.gt[1].abs())
        .fold(f64::INFINITY, f64::min);
    let res_y = files
        .iter()
        .map(|f| f.gt[5].abs())
        .fold(f64::INFINITY, f64::min);
    let extent = |f: &AssetFile| {
        let xs = [f.gt[0], f.gt[0] + f.gt[1] * f.size.0 as f64];
        let ys = [f.gt[3], f.gt[3] + f.gt[5] * f.size.1 as f64];
        (
            xs[0].min(xs[1]),
            ys[0].min(ys[1]),
            xs[0].max(xs[1]),
            ys[0].max(ys[1]),
        )
    };
    let (mut x0, mut y0, mut x1, mut y1) = extent(&files[0]);
    for f in files {
        let (a, b, c, d) = extent(f);
        (x0, y0, x1, y1) = (x0.min(a), y0.min(b), x1.max(c), y1.max(d));
    }
    let w = ((x1 - x0) / res_x).round().max(1.0);
    let h = ((y1 - y0) / res_y).round().max(1.0);
    let mut xml = format!(
        "<VRTDataset rasterXSize=\"{w}\" rasterYSize=\"{h}\">\n  <SRS>{}</SRS>\n  <GeoTransform>{x0:.17e}, {res_x:.17e}, 0, {y1:.17e}, 0, {:.17e}</GeoTransform>\n",
        xml_escape(&files[0].wkt),
        -res_y
    );
    for (n, (b, fi)) in bands.iter().enumerate() {
        let f = &files[*fi];
        let (dtype, nodata) = &f.bands[b.band - 1];
        let (a, _, c, d) = extent(f);
        let dst = (
            (a - x0) / res_x,
            (y1 - d) / res_y,
            (c - a) / res_x,
            f.gt[5].abs() * f.size.1 as f64 / res_y,
        );
        xml.push_str(&format!(
            "  <VRTRasterBand dataType=\"{dtype}\" band=\"{}\">\n    <Description>{}</Description>\n",
            n + 1,
            xml_escape(&b.name)
        ));
        if let Some(nd) = nodata {
            let nd = if nd.is_nan() {
                "nan".into()
            } else {
                format!("{nd}")
            };
            xml.push_str(&format!("    <NoDataValue>{nd}</NoDataValue>\n"));
        }
        xml.push_str(&format!(
            "    <SimpleSource>\n      <SourceFilename relativeToVRT=\"0\">{}</SourceFilename>\n      <SourceBand>{}</SourceBand>\n      <SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{}\" ySize=\"{}\" />\n      <DstRect xOff=\"{:.10}\" yOff=\"{:.10}\" xSize=\"{:.10}\" ySize=\"{:.10}\" />\n    </SimpleSource>\n  </VRTRasterBand>\n",
            xml_escape(&f.path.canonicalize().unwrap_or_else(|_| f.path.clone()).display().to_string()),
            b.band,
            f.size.0,
            f.size.1,
            dst.0,
            dst.1,
            dst.2,
            dst.3
        ));
    }
    xml.push_str("</VRTDataset>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::asset_band_names;

    #[test]
    fn names_from_stac_1_0_and_1_1() {
        let v10 = serde_json::json!({"eo:bands": [{"name": "B4", "common_name": "red"}]});
        assert_eq!(asset_band_names(&v10), vec![Some("B04".to_string())]);
        let v11 = serde_json::json!({"bands": [{"name": "SR_B5", "eo:common_name": "nir"}]});
        assert_eq!(asset_band_names(&v11), vec![Some("B08".to_string())]);
        let name_only = serde_json::json!({"eo:bands": [{"name": "B8A"}, {"name": "Band 2"}]});
        assert_eq!(
            asset_band_names(&name_only),
            vec![Some("B8A".to_string()), None]
        );
        assert!(asset_band_names(&serde_json::json!({"roles": ["thumbnail"]})).is_empty());
    }
}
