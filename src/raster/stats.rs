//! Statistics of the model input over a bounded sample of tiles, for the
//! input-distribution check: per band, the mean, spread and clipped share of
//! the *scaled and clipped, not yet standardised* values `clip(raw · scale +
//! offset)` that the encoder's `standardization_mean/std` describe.

use serde::Serialize;

use super::{RasterError, Scene};
use crate::tiling::{TileGrid, TileId};

/// The scaling applied before standardisation (plain values: the model's
/// contract, a preset's or the user's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InputScaling {
    /// Multiplier applied to raw raster values.
    pub scale: f32,
    /// Added after the multiplier.
    pub offset: f32,
    /// Clamp range after scale and offset, if any.
    pub clip: Option<(f32, f32)>,
}

/// Input statistics of one band over the sampled tiles' valid pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandStats {
    /// Valid pixels counted.
    pub pixels: usize,
    /// Mean of the scaled, clipped values.
    pub mean: f64,
    /// Standard deviation of the scaled, clipped values.
    pub std: f64,
    /// Share of valid pixels that the clip range changed (0 without one).
    pub clipped_fraction: f64,
    /// Smallest raw value.
    pub raw_min: f64,
    /// Largest raw value.
    pub raw_max: f64,
}

/// At most `max` tiles of `tiles`, evenly spread over the list (row-major
/// candidates give tiles spread over the grid); all of them when fewer.
pub fn spread_sample(tiles: &[TileId], max: usize) -> Vec<TileId> {
    if tiles.len() <= max {
        return tiles.to_vec();
    }
    let max = max.max(1);
    (0..max)
        .filter_map(|i| tiles.get(i * tiles.len() / max).copied())
        .collect()
}

/// Per-band statistics of `clip(raw · scale + offset)` over the valid pixels
/// of `tiles` (1-based `bands` in model order), with the read path's nodata
/// rule: a band's nodata value or NaN is invalid, and where no band declares
/// nodata, a pixel that is 0 in every band is invalid (Sentinel-2's
/// convention). Tiles with fewer than `min_valid` valid pixels are left out,
/// as scoring leaves them out. One small window read per tile and band.
pub fn sample_input_stats(
    scene: &Scene,
    bands: &[usize],
    grid: &TileGrid,
    tiles: &[TileId],
    scaling: InputScaling,
    min_valid: f32,
) -> Result<Vec<BandStats>, RasterError> {
    let nb = bands.len();
    let nodata: Vec<Option<f64>> = bands
        .iter()
        .map(|&b| scene.bands.get(b.wrapping_sub(1)).and_then(|i| i.nodata))
        .collect();
    let zero_is_nodata = nodata.iter().all(Option::is_none);
    let gdal_err = |e: gdal::errors::GdalError| RasterError::Gdal {
        path: scene.path.display().to_string(),
        message: e.to_string(),
    };
    // Running sums per band: n, Σx, Σx², clipped, min, max.
    let mut n = vec![0usize; nb];
    let mut sum = vec![0f64; nb];
    let mut sum2 = vec![0f64; nb];
    let mut clipped = vec![0usize; nb];
    let mut raw_min = vec![f64::INFINITY; nb];
    let mut raw_max = vec![f64::NEG_INFINITY; nb];
    let mut buf: Vec<Vec<f32>> = vec![Vec::new(); nb];
    let mut valid: Vec<bool> = Vec::new();
    for &id in tiles {
        let w = grid.window(id);
        for (k, &band) in bands.iter().enumerate() {
            let rb = scene.dataset.rasterband(band).map_err(gdal_err)?;
            buf[k].resize(w.width * w.height, 0.0);
            rb.read_into_slice::<f32>(
                (w.x_off as isize, w.y_off as isize),
                (w.width, w.height),
                (w.width, w.height),
                &mut buf[k],
                None,
            )
            .map_err(gdal_err)?;
        }
        valid.clear();
        valid.resize(w.width * w.height, true);
        for (px, ok) in valid.iter_mut().enumerate() {
            let nodata_here = buf.iter().zip(&nodata).any(|(b, nd)| {
                let v = b[px];
                v.is_nan() || nd.is_some_and(|n| f64::from(v) == n)
            });
            let all_zero = zero_is_nodata && buf.iter().all(|b| b[px] == 0.0);
            *ok = !nodata_here && !all_zero;
        }
        let n_valid = valid.iter().filter(|v| **v).count();
        if n_valid == 0 || (n_valid as f32) < min_valid * valid.len() as f32 {
            continue;
        }
        for k in 0..nb {
            for (v, ok) in buf[k].iter().zip(&valid) {
                if !ok {
                    continue;
                }
                let raw = f64::from(*v);
                raw_min[k] = raw_min[k].min(raw);
                raw_max[k] = raw_max[k].max(raw);
                let mut x = *v * scaling.scale + scaling.offset;
                if let Some((lo, hi)) = scaling.clip {
                    let c = x.clamp(lo, hi);
                    if c != x {
                        clipped[k] += 1;
                    }
                    x = c;
                }
                let x = f64::from(x);
                n[k] += 1;
                sum[k] += x;
                sum2[k] += x * x;
            }
        }
    }
    Ok((0..nb)
        .map(|k| {
            let count = n[k].max(1) as f64;
            let mean = sum[k] / count;
            BandStats {
                pixels: n[k],
                mean,
                std: (sum2[k] / count - mean * mean).max(0.0).sqrt(),
                clipped_fraction: clipped[k] as f64 / count,
                raw_min: if n[k] > 0 { raw_min[k] } else { 0.0 },
                raw_max: if n[k] > 0 { raw_max[k] } else { 0.0 },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_sample_spans_the_list() {
        let tiles: Vec<TileId> = (0..30)
            .flat_map(|row| (0..30).map(move |col| TileId { row, col }))
            .collect();
        let s = spread_sample(&tiles, 64);
        assert_eq!(s.len(), 64);
        assert_eq!(s[0], TileId { row: 0, col: 0 });
        assert!(s.last().is_some_and(|t| t.row >= 29));
        assert_eq!(spread_sample(&tiles[..10], 64).len(), 10);
        assert!(spread_sample(&[], 64).is_empty());
    }
}
