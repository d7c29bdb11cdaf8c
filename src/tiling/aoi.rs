//! Clipping the tile grid to an area of interest.

use geo::{BoundingRect, Intersects, MultiPolygon};

use super::{TileGrid, TileId, TilingError};

/// Tiles of `grid` whose footprint intersects `aoi` (given in the scene CRS),
/// in row-major order. An AOI that touches no whole tile is an error that says
/// where the scene is.
///
/// # Examples
/// ```
/// use geo::{polygon, MultiPolygon};
/// use nexttile::tiling::{tiles_in_aoi, GeoTransform, TileGrid};
/// let grid = TileGrid::new(256, 256, 64, 0, GeoTransform([0.0, 1.0, 0.0, 256.0, 0.0, -1.0]))?;
/// // a small square in the upper-left tile
/// let aoi = MultiPolygon(vec![polygon![(x: 10.0, y: 250.0), (x: 20.0, y: 250.0), (x: 20.0, y: 240.0), (x: 10.0, y: 240.0)]]);
/// let tiles = tiles_in_aoi(&grid, &aoi)?;
/// assert_eq!(tiles.len(), 1);
/// assert_eq!(tiles[0].to_string(), "r0_c0");
/// # Ok::<(), nexttile::tiling::TilingError>(())
/// ```
pub fn tiles_in_aoi(grid: &TileGrid, aoi: &MultiPolygon<f64>) -> Result<Vec<TileId>, TilingError> {
    let scene = grid_bounds(grid);
    let Some(rect) = aoi.bounding_rect() else {
        return Err(TilingError::EmptyAoi);
    };
    let outside = || TilingError::AoiOutsideScene {
        aoi: [rect.min().x, rect.min().y, rect.max().x, rect.max().y],
        scene,
    };
    if !rect.min().x.is_finite() || !rect.max().y.is_finite() {
        return Err(TilingError::EmptyAoi);
    }
    // Limit the candidate rows/cols to the AOI's bounding box in pixel space.
    let gt = grid.geo_transform;
    let corners = [
        (rect.min().x, rect.min().y),
        (rect.min().x, rect.max().y),
        (rect.max().x, rect.min().y),
        (rect.max().x, rect.max().y),
    ];
    let mut px = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in corners {
        let (c, r) = gt.invert(x, y).ok_or_else(outside)?;
        px = (px.0.min(c), px.1.max(c), px.2.min(r), px.3.max(r));
    }
    let s = grid.stride as f64;
    let t = grid.tile_size as f64;
    let clamp = |v: f64, n: usize| v.max(0.0).min(n as f64 - 1.0) as usize;
    if px.1 < 0.0 || px.3 < 0.0 {
        return Err(outside());
    }
    let c0 = clamp(((px.0 - t) / s).floor(), grid.cols);
    let c1 = clamp((px.1 / s).floor(), grid.cols);
    let r0 = clamp(((px.2 - t) / s).floor(), grid.rows);
    let r1 = clamp((px.3 / s).floor(), grid.rows);
    let mut out = Vec::new();
    for row in r0..=r1 {
        for col in c0..=c1 {
            let id = TileId {
                row: row as u32,
                col: col as u32,
            };
            if grid.footprint(id, 1).intersects(aoi) {
                out.push(id);
            }
        }
    }
    if out.is_empty() {
        return Err(outside());
    }
    Ok(out)
}

/// Bounds of the whole-tile area of the grid in the scene CRS:
/// `[min_x, min_y, max_x, max_y]`.
pub fn grid_bounds(grid: &TileGrid) -> [f64; 4] {
    let w = (grid.cols - 1) * grid.stride + grid.tile_size;
    let h = (grid.rows - 1) * grid.stride + grid.tile_size;
    let gt = grid.geo_transform;
    let pts = [
        gt.apply(0.0, 0.0),
        gt.apply(w as f64, 0.0),
        gt.apply(0.0, h as f64),
        gt.apply(w as f64, h as f64),
    ];
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for (x, y) in pts {
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiling::GeoTransform;
    use geo::polygon;

    fn grid() -> TileGrid {
        // 4 × 4 tiles of 64 px at 10 m, origin (1000, 5000)
        TileGrid::new(
            256,
            256,
            64,
            0,
            GeoTransform([1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0]),
        )
        .unwrap()
    }

    #[test]
    fn polygon_spanning_two_tiles() {
        // x 1600..1700 crosses the boundary at 1640 between col 0 and col 1; y in row 0
        let aoi = MultiPolygon(vec![polygon![
            (x: 1600.0, y: 4900.0), (x: 1700.0, y: 4900.0), (x: 1700.0, y: 4800.0), (x: 1600.0, y: 4800.0)
        ]]);
        let ids: Vec<String> = tiles_in_aoi(&grid(), &aoi)
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(ids, vec!["r0_c0", "r0_c1"]);
    }

    #[test]
    fn aoi_outside_scene_is_an_error() {
        let aoi = MultiPolygon(vec![polygon![
            (x: 0.0, y: 0.0), (x: 10.0, y: 0.0), (x: 10.0, y: 10.0), (x: 0.0, y: 10.0)
        ]]);
        let err = tiles_in_aoi(&grid(), &aoi).unwrap_err();
        assert!(matches!(err, TilingError::AoiOutsideScene { .. }));
        assert!(err.to_string().contains("1000"), "{err}");
    }

    #[test]
    fn aoi_covering_everything_keeps_all() {
        let aoi = MultiPolygon(vec![polygon![
            (x: 0.0, y: 0.0), (x: 9000.0, y: 0.0), (x: 9000.0, y: 9000.0), (x: 0.0, y: 9000.0)
        ]]);
        assert_eq!(tiles_in_aoi(&grid(), &aoi).unwrap().len(), 16);
    }
}
