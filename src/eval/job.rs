//! One whole evaluation, as the CLI (and later the daemon) runs it: open the dataset,
//! embed it (cached), run every trial, write the report.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::EvalError;
use super::dataset::{ImageFolder, Split, read_image};
use super::embed::{PixelScaling, embed_set};
use super::mosaic::{assemble, make_mosaics, mosaic_targets};
use super::report::{ReportPaths, SummaryRow, TargetReached, write_report};
use super::run::{EvalData, EvalProtocol, Labels, run_eval};
use crate::model::{Encoder, SessionConfig};
use crate::store::EmbeddingCache;

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
    let scaling = PixelScaling { scale };
    let root = folder
        .root
        .canonicalize()
        .unwrap_or_else(|_| folder.root.clone());
    let load = |i: usize| -> Result<ndarray::Array3<f32>, EvalError> {
        Ok(read_image(&folder.root.join(&folder.items[i].path), bands)?.0)
    };
    let started = Instant::now();
    let mut cache_hit = true;
    let mut embed_list = |name: &str, idx: &[usize], enc: &mut Encoder| {
        let source = format!(
            "{}|{}|{}|{}",
            root.display(),
            folder.split_source,
            name,
            idx.len()
        );
        let set = embed_set(
            enc,
            idx.len(),
            &source,
            scaling,
            req.cache.as_ref(),
            |k| load(idx[k]),
            |d, t| progress(&format!("embedding {name}"), d, t),
        )?;
        cache_hit &= set.cache_hit;
        Ok::<_, EvalError>(set.embeddings)
    };
    let classes = folder.classes.clone();
    let outcome_records;
    let score_name;
    let trial_started;
    if let Some(m) = req.mosaics {
        let pool = make_mosaics(&folder, Split::Train, m.pool, m.max_classes, req.data_seed)?;
        let test = make_mosaics(
            &folder,
            Split::Test,
            m.test,
            m.max_classes,
            req.data_seed ^ 1,
        )?;
        let mut embed_mosaics = |name: &str, ms: &[super::mosaic::Mosaic], enc: &mut Encoder| {
            let recipe: String = ms
                .iter()
                .map(|m| format!("{:?}", m.cells))
                .collect::<Vec<_>>()
                .join(";");
            let source = format!(
                "{}|{}|mosaic-{name}|{:x}",
                root.display(),
                folder.split_source,
                <sha2::Sha256 as sha2::Digest>::digest(recipe.as_bytes())
            );
            let set = embed_set(
                enc,
                ms.len(),
                &source,
                scaling,
                req.cache.as_ref(),
                |k| {
                    let cells = ms[k]
                        .cells
                        .iter()
                        .map(|&i| load(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    assemble(&cells)
                },
                |d, t| progress(&format!("embedding {name} mosaics"), d, t),
            )?;
            cache_hit &= set.cache_hit;
            Ok::<_, EvalError>(set.embeddings)
        };
        let train_x = embed_mosaics("train", &pool, &mut encoder)?;
        let test_x = embed_mosaics("test", &test, &mut encoder)?;
        let train_y = mosaic_targets(&pool, classes.len());
        let test_y = mosaic_targets(&test, classes.len());
        trial_started = Instant::now();
        let data = EvalData {
            classes: &classes,
            train_x: train_x.view(),
            train_y: Labels::Multi(train_y.view()),
            test_x: test_x.view(),
            test_y: Labels::Multi(test_y.view()),
        };
        outcome_records = run_eval(&data, &req.protocol, &|d, t| progress("trials", d, t))?;
        score_name = "micro F1";
    } else {
        let train_x = embed_list("train", &train_idx, &mut encoder)?;
        let test_x = embed_list("test", &test_idx, &mut encoder)?;
        let train_y: Vec<usize> = train_idx.iter().map(|&i| folder.items[i].class).collect();
        let test_y: Vec<usize> = test_idx.iter().map(|&i| folder.items[i].class).collect();
        trial_started = Instant::now();
        let data = EvalData {
            classes: &classes,
            train_x: train_x.view(),
            train_y: Labels::Single(&train_y),
            test_x: test_x.view(),
            test_y: Labels::Single(&test_y),
        };
        outcome_records = run_eval(&data, &req.protocol, &|d, t| progress("trials", d, t))?;
        score_name = "test accuracy";
    }
    let embed_seconds = (trial_started - started).as_secs_f64();
    let trial_seconds = trial_started.elapsed().as_secs_f64();
    let extra = serde_json::json!({
        "dataset": req.dataset.display().to_string(),
        "split": folder.split_source,
        "classes": classes,
        "encoder": req.encoder.display().to_string(),
        "encoder_sha256": encoder.spec.sha256,
        "pixel_scale": scale,
        "mosaics": req.mosaics,
        "protocol": req.protocol,
        "embed_seconds": embed_seconds,
        "embeddings_cached": cache_hit,
        "trial_seconds": trial_seconds,
    });
    let (paths, summary, reached) =
        write_report(&req.out, &outcome_records, score_name, req.target, extra)?;
    Ok(EvalOutcome {
        paths,
        summary,
        reached,
        embed_seconds,
        trial_seconds,
        cache_hit,
    })
}
