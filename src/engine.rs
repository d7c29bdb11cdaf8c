//! The engine: the one API the CLI (and later the daemon) call to score a
//! scene. Scene → grid → windowed reads → encoder (once per tile) → head × T
//! (MC dropout) → uncertainty → selection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use geo::MultiPolygon;
use ndarray::{Array2, Axis, concatenate};
use serde::Serialize;

use crate::aoi::{Aoi, Labelled};
use crate::error::{Error, Result};
use crate::head::{HeadConfig, HeadSpec, Targets, TrainableHead};
use crate::model::{Encoder, Head, ModelSpec, SessionConfig};
use crate::output;
use crate::raster::{Confinement, RasterError, ReadPlan, Scene, TileBatch, read_tiles, stack_pair};
use crate::sampling::Strategy;
use crate::store::{CacheKey, CachedEmbeddings, EmbeddingCache};
use crate::tiling::{TileGrid, TileId, tiles_in_aoi};
use crate::uncertainty::{Metric, compute_all, compute_all_multilabel, predicted_class};

mod input;
mod resample;
mod select;
pub use crate::report::{
    BandCheck, InputReport, ModelSummary, Resample, ResampleReport, RetrainSummary, ScalingReport,
    SceneSummary, ScoreResult, SensorUse, Timings,
};
pub use input::{CHECK_MAX_CLIPPED, CHECK_MAX_SIGMA, CHECK_TILES};
pub use resample::{RESAMPLE_FACTOR, scene_to_tile};
pub use select::reselect;
use select::{Scored, Selected, select_stage};

/// Default number of MC-dropout passes of the head.
pub const DEFAULT_MC_PASSES: usize = 20;
/// Most MC-dropout passes the CLI and the daemon accept.
pub const MAX_MC_PASSES: usize = 1000;
/// Default number of suggestions.
pub const DEFAULT_BUDGET: usize = 20;
/// Default tile edge when the encoder does not recommend one.
pub const DEFAULT_TILE_SIZE: usize = 64;
/// Tiles per encoder batch: the request's, else the encoder's recommendation, else
/// [`DEFAULT_BATCH_SIZE`].
fn batch_size(requested: usize, recommended: Option<usize>) -> usize {
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

/// Everything one scoring run needs.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    /// The scene raster; its grid (CRS, extent, pixel size) is the tile grid.
    pub scene: PathBuf,
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
    /// [`MAX_AUTO_WORKERS`] on the CPU, one on CUDA). See [`embed_workers`].
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
            metric: Metric::Margin,
            budget: DEFAULT_BUDGET,
            seed: 0,
            min_spacing_m: 0.0,
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

/// Progress events, for a progress bar or a job status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Progress {
    /// Scene opened, models loaded; `total` candidate tiles.
    Started {
        /// Candidate tiles.
        total: usize,
    },
    /// Tiles read and embedded so far.
    Embedding {
        /// Tiles done (read, including skipped).
        done: usize,
        /// Candidate tiles.
        total: usize,
    },
    /// MC passes of the head.
    Head,
    /// Selection.
    Selecting,
}

/// Peak resident set size of this process in MiB, from `/proc/self/status`
/// (`None` where that is not available).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Paths of the files [`write_outputs`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct OutputPaths {
    /// `heatmap.tif` (COG).
    pub heatmap: PathBuf,
    /// `heatmap.qml` (QGIS style).
    pub heatmap_style: PathBuf,
    /// `suggestions.geojson`.
    pub suggestions: PathBuf,
    /// `tiles.geojson`.
    pub tiles_geojson: PathBuf,
    /// `tiles.csv`.
    pub tiles_csv: PathBuf,
    /// `summary.json`.
    pub summary: PathBuf,
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

/// Open the request's scene: a raster (confined to the daemon's roots when
/// set), or a STAC item (its assets likewise) stacked into an in-memory VRT (the stack is returned
/// too: keep it alive while the scene is read), its bands named by the item
/// (`matched_by` = `stac_asset:<key>`).
fn open_scene(req: &ScoreRequest) -> Result<(Scene, Option<crate::raster::StacStack>)> {
    let Some(doc) = crate::raster::read_stac_item(&req.scene)? else {
        return Ok((Scene::open_with(&req.scene, req.confine.as_ref())?, None));
    };
    // Under the daemon's roots, every asset file is checked before GDAL opens it.
    let stack = crate::raster::stack_stac_item_with(&req.scene, &doc, req.confine.as_ref())?;
    let mut scene = Scene::open(stack.vrt.path())?;
    for (b, s) in scene.bands.iter_mut().zip(&stack.bands) {
        b.named_by = format!("stac_asset:{}", s.asset);
    }
    Ok((scene, Some(stack)))
}

/// Score a scene. `progress` is called from this thread; set `cancel` from
/// another thread to stop between batches with [`Error::Cancelled`].
pub fn score(
    req: &ScoreRequest,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<ScoreResult> {
    let t0 = Instant::now();
    if req.budget == 0 {
        return Err(Error::Invalid("--budget must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&req.min_valid_fraction) {
        return Err(Error::Invalid("--min-valid must be between 0 and 1".into()));
    }
    // onnxruntime starts and the models load on a second thread while GDAL
    // opens the scene and PROJ identifies its CRS (tens of ms each).
    let (first, models) = std::thread::scope(|s| {
        let models = s.spawn(|| -> Result<_> {
            let (workers, encoder_session) = embed_workers(req);
            let encoder = Encoder::load(&req.encoder, encoder_session)?;
            let head = Head::load(&req.head, req.session)?;
            Ok((workers, encoder_session, encoder, head))
        });
        let first = open_scene(req);
        let models = models
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("loading the models panicked".into())));
        (first, models)
    });
    let (mut first, stac) = first?;
    let (workers, encoder_session, mut encoder, mut head) = models?;
    let mut warnings = Vec::new();
    check_head_use(req, &head.spec)?;
    let model_bands = encoder
        .spec
        .preprocess
        .as_ref()
        .map(|p| p.bands.clone())
        .unwrap_or_default();
    let sensor = input::choose_sensor(req, &mut first, &model_bands, &mut warnings)?;
    let (preset, sensor_use) = match sensor {
        Some((p, u)) => (Some(p), Some(u)),
        None => (None, None),
    };
    if first.names_assumed {
        warnings.push(format!(
            "{} has no band descriptions; assumed the standard Sentinel-2 band order",
            req.scene.display()
        ));
    }
    // Resampled to the encoder's resolution (an in-memory warped VRT, kept
    // alive by `_warped` while readers open it), then a second raster is
    // warped onto that grid and stacked after its bands; the readers then
    // open the stack.
    let (first, _warped, resampling) = resample::resample_for(
        first,
        req.resample,
        encoder.spec.resolution_m,
        &mut warnings,
    )?;
    let scene = match &req.pair {
        // The stack is an in-memory VRT over the two checked rasters.
        Some(second) => Scene::open(&stack_pair(&first, second, req.confine.as_ref())?)?,
        None => first,
    };
    let full = encoder
        .spec
        .preprocess
        .clone()
        .ok_or_else(|| Error::Invalid("encoder has no preprocessing contract".into()))?;
    let mut pre = if encoder.spec.per_band {
        per_band_preprocess(&encoder.spec, &full, &scene, req.band_names.as_deref())?
    } else {
        if req.band_names.is_some() {
            return Err(Error::Invalid(format!(
                "--band-names is for per-band encoders; {} takes the fixed bands [{}] (use --bands to map them to raster band numbers)",
                encoder.spec.path.display(),
                full.bands.join(", ")
            )));
        }
        full
    };
    check_modalities(&encoder.spec, &scene, req)?;
    let matches = input::match_bands(req, &scene, &pre.bands, preset)?;
    let bands: Vec<usize> = matches.iter().map(|m| m.raster_band).collect();
    let model_scaling = (pre.scale, pre.offset);
    let scaling = input::apply_scaling(req, preset, &mut pre)?;
    warnings.extend(input::display_note(preset, &scaling));
    let fused = match (encoder.spec.per_band, encoder.spec.band_fusion) {
        (true, crate::model::BandFusion::Concat) => pre.bands.len(),
        _ => 1,
    };
    check_pair(&encoder.spec, &head.spec, fused, &mut warnings)?;
    let tile = req
        .tile_size
        .or(encoder.spec.tile_size)
        .unwrap_or(DEFAULT_TILE_SIZE);
    encoder.spec.check_tile_size(tile)?;
    if let Some(model_res) = encoder.spec.resolution_m {
        let res = scene.ground_resolution_m();
        let ratio = res / model_res;
        if !(0.67..=1.5).contains(&ratio) {
            warnings.push(format!(
                "the scene's pixels are about {res:.1} m but the encoder was trained at {model_res:.1} m; resample the scene (gdalwarp -tr) for reliable scores"
            ));
        }
    }
    let grid = TileGrid::new(
        scene.width,
        scene.height,
        tile,
        req.overlap,
        scene.geo_transform,
    )?;
    let candidates: Vec<TileId> = match &req.aoi {
        Some(aoi) => tiles_in_aoi(&grid, &aoi.to_scene_crs(&scene.crs_wkt)?)?,
        None => {
            // Counted before the list is built: a huge scene's list alone is large.
            check_tile_count(grid.len(), grid.tile_size, req.max_tiles)?;
            grid.tiles().collect()
        }
    };
    let total = candidates.len();
    check_tile_count(total, grid.tile_size, req.max_tiles)?;
    let check = input::CheckInput {
        scene: &scene,
        matches: &matches,
        grid: &grid,
        candidates: &candidates,
        pre: &pre,
        min_valid: req.min_valid_fraction,
    };
    let (check_tiles, band_checks, data_type) =
        input::check_distribution(&check, &scaling, &mut warnings)?;
    progress(Progress::Started { total });
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let setup_s = t0.elapsed().as_secs_f64();

    // Embeddings: from the cache, or read (own thread) → encoder (here).
    let t1 = Instant::now();
    let batch = batch_size(req.batch_size, encoder.spec.batch_size);
    let key = req.cache.as_ref().and_then(|_| {
        let key = CacheKey::for_scene(
            &req.scene,
            grid.tile_size,
            grid.stride,
            &bands,
            req.min_valid_fraction,
            &candidates,
            &encoder.spec.sha256,
        )?
        .with_scaling(scaling.scale, scaling.offset, model_scaling)
        .with_resampling(
            resampling
                .applied
                .as_ref()
                .map(|r| (r.to_m, r.method.clone())),
        );
        let key = match &stac {
            Some(s) => key.with_assets(s.bands.iter().map(|b| Path::new(&b.file)))?,
            None => key,
        };
        match &req.pair {
            Some(second) => key.with_second(second),
            None => Some(key),
        }
    });
    let cache = req.cache.as_ref().map(EmbeddingCache::new);
    let cached = match (&cache, &key) {
        (Some(c), Some(k)) => match c.get(k) {
            Ok(hit) => hit,
            Err(e) => {
                warnings.push(format!("{e}; recomputing"));
                None
            }
        },
        _ => None,
    };
    let cache_hit = cached.is_some();
    let mut used_workers = 0;
    let embedded = match cached {
        Some(hit) => {
            progress(Progress::Embedding { done: total, total });
            hit
        }
        None => {
            let plan = ReadPlan {
                bands: bands.clone(),
                preprocess: pre,
                grid: grid.clone(),
                tiles: candidates,
                min_valid_fraction: req.min_valid_fraction,
                batch_size: batch,
            };
            let parts = (workers > 1)
                .then(|| plan.split_blocks(scene.block_size(&plan.bands), plan.batch_size))
                .filter(|parts| balanced(parts, workers, &plan));
            let mut fresh = match parts {
                Some(parts) => {
                    used_workers = workers.min(parts.len());
                    let shards = Shards {
                        workers: used_workers,
                        session: encoder_session,
                    };
                    embed_tiles_sharded(&scene, parts, &mut encoder, shards, progress, cancel)?
                }
                None => {
                    if workers > 1 {
                        // Loaded with a worker's share of the threads: one
                        // encoder now gets them all.
                        encoder = Encoder::load(&req.encoder, req.session)?;
                    }
                    used_workers = 1;
                    embed_tiles(&scene, plan, &mut encoder, progress, cancel)?
                }
            };
            if cache.is_some() {
                // Use exactly what the cache stores, so a run gives the same
                // result whether its embeddings were computed or loaded.
                fresh
                    .embeddings
                    .mapv_inplace(|v| half::f16::from_f32(v).to_f32());
            }
            if let (Some(c), Some(k)) = (&cache, &key)
                && !fresh.tiles.is_empty()
                && let Err(e) = c.put(k, &fresh)
            {
                warnings.push(format!("could not store embeddings: {e}"));
            }
            fresh
        }
    };
    let CachedEmbeddings {
        tiles: ids,
        valid_fraction,
        skipped_nodata,
        embeddings,
    } = embedded;
    if ids.is_empty() {
        return Err(RasterError::AllNodata {
            path: req.scene.display().to_string(),
            tiles: total,
            min_valid_percent: req.min_valid_fraction * 100.0,
        }
        .into());
    }
    let embed_s = t1.elapsed().as_secs_f64();

    // Head × T on the embeddings (the encoder is not repeated).
    let t2 = Instant::now();
    progress(Progress::Head);
    if req.mc_passes > 1 && !head.has_mc_dropout() {
        warnings.push(format!(
            "head {} has no mc_dropout_input: its {} passes are identical unless its graph keeps dropout on",
            head.spec.name, req.mc_passes
        ));
    }
    let mut retrained = None;
    let mut predicted_loss = None;
    let probs = match &req.retrain {
        None => match &req.trained_head {
            None => {
                let (p, loss) = head.predict_mc_with_loss(embeddings.view(), req.mc_passes)?;
                predicted_loss = loss;
                p
            }
            Some(path) => {
                let trained = TrainableHead::load(path)?;
                if trained.spec().input_dim != embeddings.ncols()
                    || trained.spec().classes != head.spec.class_names
                {
                    return Err(Error::Invalid(format!(
                        "{} was trained for other classes or another encoder than this run's",
                        path.display()
                    )));
                }
                trained
                    .predict_mc(embeddings.view(), req.mc_passes.max(1), req.seed)?
                    .probs
            }
        },
        Some(r) => {
            let labelled = req.labelled.as_ref().ok_or_else(|| {
                Error::Invalid(
                    "retraining needs labels: pass --labelled with features that have a `class` property".into(),
                )
            })?;
            let classes = tile_classes(
                labelled,
                &grid,
                &ids,
                &scene.crs_wkt,
                &head.spec.class_names,
                &mut warnings,
            )?;
            let (trained, summary) =
                retrain_head(r, &embeddings, &classes, &head.spec.class_names, req.seed)?;
            retrained = Some(summary);
            trained
                .predict_mc(embeddings.view(), req.mc_passes.max(1), req.seed)?
                .probs
        }
    };
    let head_s = t2.elapsed().as_secs_f64();

    let t3 = Instant::now();
    progress(Progress::Selecting);
    // check_head_use refused retraining multi-label heads, so multi-label
    // probabilities here always come from the ONNX head.
    let mut uncertainties = if head.spec.multi_label {
        compute_all_multilabel(probs.view())?
    } else {
        compute_all(probs.view())?
    };
    uncertainties.predicted_loss = predicted_loss;
    let predicted = predicted_class(uncertainties.mean.view()).to_vec();
    let model_switch = head
        .spec
        .auto_switch_per_class
        .or(encoder.spec.auto_switch_per_class);
    let Selected {
        picks,
        strategy,
        labelled_tiles: labelled_count,
    } = select_stage(
        req,
        &Scored {
            grid: &grid,
            tiles: &ids,
            crs_wkt: &scene.crs_wkt,
            size: (scene.width, scene.height),
            class_names: &head.spec.class_names,
            embeddings: embeddings.view(),
            uncertainties: &uncertainties,
            predicted: &predicted,
            model_switch,
        },
    )?;
    let select_s = t3.elapsed().as_secs_f64();

    Ok(ScoreResult {
        scene: SceneSummary {
            path: req.scene.display().to_string(),
            width: scene.width,
            height: scene.height,
            crs_wkt: scene.crs_wkt.clone(),
            crs_epsg: scene.crs_epsg.clone(),
            pixel_size: scene.pixel_size(),
            band_names: bands
                .iter()
                .map(|b| {
                    scene
                        .bands
                        .get(b - 1)
                        .map(|i| i.name.clone())
                        .unwrap_or_default()
                })
                .collect(),
            bands_used: bands,
            band_matching: matches,
            pair: req.pair.as_ref().map(|p| p.display().to_string()),
            resampling,
            stac: stac.map(|s| s.bands),
        },
        grid,
        tiles: ids,
        valid_fraction,
        embeddings,
        uncertainties,
        predicted,
        class_names: head.spec.class_names.clone(),
        auto_switch_per_class: model_switch,
        candidate_tiles: total,
        skipped_nodata,
        labelled_tiles: labelled_count,
        cache_hit,
        picks,
        strategy_params: serde_json::to_value(strategy).unwrap_or(serde_json::Value::Null),
        strategy,
        metric: req.metric,
        budget: req.budget,
        min_spacing_m: req.min_spacing_m,
        seed: req.seed,
        mc_passes: req.mc_passes.max(1),
        encoder: (&encoder.spec).into(),
        head: (&head.spec).into(),
        runtime: crate::model::runtime::init()?,
        warnings,
        input: InputReport {
            sensor: sensor_use,
            scaling,
            data_type,
            check_tiles,
            check: band_checks,
        },
        timings: Timings {
            setup_s,
            embed_s,
            head_s,
            select_s,
            peak_rss_mib: peak_rss_mib(),
            workers: used_workers,
            batch_size: batch,
        },
        retrained,
    })
}

/// Trains (or continues) a head on the labelled tiles' embeddings and saves it if asked.
fn retrain_head(
    r: &Retrain,
    embeddings: &Array2<f32>,
    classes: &[Option<usize>],
    class_names: &[String],
    seed: u64,
) -> Result<(TrainableHead, RetrainSummary)> {
    let rows: Vec<usize> = (0..classes.len())
        .filter(|&i| classes[i].is_some())
        .collect();
    let ys: Vec<usize> = rows.iter().filter_map(|&i| classes[i]).collect();
    if rows.is_empty() {
        return Err(Error::Invalid(
            "no scored tile has a class label: give the --labelled features a `class` property naming one of the head's classes, inside the scene".into(),
        ));
    }
    let mut head = match &r.warm_from {
        Some(path) => {
            let h = TrainableHead::load(path)?;
            if h.spec().classes != class_names || h.spec().input_dim != embeddings.ncols() {
                return Err(Error::Invalid(format!(
                    "{} was trained for {} classes on {}-d embeddings, but this run has {} classes and {}-d embeddings; drop --warm-from to start a new head",
                    path.display(),
                    h.spec().classes.len(),
                    h.spec().input_dim,
                    class_names.len(),
                    embeddings.ncols()
                )));
            }
            h
        }
        None => TrainableHead::new(
            HeadSpec {
                input_dim: embeddings.ncols(),
                classes: class_names.to_vec(),
                multi_label: false,
                loss_prediction: false,
            },
            HeadConfig {
                seed,
                ..r.config.clone()
            },
            embeddings.view(),
        )?,
    };
    let x = embeddings.select(Axis(0), &rows);
    let report = head.fit(x.view(), Targets::Single(&ys), r.warm_from.is_some())?;
    let mut per_class: Vec<(String, usize)> = class_names
        .iter()
        .enumerate()
        .map(|(c, name)| (name.clone(), ys.iter().filter(|&&y| y == c).count()))
        .filter(|(_, n)| *n > 0)
        .collect();
    per_class.sort_by_key(|c| std::cmp::Reverse(c.1));
    let saved_to = match &r.save_to {
        Some(path) => {
            head.save(path)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    Ok((
        head,
        RetrainSummary {
            labelled_tiles: rows.len(),
            per_class,
            report,
            saved_to,
        },
    ))
}

/// The class of every scored tile from the labels' `class` properties: a point labels
/// the tile it falls in, a polygon every tile it touches. A tile touched by labels of
/// different classes takes the class named most often (ties: the first in the head's
/// class order) and a warning says so. Unlabelled tiles, labels without a class and
/// labels of the reserved `unusable` class are `None`.
///
/// # Errors
///
/// [`Error::Invalid`] for a class name the head does not know, listing the valid ones.
/// The class of each tile as far as the product knows it, for class-balanced selection:
/// the analyst's label where a labelled tile has one of the head's classes, the head's
/// prediction everywhere else (labels that do not map onto the head's classes leave the
/// prediction in place; retraining reports them).
fn known_classes(
    predicted: &[usize],
    labelled: Option<&Labelled>,
    (grid, tiles, scene_wkt): (&TileGrid, &[TileId], &str),
    class_names: &[String],
) -> Vec<usize> {
    let mut known = predicted.to_vec();
    let mut ignored = Vec::new();
    if let Some(Ok(classes)) =
        labelled.map(|l| tile_classes(l, grid, tiles, scene_wkt, class_names, &mut ignored))
    {
        for (k, c) in known.iter_mut().zip(classes) {
            if let Some(c) = c {
                *k = c;
            }
        }
    }
    known
}

/// Whether a label's class is the reserved [`UNUSABLE_CLASS`](crate::aoi::UNUSABLE_CLASS)
/// (a tile the analyst could not label): never trained on, but still excluded from
/// suggestions by [`labelled_tiles`]. A head with a class of that name keeps it as a
/// real class.
fn is_unusable(class: Option<&str>, class_names: &[String]) -> bool {
    class == Some(crate::aoi::UNUSABLE_CLASS)
        && !class_names.iter().any(|c| c == crate::aoi::UNUSABLE_CLASS)
}

fn tile_classes(
    labelled: &Labelled,
    grid: &TileGrid,
    tiles: &[TileId],
    scene_wkt: &str,
    class_names: &[String],
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<usize>>> {
    let class_index = |name: &str| {
        class_names.iter().position(|c| c == name).ok_or_else(|| {
            Error::Invalid(format!(
                "label class {name:?} is not one of the head's classes: {}",
                class_names.join(", ")
            ))
        })
    };
    let (polygons, points) = labelled.to_scene_crs(scene_wkt)?;
    let mut votes: std::collections::HashMap<TileId, Vec<usize>> = Default::default();
    for ((x, y), class) in points.iter().zip(&labelled.point_classes) {
        if is_unusable(class.as_deref(), class_names) {
            continue;
        }
        if let (Some(id), Some(c)) = (grid.tile_at(*x, *y), class) {
            votes.entry(id).or_default().push(class_index(c)?);
        }
    }
    for (poly, class) in polygons.0.iter().zip(&labelled.polygon_classes) {
        let Some(c) = class else { continue };
        if is_unusable(Some(c), class_names) {
            continue;
        }
        let c = class_index(c)?;
        match tiles_in_aoi(grid, &MultiPolygon(vec![poly.clone()])) {
            Ok(ids) => ids
                .into_iter()
                .for_each(|id| votes.entry(id).or_default().push(c)),
            Err(crate::tiling::TilingError::AoiOutsideScene { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut conflicts = 0;
    let out = tiles
        .iter()
        .map(|t| {
            let v = votes.get(t)?;
            let mut counts = vec![0usize; class_names.len()];
            v.iter().for_each(|&c| counts[c] += 1);
            let best = (0..counts.len()).max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))?;
            if counts.iter().filter(|&&n| n > 0).count() > 1 {
                conflicts += 1;
            }
            Some(best)
        })
        .collect();
    if conflicts > 0 {
        warnings.push(format!(
            "{conflicts} tile(s) carry labels of more than one class; each was trained on the class named most often"
        ));
    }
    Ok(out)
}

/// How many reader–encoder workers embed a scene, and the encoder session
/// each one runs.
///
/// On the CPU the default is one worker per core (at most
/// [`MAX_AUTO_WORKERS`]), each reading its own blocks of the raster with its
/// own GDAL dataset and running its own single-threaded encoder session.
/// Decompressing blocks and encoding tiles then never wait for each other or
/// for a thread pool's barrier: each core alternates between the two for its
/// own part of the scene (measured on the sample: README, Performance). `--threads` is then
/// shared out between the workers. With the CUDA provider one session owns
/// the GPU, so the default is one worker: a reader thread feeding it.
pub fn embed_workers(req: &ScoreRequest) -> (usize, SessionConfig) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // An explicit `--threads` is the whole budget: no more workers than that.
    let budget = match req.session.intra_threads {
        0 => usize::MAX,
        n => n,
    };
    let workers = match req.workers {
        0 if on_gpu() => 1,
        0 => cores.min(MAX_AUTO_WORKERS).min(budget),
        n => n,
    };
    let session = if workers > 1 {
        SessionConfig {
            intra_threads: (req.session.intra_threads / workers).max(1),
            ..req.session
        }
    } else {
        req.session
    };
    (workers, session)
}

/// Whether sessions run on the CUDA execution provider.
fn on_gpu() -> bool {
    crate::model::runtime::init().is_ok_and(|i| i.provider == "CUDA")
}

/// Whether `parts` spread over `workers` well enough: at least two, and none
/// larger than half a worker's share or two batches (tiles that are not
/// aligned with the raster's blocks can chain whole rows of blocks into one
/// part; one reader feeding one encoder does better then).
fn balanced(parts: &[ReadPlan], workers: usize, plan: &ReadPlan) -> bool {
    let total: usize = parts.iter().map(|p| p.tiles.len()).sum();
    let largest = parts.iter().map(|p| p.tiles.len()).max().unwrap_or(0);
    parts.len() >= 2 && largest <= (total / (2 * workers.max(1))).max(2 * plan.batch_size.max(1))
}

/// How [`embed_tiles_sharded`] runs the parts.
#[derive(Debug, Clone, Copy)]
struct Shards {
    /// Workers (each: a dataset and an encoder session), at most one per part.
    workers: usize,
    /// The session every worker's encoder runs with.
    session: SessionConfig,
}

/// What a worker of [`embed_tiles_sharded`] reports.
enum ShardMessage {
    /// One embedded batch.
    Batch {
        ids: Vec<TileId>,
        valid_fraction: Vec<f32>,
        embeddings: Array2<f32>,
    },
    /// A part is read; these of its tiles had too few valid pixels.
    Done { skipped: Vec<TileId> },
    /// The worker stopped on this error.
    Failed(Error),
}

/// Embed the tiles of `parts` with several workers side by side. The parts
/// (from [`ReadPlan::split_blocks`]) share no raster block; each worker has
/// its own handle on the scene ([`Scene::reopen`]), takes the next part,
/// reads it and encodes its batches with its own encoder session (worker 0
/// uses `encoder`, the others load the same file). Results are put back in
/// tile order, so they are the ones [`embed_tiles`] gives.
fn embed_tiles_sharded(
    scene: &Scene,
    parts: Vec<ReadPlan>,
    encoder: &mut Encoder,
    shards: Shards,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<CachedEmbeddings> {
    let total: usize = parts.iter().map(|p| p.tiles.len()).sum();
    let workers = shards.workers;
    let need = parts
        .iter()
        .map(|p| crate::raster::reader_need(scene, p))
        .try_fold(0u64, |m, n| n.map(|n| m.max(n)));
    crate::raster::fit_block_cache(need.map(|n| workers as u64 * n));
    let scenes = (0..workers)
        .map(|_| scene.reopen())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let encoder_path = encoder.spec.path.clone();
    let mut ids: Vec<TileId> = Vec::with_capacity(total);
    let mut valid_fraction: Vec<f32> = Vec::with_capacity(total);
    let mut chunks: Vec<Array2<f32>> = Vec::new();
    let mut skipped: Vec<TileId> = Vec::new();
    let mut failure: Option<Error> = None;
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<ShardMessage>();
        let mut own = Some(encoder);
        let mut handles = Vec::with_capacity(workers);
        for scene in scenes {
            let (tx, given) = (tx.clone(), own.take());
            let (parts, next, stop, encoder_path) = (&parts, &next, &stop, &encoder_path);
            handles.push(s.spawn(move || {
                let work = || -> Result<()> {
                    let mut loaded = None;
                    let enc = match given {
                        Some(e) => e,
                        None => loaded.insert(Encoder::load(encoder_path, shards.session)?),
                    };
                    loop {
                        let part = next.fetch_add(1, Ordering::Relaxed);
                        if part >= parts.len() || stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let mut model_error = None;
                        let report = read_tiles(&scene, &parts[part], |b| {
                            if stop.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                                return Ok(false);
                            }
                            match enc.embed(b.data.view()) {
                                Ok(embeddings) => Ok(tx
                                    .send(ShardMessage::Batch {
                                        ids: b.ids,
                                        valid_fraction: b.valid_fraction,
                                        embeddings,
                                    })
                                    .is_ok()),
                                Err(e) => {
                                    model_error = Some(e);
                                    Ok(false)
                                }
                            }
                        })?;
                        if let Some(e) = model_error {
                            return Err(e.into());
                        }
                        if cancel.load(Ordering::Relaxed) {
                            return Err(Error::Cancelled);
                        }
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let done = ShardMessage::Done {
                            skipped: report.skipped_nodata,
                        };
                        if tx.send(done).is_err() {
                            return Ok(());
                        }
                    }
                };
                if let Err(e) = work() {
                    stop.store(true, Ordering::Relaxed);
                    let _ = tx.send(ShardMessage::Failed(e));
                }
            }));
        }
        drop(tx);
        let mut done = 0usize;
        for message in rx {
            match message {
                ShardMessage::Batch {
                    ids: i,
                    valid_fraction: v,
                    embeddings,
                } => {
                    done += i.len();
                    ids.extend(i);
                    valid_fraction.extend(v);
                    chunks.push(embeddings);
                    progress(Progress::Embedding { done, total });
                }
                ShardMessage::Done { skipped: s } => skipped.extend(s),
                // The first real error wins over a cancellation it caused.
                ShardMessage::Failed(e) => match (&failure, &e) {
                    (None, _) | (Some(Error::Cancelled), _) => failure = Some(e),
                    _ => {}
                },
            }
        }
        for h in handles {
            if h.join().is_err() && failure.is_none() {
                failure = Some(Error::Internal(
                    "a raster reader/encoder worker panicked".into(),
                ));
            }
        }
    });
    if let Some(f) = failure {
        return Err(f);
    }
    progress(Progress::Embedding { done: total, total });
    skipped.sort();
    // Batches arrive as the workers finish them; the single reader gives
    // tiles in tile (row-major) order, and so does this.
    let embeddings = stack_rows(&chunks)?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    Ok(CachedEmbeddings {
        tiles: order.iter().map(|&i| ids[i]).collect(),
        valid_fraction: order.iter().map(|&i| valid_fraction[i]).collect(),
        skipped_nodata: skipped,
        embeddings: embeddings.select(Axis(0), &order),
    })
}

/// The rows of `chunks` one after another (`[0, 0]` when there are none).
fn stack_rows(chunks: &[Array2<f32>]) -> Result<Array2<f32>> {
    let dim = chunks.first().map_or(0, |c| c.ncols());
    let views: Vec<_> = chunks.iter().map(|c| c.view()).collect();
    if views.is_empty() {
        Ok(Array2::zeros((0, dim)))
    } else {
        concatenate(Axis(0), &views).map_err(|e| Error::Internal(format!("embeddings: {e}")))
    }
}

/// Read the plan's tiles on their own thread (own GDAL dataset handle) into a
/// bounded channel of two batches, and embed them here as they arrive, so
/// reading batch k+1 overlaps encoding batch k.
fn embed_tiles(
    scene: &Scene,
    plan: ReadPlan,
    encoder: &mut Encoder,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<CachedEmbeddings> {
    let total = plan.tiles.len();
    let mut ids: Vec<TileId> = Vec::with_capacity(total);
    let mut valid_fraction = Vec::with_capacity(total);
    let mut chunks: Vec<Array2<f32>> = Vec::new();
    crate::raster::fit_block_cache(crate::raster::reader_need(scene, &plan));
    let reader_scene = scene.reopen()?;
    let report = std::thread::scope(|s| -> Result<crate::raster::ReadReport> {
        let (tx, rx) = mpsc::sync_channel::<TileBatch>(2);
        let reader = s.spawn(
            move || -> std::result::Result<crate::raster::ReadReport, RasterError> {
                read_tiles(&reader_scene, &plan, |b| Ok(tx.send(b).is_ok()))
            },
        );
        let mut done = 0usize;
        let mut failure = None;
        for batch in rx.iter() {
            if cancel.load(Ordering::Relaxed) {
                failure = Some(Error::Cancelled);
                break;
            }
            match encoder.embed(batch.data.view()) {
                Ok(e) => chunks.push(e),
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            }
            done += batch.ids.len();
            ids.extend(batch.ids);
            valid_fraction.extend(batch.valid_fraction);
            progress(Progress::Embedding { done, total });
        }
        drop(rx);
        let joined = reader
            .join()
            .map_err(|_| Error::Internal("the raster reader thread panicked".into()))?;
        if let Some(f) = failure {
            return Err(f);
        }
        let report = joined?;
        progress(Progress::Embedding { done: total, total });
        Ok(report)
    })?;
    Ok(CachedEmbeddings {
        tiles: ids,
        valid_fraction,
        skipped_nodata: report.skipped_nodata,
        embeddings: stack_rows(&chunks)?,
    })
}

/// Mask over the scored `tiles`: true where a labelled point falls in the
/// tile or a labelled polygon touches it. Labels outside the scene are ignored.
fn labelled_tiles(
    labelled: &Labelled,
    grid: &TileGrid,
    tiles: &[TileId],
    scene_wkt: &str,
) -> Result<Vec<bool>> {
    let (polygons, points) = labelled.to_scene_crs(scene_wkt)?;
    let mut set = std::collections::HashSet::new();
    for (x, y) in points {
        if let Some(id) = grid.tile_at(x, y) {
            set.insert(id);
        }
    }
    if !polygons.0.is_empty() {
        match tiles_in_aoi(grid, &polygons) {
            Ok(ids) => set.extend(ids),
            Err(crate::tiling::TilingError::AoiOutsideScene { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(tiles.iter().map(|t| set.contains(t)).collect())
}

/// Refuse an encoder/head pair that cannot work together; warn when the head
/// was trained on another encoder.
fn check_pair(
    encoder: &ModelSpec,
    head: &ModelSpec,
    fused_bands: usize,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let head_dim = head
        .inputs
        .iter()
        .find(|i| i.name == head.input_name)
        .and_then(|i| i.shape.get(1).copied())
        .filter(|d| *d > 0);
    if let (Some(d), Some(h)) = (encoder.embedding_dim, head_dim)
        && (d * fused_bands) as i64 != h
    {
        let e = d * fused_bands;
        let per_band = if fused_bands > 1 {
            format!(" ({fused_bands} bands × {d}, concatenated)")
        } else {
            String::new()
        };
        return Err(Error::Invalid(format!(
            "encoder {} gives {e}-d embeddings{per_band} but head {} takes {h}-d input; use a head trained on this encoder{}",
            encoder.path.display(),
            head.path.display(),
            if fused_bands > 1 {
                " and this band list"
            } else {
                ""
            }
        )));
    }
    if let Some(want) = &head.encoder_sha256
        && !encoder.is_or_derives_from(want)
    {
        warnings.push(format!(
            "head {} was trained on encoder {}…, not on {} ({}…); its predictions may be meaningless",
            head.path.display(),
            short_hash(want),
            encoder.path.display(),
            short_hash(&encoder.sha256)
        ));
    }
    Ok(())
}

/// The first 12 characters of a hash for messages (characters, not bytes: a model's
/// metadata may hold any text).
fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// Refuse head/metric/retraining combinations that cannot work, before any
/// tile is read.
fn check_head_use(req: &ScoreRequest, head: &ModelSpec) -> Result<()> {
    let own_head = req.retrain.is_none() && req.trained_head.is_none();
    if req.metric == Metric::PredictedLoss && (head.loss_output.is_none() || !own_head) {
        return Err(Error::Invalid(format!(
            "--metric predicted_loss ranks by a head's loss-prediction output, and {} has none{}; use a head with a loss_output (e.g. onnx/eurosat_multilabel/head.onnx) or another metric ({})",
            head.path.display(),
            if own_head {
                ""
            } else {
                " once it is retrained"
            },
            Metric::names_list()
        )));
    }
    if head.multi_label && !own_head {
        return Err(Error::Invalid(format!(
            "{} is a multi-label head; retraining from labels (one class per label) trains single-label heads only. Score without --retrain/--trained-head, or use a single-label head",
            head.path.display()
        )));
    }
    Ok(())
}

/// The bands a per-band encoder embeds: the user's list, else the model's
/// `default_bands`, else every band it accepts that the raster holds; with the
/// matching per-band standardisation.
fn per_band_preprocess(
    spec: &ModelSpec,
    full: &crate::model::Preprocess,
    scene: &Scene,
    wanted: Option<&[String]>,
) -> Result<crate::model::Preprocess> {
    let accepted: Vec<String> = full
        .bands
        .iter()
        .map(|b| crate::raster::canonical_band_name(b))
        .collect();
    let chosen: Vec<String> = match wanted {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|b| crate::raster::canonical_band_name(b))
            .collect(),
        Some(_) => return Err(Error::Invalid("--band-names is empty".into())),
        None if !spec.default_bands.is_empty() => spec
            .default_bands
            .iter()
            .map(|b| crate::raster::canonical_band_name(b))
            .collect(),
        None => accepted
            .iter()
            .filter(|b| scene.bands.iter().any(|s| &s.name == *b))
            .cloned()
            .collect(),
    };
    if chosen.is_empty() {
        return Err(Error::Invalid(format!(
            "the per-band encoder {} accepts [{}] but {} holds none of them; name bands with --band-names",
            spec.path.display(),
            full.bands.join(", "),
            scene.path.display()
        )));
    }
    let mut out = crate::model::Preprocess {
        bands: Vec::with_capacity(chosen.len()),
        mean: Vec::with_capacity(chosen.len()),
        std: Vec::with_capacity(chosen.len()),
        ..full.clone()
    };
    for b in &chosen {
        let Some(i) = accepted.iter().position(|a| a == b) else {
            return Err(Error::Invalid(format!(
                "the per-band encoder {} has no statistics for band {b}; it accepts [{}]",
                spec.path.display(),
                full.bands.join(", ")
            )));
        };
        if out.bands.contains(b) {
            return Err(Error::Invalid(format!("--band-names lists {b} twice")));
        }
        out.bands.push(b.clone());
        out.mean.push(full.mean[i]);
        out.std.push(full.std[i]);
    }
    Ok(out)
}

/// A multi-modal encoder needs some band of every modality in the raster(s);
/// say which sensor is missing (and how to add it) rather than listing bands.
fn check_modalities(spec: &ModelSpec, scene: &Scene, req: &ScoreRequest) -> Result<()> {
    if spec.per_band || spec.modalities.len() < 2 || req.bands.is_some() {
        return Ok(());
    }
    let has = |b: &String| {
        let key = crate::raster::canonical_band_name(b);
        scene.bands.iter().any(|s| s.name == key)
    };
    for m in &spec.modalities {
        if !m.bands.iter().any(has) {
            let path = match &req.pair {
                Some(p) => format!("{} + {}", req.scene.display(), p.display()),
                None => req.scene.display().to_string(),
            };
            return Err(RasterError::MissingModality {
                path,
                missing: m.name.clone(),
                bands: m.bands.join(", "),
                modalities: spec
                    .modalities
                    .iter()
                    .map(|m| format!("{} [{}]", m.name, m.bands.join(", ")))
                    .collect::<Vec<_>>()
                    .join(" + "),
            }
            .into());
        }
    }
    Ok(())
}

/// Write every output into `dir` (created if needed).
pub fn write_outputs(result: &ScoreResult, dir: &Path) -> Result<OutputPaths> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let paths = OutputPaths {
        heatmap: dir.join("heatmap.tif"),
        heatmap_style: dir.join("heatmap.qml"),
        suggestions: dir.join("suggestions.geojson"),
        tiles_geojson: dir.join("tiles.geojson"),
        tiles_csv: dir.join("tiles.csv"),
        summary: dir.join("summary.json"),
    };
    output::write_heatmap(result, &paths.heatmap, result.metric)?;
    output::write_collection(&output::suggestions_collection(result)?, &paths.suggestions)?;
    output::write_collection(&output::tiles_collection(result)?, &paths.tiles_geojson)?;
    output::write_tiles_csv(result, &paths.tiles_csv)?;
    let summary = summary_json(result, Some(&paths));
    std::fs::write(
        &paths.summary,
        serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n",
    )
    .map_err(|e| Error::Io {
        path: paths.summary.display().to_string(),
        source: e,
    })?;
    Ok(paths)
}

/// A machine-readable summary of a run (what `--json` prints).
pub fn summary_json(result: &ScoreResult, paths: Option<&OutputPaths>) -> serde_json::Value {
    let picks: Vec<serde_json::Value> = result
        .picks
        .iter()
        .enumerate()
        .map(|(r, p)| {
            serde_json::json!({
                "rank": r + 1,
                "tile_id": result.tiles[p.index].to_string(),
                "score": p.score,
                "predicted_class": result.class_names.get(result.predicted[p.index]),
            })
        })
        .collect();
    serde_json::json!({
        "scene": result.scene,
        "grid": {
            "tile_size": result.grid.tile_size,
            "stride": result.grid.stride,
            "rows": result.grid.rows,
            "cols": result.grid.cols,
        },
        "encoder": result.encoder,
        "head": result.head,
        "classes": result.class_names,
        "candidate_tiles": result.candidate_tiles,
        "scored_tiles": result.tiles.len(),
        "skipped_nodata": result.skipped_nodata.len(),
        "embeddings_from_cache": result.cache_hit,
        "labelled_tiles": result.labelled_tiles,
        "mc_passes": result.mc_passes,
        "strategy": result.strategy.name(),
        "strategy_params": result.strategy_params,
        "metric": result.metric.name(),
        "budget": result.budget,
        "min_spacing_m": result.min_spacing_m,
        "seed": result.seed,
        "suggestions": picks,
        "runtime": result.runtime,
        "warnings": result.warnings,
        "input": result.input,
        "timings": result.timings,
        "retrained": result.retrained,
        "outputs": paths,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_size_is_the_requests_then_the_encoders_then_the_default() {
        assert_eq!(super::batch_size(32, Some(16)), 32);
        assert_eq!(super::batch_size(0, Some(16)), 16);
        assert_eq!(super::batch_size(0, None), super::DEFAULT_BATCH_SIZE);
    }

    #[test]
    fn short_hash_takes_characters_not_bytes() {
        // A head's metadata may hold any text: 12 characters of a non-ASCII value, no
        // panic on a char boundary (issue 17).
        assert_eq!(super::short_hash("é".repeat(20).as_str()), "é".repeat(12));
        assert_eq!(super::short_hash("abc"), "abc");
        assert_eq!(super::short_hash("0123456789abcdef"), "0123456789ab");
    }
}
