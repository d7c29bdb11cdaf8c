//! Regions: many scenes' embeddings in one GeoParquet store
//! ([`crate::store`]'s format, GeoParquet 1.1: <https://geoparquet.org/releases/v1.1.0/>),
//! and one selection over all of them.
//!
//! - [`embed_to_store`]: the prepare and embed stages of [`score`](super::score) (the
//!   same reading, preprocessing, cache and workers), then each tile's lon/lat footprint
//!   and centre, written as one file per scene ([`store_file`]). A complete file of the
//!   same scene (path, size, modification time) and encoder is kept and reported.
//! - [`select_store`]: every file of a store streamed into one embeddings matrix, the
//!   ONNX head run over it (T MC passes, as the predict stage does), every metric scored
//!   as the score stage does, labelled tiles masked, and [`crate::sampling::select`] (or
//!   [`crate::sampling::select_with_spacing`]) run once over all scenes.
//! - [`write_store_suggestions`]: the ranked picks as RFC 7946 GeoJSON.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use geo::{BoundingRect, Intersects, Point, Polygon};
use geojson::{Feature, FeatureCollection, Geometry, GeometryValue, JsonObject};
use ndarray::Array2;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::request::ScoreRequest;
use super::{Progress, embed, prepare, scores};
use crate::aoi::Labelled;
use crate::crs::{LocalMetric, Reprojector, wgs84};
use crate::error::{Error, Result};
use crate::model::{Head, SessionConfig};
use crate::output::FOOTPRINT_POINTS_PER_EDGE;
use crate::sampling::{Pick, SelectionInput, Strategy, select, select_with_spacing};
use crate::store::{StoreMeta, StoreRows, list_store, read_meta, read_rows, write_scene_file};
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

/// Reads every complete file of `store`: their metadata first (refusing files of
/// different encoders or widths), then their rows into one `[tiles, D]` matrix.
fn read_store(store: &Path) -> Result<Rows> {
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
    let (dim, total) = (first.dim, metas.iter().map(|m| m.tiles).sum::<usize>());
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
            return Err(crate::store::StoreError::Damaged {
                path: f.display().to_string(),
                message: format!("its metadata says {} tiles, its rows differ", meta.tiles),
            }
            .into());
        }
        rows.metas.push(meta);
    }
    Ok(rows)
}

/// One selection over every scene of the store folder `store` (see the module doc).
/// Memory: the `[tiles, D]` f32 matrix of all the store's rows, the head's
/// `T × tiles × classes` probabilities, and each tile's footprint; one record batch of
/// a file is decoded at a time.
///
/// # Errors
///
/// [`Error::Invalid`] for an empty store, a store of several encoders, a head trained on
/// another encoder or a metric the head cannot give; those of reading the store, of the
/// head and of the selection.
pub fn select_store(store: &Path, sel: &StoreSelect) -> Result<StoreSelection> {
    let rows = read_store(store)?;
    let encoder_sha256 = rows.metas[0].encoder_sha256.clone();
    let mut head = Head::load(&sel.head, sel.session)?;
    if let Some(trained_on) = &head.spec.encoder_sha256
        && *trained_on != encoder_sha256
    {
        return Err(Error::Invalid(format!(
            "head {} was trained on encoder sha256 {trained_on}, but the store's embeddings come from encoder sha256 {encoder_sha256}; give --head a head of that encoder",
            sel.head.display()
        )));
    }
    let (probs, loss) = head.predict_mc_with_loss(rows.embeddings.view(), sel.mc_passes.max(1))?;
    if sel.metric == Metric::PredictedLoss && loss.is_none() {
        return Err(Error::Invalid(
            "--metric predicted_loss needs a head with a loss output".into(),
        ));
    }
    let (uncertainties, predicted) = scores::score_tiles(&probs, head.spec.multi_label, loss)?;
    let labelled = match &sel.labelled {
        Some(l) => Some(labelled_mask(l, &rows.footprints)?),
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
    let picks = picks
        .iter()
        .enumerate()
        .map(|(r, p)| {
            let meta = &rows.metas[rows.file_of[p.index]];
            StorePick {
                rank: r + 1,
                scene_id: meta.scene_id.clone(),
                scene_path: meta.scene_path.clone(),
                tile: rows.tiles[p.index],
                footprint: rows.footprints[p.index].clone(),
                score: p.score,
                uncertainty: score_vec[p.index],
                predicted_class: head
                    .spec
                    .class_names
                    .get(predicted[p.index])
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(StoreSelection {
        picks,
        strategy,
        metric: sel.metric,
        files: rows.metas.len(),
        tiles: rows.tiles.len(),
        dim: rows.embeddings.ncols(),
        labelled_tiles,
        encoder_sha256,
    })
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

/// Which footprints (lon/lat) a labelled polygon or point touches.
fn labelled_mask(labelled: &Labelled, footprints: &[Polygon<f64>]) -> Result<Vec<bool>> {
    let (polygons, points) = labelled.to_scene_crs(&wgs84_wkt()?)?;
    let points: Vec<Point<f64>> = points.into_iter().map(Point::from).collect();
    let boxes: Vec<_> = polygons.0.iter().map(|p| p.bounding_rect()).collect();
    Ok(footprints
        .iter()
        .map(|f| {
            let Some(fb) = f.bounding_rect() else {
                return false;
            };
            points.iter().any(|p| fb.intersects(p) && f.intersects(p))
                || polygons
                    .0
                    .iter()
                    .zip(&boxes)
                    .any(|(p, b)| b.is_some_and(|b| b.intersects(&fb)) && f.intersects(p))
        })
        .collect())
}

/// Writes the picks as `out/suggestions.geojson` (RFC 7946, lon/lat; a feature per
/// pick with `rank`, `scene_id`, `scene_path`, `tile_id`, `row`, `col`, `score`, the
/// metric's value, `predicted_class`, `strategy` and `encoder_sha256`), through a
/// temporary file; returns its path.
///
/// # Errors
///
/// [`Error::Io`] when the folder or file cannot be written.
pub fn write_store_suggestions(sel: &StoreSelection, out: &Path) -> Result<PathBuf> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
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
    let fc = FeatureCollection {
        features,
        bbox: None,
        foreign_members: None,
    };
    let path = out.join("suggestions.geojson");
    let tmp = out.join("suggestions.geojson.tmp");
    std::fs::write(&tmp, fc.to_string()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// `v` rounded to 6 decimals, `None` (JSON null) when not finite (coreset's first pick).
fn finite(v: f32) -> Option<f64> {
    v.is_finite().then(|| (f64::from(v) * 1e6).round() / 1e6)
}
