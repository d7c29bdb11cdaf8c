//! Windowed reads: raster strips → preprocessed tile batches for the encoder.
//!
//! Reads go one tile row at a time (a strip `tile_size` rows tall spanning the
//! columns that hold wanted tiles), one GDAL `RasterIO` per band, so memory is
//! bounded by `bands × strip` plus one batch, never by the scene size.

use ndarray::{Array4, s};

use super::{RasterError, Scene};
use crate::preprocess::Preprocess;
use crate::tiling::{TileGrid, TileId};

/// Tiles ready for the encoder.
#[derive(Debug)]
pub struct TileBatch {
    /// Which tiles, in batch order.
    pub ids: Vec<TileId>,
    /// Preprocessed pixels `[n, bands, tile, tile]`.
    pub data: Array4<f32>,
    /// Fraction of valid (not nodata) pixels per tile.
    pub valid_fraction: Vec<f32>,
}

/// What to read and how to turn raw values into model input.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// 1-based band indices in model input order.
    pub bands: Vec<usize>,
    /// Scaling and standardisation from the model contract.
    pub preprocess: Preprocess,
    /// The grid the tiles belong to.
    pub grid: TileGrid,
    /// Tiles to read (any order; read row by row).
    pub tiles: Vec<TileId>,
    /// Tiles with a smaller share of valid pixels are skipped, not scored.
    pub min_valid_fraction: f32,
    /// Tiles per batch.
    pub batch_size: usize,
}

impl ReadPlan {
    /// Split the plan into parts for readers that work side by side, each
    /// with its own dataset and so its own block cache. A part is a run of
    /// tile rows and, within it, a run of tile columns; tiles whose pixels
    /// touch a common raster block (`block` = width, height in pixels) always
    /// share a part, so no block is decompressed by two readers (overlapping
    /// tiles share pixels, so they all end up in one part). Neighbouring
    /// parts are merged until each holds at least `target_tiles` tiles (the
    /// last one may hold fewer). Parts come in row-major block order; every
    /// tile of the plan is in exactly one part.
    pub fn split_blocks(&self, block: (usize, usize), target_tiles: usize) -> Vec<ReadPlan> {
        let (bw, bh) = (block.0.max(1), block.1.max(1));
        let t = self.grid.tile_size.max(1);
        let mut tiles = self.tiles.clone();
        tiles.sort();
        tiles.dedup();
        // Runs of consecutive tile rows that share block rows.
        let mut row_runs: Vec<&[TileId]> = Vec::new();
        let (mut start, mut run_end) = (0usize, 0usize);
        for i in 0..tiles.len() {
            let y = self.grid.window(tiles[i]).y_off;
            let (first, last) = (y / bh, (y + t - 1) / bh);
            if i > start && tiles[i].row != tiles[i - 1].row && first > run_end {
                row_runs.push(&tiles[start..i]);
                start = i;
            }
            run_end = if i == start { last } else { run_end.max(last) };
        }
        if start < tiles.len() {
            row_runs.push(&tiles[start..]);
        }
        // Within each, runs of consecutive tile columns that share block columns.
        let mut units: Vec<Vec<TileId>> = Vec::new();
        for run in row_runs {
            let mut cols: Vec<u32> = run.iter().map(|id| id.col).collect();
            cols.sort_unstable();
            cols.dedup();
            let mut groups: Vec<(u32, u32)> = Vec::new();
            let mut group_end = 0usize;
            for &c in &cols {
                let x = self.grid.window(TileId { row: 0, col: c }).x_off;
                let (first, last) = (x / bw, (x + t - 1) / bw);
                match groups.last_mut() {
                    Some(g) if first <= group_end => {
                        g.1 = c;
                        group_end = group_end.max(last);
                    }
                    _ => {
                        groups.push((c, c));
                        group_end = last;
                    }
                }
            }
            for (lo, hi) in groups {
                units.push(
                    run.iter()
                        .filter(|id| (lo..=hi).contains(&id.col))
                        .copied()
                        .collect(),
                );
            }
        }
        let mut parts: Vec<Vec<TileId>> = Vec::new();
        for unit in units {
            match parts.last_mut() {
                Some(p) if p.len() < target_tiles.max(1) => p.extend(unit),
                _ => parts.push(unit),
            }
        }
        parts
            .into_iter()
            .map(|tiles| ReadPlan {
                bands: self.bands.clone(),
                preprocess: self.preprocess.clone(),
                grid: self.grid.clone(),
                tiles,
                min_valid_fraction: self.min_valid_fraction,
                batch_size: self.batch_size,
            })
            .collect()
    }
}

/// What the reader did.
#[derive(Debug, Default, Clone)]
pub struct ReadReport {
    /// Tiles sent to the encoder.
    pub read: usize,
    /// Tiles skipped because too few pixels were valid.
    pub skipped_nodata: Vec<TileId>,
}

/// Per-band rule for which raw values are nodata.
#[derive(Debug, Clone, Copy)]
struct NodataRule {
    value: Option<f64>,
}

impl NodataRule {
    #[inline]
    fn is_nodata(&self, v: f32) -> bool {
        v.is_nan() || self.value.is_some_and(|n| (v as f64) == n)
    }
}

/// Read the plan's tiles and hand them to `sink` in batches. `sink` returns
/// `false` to stop early (cancellation). Invalid pixels inside a kept tile are
/// set to 0 after standardisation, i.e. to the training mean.
///
/// Pixels where every band is 0 and the bands declare no nodata value are
/// treated as nodata too: that is how Sentinel-2 L1C/L2A products mark
/// missing data.
pub fn read_tiles(
    scene: &Scene,
    plan: &ReadPlan,
    mut sink: impl FnMut(TileBatch) -> Result<bool, RasterError>,
) -> Result<ReadReport, RasterError> {
    let t = plan.grid.tile_size;
    let nb = plan.bands.len();
    let p = &plan.preprocess;
    if p.mean.len() != nb || p.std.len() != nb {
        return Err(RasterError::BandOverride(format!(
            "the model standardises {} bands but {nb} were selected",
            p.mean.len()
        )));
    }
    let rules: Vec<NodataRule> = plan
        .bands
        .iter()
        .map(|&b| NodataRule {
            value: scene.bands.get(b - 1).and_then(|i| i.nodata),
        })
        .collect();
    let zero_is_nodata = rules.iter().all(|r| r.value.is_none());
    let batch_size = plan.batch_size.max(1);

    let mut tiles = plan.tiles.clone();
    tiles.sort();
    tiles.dedup();
    let mut report = ReadReport::default();
    let mut batch_ids = Vec::with_capacity(batch_size);
    let mut batch_valid = Vec::with_capacity(batch_size);
    let mut batch = Array4::<f32>::zeros((batch_size, nb, t, t));
    let mut strip: Vec<Vec<f32>> = vec![Vec::new(); nb];
    let mut valid_px: Vec<bool> = Vec::new();

    let mut i = 0;
    while i < tiles.len() {
        let row = tiles[i].row;
        let mut j = i;
        while j < tiles.len() && tiles[j].row == row {
            j += 1;
        }
        let row_tiles = &tiles[i..j];
        i = j;
        let first = plan.grid.window(row_tiles[0]);
        let last = plan.grid.window(row_tiles[row_tiles.len() - 1]);
        let (x0, y0) = (first.x_off, first.y_off);
        let w = last.x_off + last.width - x0;
        for (k, &band) in plan.bands.iter().enumerate() {
            let rb = scene
                .dataset
                .rasterband(band)
                .map_err(|e| gdal_err(scene, e))?;
            strip[k].resize(w * t, 0.0);
            rb.read_into_slice::<f32>(
                (x0 as isize, y0 as isize),
                (w, t),
                (w, t),
                &mut strip[k],
                None,
            )
            .map_err(|e| gdal_err(scene, e))?;
        }
        valid_px.clear();
        valid_px.resize(w * t, true);
        for (k, rule) in rules.iter().enumerate() {
            for (v, ok) in strip[k].iter().zip(valid_px.iter_mut()) {
                if rule.is_nodata(*v) {
                    *ok = false;
                }
            }
        }
        if zero_is_nodata {
            for (px, ok) in valid_px.iter_mut().enumerate() {
                if *ok && strip.iter().all(|b| b[px] == 0.0) {
                    *ok = false;
                }
            }
        }
        for &id in row_tiles {
            let win = plan.grid.window(id);
            let dx = win.x_off - x0;
            let mut n_valid = 0usize;
            for r in 0..t {
                n_valid += valid_px[r * w + dx..r * w + dx + t]
                    .iter()
                    .filter(|v| **v)
                    .count();
            }
            let frac = n_valid as f32 / (t * t) as f32;
            if frac < plan.min_valid_fraction || n_valid == 0 {
                report.skipped_nodata.push(id);
                continue;
            }
            let slot = batch_ids.len();
            for (k, band_strip) in strip.iter().enumerate() {
                let input = p.band(k);
                let mut dst = batch.slice_mut(s![slot, k, .., ..]);
                for r in 0..t {
                    let src = &band_strip[r * w + dx..r * w + dx + t];
                    let ok = &valid_px[r * w + dx..r * w + dx + t];
                    for (c, d) in dst.row_mut(r).iter_mut().enumerate() {
                        *d = if ok[c] { input.apply(src[c]) } else { 0.0 };
                    }
                }
            }
            batch_ids.push(id);
            batch_valid.push(frac);
            report.read += 1;
            if batch_ids.len() == batch_size {
                let full =
                    std::mem::replace(&mut batch, Array4::<f32>::zeros((batch_size, nb, t, t)));
                let go_on = sink(TileBatch {
                    ids: std::mem::take(&mut batch_ids),
                    data: full,
                    valid_fraction: std::mem::take(&mut batch_valid),
                })?;
                if !go_on {
                    return Ok(report);
                }
            }
        }
    }
    if !batch_ids.is_empty() {
        let n = batch_ids.len();
        let data = batch.slice_move(s![..n, .., .., ..]);
        sink(TileBatch {
            ids: batch_ids,
            data,
            valid_fraction: batch_valid,
        })?;
    }
    Ok(report)
}

fn gdal_err(scene: &Scene, e: gdal::errors::GdalError) -> RasterError {
    RasterError::Gdal {
        path: scene.path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::tiling::GeoTransform;

    fn plan(width: usize, height: usize, tile: usize, overlap: usize) -> ReadPlan {
        let grid = TileGrid::new(
            width,
            height,
            tile,
            overlap,
            GeoTransform([0.0, 10.0, 0.0, 0.0, 0.0, -10.0]),
        )
        .unwrap();
        ReadPlan {
            bands: vec![1],
            preprocess: Preprocess {
                bands: vec!["B01".into()],
                scale: 1.0,
                offset: 0.0,
                clip: None,
                mean: vec![0.0],
                std: vec![1.0],
            },
            tiles: grid.tiles().collect(),
            grid,
            min_valid_fraction: 0.5,
            batch_size: 64,
        }
    }

    /// Every block (col, row) under a tile.
    fn blocks(p: &ReadPlan, id: TileId, (bw, bh): (usize, usize)) -> Vec<(usize, usize)> {
        let w = p.grid.window(id);
        let mut out = Vec::new();
        for by in w.y_off / bh..=(w.y_off + w.height - 1) / bh {
            for bx in w.x_off / bw..=(w.x_off + w.width - 1) / bw {
                out.push((bx, by));
            }
        }
        out
    }

    /// The parts cover the plan's tiles exactly once, share no block, and all
    /// but the last hold at least `target` tiles.
    fn check(p: &ReadPlan, block: (usize, usize), target: usize) -> Vec<ReadPlan> {
        let parts = p.split_blocks(block, target);
        let mut want = p.tiles.clone();
        want.sort();
        want.dedup();
        let mut got: Vec<TileId> = parts.iter().flat_map(|q| q.tiles.clone()).collect();
        assert_eq!(got.len(), want.len(), "a tile is in two parts or in none");
        got.sort();
        assert_eq!(got, want);
        let mut owner: HashMap<(usize, usize), usize> = HashMap::new();
        for (i, q) in parts.iter().enumerate() {
            for &id in &q.tiles {
                for b in blocks(p, id, block) {
                    let o = *owner.entry(b).or_insert(i);
                    assert_eq!(o, i, "block {b:?} is read by parts {o} and {i}");
                }
            }
        }
        for q in &parts[..parts.len().saturating_sub(1)] {
            assert!(
                q.tiles.len() >= target,
                "a part of {} < {target}",
                q.tiles.len()
            );
        }
        parts
    }

    #[test]
    fn parts_follow_blocks_when_tiles_are_aligned() {
        // The sample: 30 × 30 tiles of 64 px over 256-px blocks (4 × 4 tiles each).
        let p = plan(1931, 1942, 64, 0);
        // Units of 4 × 4 tiles (4 × 2 at the right edge) merged to ≥ 64.
        let parts = check(&p, (256, 256), 64);
        assert_eq!(parts.len(), 14);
        assert!(parts.iter().all(|q| q.tiles.len() <= 64 + 16));
        // One part per block row when the target is a whole block row.
        assert_eq!(check(&p, (256, 256), 120).len(), 8);
    }

    #[test]
    fn unaligned_blocks_overlap_and_strips_keep_blocks_in_one_part() {
        for (tile, overlap, block, parts) in [
            // Overlapping tiles share pixels, so every block row and column
            // chains into one part.
            (64, 16, (256, 256), 1..=1),
            (48, 8, (128, 96), 1..=1),
            (48, 0, (128, 96), 20..=30),
            (64, 0, (1931, 1), 10..=10), // one-row strips: 3 tile rows each
            (64, 0, (1931, 16), 10..=10),
            // 64-px tiles over 100-px blocks chain until a tile edge meets a
            // block edge (every 1600 px): 2 × 2 units.
            (64, 0, (100, 100), 4..=4),
            (64, 0, (8192, 8192), 1..=1), // one block
        ] {
            let p = plan(1931, 1942, tile, overlap);
            let n = check(&p, block, 64).len();
            assert!(parts.contains(&n), "{tile} {overlap} {block:?}: {n} parts");
        }
    }

    #[test]
    fn a_sparse_plan_is_split_too() {
        // An AOI-like subset: every third tile of every other row.
        let mut p = plan(1931, 1942, 64, 0);
        p.tiles.retain(|t| t.row % 2 == 0 && t.col % 3 == 0);
        let kept: HashSet<TileId> = p.tiles.iter().copied().collect();
        let parts = check(&p, (256, 256), 16);
        assert!(parts.len() > 4);
        assert!(
            parts
                .iter()
                .flat_map(|q| &q.tiles)
                .all(|t| kept.contains(t))
        );
        let empty = ReadPlan {
            tiles: Vec::new(),
            ..p
        };
        assert!(empty.split_blocks((256, 256), 16).is_empty());
    }
}
