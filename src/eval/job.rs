//! One whole evaluation, as the CLI (and later the daemon) runs it: open the dataset,
//! embed it (cached), run every trial, write the report.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::EvalError;
use super::dataset::{ImageFolder, Split, read_image};
use super::embed::{PixelScaling, embed_set};
use super::merge::{check_compatible, read_earlier};
use super::mosaic::{Mosaic, assemble, make_mosaics_from, mosaic_targets};
use super::query::Query;
use super::report::{ReportPaths, SummaryRow, TargetReached, write_report};
use super::run::{EvalData, EvalProtocol, Labels, RoundRecord, run_eval};
use crate::model::{Encoder, SessionConfig};
use crate::store::EmbeddingCache;
use ndarray::{Array2, Axis};

/// The derived multi-label benchmark's sizes (see [`super::mosaic`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MosaicOptions {
    /// Mosaics drawn from train images (the pool).
    pub pool: usize,
    /// Mosaics drawn from test images (the test set).
    pub test: usize,
    /// At most this many distinct classes per mosaic.
    pub max_classes: usize,
}

/// Everything an evaluation needs.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// Image folder (class sub-folders, optional `splits.csv`).
    pub dataset: PathBuf,
    /// Encoder ONNX.
    pub encoder: PathBuf,
    /// onnxruntime settings.
    pub session: SessionConfig,
    /// Output folder.
    pub out: PathBuf,
    /// The protocol.
    pub protocol: EvalProtocol,
    /// Derive the multi-label mosaic benchmark instead of using single labels.
    pub mosaics: Option<MosaicOptions>,
    /// Raw-value multiplier; `None` = 1/255 for 8-bit images, else the encoder's scale.
    pub pixel_scale: Option<f32>,
    /// Embedding cache, if any.
    pub cache: Option<EmbeddingCache>,
    /// Score whose first crossing is reported (e.g. 0.9).
    pub target: f64,
    /// Seed of the dataset split (without `splits.csv`) and of the mosaics.
    pub data_seed: u64,
    /// Carve this share of each class of `train` out as a validation fold (see
    /// [`ImageFolder::validation_fold`]): the pool is the rest of `train`, and every round
    /// is scored on the fold as well as on `test`. The `val` split is never read.
    pub validation_fold: Option<f64>,
    /// Keep the rows of every query this run does not compute from this earlier output
    /// folder (same protocol, data and encoder; see [`super::merge`]).
    pub merge_from: Option<PathBuf>,
}

/// What an evaluation produced.
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutcome {
    /// Files written.
    pub paths: ReportPaths,
    /// Mean ± std per pool, query and round.
    pub summary: Vec<SummaryRow>,
    /// Labels to reach the target.
    pub reached: Vec<TargetReached>,
    /// Seconds embedding (0 when cached), and running the trials.
    pub embed_seconds: f64,
    /// Seconds running the trials.
    pub trial_seconds: f64,
    /// Whether the embeddings came from the cache.
    pub cache_hit: bool,
}

/// Which images an evaluation embeds: indices into [`ImageFolder::items`].
struct SetIndices {
    /// The pool (`train`, without the validation fold when there is one).
    pool: Vec<usize>,
    /// The validation fold (empty without one).
    fold: Vec<usize>,
    /// The `test` split.
    test: Vec<usize>,
}

/// What embedding needs besides the encoder: the folder, pixel scaling, cache, progress.
struct Embedder<'a> {
    folder: &'a ImageFolder,
    /// The canonical root (part of the cache key).
    root: String,
    bands: usize,
    scaling: PixelScaling,
    cache: Option<&'a EmbeddingCache>,
    progress: &'a (dyn Fn(&str, usize, usize) + Sync),
    /// Whether every set came from the cache so far.
    cache_hit: bool,
}

impl Embedder<'_> {
    fn load(&self, i: usize) -> Result<ndarray::Array3<f32>, EvalError> {
        Ok(read_image(
            &self.folder.root.join(&self.folder.items[i].path),
            self.bands,
        )?
        .0)
    }

    /// Embeds the images `idx` (one list, cached under `name` and its length).
    fn images(
        &mut self,
        name: &str,
        idx: &[usize],
        enc: &mut Encoder,
    ) -> Result<Array2<f32>, EvalError> {
        let source = format!(
            "{}|{}|{}|{}",
            self.root,
            self.folder.split_source,
            name,
            idx.len()
        );
        let set = embed_set(
            enc,
            idx.len(),
            &source,
            self.scaling,
            self.cache,
            |k| self.load(idx[k]),
            |d, t| (self.progress)(&format!("embedding {name}"), d, t),
        )?;
        self.cache_hit &= set.cache_hit;
        Ok(set.embeddings)
    }

    /// Embeds mosaics (cached under `name` and a hash of their recipe).
    fn mosaics(
        &mut self,
        name: &str,
        ms: &[Mosaic],
        enc: &mut Encoder,
    ) -> Result<Array2<f32>, EvalError> {
        let recipe: String = ms
            .iter()
            .map(|m| format!("{:?}", m.cells))
            .collect::<Vec<_>>()
            .join(";");
        let source = format!(
            "{}|{}|mosaic-{name}|{:x}",
            self.root,
            self.folder.split_source,
            <sha2::Sha256 as sha2::Digest>::digest(recipe.as_bytes())
        );
        let set = embed_set(
            enc,
            ms.len(),
            &source,
            self.scaling,
            self.cache,
            |k| {
                let cells = ms[k]
                    .cells
                    .iter()
                    .map(|&i| self.load(i))
                    .collect::<Result<Vec<_>, _>>()?;
                assemble(&cells)
            },
            |d, t| (self.progress)(&format!("embedding {name} mosaics"), d, t),
        )?;
        self.cache_hit &= set.cache_hit;
        Ok(set.embeddings)
    }
}

/// Rows of `x` (embedded in the order of `all`) for the items `subset` (a subset of `all`).
fn rows_of(x: &Array2<f32>, all: &[usize], subset: &[usize]) -> Array2<f32> {
    let pos: std::collections::HashMap<usize, usize> =
        all.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let rows: Vec<usize> = subset.iter().filter_map(|i| pos.get(i).copied()).collect();
    x.select(Axis(0), &rows)
}

/// The single-label benchmark: embeds `train` (once, whole, so the cache entry does not
/// depend on the fold) and `test`, and runs the trials.
fn run_single(
    req: &EvalRequest,
    emb: &mut Embedder<'_>,
    enc: &mut Encoder,
    sets: &SetIndices,
) -> Result<(Vec<RoundRecord>, f64), EvalError> {
    let folder = emb.folder;
    let mut train_all: Vec<usize> = sets.pool.iter().chain(&sets.fold).copied().collect();
    train_all.sort_unstable();
    let train_x_all = emb.images("train", &train_all, enc)?;
    let test_x = emb.images("test", &sets.test, enc)?;
    let train_started = Instant::now();
    let train_x = rows_of(&train_x_all, &train_all, &sets.pool);
    let fold_x = rows_of(&train_x_all, &train_all, &sets.fold);
    let class_of =
        |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| folder.items[i].class).collect() };
    let (train_y, fold_y, test_y) = (
        class_of(&sets.pool),
        class_of(&sets.fold),
        class_of(&sets.test),
    );
    let data = EvalData {
        classes: &folder.classes,
        train_x: train_x.view(),
        train_y: Labels::Single(&train_y),
        test_x: test_x.view(),
        test_y: Labels::Single(&test_y),
        validation: (!sets.fold.is_empty()).then(|| (fold_x.view(), Labels::Single(&fold_y))),
    };
    let progress = emb.progress;
    let records = run_eval(&data, &req.protocol, &|d, t| progress("trials", d, t))?;
    Ok((records, train_started.elapsed().as_secs_f64()))
}

/// The derived multi-label benchmark: mosaics of pool, fold and test images.
fn run_mosaics(
    req: &EvalRequest,
    m: MosaicOptions,
    emb: &mut Embedder<'_>,
    enc: &mut Encoder,
    sets: &SetIndices,
) -> Result<(Vec<RoundRecord>, f64), EvalError> {
    let folder = emb.folder;
    let seed = req.data_seed;
    let pool = make_mosaics_from(folder, &sets.pool, "train", m.pool, m.max_classes, seed)?;
    let test = make_mosaics_from(folder, &sets.test, "test", m.test, m.max_classes, seed ^ 1)?;
    let fold = if sets.fold.is_empty() {
        Vec::new()
    } else {
        let name = "validation fold";
        make_mosaics_from(folder, &sets.fold, name, m.test, m.max_classes, seed ^ 2)?
    };
    let train_x = emb.mosaics("train", &pool, enc)?;
    let test_x = emb.mosaics("test", &test, enc)?;
    let fold_x = if fold.is_empty() {
        Array2::zeros((0, train_x.ncols()))
    } else {
        emb.mosaics("validation-fold", &fold, enc)?
    };
    let started = Instant::now();
    let n = folder.classes.len();
    let (train_y, test_y, fold_y) = (
        mosaic_targets(&pool, n),
        mosaic_targets(&test, n),
        mosaic_targets(&fold, n),
    );
    let data = EvalData {
        classes: &folder.classes,
        train_x: train_x.view(),
        train_y: Labels::Multi(train_y.view()),
        test_x: test_x.view(),
        test_y: Labels::Multi(test_y.view()),
        validation: (!fold.is_empty()).then(|| (fold_x.view(), Labels::Multi(fold_y.view()))),
    };
    let progress = emb.progress;
    let records = run_eval(&data, &req.protocol, &|d, t| progress("trials", d, t))?;
    Ok((records, started.elapsed().as_secs_f64()))
}

/// Runs `req`; `progress(stage, done, total)` reports embedding and trial progress.
///
/// # Errors
///
/// Any [`EvalError`].
pub fn evaluate(
    req: &EvalRequest,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<EvalOutcome, EvalError> {
    let folder = ImageFolder::open(&req.dataset, req.data_seed)?;
    let mut encoder = Encoder::load(&req.encoder, req.session)?;
    let bands = encoder
        .spec
        .preprocess
        .as_ref()
        .map(|p| p.bands.len())
        .unwrap_or(3)
        .max(1);
    let train_idx = folder.indices(Split::Train);
    let test_idx = folder.indices(Split::Test);
    if train_idx.is_empty() || test_idx.is_empty() {
        return Err(EvalError::Dataset {
            path: req.dataset.clone(),
            message: format!(
                "{} train and {} test images; both splits must be non-empty",
                train_idx.len(),
                test_idx.len()
            ),
        });
    }
    let (pool, fold) = match req.validation_fold {
        Some(f) => folder.validation_fold(f)?,
        None => (train_idx.clone(), Vec::new()),
    };
    let sets = SetIndices {
        pool,
        fold,
        test: test_idx,
    };
    // Scaling from the first image's data type.
    let (_, byte) = read_image(&folder.root.join(&folder.items[train_idx[0]].path), bands)?;
    let scale = req.pixel_scale.unwrap_or(if byte {
        1.0 / 255.0
    } else {
        encoder
            .spec
            .preprocess
            .as_ref()
            .map(|p| p.scale)
            .unwrap_or(1.0)
    });
    let root = folder
        .root
        .canonicalize()
        .unwrap_or_else(|_| folder.root.clone());
    let mut emb = Embedder {
        folder: &folder,
        root: root.display().to_string(),
        bands,
        scaling: PixelScaling { scale },
        cache: req.cache.as_ref(),
        progress,
        cache_hit: true,
    };
    let mut extra = serde_json::json!({
        "dataset": req.dataset.display().to_string(),
        "split": folder.split_source,
        "validation_fold": req.validation_fold.map(|f| serde_json::json!({
            "fraction": f,
            "rule": "per class, train images ordered by sha256(\"nexttile-validation-fold:\" + path); the first round(n × fraction) form the fold; the val split is never read",
            "pool_images": sets.pool.len(),
            "fold_images": sets.fold.len(),
        })),
        "embedded_images": {"train": sets.pool.len() + sets.fold.len(), "test": sets.test.len()},
        "classes": folder.classes,
        "encoder": req.encoder.display().to_string(),
        "encoder_sha256": encoder.spec.sha256,
        "pixel_scale": scale,
        "mosaics": req.mosaics,
        "protocol": req.protocol,
    });
    let names: Vec<String> = req.protocol.queries.iter().map(|q| q.to_string()).collect();
    let earlier = match &req.merge_from {
        Some(dir) => {
            let e = read_earlier(dir, &names)?;
            let rerun_auto = req
                .protocol
                .queries
                .iter()
                .any(|q| matches!(q, Query::Auto(_) | Query::AutoMulti(_)));
            check_compatible(&e, &extra, rerun_auto)?;
            Some(e)
        }
        None => None,
    };
    let started = Instant::now();
    let (mut records, trial_seconds) = match req.mosaics {
        Some(m) => run_mosaics(req, m, &mut emb, &mut encoder, &sets)?,
        None => run_single(req, &mut emb, &mut encoder, &sets)?,
    };
    let cache_hit = emb.cache_hit;
    let embed_seconds = (started.elapsed().as_secs_f64() - trial_seconds).max(0.0);
    let score_name = if req.mosaics.is_some() {
        "micro F1"
    } else {
        "accuracy"
    };
    if let Some(obj) = extra.as_object_mut() {
        obj.insert("embed_seconds".into(), embed_seconds.into());
        obj.insert("embeddings_cached".into(), cache_hit.into());
        obj.insert("trial_seconds".into(), trial_seconds.into());
        if let Some(e) = earlier {
            obj.insert(
                "merged_from".into(),
                serde_json::json!({
                    "dir": e.dir.display().to_string(),
                    "kept_queries": e.queries,
                    "rerun_queries": names,
                    "trial_seconds": e.run.get("trial_seconds"),
                }),
            );
            records.extend(e.records);
            records.sort_by(|a, b| {
                (&a.pool, &a.query, a.seed, a.round).cmp(&(&b.pool, &b.query, b.seed, b.round))
            });
        }
    }
    let (paths, summary, reached) =
        write_report(&req.out, &records, score_name, req.target, extra)?;
    Ok(EvalOutcome {
        paths,
        summary,
        reached,
        embed_seconds,
        trial_seconds,
        cache_hit,
    })
}
