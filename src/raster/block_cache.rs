//! Sizing GDAL's block cache to what a read needs, so memory stays bounded
//! whatever the machine's RAM.
//!
//! GDAL keeps every decompressed block in one process-wide cache whose
//! default size is 5 % of physical memory (1.2 GiB on a 24 GiB machine,
//! 6.4 GiB on 128 GiB). Our readers never go back to a block once the tiles
//! over it are read (parts share no block, and a single reader goes row by
//! row), so the cache only has to hold the blocks under the tiles being read
//! by each reader at a time. [`fit_block_cache`] sets it to that (with a
//! margin) unless the user chose a size with `GDAL_CACHEMAX`.

use std::sync::OnceLock;

use gdal::Metadata;

use super::{ReadPlan, Scene};

/// Smallest cache set: GDAL's own overviews, masks and warped VRTs get room.
const MIN_CACHE_BYTES: u64 = 64 << 20;

/// GDAL's cache size before NextTile first changed it.
static GDAL_DEFAULT: OnceLock<u64> = OnceLock::new();

/// Bytes of decompressed blocks one reader of `part` holds at a time: every
/// block under one tile row of the part (across the part's columns, and every
/// block row a tile touches), for every band a block holds (all of them in a
/// pixel-interleaved file, where a block stores every band). `None` for a
/// VRT (a mosaic, the `--pair` stack): its sources' blocks are cached too and
/// are not counted here, so the cache is better left at GDAL's size.
pub fn reader_need(scene: &Scene, part: &ReadPlan) -> Option<u64> {
    if scene
        .dataset
        .driver()
        .short_name()
        .eq_ignore_ascii_case("VRT")
    {
        return None;
    }
    let (bw, bh) = scene.block_size(&part.bands);
    let pixel_interleaved = scene
        .dataset
        .metadata_item("INTERLEAVE", "IMAGE_STRUCTURE")
        .is_some_and(|v| v.eq_ignore_ascii_case("PIXEL"));
    let bands: Vec<usize> = if pixel_interleaved {
        (1..=scene.bands.len()).collect()
    } else {
        part.bands.clone()
    };
    let bytes_per_px: u64 = bands
        .iter()
        .filter_map(|&b| scene.dataset.rasterband(b).ok())
        .map(|rb| u64::from(rb.band_type().bytes()))
        .sum();
    let windows = part.tiles.iter().map(|&t| part.grid.window(t));
    let (Some(x0), Some(x1)) = (
        windows.clone().map(|w| w.x_off).min(),
        windows.clone().map(|w| w.x_off + w.width.max(1)).max(),
    ) else {
        return Some(0);
    };
    let block_cols = ((x1 - 1) / bw - x0 / bw + 1) as u64;
    let block_rows = windows
        .map(|w| (w.y_off + w.height.max(1) - 1) / bh - w.y_off / bh + 1)
        .max()
        .unwrap_or(1) as u64;
    Some(block_cols * block_rows * (bw * bh) as u64 * bytes_per_px)
}

/// Set GDAL's block cache to `need` bytes plus a quarter, at least
/// `MIN_CACHE_BYTES` and never above GDAL's own default (`None`: back to
/// that default); nothing is changed when `GDAL_CACHEMAX` is set. Returns the
/// size in force.
pub fn fit_block_cache(need: Option<u64>) -> u64 {
    // SAFETY: a plain getter of GDAL's global cache size.
    let current = unsafe { gdal_sys::GDALGetCacheMax64() }.max(0) as u64;
    if std::env::var_os("GDAL_CACHEMAX").is_some() {
        return current;
    }
    let default = *GDAL_DEFAULT.get_or_init(|| current);
    let want = match need {
        Some(n) => n
            .saturating_add(n / 4)
            .clamp(MIN_CACHE_BYTES, default.max(MIN_CACHE_BYTES)),
        None => default,
    };
    if want != current {
        // SAFETY: a plain setter; GDAL evicts blocks down to the new size.
        unsafe { gdal_sys::GDALSetCacheMax64(want as i64) };
    }
    want
}
