//! What a scoring run produced, as plain data: the result the pipeline returns and the
//! outputs, the CLI and the daemon read. Below the pipeline and the outputs, so neither
//! the writers of heatmaps and GeoJSON nor the shells import the pipeline for it.

use std::fmt;

use ndarray::Array2;
use serde::Serialize;

use crate::head::TrainReport;
use crate::model::ModelSpec;
use crate::raster::{BandMatch, BandStats, Resampled, StacBand};
use crate::sampling::{Pick, Strategy};
use crate::tiling::{TileGrid, TileId};
use crate::uncertainty::{Metric, TrainingDistance, Uncertainties};

/// What the outputs say about the scene.
#[derive(Debug, Clone, Serialize)]
pub struct SceneSummary {
    /// Path as given.
    pub path: String,
    /// Size in pixels.
    pub width: usize,
    /// Size in pixels.
    pub height: usize,
    /// CRS as WKT.
    pub crs_wkt: String,
    /// `EPSG:xxxx` when known.
    pub crs_epsg: Option<String>,
    /// Pixel size (x, y) in CRS units.
    pub pixel_size: (f64, f64),
    /// Bands used, 1-based, in model order (for a pair: numbered across the
    /// stack, the scene's bands first, then the second raster's).
    pub bands_used: Vec<usize>,
    /// Names of the bands used, in model order.
    pub band_names: Vec<String>,
    /// How each of the model's bands was found in the raster, model order.
    pub band_matching: Vec<BandMatch>,
    /// The second raster of a pair, warped onto this scene's grid.
    pub pair: Option<String>,
    /// For a STAC item: each band of the stack, its asset and file.
    pub stac: Option<Vec<StacBand>>,
    /// For a STAC item: its `id` (left out for a raster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stac_item: Option<String>,
    /// Whether the scene was warped to another pixel size before tiling
    /// (`--resample`); size and pixel size above are the tiled grid's.
    pub resampling: ResampleReport,
}

/// What the outputs say about a model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// Model name.
    pub name: String,
    /// File path.
    pub path: String,
    /// SHA-256 of the file.
    pub sha256: String,
}

impl From<&ModelSpec> for ModelSummary {
    fn from(s: &ModelSpec) -> Self {
        ModelSummary {
            name: s.name.clone(),
            path: s.path.display().to_string(),
            sha256: s.sha256.clone(),
        }
    }
}

/// Wall time of each stage, seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Opening the scene and loading models.
    pub setup_s: f64,
    /// Reading + encoding (pipelined).
    pub embed_s: f64,
    /// The T head passes (in a daemon round: the training, with the distance to the
    /// labelled tiles measured beside it, and the passes).
    pub head_s: f64,
    /// Uncertainty + selection.
    pub select_s: f64,
    /// Peak resident memory of the process so far, MiB (Linux `VmHWM`).
    pub peak_rss_mib: Option<f64>,
    /// Reader–encoder workers that embedded the tiles (0: cache hit).
    pub workers: usize,
    /// Tiles per encoder batch used (the request's, else the encoder's
    /// `nexttile_batch_size`, else the default).
    pub batch_size: usize,
}

/// The training-embedding statistics a model of the run declares in its metadata, as
/// the distance-to-training score reads them.
#[derive(Debug, Clone)]
pub struct DeclaredReference {
    /// `head` or `encoder`: whose metadata.
    pub role: String,
    /// That model's name.
    pub model: String,
    /// Per-feature mean and standard deviation.
    pub stats: crate::uncertainty::FeatureStats,
}

/// The result of scoring a scene.
pub struct ScoreResult {
    /// The scene.
    pub scene: SceneSummary,
    /// The tile grid (full scene).
    pub grid: TileGrid,
    /// Scored tiles, row-major; index `i` in every per-tile array.
    pub tiles: Vec<TileId>,
    /// Share of valid pixels per scored tile.
    pub valid_fraction: Vec<f32>,
    /// Encoder embeddings `[N, D]`.
    pub embeddings: Array2<f32>,
    /// Mean probabilities and every uncertainty metric.
    pub uncertainties: Uncertainties,
    /// Each tile's distance to the training data, and the reference it was measured
    /// against (the heatmap's last band, `distance_to_training`).
    pub training_distance: TrainingDistance,
    /// What the models declare as their training embeddings' statistics, if anything (a
    /// round on the warm result measures the distance to its labels in those units).
    pub declared_reference: Option<DeclaredReference>,
    /// Argmax class per scored tile.
    pub predicted: Vec<usize>,
    /// Class names in head output order.
    pub class_names: Vec<String>,
    /// The models' declared `auto` switch (`nexttile_auto_switch_per_class`), kept so a
    /// new selection on this result uses the same schedule.
    pub auto_switch_per_class: Option<usize>,
    /// Tiles in the grid/AOI that were candidates.
    pub candidate_tiles: usize,
    /// Candidate tiles skipped as (mostly) nodata.
    pub skipped_nodata: Vec<TileId>,
    /// Scored tiles marked as already labelled (never suggested).
    pub labelled_tiles: usize,
    /// Whether the embeddings came from the cache (the encoder did not run).
    pub cache_hit: bool,
    /// Ranked picks (index into `tiles`).
    pub picks: Vec<Pick>,
    /// Strategy used.
    pub strategy: Strategy,
    /// Strategy parameters as JSON (for the outputs).
    pub strategy_params: serde_json::Value,
    /// Ranking metric.
    pub metric: Metric,
    /// Requested budget.
    pub budget: usize,
    /// Minimum ground spacing between picks, metres (0 = none).
    pub min_spacing_m: f64,
    /// Seed used.
    pub seed: u64,
    /// MC passes run.
    pub mc_passes: usize,
    /// Encoder.
    pub encoder: ModelSummary,
    /// Head.
    pub head: ModelSummary,
    /// Which onnxruntime library and execution provider ran, and why.
    pub runtime: crate::model::RuntimeInfo,
    /// Things worth telling the user that did not stop the run.
    pub warnings: Vec<String>,
    /// Sensor preset, scaling and the input-distribution check.
    pub input: InputReport,
    /// Stage timings.
    pub timings: Timings,
    /// What retraining did, when the request asked for it.
    pub retrained: Option<RetrainSummary>,
}

/// What retraining did (the request's `retrain`).
#[derive(Debug, Clone, Serialize)]
pub struct RetrainSummary {
    /// Scored tiles with a class label, trained on.
    pub labelled_tiles: usize,
    /// Training samples per class name.
    pub per_class: Vec<(String, usize)>,
    /// The training run.
    pub report: TrainReport,
    /// Where the head was written, if anywhere.
    pub saved_to: Option<String>,
}

/// The sensor preset a run used and why.
#[derive(Debug, Clone, Serialize)]
pub struct SensorUse {
    /// Preset name (`s2-l2a`, `rgb`, …).
    pub name: String,
    /// What the preset stands for.
    pub title: String,
    /// `--sensor`, or `metadata <KEY=value>` when recognised from the file.
    pub source: String,
}

/// The scaling a run applied before standardisation, and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingReport {
    /// Multiplier on raw values.
    pub scale: f32,
    /// Added after the multiplier.
    pub offset: f32,
    /// Clamp range, if any.
    pub clip: Option<(f32, f32)>,
    /// `model`, `sensor_preset:<name>`, with ` + --input-scale` /
    /// ` + --input-offset` when overridden.
    pub source: String,
}

/// One band's input statistics against the encoder's training statistics.
#[derive(Debug, Clone, Serialize)]
pub struct BandCheck {
    /// The model's band name.
    pub band: String,
    /// Statistics of the scaled, clipped input over the sampled tiles.
    pub input: BandStats,
    /// The encoder's `standardization_mean` for the band.
    pub training_mean: f64,
    /// The encoder's `standardization_std` for the band.
    pub training_std: f64,
    /// (input mean − training mean) / training std.
    pub sigma: f64,
}

/// How a run prepared its input: what `summary.json` calls `input`.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    /// The sensor preset used, if any.
    pub sensor: Option<SensorUse>,
    /// The scaling applied.
    pub scaling: ScalingReport,
    /// GDAL data type of the bands used (the first one's).
    pub data_type: String,
    /// Tiles the distribution check read.
    pub check_tiles: usize,
    /// Per model band: the distribution check.
    pub check: Vec<BandCheck>,
}

/// What to do when the scene's pixel size is not the encoder's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Resample {
    /// Warp to the encoder's `resolution` when the scene's pixel size differs
    /// from it by more than `RESAMPLE_FACTOR` (1.5, `engine::RESAMPLE_FACTOR`); nothing for an encoder that
    /// declares none.
    #[default]
    Auto,
    /// Never resample (a warning when the pixel size is far from the
    /// encoder's).
    Off,
    /// Warp to this ground pixel size in metres (unless the scene already has it).
    Metres(f64),
}

impl fmt::Display for Resample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resample::Auto => f.write_str("auto"),
            Resample::Off => f.write_str("off"),
            Resample::Metres(m) => write!(f, "{m}"),
        }
    }
}

impl Serialize for Resample {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What `summary.json` says under `scene.resampling`.
#[derive(Debug, Clone, Serialize)]
pub struct ResampleReport {
    /// The `--resample` mode asked for (`auto`, `off` or metres).
    pub mode: Resample,
    /// What was done, when the scene was resampled.
    pub applied: Option<Resampled>,
    /// One line for people: `resampled from 30 m to 10 m, bilinear`, or why not.
    pub message: String,
}
