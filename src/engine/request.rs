//! The request of a scoring run, built once with every default defined here: the CLI's
//! flags and the daemon's bodies start from [`ScoreRequest::new`] and these constants.

use std::path::PathBuf;

use crate::aoi::{Aoi, Labelled};
use crate::error::{Error, Result};
use crate::head::HeadConfig;
use crate::model::SessionConfig;
use crate::raster::Confinement;
use crate::report::Resample;
use crate::sampling::Strategy;
use crate::uncertainty::Metric;

/// Default number of MC-dropout passes of the head.
pub const DEFAULT_MC_PASSES: usize = 20;
/// Most MC-dropout passes the CLI and the daemon accept.
pub const MAX_MC_PASSES: usize = 1000;
/// Default number of suggestions.
pub const DEFAULT_BUDGET: usize = 20;
/// Most suggestions one request may ask for (the CLI and the daemon).
pub const MAX_BUDGET: usize = 10_000;
/// Default minimum ground distance between suggested tiles' centres, metres (none).
pub const DEFAULT_MIN_SPACING_M: f64 = 0.0;
/// Default seed of every random choice.
pub const DEFAULT_SEED: u64 = 0;
/// Default tile edge when the encoder does not recommend one.
pub const DEFAULT_TILE_SIZE: usize = 64;
/// Tiles per encoder batch: the request's, else the encoder's recommendation, else
/// [`DEFAULT_BATCH_SIZE`].
pub(super) fn batch_size(requested: usize, recommended: Option<usize>) -> usize {
    match requested {
        0 => recommended.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
        n => n,
    }
}

/// Default tiles per encoder batch, for encoders that recommend none
/// (`nexttile_batch_size` metadata).
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Default minimum share of valid pixels for a tile to be scored.
pub const DEFAULT_MIN_VALID: f32 = 0.5;
/// Most reader–encoder workers chosen automatically (each holds an encoder
/// session and a dataset's block cache).
pub const MAX_AUTO_WORKERS: usize = 8;
/// Default cap on the candidate tiles of one scoring run, for the CLI and the daemon
/// (a full Sentinel-2 granule at 64 px is about 29,000 tiles).
pub const DEFAULT_MAX_TILES: usize = 100_000;

/// The selection defaults every shell applies and shows, as one JSON object: the CLI's
/// flags take their defaults from the same constants, the daemon fills missing body
/// fields from them and reports this object in `GET /health` (`defaults`), and the
/// QGIS plugin's dock starts from what the daemon reports.
pub fn defaults_json() -> serde_json::Value {
    let strategy = Strategy::product_default();
    serde_json::json!({
        "strategy": strategy.name(),
        "metric": default_metric(&strategy).name(),
        "budget": DEFAULT_BUDGET,
        "max_budget": MAX_BUDGET,
        "mc_passes": DEFAULT_MC_PASSES,
        "max_mc_passes": MAX_MC_PASSES,
        "min_spacing_m": DEFAULT_MIN_SPACING_M,
        "seed": DEFAULT_SEED,
        "min_valid_fraction": DEFAULT_MIN_VALID,
    })
}

/// Everything one scoring run needs.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    /// The scene raster; its grid (CRS, extent, pixel size) is the tile grid. A STAC
    /// Item file is stacked from its assets; a STAC ItemCollection file needs
    /// [`stac_item`](Self::stac_item).
    pub scene: PathBuf,
    /// When [`scene`](Self::scene) is a STAC ItemCollection: the id of the item to score
    /// (see [`list_stac_items`](crate::raster::list_stac_items)).
    pub stac_item: Option<String>,
    /// A second raster of the same place (e.g. Sentinel-1 beside Sentinel-2)
    /// for multi-modal encoders: warped onto the scene's grid and stacked
    /// after its bands (see [`stack_pair`](crate::raster::stack_pair)).
    pub pair: Option<PathBuf>,
    /// Per-band encoders: the bands to embed, by name (`None` = the model's
    /// `default_bands`, else every band it accepts that the rasters hold).
    pub band_names: Option<Vec<String>>,
    /// Encoder ONNX file.
    pub encoder: PathBuf,
    /// Head ONNX file.
    pub head: PathBuf,
    /// Optional area of interest.
    pub aoi: Option<Aoi>,
    /// Already-labelled places: tiles they touch are never suggested and act
    /// as existing centres for core-set and ground spacing.
    pub labelled: Option<Labelled>,
    /// Tile edge in pixels; `None` = the encoder's `tiles_size` or 64.
    pub tile_size: Option<usize>,
    /// Overlap between neighbouring tiles in pixels.
    pub overlap: usize,
    /// MC-dropout passes of the head (1 = deterministic).
    pub mc_passes: usize,
    /// Selection strategy.
    pub strategy: Strategy,
    /// Uncertainty metric used for ranking.
    pub metric: Metric,
    /// Number of suggestions.
    pub budget: usize,
    /// Seed for every random choice (FPS start, random strategy).
    pub seed: u64,
    /// Minimum ground distance between suggested tile centres, metres
    /// (0 = no constraint); for field surveys.
    pub min_spacing_m: f64,
    /// Explicit 1-based band indices in model order (overrides name matching).
    pub bands: Option<Vec<usize>>,
    /// Sensor preset name (`--sensor`: band order and reflectance scaling;
    /// see [`SENSOR_PRESETS`](crate::raster::SENSOR_PRESETS)); `None` = one
    /// recognised from the scene's metadata, if any.
    pub sensor: Option<String>,
    /// Resampling to the encoder's resolution (`--resample`); `None` =
    /// [`Resample::Auto`], without the warning an explicit `auto` gives for an
    /// encoder that declares no resolution.
    pub resample: Option<Resample>,
    /// Replaces the encoder's (or the preset's) `input_scale`.
    pub input_scale: Option<f32>,
    /// Replaces the encoder's (or the preset's) `input_offset`.
    pub input_offset: Option<f32>,
    /// Tiles with fewer valid pixels are skipped.
    pub min_valid_fraction: f32,
    /// Tiles per encoder batch (0 = the encoder's `nexttile_batch_size`, else
    /// [`DEFAULT_BATCH_SIZE`]).
    pub batch_size: usize,
    /// Embedding cache folder (`None` = always encode).
    pub cache: Option<PathBuf>,
    /// onnxruntime session settings.
    pub session: SessionConfig,
    /// Reader–encoder workers that embed the scene side by side, each with
    /// its own dataset and encoder session (0 = automatic: one per core up to
    /// [`MAX_AUTO_WORKERS`] on the CPU, one on CUDA). See [`embed_workers`](super::embed_workers).
    pub workers: usize,
    /// Most candidate tiles (after the AOI) this run may score; more are refused
    /// before any pixel is read, with [`too_many_tiles`]'s message.
    pub max_tiles: usize,
    /// Retrain the head on the classes of [`labelled`](Self::labelled) (from the
    /// cached embeddings) and score with it instead of the ONNX head.
    pub retrain: Option<Retrain>,
    /// Score with a head saved by an earlier retraining (safetensors) instead of the
    /// ONNX head, without training; ignored when [`retrain`](Self::retrain) is set.
    pub trained_head: Option<PathBuf>,
    /// The raster roots the scene, its pair and every file they make GDAL read must
    /// lie under (the daemon sets this; the CLI, reading its user's own files, does not).
    pub confine: Option<Confinement>,
}

/// How to retrain the head on analysts' labels before scoring: a
/// [`TrainableHead`](crate::head::TrainableHead) with the ONNX head's classes, trained
/// on the embeddings of the labelled tiles.
#[derive(Debug, Clone, Default)]
pub struct Retrain {
    /// Hyper-parameters (`seed` is replaced by the request's seed).
    pub config: HeadConfig,
    /// Continue from a head saved by an earlier round (warm start); `None` = train
    /// from scratch (cold start).
    pub warm_from: Option<PathBuf>,
    /// Write the trained head here (safetensors), for the next round.
    pub save_to: Option<PathBuf>,
}

/// The ranking metric a strategy runs with when none is given: least confidence
/// (`1 − max p`) for MCFPS, as in its paper; margin otherwise (the uncertainty stage of
/// `auto`; on the EuroSAT benchmark margin beat entropy and BALD, see the README).
pub fn default_metric(strategy: &Strategy) -> Metric {
    match strategy {
        Strategy::Mcfps(_) => Metric::LeastConfidence,
        _ => Metric::Margin,
    }
}

impl ScoreRequest {
    /// A request with defaults for everything but the inputs.
    pub fn new(
        scene: impl Into<PathBuf>,
        encoder: impl Into<PathBuf>,
        head: impl Into<PathBuf>,
    ) -> Self {
        ScoreRequest {
            scene: scene.into(),
            stac_item: None,
            pair: None,
            band_names: None,
            encoder: encoder.into(),
            head: head.into(),
            aoi: None,
            labelled: None,
            tile_size: None,
            overlap: 0,
            mc_passes: DEFAULT_MC_PASSES,
            strategy: Strategy::product_default(),
            metric: default_metric(&Strategy::product_default()),
            budget: DEFAULT_BUDGET,
            seed: DEFAULT_SEED,
            min_spacing_m: DEFAULT_MIN_SPACING_M,
            bands: None,
            sensor: None,
            resample: None,
            input_scale: None,
            input_offset: None,
            min_valid_fraction: DEFAULT_MIN_VALID,
            batch_size: 0,
            cache: None,
            session: SessionConfig::default(),
            workers: 0,
            max_tiles: DEFAULT_MAX_TILES,
            retrain: None,
            trained_head: None,
            confine: None,
        }
    }
}

/// What the CLI and the daemon answer when a scene has more candidate tiles than
/// their `max_tiles`: the count, the limit, and the two ways out.
pub fn too_many_tiles(tiles: usize, tile_size: usize, max_tiles: usize) -> String {
    format!(
        "the scene has {tiles} tiles of {tile_size} px to score, more than the limit of {max_tiles} (max_tiles); give an area of interest (--aoi, or `aoi` in the daemon) or raise the limit (--max-tiles {tiles}, or max_tiles in the daemon's configuration)"
    )
}

/// Refuses more than `max_tiles` candidate tiles with [`too_many_tiles`]'s message.
///
/// # Errors
///
/// [`Error::Invalid`] when `tiles > max_tiles`.
pub fn check_tile_count(tiles: usize, tile_size: usize, max_tiles: usize) -> Result<()> {
    if tiles > max_tiles {
        return Err(Error::Invalid(too_many_tiles(tiles, tile_size, max_tiles)));
    }
    Ok(())
}
