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
