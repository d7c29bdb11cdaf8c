//! Pure tiling: the tile grid over a scene, stable tile ids, pixel windows,
//! footprints and AOI clipping. No IO here.

mod aoi;
mod grid;

pub use aoi::{grid_bounds, tiles_in_aoi};
pub use grid::{GeoTransform, TileGrid, TileId, Window};

/// Errors from building or clipping a tile grid.
#[derive(Debug, thiserror::Error)]
pub enum TilingError {
    /// The tile size is zero.
    #[error("tile size must be at least 1 pixel")]
    ZeroTileSize,
    /// Overlap ≥ tile size would never advance.
    #[error("overlap of {overlap} px must be smaller than the tile size ({tile_size} px)")]
    OverlapTooLarge {
        /// Requested overlap.
        overlap: usize,
        /// Requested tile size.
        tile_size: usize,
    },
    /// The raster is smaller than one tile.
    #[error(
        "a {tile_size} px tile does not fit in the {width} x {height} px raster; use a smaller --tile-size or a larger scene"
    )]
    TileLargerThanRaster {
        /// Requested tile size.
        tile_size: usize,
        /// Raster width.
        width: usize,
        /// Raster height.
        height: usize,
    },
    /// The AOI has no area.
    #[error("the AOI has no polygon with area; give a Polygon or MultiPolygon")]
    EmptyAoi,
    /// The AOI misses every tile.
    #[error(
        "the AOI (bounds {aoi:?} in the scene CRS) does not overlap any whole tile of the scene (bounds {scene:?}); check the AOI's CRS and extent"
    )]
    AoiOutsideScene {
        /// AOI bounds `[min_x, min_y, max_x, max_y]` in the scene CRS.
        aoi: [f64; 4],
        /// Scene bounds in the scene CRS.
        scene: [f64; 4],
    },
    /// A tile id string that is not `r<row>_c<col>`.
    #[error("'{0}' is not a tile id; expected r<row>_c<col>, e.g. r3_c12")]
    BadTileId(String),
}
