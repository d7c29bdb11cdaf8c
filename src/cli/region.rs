//! `nexttile embed` (scenes into a GeoParquet embedding store, one file per scene, a
//! shard of the list at a time) and `nexttile select` (one selection over every scene of
//! a store). The work is the engine's ([`engine::embed_to_store`],
//! [`engine::select_store`]); this is arguments, the shard and printing.
//!
//! Shards: the scene list (positional scenes, then `--scenes` files, duplicates dropped,
//! in that order) is split by position: scene `k` (0-based) belongs to shard `k mod N`,
//! so every scene is in exactly one shard and shard sizes differ by at most one.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use clap::Args;
use serde_json::json;

use crate::aoi::Aoi;
use crate::engine::{self, ScoreRequest, StoreSelect};
use crate::model::{self, SessionConfig};
use crate::sampling::Strategy;
use crate::uncertainty::Metric;
use crate::{Error, Result};

use super::{check_mc_passes, check_parallelism, default_model, parse_geojson_arg};

/// `nexttile embed`.
#[derive(Args, Debug)]
pub(super) struct EmbedArgs {
    /// Scenes (GeoTIFF or any GDAL raster with a CRS).
    scenes: Vec<PathBuf>,
    /// A file listing scenes, one path a line (`#` starts a comment; relative paths are
    /// relative to the list's folder).
    #[arg(long = "scenes", value_name = "LIST")]
    scene_list: Option<PathBuf>,
    /// The store folder: one `<scene id>.parquet` per scene.
    #[arg(long, short)]
    out: PathBuf,
    /// This job's part of the scene list, I/N (0 <= I < N); default from
    /// SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) with SLURM_ARRAY_TASK_COUNT or
    /// --shards, or JOB_COMPLETION_INDEX with --shards; else the whole list.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Number of shards, with SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Encoder ONNX (default: the default pair's).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Classifier head ONNX checked against the encoder (default: the default pair's).
    #[arg(long)]
    head: Option<PathBuf>,
    /// Area of interest: GeoJSON file with Polygon/MultiPolygon features.
    #[arg(long)]
    aoi: Option<PathBuf>,
    /// CRS of the AOI when it is not WGS 84 and does not say.
    #[arg(long)]
    aoi_crs: Option<String>,
    /// Tile edge in pixels (default: the encoder's tiles_size).
    #[arg(long)]
    tile_size: Option<usize>,
    /// Overlap between neighbouring tiles, pixels.
    #[arg(long, default_value_t = 0)]
    overlap: usize,
    /// Raster band indices (1-based, comma-separated) in the model's band order.
    #[arg(long, value_delimiter = ',')]
    bands: Option<Vec<usize>>,
    /// Sensor preset (as `score --sensor`).
    #[arg(long)]
    sensor: Option<String>,
    /// Resample before tiling: auto, off, or a pixel size in metres.
    #[arg(long, allow_negative_numbers = true)]
    resample: Option<String>,
    /// Minimum share of valid (not nodata) pixels for a tile to be embedded.
    #[arg(long, default_value_t = engine::DEFAULT_MIN_VALID)]
    min_valid: f32,
    /// Tiles per encoder batch (0 = the encoder's, else 64).
    #[arg(long, default_value_t = 0)]
    batch_size: usize,
    /// Embedding cache folder (default: $NEXTTILE_HOME/cache/embeddings).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Neither read nor write the embedding cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// onnxruntime intra-op threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Reader–encoder workers (0 = automatic).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Most tiles per scene.
    #[arg(long, default_value_t = engine::DEFAULT_MAX_TILES)]
    max_tiles: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// `nexttile select`.
#[derive(Args, Debug)]
pub(super) struct SelectArgs {
    /// The store folder written by `nexttile embed`.
    store: PathBuf,
    /// Output folder for suggestions.geojson and suggestions.gpkg.
    #[arg(long, short)]
    out: PathBuf,
    /// Classifier head ONNX run over the store's embeddings (default: the default pair's).
    #[arg(long)]
    head: Option<PathBuf>,
    /// Number of tiles to suggest, over all scenes.
    #[arg(long, short, default_value_t = engine::DEFAULT_BUDGET)]
    budget: usize,
    /// Selection strategy (as `score --strategy`).
    #[arg(long, default_value_t = Strategy::product_default().name().to_string())]
    strategy: String,
    /// Uncertainty metric (as `score --metric`).
    #[arg(long)]
    metric: Option<String>,
    /// MC-dropout passes of the head.
    #[arg(long, short = 't', default_value_t = engine::DEFAULT_MC_PASSES)]
    mc_passes: usize,
    /// Seed for every random choice.
    #[arg(long, default_value_t = engine::DEFAULT_SEED)]
    seed: u64,
    /// Minimum ground distance between suggested tiles' centres, metres.
    #[arg(long, default_value_t = engine::DEFAULT_MIN_SPACING_M)]
    min_spacing: f64,
    /// Already-labelled places (GeoJSON points/polygons): their tiles are never suggested.
    #[arg(long)]
    labelled: Option<PathBuf>,
    /// onnxruntime intra-op threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Keep no embedding in memory: read the rows the strategy needs from the store
    /// again in a second pass (for stores whose f16 embeddings do not fit in memory).
    #[arg(long)]
    two_pass: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// One part of a list: the `index`-th (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shard {
    /// 0-based.
    pub index: usize,
    /// Parts.
    pub count: usize,
}

fn parse_count(text: &str, what: &str) -> Result<usize> {
    text.trim()
        .parse::<usize>()
        .map_err(|_| Error::Invalid(format!("{what} must be a whole number >= 0, got '{text}'")))
}

/// The shard from `--shard I/N`, else from the job array's environment (`env` reads a
/// variable), else the whole list.
pub(super) fn shard_of(
    flag: Option<&str>,
    shards: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Shard> {
    let shard = if let Some(f) = flag {
        let (i, n) = f.split_once('/').ok_or_else(|| {
            Error::Invalid(format!(
                "--shard must be I/N (e.g. 0/4: the first of 4 parts), got '{f}'"
            ))
        })?;
        let shard = Shard {
            index: parse_count(i, "--shard's I")?,
            count: parse_count(n, "--shard's N")?,
        };
        if shards.is_some_and(|s| s != shard.count) {
            return Err(Error::Invalid(format!(
                "--shards {} disagrees with --shard {f}; give one of them",
                shards.unwrap_or_default()
            )));
        }
        shard
    } else if let Some(id) = env("SLURM_ARRAY_TASK_ID") {
        let min = env("SLURM_ARRAY_TASK_MIN")
            .map(|m| parse_count(&m, "SLURM_ARRAY_TASK_MIN"))
            .transpose()?
            .unwrap_or(0);
        let id = parse_count(&id, "SLURM_ARRAY_TASK_ID")?;
        let count = match (shards, env("SLURM_ARRAY_TASK_COUNT")) {
            (Some(n), _) => n,
            (None, Some(c)) => parse_count(&c, "SLURM_ARRAY_TASK_COUNT")?,
            (None, None) => {
                return Err(Error::Invalid(
                    "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shards N (the array's size)".into(),
                ));
            }
        };
        Shard {
            index: id.checked_sub(min).ok_or_else(|| {
                Error::Invalid(format!(
                    "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?,
            count,
        }
    } else if let Some(id) = env("JOB_COMPLETION_INDEX") {
        let count = shards.ok_or_else(|| {
            Error::Invalid(
                "JOB_COMPLETION_INDEX is set: give --shards N (the Job's completions)".into(),
            )
        })?;
        Shard {
            index: parse_count(&id, "JOB_COMPLETION_INDEX")?,
            count,
        }
    } else if let Some(n) = shards {
        return Err(Error::Invalid(format!(
            "--shards {n} needs --shard I/{n}, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX to say which part this is"
        )));
    } else {
        Shard { index: 0, count: 1 }
    };
    if shard.count == 0 || shard.index >= shard.count {
        return Err(Error::Invalid(format!(
            "shard {}/{} does not exist: I must be in 0..N and N at least 1",
            shard.index, shard.count
        )));
    }
    Ok(shard)
}

/// The scenes of `shard`: scene `k` of the list (duplicates dropped, first kept) when
/// `k mod count == index`.
pub(super) fn shard_scenes(scenes: &[PathBuf], shard: Shard) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    scenes
        .iter()
        .filter(|s| seen.insert((*s).clone()))
        .enumerate()
        .filter(|(k, _)| k % shard.count == shard.index)
        .map(|(_, s)| s.clone())
        .collect()
}

/// The scenes of a list file: one path a line, `#` comments, blank lines skipped,
/// relative paths taken from the list's folder.
fn read_scene_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list).map_err(|e| {
        Error::Invalid(format!(
            "cannot read the scene list --scenes {}: {e}",
            list.display()
        ))
    })?;
    let base = list.parent().unwrap_or(Path::new(""));
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| base.join(l))
        .collect())
}

/// The request `embed` runs for `scene`.
fn embed_request(a: &EmbedArgs, scene: &Path) -> Result<ScoreRequest> {
    let mut req = ScoreRequest::new(
        scene,
        a.encoder
            .clone()
            .unwrap_or_else(|| default_model("encoder.onnx")),
        a.head.clone().unwrap_or_else(|| default_model("head.onnx")),
    );
    req.aoi = match &a.aoi {
        Some(p) => Some(parse_geojson_arg(p, "--aoi", "the AOI", |text| {
            Aoi::from_geojson(text, a.aoi_crs.as_deref()).map_err(Error::from)
        })?),
        None => None,
    };
    req.tile_size = a.tile_size;
    req.overlap = a.overlap;
    req.bands = a.bands.clone();
    req.sensor = a.sensor.clone();
    req.resample = a
        .resample
        .as_deref()
        .map(str::parse::<engine::Resample>)
        .transpose()?;
    req.min_valid_fraction = a.min_valid;
    req.batch_size = a.batch_size;
    req.cache = (!a.no_cache).then(|| {
        a.cache_dir
            .clone()
            .unwrap_or_else(crate::store::EmbeddingCache::default_dir)
    });
    req.session = SessionConfig {
        intra_threads: a.threads,
        ..SessionConfig::default()
    };
    req.workers = a.workers;
    if a.max_tiles == 0 {
        return Err(Error::Invalid("--max-tiles must be at least 1".into()));
    }
    req.max_tiles = a.max_tiles;
    Ok(req)
}

/// `nexttile embed`: every scene of this shard into the store; a scene that fails does
/// not stop the others, and the first failure is returned at the end.
pub(super) fn embed(a: EmbedArgs) -> Result<()> {
    check_parallelism(a.threads, a.workers)?;
    let mut scenes = a.scenes.clone();
    if let Some(list) = &a.scene_list {
        scenes.extend(read_scene_list(list)?);
    }
    if scenes.is_empty() {
        return Err(Error::Invalid(
            "no scene given: pass scenes as arguments or a list file with --scenes LIST".into(),
        ));
    }
    let shard = shard_of(a.shard.as_deref(), a.shards, |k| std::env::var(k).ok())?;
    let mine = shard_scenes(&scenes, shard);
    let cancel = AtomicBool::new(false);
    let mut first_error = None;
    let mut report = Vec::new();
    for scene in &mine {
        let outcome = embed_request(&a, scene)
            .and_then(|req| engine::embed_to_store(&req, &a.out, &|_| {}, &cancel));
        match outcome {
            Ok(o) => {
                for w in &o.warnings {
                    eprintln!("warning: {}: {w}", scene.display());
                }
                if !a.json {
                    let what = if o.kept { "kept (complete)" } else { "wrote" };
                    println!(
                        "{what} {} ({} tiles) for {}",
                        o.file.display(),
                        o.tiles,
                        scene.display()
                    );
                }
                report.push(json!({"scene": scene, "file": o.file, "tiles": o.tiles,
                    "status": if o.kept { "kept" } else { "written" }, "embeddings_from_cache": o.cache_hit}));
            }
            Err(e) => {
                eprintln!("error: {}: {e}", scene.display());
                report.push(json!({"scene": scene, "status": "failed", "error": e.to_string()}));
                first_error.get_or_insert(e);
            }
        }
    }
    if a.json {
        let s = json!({"shard": format!("{}/{}", shard.index, shard.count),
            "scenes_listed": scenes.len(), "store": a.out, "scenes": report});
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        println!(
            "shard {}/{}: {} of {} listed scenes into {}",
            shard.index,
            shard.count,
            mine.len(),
            scenes.len(),
            a.out.display()
        );
    }
    first_error.map_or(Ok(()), Err)
}

/// `nexttile select`: one selection over the store, written as OUT/suggestions.geojson
/// and OUT/suggestions.gpkg.
pub(super) fn select(a: SelectArgs) -> Result<()> {
    check_parallelism(a.threads, 0)?;
    check_mc_passes(a.mc_passes)?;
    let strategy: Strategy = a.strategy.parse()?;
    let metric: Metric = match &a.metric {
        Some(m) => m.parse()?,
        None => engine::default_metric(&strategy),
    };
    if a.budget == 0 || a.budget > engine::MAX_BUDGET {
        return Err(Error::Invalid(format!(
            "--budget must be between 1 and {}, got {}",
            engine::MAX_BUDGET,
            a.budget
        )));
    }
    if !a.min_spacing.is_finite() || a.min_spacing < 0.0 {
        return Err(Error::Invalid(format!(
            "--min-spacing must be a distance in metres >= 0, got {}",
            a.min_spacing
        )));
    }
    let labelled = match &a.labelled {
        Some(p) => Some(parse_geojson_arg(
            p,
            "--labelled",
            "the labels file",
            |text| crate::aoi::Labelled::from_geojson(text, None).map_err(Error::from),
        )?),
        None => None,
    };
    let sel = StoreSelect {
        head: a.head.clone().unwrap_or_else(|| default_model("head.onnx")),
        session: SessionConfig {
            intra_threads: a.threads,
            max_model_bytes: model::DEFAULT_MAX_MODEL_BYTES,
            ..SessionConfig::default()
        },
        mc_passes: a.mc_passes,
        strategy,
        metric,
        budget: a.budget,
        seed: a.seed,
        min_spacing_m: a.min_spacing,
        labelled,
        two_pass: a.two_pass,
    };
    let chosen = engine::select_store(&a.store, &sel)?;
    let (path, gpkg) = engine::write_store_suggestions(&chosen, &a.out)?;
    let scenes: std::collections::BTreeSet<&str> =
        chosen.picks.iter().map(|p| p.scene_id.as_str()).collect();
    if a.json {
        let s = json!({"store": a.store, "files": chosen.files, "tiles": chosen.tiles,
            "dim": chosen.dim, "labelled_tiles": chosen.labelled_tiles,
            "strategy": chosen.strategy.name(), "metric": chosen.metric.name(),
            "picks": chosen.picks.len(), "scenes_picked": scenes.len(),
            "encoder_sha256": chosen.encoder_sha256, "suggestions": path,
            "geopackage": gpkg, "widened_rows": chosen.widened_rows});
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        println!(
            "{} suggestions from {} scenes by {} on {} over {} tiles of {} scenes ({} labelled)",
            chosen.picks.len(),
            scenes.len(),
            chosen.strategy.name(),
            chosen.metric.name(),
            chosen.tiles,
            chosen.files,
            chosen.labelled_tiles
        );
        println!("suggestions: {} and {}", path.display(), gpkg.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_come_from_the_flag_then_the_job_array() {
        let none = env_of(&[]);
        assert_eq!(
            shard_of(Some("1/3"), None, &none).unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(
            shard_of(None, None, &none).unwrap(),
            Shard { index: 0, count: 1 }
        );
        assert!(shard_of(Some("3/3"), None, &none).is_err());
        assert!(shard_of(Some("1-3"), None, &none).is_err());
        assert!(shard_of(None, Some(2), &none).is_err());
        let slurm = env_of(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            shard_of(None, None, &slurm).unwrap(),
            Shard { index: 1, count: 4 }
        );
        let slurm_bare = env_of(&[("SLURM_ARRAY_TASK_ID", "0")]);
        assert!(shard_of(None, None, &slurm_bare).is_err());
        assert_eq!(
            shard_of(None, Some(2), &slurm_bare).unwrap(),
            Shard { index: 0, count: 2 }
        );
        let k8s = env_of(&[("JOB_COMPLETION_INDEX", "1")]);
        assert!(shard_of(None, None, &k8s).is_err());
        assert_eq!(
            shard_of(None, Some(2), &k8s).unwrap(),
            Shard { index: 1, count: 2 }
        );
    }

    #[test]
    fn every_scene_is_in_exactly_one_balanced_shard() {
        let scenes: Vec<PathBuf> = ["a", "b", "c", "b", "d", "e"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let parts: Vec<Vec<PathBuf>> = (0..3)
            .map(|i| shard_scenes(&scenes, Shard { index: i, count: 3 }))
            .collect();
        let mut all: Vec<PathBuf> = parts.concat();
        all.sort();
        assert_eq!(
            all,
            ["a", "b", "c", "d", "e"]
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
        assert!(parts.iter().all(|p| (1..=2).contains(&p.len())));
    }
}
