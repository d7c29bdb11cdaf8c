//! Regions: many scenes' embeddings in one GeoParquet store
//! ([`crate::store`]'s format, GeoParquet 1.1: <https://geoparquet.org/releases/v1.1.0/>),
//! and one selection over all of them.
//!
//! - [`embed_to_store`]: the prepare and embed stages of [`score`](super::score) (the
//!   same reading, preprocessing, cache and workers), then each tile's lon/lat footprint
//!   and centre, written as one file per scene ([`store_file`]). A complete file of the
//!   same scene (path, size, modification time) and encoder is kept and reported.
//! - [`select_store`]: one streaming pass over every file of a store (each record batch
//!   through the ONNX head's T MC passes and the metric; per tile only scalars and the
//!   f16 embedding kept), then [`crate::sampling::select_needed_rows`]: the rows the
//!   strategy reads widened to f32 and [`crate::sampling::select`] (or
//!   [`crate::sampling::select_with_spacing`]) run once over all scenes; the picks'
//!   footprints read back from their files. [`select_store_in_memory`] makes the same
//!   picks from the whole store in memory (the reference of tests and the benchmark).
//! - [`write_store_suggestions`]: the ranked picks as RFC 7946 GeoJSON and a GeoPackage.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use geo::{BoundingRect, Intersects, MultiPolygon, Point, Polygon, Rect};
use geojson::{Feature, FeatureCollection, Geometry, GeometryValue, JsonObject};
use half::f16;
use ndarray::{Array2, ArrayView1};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::request::ScoreRequest;
use super::{Progress, embed, prepare, scores};
use crate::aoi::Labelled;
use crate::crs::{LocalMetric, Reprojector, wgs84};
use crate::error::{Error, Result};
use crate::model::{Head, SessionConfig};
use crate::output::FOOTPRINT_POINTS_PER_EDGE;
use crate::sampling::{
    Pick, SelectionInput, Strategy, select, select_needed_rows, select_with_spacing,
};
use crate::store::{
    StoreMeta, StoreRows, list_store, read_embeddings, read_footprints, read_meta, read_rows,
    write_scene_file,
};
use crate::tiling::TileId;
use crate::uncertainty::Metric;

/// Most characters of a scene id's readable part (the file stem).
const MAX_STEM_CHARS: usize = 48;

/// The id of a scene in a store, and its file's stem: the scene file's stem (characters
/// other than ASCII letters, digits, `-` and `_` become `_`, at most 48) and the first
/// 8 hex digits of the SHA-256 of its canonical path (its path as given when it has
/// none), so two scenes of one name in different folders get different files.
pub fn scene_id(scene: &Path) -> String {
    let canonical = std::fs::canonicalize(scene).unwrap_or_else(|_| scene.to_path_buf());
    let stem: String = scene
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_STEM_CHARS)
        .collect();
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", if stem.is_empty() { "scene" } else { &stem })
}

/// The store file of `scene` in the folder `store`: `STORE/<scene id>.parquet`.
pub fn store_file(store: &Path, scene: &Path) -> PathBuf {
    store.join(format!(
        "{}.{}",
        scene_id(scene),
        crate::store::STORE_EXTENSION
    ))
}

/// What [`embed_to_store`] did for one scene.
#[derive(Debug, Clone)]
pub struct EmbedOutcome {
    /// The scene.
    pub scene: PathBuf,
    /// Its store file.
    pub file: PathBuf,
    /// Tiles in the file.
    pub tiles: usize,
    /// The file was already complete (same scene and encoder) and was kept.
    pub kept: bool,
    /// Whether the embeddings came from the embedding cache.
    pub cache_hit: bool,
    /// Warnings of the run, in order.
    pub warnings: Vec<String>,
}

/// Embeds `req.scene` into the store folder `store` (created when missing): its file
/// ([`store_file`]) is kept when it is complete for this scene (canonical path, size,
/// modification time) and encoder (SHA-256); else the scene runs through the prepare
/// and embed stages of [`score`](super::score) and the file is written to a temporary
/// name and renamed.
///
/// # Errors
///
/// Those of the prepare and embed stages, and [`Error::Store`] when the file cannot be
/// written.
pub fn embed_to_store(
    req: &ScoreRequest,
    store: &Path,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<EmbedOutcome> {
    let (scene_path, scene_size, scene_mtime_ns) = crate::paths::file_identity(&req.scene)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "cannot read the scene {}: give an existing raster file",
                req.scene.display()
            ))
        })?;
    let encoder = crate::model::inspect(&req.encoder)?;
    let file = store_file(store, &req.scene);
    if let Ok(meta) = read_meta(&file)
        && meta.encoder_sha256 == encoder.sha256
        && (
            meta.scene_path.as_str(),
            meta.scene_size,
            meta.scene_mtime_ns,
        ) == (scene_path.as_str(), scene_size, scene_mtime_ns)
    {
        return Ok(EmbedOutcome {
            scene: req.scene.clone(),
            file,
            tiles: meta.tiles,
            kept: true,
            cache_hit: false,
            warnings: Vec::new(),
        });
    }
    std::fs::create_dir_all(store).map_err(|source| Error::Io {
        path: store.display().to_string(),
        source,
    })?;
    let mut p = prepare::prepare(req)?;
    progress(Progress::Started {
        total: p.candidates.len(),
    });
    let embedded = embed::embed(req, &mut p, progress, cancel)?;
    let e = embedded.embeddings;
    let to_wgs84 = Reprojector::from_wkt(&p.scene.crs_wkt, &wgs84()?)?;
    let mut footprints = Vec::with_capacity(e.tiles.len());
    let mut centres = Vec::with_capacity(e.tiles.len());
    for id in &e.tiles {
        footprints.push(to_wgs84.polygon(&p.grid.footprint(*id, FOOTPRINT_POINTS_PER_EDGE))?);
        let (x, y) = p.grid.centre(*id);
        centres.push(to_wgs84.point(x, y)?);
    }
    let meta = StoreMeta {
        scene_id: scene_id(&req.scene),
        scene_path,
        scene_size,
        scene_mtime_ns,
        encoder_sha256: p.encoder.spec.sha256.clone(),
        encoder_path: req.encoder.display().to_string(),
        dim: e.embeddings.ncols(),
        tiles: e.tiles.len(),
        bands: p.bands.clone(),
        crs_wkt: p.scene.crs_wkt.clone(),
        nexttile_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let grid_json = serde_json::to_string(&p.grid)
        .map_err(|e| Error::Internal(format!("tile grid as JSON: {e}")))?;
    let rows = StoreRows {
        tiles: e.tiles,
        footprints,
        centres,
        valid_fraction: e.valid_fraction,
        embeddings: e.embeddings,
    };
    write_scene_file(&file, &meta, &grid_json, &rows)?;
    Ok(EmbedOutcome {
        scene: req.scene.clone(),
        file,
        tiles: meta.tiles,
        kept: false,
        cache_hit: embedded.cache_hit,
        warnings: p.warnings,
    })
}

/// How [`select_store`] selects.
#[derive(Debug, Clone)]
pub struct StoreSelect {
    /// The ONNX head run over the store's embeddings (trained on the store's encoder).
    pub head: PathBuf,
    /// onnxruntime settings of the head.
    pub session: SessionConfig,
    /// MC passes of the head.
    pub mc_passes: usize,
    /// Strategy.
    pub strategy: Strategy,
    /// Uncertainty metric the strategy ranks by.
    pub metric: Metric,
    /// Picks wanted.
    pub budget: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Minimum ground distance between picks' centres, metres (0: none).
    pub min_spacing_m: f64,
    /// Labelled places: their tiles are never picked.
    pub labelled: Option<Labelled>,
    /// Keep no embedding in the streaming pass; read the rows the strategy needs from
    /// the files in a second pass ([`select_store`]; the in-memory path ignores it).
    pub two_pass: bool,
}

/// One pick of [`select_store`].
#[derive(Debug, Clone)]
pub struct StorePick {
    /// Rank, 1 first.
    pub rank: usize,
    /// The scene's id in the store.
    pub scene_id: String,
    /// The scene's path.
    pub scene_path: String,
    /// The tile.
    pub tile: TileId,
    /// Footprint, lon/lat.
    pub footprint: Polygon<f64>,
    /// The strategy's score ([`Pick::score`]).
    pub score: f32,
    /// The metric's value.
    pub uncertainty: f32,
    /// The head's predicted class.
    pub predicted_class: String,
}

/// What [`select_store`] chose and from what.
#[derive(Debug, Clone)]
pub struct StoreSelection {
    /// Ranked picks.
    pub picks: Vec<StorePick>,
    /// The strategy as run.
    pub strategy: Strategy,
    /// The metric.
    pub metric: Metric,
    /// Files (scenes) read.
    pub files: usize,
    /// Tiles read.
    pub tiles: usize,
    /// Embedding dimensions.
    pub dim: usize,
    /// Tiles that are labelled.
    pub labelled_tiles: usize,
    /// The store's encoder.
    pub encoder_sha256: String,
    /// Rows whose embeddings were widened to f32 for the strategy (every row in memory).
    pub widened_rows: usize,
}

/// Where each row of the store matrix came from.
struct Rows {
    metas: Vec<StoreMeta>,
    file_of: Vec<usize>,
    tiles: Vec<TileId>,
    footprints: Vec<Polygon<f64>>,
    centres: Vec<(f64, f64)>,
    embeddings: Array2<f32>,
}

/// The complete files of `store` and their metadata, refusing an empty store and files
/// of different encoders or widths.
fn store_files(store: &Path) -> Result<(Vec<PathBuf>, Vec<StoreMeta>)> {
    let files = list_store(store)?;
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "{} holds no *.parquet store file; run `nexttile embed SCENE… --out {}` first",
            store.display(),
            store.display()
        )));
    }
    let metas = files
        .iter()
        .map(|f| read_meta(f))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let first = &metas[0];
    for (f, m) in files.iter().zip(&metas) {
        if m.encoder_sha256 != first.encoder_sha256 || m.dim != first.dim {
            return Err(Error::Invalid(format!(
                "the store mixes encoders: {} has encoder sha256 {} ({}-d), {} has {} ({}-d); one selection needs one encoder: move the files of the other encoder to their own folder",
                files[0].display(),
                first.encoder_sha256,
                first.dim,
                f.display(),
                m.encoder_sha256,
                m.dim
            )));
        }
    }
    Ok((files, metas))
}

/// The error of a file whose rows disagree with its metadata.
fn rows_differ(file: &Path, meta: &StoreMeta) -> Error {
    crate::store::StoreError::Damaged {
        path: file.display().to_string(),
        message: format!("its metadata says {} tiles, its rows differ", meta.tiles),
    }
    .into()
}

/// Reads every complete file of `store`: their metadata first (refusing files of
/// different encoders or widths), then their rows into one `[tiles, D]` matrix.
fn read_store(store: &Path) -> Result<Rows> {
    let (files, metas) = store_files(store)?;
    let (dim, total) = (metas[0].dim, metas.iter().map(|m| m.tiles).sum::<usize>());
    let mut rows = Rows {
        metas: Vec::with_capacity(files.len()),
        file_of: Vec::with_capacity(total),
        tiles: Vec::with_capacity(total),
        footprints: Vec::with_capacity(total),
        centres: Vec::with_capacity(total),
        embeddings: Array2::zeros((total, dim)),
    };
    let mut at = 0usize;
    for (k, f) in files.iter().enumerate() {
        let mut overflow = false;
        let meta = read_rows(f, |_, b| {
            let n = b.tiles.len();
            if at + n > total {
                overflow = true;
                return;
            }
            for (r, chunk) in b.embeddings.chunks_exact(dim.max(1)).enumerate() {
                rows.embeddings
                    .row_mut(at + r)
                    .iter_mut()
                    .zip(chunk)
                    .for_each(|(d, s)| *d = *s);
            }
            at += n;
            rows.file_of.extend(std::iter::repeat_n(k, n));
            rows.tiles.extend(b.tiles);
            rows.footprints.extend(b.footprints);
            rows.centres.extend(b.centres);
        })?;
        if overflow || rows.tiles.len() != metas[..=k].iter().map(|m| m.tiles).sum::<usize>() {
            return Err(rows_differ(f, &meta));
        }
        rows.metas.push(meta);
    }
    Ok(rows)
}

/// The head of `sel`, refused when it was trained on another encoder than `encoder_sha256`.
fn store_head(sel: &StoreSelect, encoder_sha256: &str) -> Result<Head> {
    let head = Head::load(&sel.head, sel.session)?;
    if let Some(trained_on) = &head.spec.encoder_sha256
        && trained_on != encoder_sha256
    {
        return Err(Error::Invalid(format!(
            "head {} was trained on encoder sha256 {trained_on}, but the store's embeddings come from encoder sha256 {encoder_sha256}; give --head a head of that encoder",
            sel.head.display()
        )));
    }
    Ok(head)
}

/// The ranked [`StorePick`]s of `picks`: `footprints[k]` is pick `k`'s footprint.
struct PickFacts<'a> {
    metas: &'a [StoreMeta],
    file_of: &'a dyn Fn(usize) -> usize,
    tiles: &'a [TileId],
    uncertainty: ArrayView1<'a, f32>,
    predicted: &'a [usize],
    class_names: &'a [String],
}

impl PickFacts<'_> {
    fn picks(&self, picks: &[Pick], footprints: Vec<Polygon<f64>>) -> Vec<StorePick> {
        picks
            .iter()
            .zip(footprints)
            .enumerate()
            .map(|(r, (p, footprint))| {
                let meta = &self.metas[(self.file_of)(p.index)];
                StorePick {
                    rank: r + 1,
                    scene_id: meta.scene_id.clone(),
                    scene_path: meta.scene_path.clone(),
                    tile: self.tiles[p.index],
                    footprint,
                    score: p.score,
                    uncertainty: self.uncertainty[p.index],
                    predicted_class: self
                        .class_names
                        .get(self.predicted[p.index])
                        .cloned()
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// One selection over every scene of the store folder `store` as
/// [`select_store`] makes it, but from the whole store in memory: the `[tiles, D]` f32
/// matrix of all rows, the head's `T × tiles × classes` probabilities and every tile's
/// footprint. Kept as the reference the streaming path is measured and tested against
/// (`benches/select_store.rs`, `tests/select_store.rs`); the CLI streams.
///
/// # Errors
///
/// As [`select_store`].
pub fn select_store_in_memory(store: &Path, sel: &StoreSelect) -> Result<StoreSelection> {
    let rows = read_store(store)?;
    let encoder_sha256 = rows.metas[0].encoder_sha256.clone();
    let mut head = store_head(sel, &encoder_sha256)?;
    let (probs, loss) = head.predict_mc_with_loss(rows.embeddings.view(), sel.mc_passes.max(1))?;
    if sel.metric == Metric::PredictedLoss && loss.is_none() {
        return Err(Error::Invalid(
            "--metric predicted_loss needs a head with a loss output".into(),
        ));
    }
    let (uncertainties, predicted) = scores::score_tiles(&probs, head.spec.multi_label, loss)?;
    let labelled = match &sel.labelled {
        Some(l) => {
            let shapes = LabelledShapes::new(l)?;
            Some(
                rows.footprints
                    .iter()
                    .map(|f| shapes.touches(f))
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let labelled_tiles = labelled
        .as_ref()
        .map_or(0, |m| m.iter().filter(|b| **b).count());
    let strategy = sel.strategy.with_run_facts(
        head.spec.class_names.len(),
        labelled_tiles,
        head.spec.auto_switch_per_class,
    );
    let score_vec = uncertainties.get(sel.metric);
    let input = SelectionInput {
        embeddings: rows.embeddings.view(),
        uncertainty: score_vec,
        excluded: None,
        labelled: labelled.as_deref(),
        classes: Some(&predicted),
    };
    let picks: Vec<Pick> = if sel.min_spacing_m > 0.0 {
        let centres = centres_in_metres(&rows.centres)?;
        select_with_spacing(
            &strategy,
            &input,
            sel.budget,
            sel.seed,
            &centres,
            sel.min_spacing_m,
        )?
    } else {
        select(&strategy, &input, sel.budget, sel.seed)?
    };
    let footprints = picks
        .iter()
        .map(|p| rows.footprints[p.index].clone())
        .collect();
    let facts = PickFacts {
        metas: &rows.metas,
        file_of: &|i| rows.file_of[i],
        tiles: &rows.tiles,
        uncertainty: score_vec,
        predicted: &predicted,
        class_names: &head.spec.class_names,
    };
    Ok(StoreSelection {
        picks: facts.picks(&picks, footprints),
        strategy,
        metric: sel.metric,
        files: rows.metas.len(),
        tiles: rows.tiles.len(),
        dim: rows.embeddings.ncols(),
        labelled_tiles,
        encoder_sha256,
        widened_rows: rows.tiles.len(),
    })
}

/// What the streaming pass of [`select_store`] keeps of each tile: no footprint, the
/// embedding as f16 (only when the strategy may read embeddings).
struct Scanned {
    metas: Vec<StoreMeta>,
    file_of: Vec<u32>,
    row_in_file: Vec<u32>,
    tiles: Vec<TileId>,
    centres: Vec<(f64, f64)>,
    uncertainty: Vec<f32>,
    predicted: Vec<usize>,
    labelled: Vec<bool>,
    /// `tiles × dim` f16 values, row-major; empty when not kept.
    embeddings: Vec<f16>,
    dim: usize,
}

impl Scanned {
    /// The f16 embeddings of `rows` (every row for `None`) widened to f32.
    fn widen(&self, rows: Option<&[usize]>) -> Array2<f32> {
        let d = self.dim;
        let all: Vec<usize>;
        let rows = match rows {
            Some(r) => r,
            None => {
                all = (0..self.tiles.len()).collect();
                &all
            }
        };
        let mut out = Array2::<f32>::zeros((rows.len(), d));
        if self.embeddings.len() < self.tiles.len() * d {
            return out;
        }
        for (mut dst, &r) in out.outer_iter_mut().zip(rows) {
            let src = &self.embeddings[r * d..(r + 1) * d];
            dst.iter_mut().zip(src).for_each(|(o, v)| *o = v.to_f32());
        }
        out
    }
}

/// The streaming pass: each record batch of each file through the head (its T MC passes),
/// the metric, the predicted class and the labelled test; the batch's footprints are
/// dropped, its embeddings kept as f16 when `keep_embeddings`.
fn scan_store(
    files: &[PathBuf],
    metas: &[StoreMeta],
    head: &mut Head,
    sel: &StoreSelect,
    keep_embeddings: bool,
) -> Result<Scanned> {
    let (dim, total) = (metas[0].dim, metas.iter().map(|m| m.tiles).sum::<usize>());
    let shapes = sel.labelled.as_ref().map(LabelledShapes::new).transpose()?;
    let mut s = Scanned {
        metas: Vec::with_capacity(files.len()),
        file_of: Vec::with_capacity(total),
        row_in_file: Vec::with_capacity(total),
        tiles: Vec::with_capacity(total),
        centres: Vec::with_capacity(total),
        uncertainty: Vec::with_capacity(total),
        predicted: Vec::with_capacity(total),
        labelled: Vec::with_capacity(total),
        embeddings: Vec::with_capacity(if keep_embeddings { total * dim } else { 0 }),
        dim,
    };
    let (passes, multi_label) = (sel.mc_passes.max(1), head.spec.multi_label);
    for (k, f) in files.iter().enumerate() {
        let mut failed: Option<Error> = None;
        let before = s.tiles.len();
        let meta = read_rows(f, |_, b| {
            if failed.is_some() {
                return;
            }
            let n = b.tiles.len();
            let scored = Array2::from_shape_vec((n, dim), b.embeddings)
                .map_err(|e| Error::Internal(format!("a store batch as a matrix: {e}")))
                .and_then(|x| {
                    let (probs, loss) = head.predict_mc_with_loss(x.view(), passes)?;
                    if keep_embeddings {
                        s.embeddings.extend(x.iter().map(|v| f16::from_f32(*v)));
                    }
                    scores::score_tiles(&probs, multi_label, loss)
                });
            match scored {
                Ok((u, predicted)) => {
                    s.uncertainty.extend(u.get(sel.metric).iter().copied());
                    s.predicted.extend(predicted);
                }
                Err(e) => {
                    failed = Some(e);
                    return;
                }
            }
            if let Some(shapes) = &shapes {
                s.labelled
                    .extend(b.footprints.iter().map(|f| shapes.touches(f)));
            }
            let first = (s.tiles.len() - before) as u32;
            s.row_in_file.extend((0..n as u32).map(|r| first + r));
            s.file_of.extend(std::iter::repeat_n(k as u32, n));
            s.tiles.extend(b.tiles);
            s.centres.extend(b.centres);
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if s.tiles.len() - before != meta.tiles || s.tiles.len() > total {
            return Err(rows_differ(f, &meta));
        }
        s.metas.push(meta);
    }
    Ok(s)
}

/// One selection over every scene of the store folder `store` (see the module doc), in
/// one streaming pass: each record batch goes through the head (T MC passes) and the
/// metric, and only per-tile scalars (uncertainty, predicted class, labelled flag, centre,
/// file, tile) and the f16 embedding are kept; then
/// [`select_needed_rows`](crate::sampling::select_needed_rows) widens to f32 just the rows
/// the strategy reads and runs the same selection as [`select_store_in_memory`] (the same
/// picks); the picks' footprints are read back from their files.
///
/// Memory: tiles × D × 2 bytes of f16 embeddings (none for top-k and random, and none
/// with [`StoreSelect::two_pass`], which reads the needed rows from the files again
/// instead), about 45 bytes of scalars a tile, one batch's head probabilities, and the
/// widened rows (TypiClust: the labelled tiles + 10,000; clustering: `m·b`; coreset,
/// MCFPS, ProbCover and any spaced strategy but top-k/random: every row, tiles × D × 4
/// bytes more).
///
/// # Errors
///
/// [`Error::Invalid`] for an empty store, a store of several encoders, a head trained on
/// another encoder or a metric the head cannot give; those of reading the store, of the
/// head and of the selection.
pub fn select_store(store: &Path, sel: &StoreSelect) -> Result<StoreSelection> {
    let (files, metas) = store_files(store)?;
    let encoder_sha256 = metas[0].encoder_sha256.clone();
    let mut head = store_head(sel, &encoder_sha256)?;
    if sel.metric == Metric::PredictedLoss && head.spec.loss_output.is_none() {
        return Err(Error::Invalid(
            "--metric predicted_loss needs a head with a loss output".into(),
        ));
    }
    let keep = !sel.two_pass && !matches!(sel.strategy, Strategy::TopK | Strategy::Random);
    let s = scan_store(&files, &metas, &mut head, sel, keep)?;
    let labelled_tiles = s.labelled.iter().filter(|b| **b).count();
    let strategy = sel.strategy.with_run_facts(
        head.spec.class_names.len(),
        labelled_tiles,
        head.spec.auto_switch_per_class,
    );
    let none = Array2::<f32>::zeros((s.tiles.len(), 0));
    let input = SelectionInput {
        embeddings: none.view(),
        uncertainty: ArrayView1::from(&s.uncertainty),
        excluded: None,
        labelled: sel.labelled.as_ref().map(|_| s.labelled.as_slice()),
        classes: Some(&s.predicted),
    };
    let centres = if sel.min_spacing_m > 0.0 {
        centres_in_metres(&s.centres)?
    } else {
        Vec::new()
    };
    let spacing = (sel.min_spacing_m > 0.0).then_some((centres.as_slice(), sel.min_spacing_m));
    let mut widened_rows = 0;
    let mut read_error = None;
    let picks = select_needed_rows(&strategy, &input, sel.budget, sel.seed, spacing, |rows| {
        let x = if sel.two_pass {
            second_pass(&files, &s, rows).unwrap_or_else(|e| {
                read_error = Some(e);
                Array2::zeros((0, s.dim))
            })
        } else {
            s.widen(rows)
        };
        widened_rows = x.nrows();
        x
    });
    if let Some(e) = read_error {
        return Err(e);
    }
    let picks = picks?;
    let footprints = pick_footprints(&files, &s, &picks)?;
    let facts = PickFacts {
        metas: &s.metas,
        file_of: &|i| s.file_of[i] as usize,
        tiles: &s.tiles,
        uncertainty: ArrayView1::from(&s.uncertainty),
        predicted: &s.predicted,
        class_names: &head.spec.class_names,
    };
    Ok(StoreSelection {
        picks: facts.picks(&picks, footprints),
        strategy,
        metric: sel.metric,
        files: s.metas.len(),
        tiles: s.tiles.len(),
        dim: s.dim,
        labelled_tiles,
        encoder_sha256,
        widened_rows,
    })
}

/// The second pass of a two-pass [`select_store`]: the embeddings of `rows` (every row
/// for `None`), in that order, read from their files (only the `embedding` column of
/// the row groups that hold them).
fn second_pass(files: &[PathBuf], s: &Scanned, rows: Option<&[usize]>) -> Result<Array2<f32>> {
    let all: Vec<usize>;
    let rows = match rows {
        Some(r) => r,
        None => {
            all = (0..s.tiles.len()).collect();
            &all
        }
    };
    let mut by_file: std::collections::BTreeMap<usize, (Vec<usize>, Vec<usize>)> =
        Default::default();
    for (out, &r) in rows.iter().enumerate() {
        let (in_file, at) = by_file.entry(s.file_of[r] as usize).or_default();
        in_file.push(s.row_in_file[r] as usize);
        at.push(out);
    }
    let mut x = Array2::<f32>::zeros((rows.len(), s.dim));
    for (file, (in_file, at)) in by_file {
        let read = read_embeddings(&files[file], &in_file, s.dim)?;
        for (src, &out) in read.outer_iter().zip(&at) {
            x.row_mut(out).assign(&src);
        }
    }
    Ok(x)
}

/// The footprints of `picks`, read back from their files (only the `geometry` column of
/// the row groups that hold them).
fn pick_footprints(files: &[PathBuf], s: &Scanned, picks: &[Pick]) -> Result<Vec<Polygon<f64>>> {
    let mut by_file: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for p in picks {
        by_file
            .entry(s.file_of[p.index] as usize)
            .or_default()
            .push(s.row_in_file[p.index] as usize);
    }
    let mut read: std::collections::HashMap<(usize, usize), Polygon<f64>> = Default::default();
    for (file, rows) in by_file {
        let polys = read_footprints(&files[file], &rows)?;
        read.extend(rows.into_iter().map(|r| (file, r)).zip(polys));
    }
    picks
        .iter()
        .map(|p| {
            let key = (s.file_of[p.index] as usize, s.row_in_file[p.index] as usize);
            read.get(&key)
                .cloned()
                .ok_or_else(|| Error::Internal(format!("no footprint read for pick {}", p.index)))
        })
        .collect()
}

/// Tile centres (lon/lat) as metres east and north of their mean.
pub(super) fn centres_in_metres(centres: &[(f64, f64)]) -> Result<Vec<[f64; 2]>> {
    let n = centres.len().max(1) as f64;
    let origin = (
        centres.iter().map(|c| c.0).sum::<f64>() / n,
        centres.iter().map(|c| c.1).sum::<f64>() / n,
    );
    let metric = LocalMetric::new(&wgs84_wkt()?, origin)?;
    Ok(centres.iter().map(|c| metric.to_metres(c.0, c.1)).collect())
}

/// WGS 84 as WKT.
fn wgs84_wkt() -> Result<String> {
    wgs84()?
        .to_wkt()
        .map_err(|e| Error::Internal(format!("WGS 84 as WKT: {e}")))
}

/// Labelled polygons and points in lon/lat, ready to test footprints against.
struct LabelledShapes {
    polygons: MultiPolygon<f64>,
    boxes: Vec<Option<Rect<f64>>>,
    points: Vec<Point<f64>>,
}

impl LabelledShapes {
    fn new(labelled: &Labelled) -> Result<Self> {
        let (polygons, points) = labelled.to_scene_crs(&wgs84_wkt()?)?;
        let points = points.into_iter().map(Point::from).collect();
        let boxes = polygons.0.iter().map(|p| p.bounding_rect()).collect();
        Ok(Self {
            polygons,
            boxes,
            points,
        })
    }

    /// Whether a labelled polygon or point touches the footprint `f` (lon/lat).
    fn touches(&self, f: &Polygon<f64>) -> bool {
        let Some(fb) = f.bounding_rect() else {
            return false;
        };
        self.points
            .iter()
            .any(|p| fb.intersects(p) && f.intersects(p))
            || self
                .polygons
                .0
                .iter()
                .zip(&self.boxes)
                .any(|(p, b)| b.is_some_and(|b| b.intersects(&fb)) && f.intersects(p))
    }
}

/// The picks as an RFC 7946 FeatureCollection (lon/lat): a polygon per pick with
/// `rank`, `scene_id`, `scene_path`, `tile_id`, `row`, `col`, `score`, the metric's
/// value, `predicted_class`, `strategy` and `encoder_sha256`.
fn store_collection(sel: &StoreSelection) -> FeatureCollection {
    let features = sel
        .picks
        .iter()
        .map(|p| {
            let ring = p
                .footprint
                .exterior()
                .coords()
                .map(|c| geojson::Position::from([c.x, c.y]))
                .collect();
            let mut props = JsonObject::new();
            props.insert("rank".into(), json!(p.rank));
            props.insert("scene_id".into(), json!(p.scene_id));
            props.insert("scene_path".into(), json!(p.scene_path));
            props.insert("tile_id".into(), json!(p.tile.to_string()));
            props.insert("row".into(), json!(p.tile.row));
            props.insert("col".into(), json!(p.tile.col));
            props.insert("score".into(), json!(finite(p.score)));
            props.insert(sel.metric.name().into(), json!(finite(p.uncertainty)));
            props.insert("predicted_class".into(), json!(p.predicted_class));
            props.insert("strategy".into(), json!(sel.strategy.name()));
            props.insert("encoder_sha256".into(), json!(sel.encoder_sha256));
            Feature {
                geometry: Some(Geometry::new(GeometryValue::Polygon {
                    coordinates: vec![ring],
                })),
                properties: Some(props),
                ..Feature::default()
            }
        })
        .collect();
    FeatureCollection {
        features,
        bbox: None,
        foreign_members: None,
    }
}

/// Writes the picks as `out/suggestions.geojson` (RFC 7946, lon/lat; a feature per
/// pick with `rank`, `scene_id`, `scene_path`, `tile_id`, `row`, `col`, `score`, the
/// metric's value, `predicted_class`, `strategy` and `encoder_sha256`) and as
/// `out/suggestions.gpkg` (GeoPackage, EPSG:4326, layer `suggestions`, the same fields
/// and polygons), each through a temporary file; returns their paths.
///
/// # Errors
///
/// [`Error::Io`] when the folder or a file cannot be written, [`Error::Output`] when
/// GDAL cannot write the GeoPackage.
pub fn write_store_suggestions(sel: &StoreSelection, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let fc = store_collection(sel);
    let path = out.join("suggestions.geojson");
    let tmp = out.join("suggestions.geojson.tmp");
    let text = fc.to_string();
    std::fs::write(&tmp, &text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    let gpkg = out.join("suggestions.gpkg");
    let tmp = out.join("suggestions.tmp.gpkg");
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(io(&tmp))?;
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("suggestions as JSON: {e}")))?;
    crate::output::write_features_geopackage(&value, "suggestions", &tmp)?;
    std::fs::rename(&tmp, &gpkg).map_err(io(&gpkg))?;
    Ok((path, gpkg))
}

/// `v` rounded to 6 decimals, `None` (JSON null) when not finite (coreset's first pick).
fn finite(v: f32) -> Option<f64> {
    v.is_finite().then(|| (f64::from(v) * 1e6).round() / 1e6)
}
