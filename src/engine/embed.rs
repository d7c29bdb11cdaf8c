//! The embed stage: [`Prepared`] → [`Embedded`]. One embedding per candidate tile, from
//! the embedding cache when it holds this scene, bands, scaling and encoder, else read
//! and encoded by reader–encoder workers side by side ([`embed_workers`]) and stored in
//! the cache.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use ndarray::{Array2, Axis, concatenate};

use crate::error::{Error, Result};
use crate::model::{Encoder, SessionConfig};
use crate::raster::{RasterError, ReadPlan, Scene, TileBatch, read_tiles};
use crate::store::{CacheKey, CachedEmbeddings, EmbeddingCache};
use crate::tiling::TileId;

use super::Progress;
use super::prepare::Prepared;
use super::request::{MAX_AUTO_WORKERS, ScoreRequest, batch_size};

/// What the embed stage gives: the embeddings of the scored tiles and how they came.
pub(super) struct Embedded {
    /// Scored tiles (row-major), their valid fractions, the skipped tiles and one
    /// embedding row per scored tile.
    pub embeddings: CachedEmbeddings,
    /// Whether they came from the cache.
    pub cache_hit: bool,
    /// Reader–encoder workers that ran (0 on a cache hit).
    pub workers: usize,
    /// Tiles per encoder batch.
    pub batch: usize,
}

/// The embed stage. In: the prepared scene (its encoder; its candidate tiles are taken).
/// Out: [`Embedded`]; a cache that cannot be read or written adds a warning to
/// `p.warnings` and the run goes on.
///
/// # Errors
///
/// Reading or encoding failures, [`Error::Cancelled`] when `cancel` is set, and
/// [`RasterError::AllNodata`] when no candidate tile has enough valid pixels.
pub(super) fn embed(
    req: &ScoreRequest,
    p: &mut Prepared,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<Embedded> {
    let total = p.candidates.len();
    let batch = batch_size(req.batch_size, p.encoder.spec.batch_size);
    let key = req.cache.as_ref().and_then(|_| cache_key(req, p));
    let cache = req.cache.as_ref().map(EmbeddingCache::new);
    let cached = match (&cache, &key) {
        (Some(c), Some(k)) => match c.get(k) {
            Ok(hit) => hit,
            Err(e) => {
                p.warnings.push(format!("{e}; recomputing"));
                None
            }
        },
        _ => None,
    };
    let cache_hit = cached.is_some();
    let mut used_workers = 0;
    let embeddings = match cached {
        Some(hit) => {
            progress(Progress::Embedding { done: total, total });
            hit
        }
        None => {
            let plan = ReadPlan {
                bands: p.bands.clone(),
                preprocess: p.pre.clone(),
                grid: p.grid.clone(),
                tiles: std::mem::take(&mut p.candidates),
                min_valid_fraction: req.min_valid_fraction,
                batch_size: batch,
            };
            let (mut fresh, workers) = encode(req, p, plan, progress, cancel)?;
            used_workers = workers;
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
                p.warnings.push(format!("could not store embeddings: {e}"));
            }
            fresh
        }
    };
    if embeddings.tiles.is_empty() {
        return Err(RasterError::AllNodata {
            path: req.scene.display().to_string(),
            tiles: total,
            min_valid_percent: req.min_valid_fraction * 100.0,
        }
        .into());
    }
    Ok(Embedded {
        embeddings,
        cache_hit,
        workers: used_workers,
        batch,
    })
}

/// The cache key of the prepared scene's embeddings (`None` when the scene's files
/// cannot be identified): scene, grid, bands, valid fraction, candidates, encoder,
/// scaling, resampling, STAC assets and pair.
fn cache_key(req: &ScoreRequest, p: &Prepared) -> Option<CacheKey> {
    let key = CacheKey::for_scene(
        &req.scene,
        p.grid.tile_size,
        p.grid.stride,
        &p.bands,
        req.min_valid_fraction,
        &p.candidates,
        &p.encoder.spec.sha256,
    )?
    .with_scaling(p.scaling.scale, p.scaling.offset, p.model_scaling)
    .with_item(req.stac_item.clone())
    .with_resampling(
        p.resampling
            .applied
            .as_ref()
            .map(|r| (r.to_m, r.method.clone())),
    );
    let key = match &p.stac {
        Some(s) => key.with_assets(s.bands.iter().map(|b| Path::new(&b.file)))?,
        None => key,
    };
    match &req.pair {
        Some(second) => key.with_second(second),
        None => Some(key),
    }
}

/// Reads and encodes the plan's tiles: with the prepared workers side by side when the
/// raster's blocks split evenly enough ([`balanced`]), else one reader feeding one
/// encoder that gets all the threads. Returns the embeddings and the workers that ran.
fn encode(
    req: &ScoreRequest,
    p: &mut Prepared,
    plan: ReadPlan,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<(CachedEmbeddings, usize)> {
    let workers = p.workers;
    let parts = (workers > 1)
        .then(|| plan.split_blocks(p.scene.block_size(&plan.bands), plan.batch_size))
        .filter(|parts| balanced(parts, workers, &plan));
    match parts {
        Some(parts) => {
            let used = workers.min(parts.len());
            let shards = Shards {
                workers: used,
                session: p.encoder_session,
            };
            let fresh =
                embed_tiles_sharded(&p.scene, parts, &mut p.encoder, shards, progress, cancel)?;
            Ok((fresh, used))
        }
        None => {
            if workers > 1 {
                // Loaded with a worker's share of the threads: one
                // encoder now gets them all.
                p.encoder = Encoder::load(&req.encoder, req.session)?;
            }
            let fresh = embed_tiles(&p.scene, plan, &mut p.encoder, progress, cancel)?;
            Ok((fresh, 1))
        }
    }
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
