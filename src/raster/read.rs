//! Windowed reads: raster strips → preprocessed tile batches for the encoder.
//!
//! Reads go one tile row at a time (a strip `tile_size` rows tall spanning the
//! columns that hold wanted tiles), one GDAL `RasterIO` per band, so memory is
//! bounded by `bands × strip` plus one batch, never by the scene size.

use ndarray::{Array4, s};

use super::{RasterError, Scene};
use crate::model::Preprocess;
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
                let (mean, std) = (p.mean[k], p.std[k]);
                let mut dst = batch.slice_mut(s![slot, k, .., ..]);
                for r in 0..t {
                    let src = &band_strip[r * w + dx..r * w + dx + t];
                    let ok = &valid_px[r * w + dx..r * w + dx + t];
                    for (c, d) in dst.row_mut(r).iter_mut().enumerate() {
                        *d = if ok[c] {
                            let mut x = src[c] * p.scale + p.offset;
                            if let Some((lo, hi)) = p.clip {
                                x = x.clamp(lo, hi);
                            }
                            (x - mean) / std
                        } else {
                            0.0
                        };
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
