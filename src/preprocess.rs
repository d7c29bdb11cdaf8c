//! The encoder's input contract as plain data: which bands, and how raw raster values
//! become model input. Below every layer that reads rasters or runs models, so both the
//! raster readers (which apply it) and the model contract (which declares it) use it
//! without importing each other.

use serde::Serialize;

/// How raster values become model input: `x = clip(raw · scale + offset)`,
/// then `(x − mean) / std` per band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preprocess {
    /// Raster bands the model takes, in input-channel order (e.g. `B04, B03, B02`).
    pub bands: Vec<String>,
    /// Multiplier applied to raw raster values.
    pub scale: f32,
    /// Added after scaling.
    pub offset: f32,
    /// Clamp range after scale/offset, if any.
    pub clip: Option<(f32, f32)>,
    /// Per-band mean subtracted after clipping.
    pub mean: Vec<f32>,
    /// Per-band standard deviation divided by after centring.
    pub std: Vec<f32>,
}

/// One band's share of a [`Preprocess`]: everything needed to turn a raw value of
/// that band into model input, so every reader (scene tiles, evaluation images)
/// applies the one formula.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandInput {
    /// Multiplier applied to raw values.
    pub scale: f32,
    /// Added after scaling.
    pub offset: f32,
    /// Clamp range after scale/offset, if any.
    pub clip: Option<(f32, f32)>,
    /// Subtracted after clipping.
    pub mean: f32,
    /// Divided by after centring.
    pub std: f32,
}

impl BandInput {
    /// `clip(raw · scale + offset)`: the value before standardisation.
    #[inline]
    pub fn scaled(&self, raw: f32) -> f32 {
        let x = raw * self.scale + self.offset;
        match self.clip {
            Some((lo, hi)) => x.clamp(lo, hi),
            None => x,
        }
    }

    /// The model input for a raw value: `(clip(raw · scale + offset) − mean) / std`.
    #[inline]
    pub fn apply(&self, raw: f32) -> f32 {
        (self.scaled(raw) - self.mean) / self.std
    }
}

impl Preprocess {
    /// The identity for `bands` input channels: no scaling, clipping or
    /// standardisation (for models that declare no preprocessing).
    pub fn identity(bands: usize) -> Self {
        Preprocess {
            bands: Vec::new(),
            scale: 1.0,
            offset: 0.0,
            clip: None,
            mean: vec![0.0; bands],
            std: vec![1.0; bands],
        }
    }

    /// Input channel `k`'s formula (mean 0 and std 1 where the model lists fewer
    /// channels than `k`).
    pub fn band(&self, k: usize) -> BandInput {
        BandInput {
            scale: self.scale,
            offset: self.offset,
            clip: self.clip,
            mean: self.mean.get(k).copied().unwrap_or(0.0),
            std: self.std.get(k).copied().unwrap_or(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_input_scales_clips_then_standardises() {
        let p = Preprocess {
            bands: vec!["B04".into(), "B03".into()],
            scale: 0.5,
            offset: 1.0,
            clip: Some((0.0, 3.0)),
            mean: vec![1.0, 2.0],
            std: vec![2.0, 4.0],
        };
        assert_eq!(p.band(0).apply(2.0), (2.0 - 1.0) / 2.0);
        assert_eq!(p.band(1).apply(100.0), (3.0 - 2.0) / 4.0);
        assert_eq!(p.band(1).scaled(-10.0), 0.0);
        // Channels the model does not list are left unstandardised.
        assert_eq!(p.band(5).apply(2.0), 2.0);
        assert_eq!(Preprocess::identity(3).band(2).apply(7.5), 7.5);
    }
}
