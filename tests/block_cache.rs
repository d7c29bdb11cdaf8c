//! GDAL's block cache is sized to what the readers hold, not to 5 % of RAM:
//! the figures come from the real sample's layout (13-band pixel-interleaved
//! UInt16, 256-px blocks).

mod common;

use nexttile::raster::{ReadPlan, Scene, fit_block_cache, reader_need};
use nexttile::tiling::{TileGrid, TileId};

fn gdal_cache_max() -> u64 {
    // SAFETY: a plain getter of GDAL's global cache size.
    unsafe { gdal_sys::GDALGetCacheMax64() as u64 }
}

#[test]
fn the_cache_holds_what_a_reader_needs_and_no_more() {
    let scene = Scene::open(&common::sample_scene()).unwrap();
    let grid = TileGrid::new(scene.width, scene.height, 64, 0, scene.geo_transform).unwrap();
    let pre = nexttile::model::inspect(&common::encoder())
        .unwrap()
        .preprocess
        .unwrap();
    let plan = |tiles: Vec<TileId>| ReadPlan {
        bands: scene.resolve_bands(&pre.bands, None).unwrap(),
        preprocess: pre.clone(),
        grid: grid.clone(),
        tiles,
        min_valid_fraction: 0.5,
        batch_size: 64,
    };
    // All 13 bands live in each block: 256 × 256 px × 13 × 2 bytes.
    let block = 256 * 256 * 13 * 2;
    let corner: Vec<TileId> = (0..4).map(|col| TileId { row: 0, col }).collect();
    assert_eq!(reader_need(&scene, &plan(corner)), Some(block));
    // A single reader goes row by row across the scene: 8 blocks wide.
    assert_eq!(
        reader_need(&scene, &plan(grid.tiles().collect())),
        Some(8 * block)
    );

    let default = gdal_cache_max();
    assert_eq!(
        fit_block_cache(Some(8 * block)),
        64 << 20,
        "at least 64 MiB"
    );
    assert_eq!(gdal_cache_max(), 64 << 20);
    let big = 200u64 << 20;
    assert_eq!(
        fit_block_cache(Some(big)),
        (big + big / 4).min(default.max(64 << 20))
    );
    assert_eq!(fit_block_cache(None), default, "back to GDAL's own size");
    assert_eq!(gdal_cache_max(), default);
}
