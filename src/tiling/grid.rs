//! The tile grid: which pixel windows of a scene are scored, and where they are.

use std::fmt;
use std::str::FromStr;

use geo::{Coord, LineString, Polygon};
use serde::{Deserialize, Serialize};

use super::TilingError;

/// A GDAL-style affine geotransform: `x = gt[0] + col·gt[1] + row·gt[2]`,
/// `y = gt[3] + col·gt[4] + row·gt[5]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// Map a (fractional) pixel position to scene coordinates.
    pub fn apply(&self, col: f64, row: f64) -> (f64, f64) {
        let g = &self.0;
        (
            g[0] + col * g[1] + row * g[2],
            g[3] + col * g[4] + row * g[5],
        )
    }

    /// Map scene coordinates back to a (fractional) pixel position, or `None`
    /// when the transform is singular.
    pub fn invert(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let g = &self.0;
        let det = g[1] * g[5] - g[2] * g[4];
        if det.abs() < f64::EPSILON * (g[1].abs() + g[5].abs()).max(1e-300) {
            return None;
        }
        let dx = x - g[0];
        let dy = y - g[3];
        Some((
            (g[5] * dx - g[2] * dy) / det,
            (-g[4] * dx + g[1] * dy) / det,
        ))
    }

    /// Pixel width and height in CRS units (absolute values of the diagonal).
    pub fn pixel_size(&self) -> (f64, f64) {
        (self.0[1].abs(), self.0[5].abs())
    }

    /// Whether the transform has rotation/shear terms.
    pub fn is_rotated(&self) -> bool {
        self.0[2] != 0.0 || self.0[4] != 0.0
    }
}

/// Stable identifier of one tile: its row and column in the grid anchored at
/// the scene's pixel (0, 0). The same scene, tile size and overlap always give
/// the same ids, whatever AOI is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TileId {
    /// Grid row (0 = top).
    pub row: u32,
    /// Grid column (0 = left).
    pub col: u32,
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}_c{}", self.row, self.col)
    }
}

impl FromStr for TileId {
    type Err = TilingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TilingError::BadTileId(s.to_string());
        let rest = s.strip_prefix('r').ok_or_else(bad)?;
        let (r, c) = rest.split_once("_c").ok_or_else(bad)?;
        Ok(TileId {
            row: r.parse().map_err(|_| bad())?,
            col: c.parse().map_err(|_| bad())?,
        })
    }
}

/// A pixel window of the scene: offset and size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Column of the window's left edge.
    pub x_off: usize,
    /// Row of the window's top edge.
    pub y_off: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// A regular grid of square tiles over a raster. Only whole tiles are part of
/// the grid: a right or bottom remainder narrower than a tile is not scored
/// (a model takes fixed-size tiles; padding would invent pixels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileGrid {
    /// Raster width in pixels.
    pub raster_width: usize,
    /// Raster height in pixels.
    pub raster_height: usize,
    /// Tile edge in pixels.
    pub tile_size: usize,
    /// Distance between the origins of neighbouring tiles, in pixels
    /// (`tile_size - overlap`).
    pub stride: usize,
    /// Number of tile rows.
    pub rows: usize,
    /// Number of tile columns.
    pub cols: usize,
    /// The scene's geotransform.
    pub geo_transform: GeoTransform,
}

impl TileGrid {
    /// Build the grid for a `width × height` raster with square tiles of
    /// `tile_size` pixels overlapping by `overlap` pixels.
    ///
    /// # Examples
    /// ```
    /// use nexttile::tiling::{GeoTransform, TileGrid};
    /// let gt = GeoTransform([500_000.0, 10.0, 0.0, 4_000_000.0, 0.0, -10.0]);
    /// let grid = TileGrid::new(1000, 700, 64, 0, gt)?;
    /// assert_eq!((grid.rows, grid.cols), (10, 15));
    /// # Ok::<(), nexttile::tiling::TilingError>(())
    /// ```
    pub fn new(
        width: usize,
        height: usize,
        tile_size: usize,
        overlap: usize,
        geo_transform: GeoTransform,
    ) -> Result<Self, TilingError> {
        if tile_size == 0 {
            return Err(TilingError::ZeroTileSize);
        }
        if overlap >= tile_size {
            return Err(TilingError::OverlapTooLarge { overlap, tile_size });
        }
        if tile_size > width || tile_size > height {
            return Err(TilingError::TileLargerThanRaster {
                tile_size,
                width,
                height,
            });
        }
        let stride = tile_size - overlap;
        Ok(TileGrid {
            raster_width: width,
            raster_height: height,
            tile_size,
            stride,
            rows: (height - tile_size) / stride + 1,
            cols: (width - tile_size) / stride + 1,
            geo_transform,
        })
    }

    /// Number of tiles in the full grid.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the grid has no tiles (never true for a grid built by `new`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All tile ids in row-major order.
    pub fn tiles(&self) -> impl Iterator<Item = TileId> + '_ {
        (0..self.rows).flat_map(move |r| {
            (0..self.cols).map(move |c| TileId {
                row: r as u32,
                col: c as u32,
            })
        })
    }

    /// Whether `id` lies inside this grid.
    pub fn contains(&self, id: TileId) -> bool {
        (id.row as usize) < self.rows && (id.col as usize) < self.cols
    }

    /// The pixel window of a tile.
    pub fn window(&self, id: TileId) -> Window {
        Window {
            x_off: id.col as usize * self.stride,
            y_off: id.row as usize * self.stride,
            width: self.tile_size,
            height: self.tile_size,
        }
    }

    /// The tile's footprint in the scene CRS, with `per_edge` points on each
    /// edge (so that it stays accurate after reprojection); closed ring,
    /// counter-clockwise for a north-up raster in a CRS with y pointing north.
    pub fn footprint(&self, id: TileId, per_edge: usize) -> Polygon<f64> {
        let w = self.window(id);
        let (x0, y0) = (w.x_off as f64, w.y_off as f64);
        let (x1, y1) = (x0 + w.width as f64, y0 + w.height as f64);
        let n = per_edge.max(1);
        // pixel-space ring: bottom-left → bottom-right → top-right → top-left
        let corners = [(x0, y1), (x1, y1), (x1, y0), (x0, y0), (x0, y1)];
        let mut ring = Vec::with_capacity(4 * n + 1);
        for pair in corners.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            for i in 0..n {
                let t = i as f64 / n as f64;
                let (x, y) = self
                    .geo_transform
                    .apply(a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
                ring.push(Coord { x, y });
            }
        }
        ring.push(ring[0]);
        Polygon::new(LineString::from(ring), vec![])
    }

    /// Centre of a tile in the scene CRS.
    pub fn centre(&self, id: TileId) -> (f64, f64) {
        let w = self.window(id);
        self.geo_transform.apply(
            w.x_off as f64 + w.width as f64 / 2.0,
            w.y_off as f64 + w.height as f64 / 2.0,
        )
    }

    /// The tile whose stride cell contains the scene coordinate `(x, y)`,
    /// if any: with overlap this is the tile whose origin is nearest to the
    /// point from the upper-left.
    pub fn tile_at(&self, x: f64, y: f64) -> Option<TileId> {
        let (col, row) = self.geo_transform.invert(x, y)?;
        if col < 0.0 || row < 0.0 {
            return None;
        }
        let (c, r) = (
            (col / self.stride as f64).floor() as usize,
            (row / self.stride as f64).floor() as usize,
        );
        let id = TileId {
            row: r as u32,
            col: c as u32,
        };
        let w = self.window(id);
        let inside = self.contains(id)
            && col < (w.x_off + w.width) as f64
            && row < (w.y_off + w.height) as f64;
        inside.then_some(id)
    }

    /// Geotransform of a raster with one pixel per grid cell (the heatmap):
    /// same origin as the scene, pixel size = stride × scene pixel size.
    pub fn cell_geo_transform(&self) -> GeoTransform {
        let g = self.geo_transform.0;
        let s = self.stride as f64;
        GeoTransform([g[0], g[1] * s, g[2] * s, g[3], g[4] * s, g[5] * s])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utm_grid() -> TileGrid {
        let gt = GeoTransform([435_730.0, 10.0, 0.0, 4_179_460.0, 0.0, -10.0]);
        TileGrid::new(1933, 1947, 64, 0, gt).unwrap()
    }

    #[test]
    fn counts_only_whole_tiles() {
        let g = utm_grid();
        // 1933 / 64 = 30.2 → 30 columns; 1947 / 64 = 30.4 → 30 rows
        assert_eq!((g.rows, g.cols, g.len()), (30, 30, 900));
        let with_overlap = TileGrid::new(1933, 1947, 64, 32, g.geo_transform).unwrap();
        // (1933 - 64) / 32 + 1 = 59
        assert_eq!(with_overlap.cols, 59);
    }

    #[test]
    fn window_and_footprint_agree() {
        let g = utm_grid();
        let id = TileId { row: 2, col: 3 };
        let w = g.window(id);
        assert_eq!((w.x_off, w.y_off, w.width), (192, 128, 64));
        let fp = g.footprint(id, 4);
        let xs: Vec<f64> = fp.exterior().coords().map(|c| c.x).collect();
        let ys: Vec<f64> = fp.exterior().coords().map(|c| c.y).collect();
        let minx = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let maxy = ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(minx, 435_730.0 + 1920.0);
        assert_eq!(maxy, 4_179_460.0 - 1280.0);
        assert_eq!(fp.exterior().coords().count(), 17);
    }

    #[test]
    fn tile_at_inverts_window() {
        let g = utm_grid();
        let (x, y) = g.centre(TileId { row: 7, col: 11 });
        assert_eq!(g.tile_at(x, y), Some(TileId { row: 7, col: 11 }));
        // right of the last whole column: no tile
        assert_eq!(g.tile_at(435_730.0 + 19_250.0, 4_179_460.0 - 5.0), None);
        assert_eq!(g.tile_at(0.0, 0.0), None);
    }

    #[test]
    fn tile_id_round_trips() {
        let id: TileId = "r12_c5".parse().unwrap();
        assert_eq!(id, TileId { row: 12, col: 5 });
        assert_eq!(id.to_string(), "r12_c5");
        assert!("12_5".parse::<TileId>().is_err());
    }

    #[test]
    fn rejects_bad_sizes() {
        let gt = GeoTransform([0.0, 1.0, 0.0, 0.0, 0.0, -1.0]);
        assert!(matches!(
            TileGrid::new(100, 100, 0, 0, gt),
            Err(TilingError::ZeroTileSize)
        ));
        assert!(matches!(
            TileGrid::new(100, 100, 64, 64, gt),
            Err(TilingError::OverlapTooLarge { .. })
        ));
        assert!(matches!(
            TileGrid::new(50, 100, 64, 0, gt),
            Err(TilingError::TileLargerThanRaster { .. })
        ));
    }

    #[test]
    fn heatmap_transform_scales_pixels() {
        let g = utm_grid();
        assert_eq!(
            g.cell_geo_transform().0,
            [435_730.0, 640.0, 0.0, 4_179_460.0, 0.0, -640.0]
        );
    }
}
