//! The command line: each command is a thin call into the library.

mod eval;
mod items;
mod region;
mod serve;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::aoi::Aoi;
use crate::engine::{self, Progress, ScoreRequest};
use crate::model::{self, SessionConfig};
use crate::sampling::Strategy;
use crate::uncertainty::Metric;
use crate::{Error, Result};

/// The demo model pair shipped in `onnx/`.
pub use crate::model::{DEFAULT_MODEL_DIR, default_model};

#[derive(Parser, Debug)]
#[command(
    name = "nexttile",
    version,
    about = "Decide which part of a satellite scene to label next"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score a scene: uncertainty heatmap + ranked "label next" tiles.
    Score(Box<ScoreArgs>),
    /// Measure label savings: simulate the labelling loop on a labelled image folder.
    Eval(Box<eval::EvalArgs>),
    /// Embed scenes into a GeoParquet embedding store (one file per scene; a shard of the list).
    Embed(Box<region::EmbedArgs>),
    /// One selection over every scene of an embedding store: OUT/suggestions.geojson.
    Select(Box<region::SelectArgs>),
    /// Run the HTTP daemon (projects, scenes, jobs, suggestions, labels, rounds).
    Serve(Box<serve::ServeArgs>),
    /// Inspect ONNX models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Show which onnxruntime library and execution provider would run.
    Runtime {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Print a model's contract (role, bands, scaling, classes, I/O).
    Inspect {
        /// The ONNX file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct ScoreArgs {
    /// The scene (GeoTIFF or any GDAL raster with a CRS; its grid is the tile grid), a
    /// STAC Item JSON, or a STAC ItemCollection JSON or folder of item JSON files (each
    /// item scored as its own scene into OUT/<item id>/, listed in OUT/items.json).
    scene: PathBuf,
    /// A second raster of the same place for multi-modal encoders (e.g. the
    /// Sentinel-1 VV/VH raster beside a Sentinel-2 scene): warped onto the
    /// scene's grid (any CRS, resolution, extent) and stacked after its bands.
    #[arg(long)]
    pair: Option<PathBuf>,
    /// Per-band encoders: bands to embed, by name, comma-separated (e.g.
    /// VV,VH,B04,B08; default: the model's default_bands).
    #[arg(long, value_delimiter = ',')]
    band_names: Option<Vec<String>>,
    /// Output folder for heatmap.tif, suggestions.geojson, tiles.*, summary.json (for a
    /// collection or folder of STAC items: one subfolder per item and items.json).
    #[arg(long, short)]
    out: PathBuf,
    /// Encoder ONNX (default: onnx/rcf_chroma/, random convolutional features).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Classifier head ONNX (default: the demo head).
    #[arg(long)]
    head: Option<PathBuf>,
    /// Area of interest: GeoJSON file with Polygon/MultiPolygon features.
    #[arg(long)]
    aoi: Option<PathBuf>,
    /// CRS of the AOI when it is not WGS 84 and does not say (e.g. EPSG:32618).
    #[arg(long)]
    aoi_crs: Option<String>,
    /// Already-labelled places (GeoJSON points/polygons, same CRS rules as
    /// --aoi): their tiles are never suggested and count as existing centres.
    #[arg(long)]
    labelled: Option<PathBuf>,
    /// Retrain the head on the --labelled features' `class` property (one of the
    /// head's classes) from the cached embeddings, and score with it.
    #[arg(long, requires = "labelled")]
    retrain: bool,
    /// --retrain: continue from a head saved by an earlier round (warm start).
    #[arg(long, requires = "retrain")]
    warm_from: Option<PathBuf>,
    /// --retrain: write the trained head here (safetensors) for the next round.
    #[arg(long, requires = "retrain")]
    save_head: Option<PathBuf>,
    /// Tile edge in pixels (default: the encoder's tiles_size).
    #[arg(long)]
    tile_size: Option<usize>,
    /// Overlap between neighbouring tiles, pixels.
    #[arg(long, default_value_t = 0)]
    overlap: usize,
    /// MC-dropout passes of the head (1 = deterministic).
    #[arg(long, short = 't', default_value_t = engine::DEFAULT_MC_PASSES)]
    mc_passes: usize,
    /// Selection strategy: auto (TypiClust while labels are few, then margin +
    /// clustering), mcfps, top_k, random, coreset, clustering, typiclust, probcover.
    #[arg(long, default_value_t = crate::sampling::Strategy::product_default().name().to_string())]
    strategy: String,
    /// Uncertainty metric for ranking: least_confidence, entropy, bald, margin,
    /// variation_ratio, or predicted_loss (heads with a loss output; alias ll)
    /// (default: least_confidence for mcfps, as in its paper; margin otherwise).
    #[arg(long)]
    metric: Option<String>,
    /// auto: labels per class (of the head) after which it switches from TypiClust to
    /// uncertainty + clustering.
    #[arg(long)]
    switch_per_class: Option<usize>,
    /// auto: share the uncertainty stage's picks out over the classes, those with the
    /// fewest labels first, by the head's predictions (true or false; default true).
    #[arg(long, action = clap::ArgAction::Set)]
    balance: Option<bool>,
    /// Number of tiles to suggest.
    #[arg(long, short, default_value_t = engine::DEFAULT_BUDGET)]
    budget: usize,
    /// MCFPS: neighbourhood size k.
    #[arg(long)]
    neighbours: Option<usize>,
    /// MCFPS: number of FPS anchors S (default: the budget).
    #[arg(long)]
    anchors: Option<usize>,
    /// Clustering: candidates are the m·budget most uncertain tiles.
    #[arg(long)]
    cluster_factor: Option<usize>,
    /// Minimum ground distance between suggested tiles' centres, metres (field surveys).
    #[arg(long, default_value_t = engine::DEFAULT_MIN_SPACING_M)]
    min_spacing: f64,
    /// Seed for every random choice.
    #[arg(long, default_value_t = engine::DEFAULT_SEED)]
    seed: u64,
    /// Raster band indices (1-based, comma-separated) in the model's band order, overriding name matching.
    #[arg(long, value_delimiter = ',')]
    bands: Option<Vec<usize>>,
    /// Sensor preset: band order of a stack without band names, and the
    /// product's reflectance scaling mapped to the encoder's input units
    /// (s2-l1c, s2-l2a, landsat8, landsat9, landsat7, reflectance, rgb).
    #[arg(long)]
    sensor: Option<String>,
    /// Resample the scene on the fly before tiling: auto (to the encoder's
    /// `resolution` when the pixel size differs more than 1.5×), off, or a
    /// pixel size in metres.
    #[arg(long, allow_negative_numbers = true)]
    resample: Option<String>,
    /// Multiplier on raw raster values, replacing the encoder's (or the
    /// preset's) input_scale: x = clip(raw · scale + offset).
    #[arg(long, allow_negative_numbers = true)]
    input_scale: Option<f32>,
    /// Added after --input-scale, replacing the encoder's (or the preset's)
    /// input_offset.
    #[arg(long, allow_negative_numbers = true)]
    input_offset: Option<f32>,
    /// Minimum share of valid (not nodata) pixels for a tile to be scored.
    #[arg(long, default_value_t = engine::DEFAULT_MIN_VALID)]
    min_valid: f32,
    /// Tiles per encoder batch (0 = the encoder's `nexttile_batch_size` metadata, else 64).
    #[arg(long, default_value_t = 0)]
    batch_size: usize,
    /// Embedding cache folder (default: $NEXTTILE_HOME/cache/embeddings).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Always run the encoder; neither read nor write the embedding cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// onnxruntime intra-op threads (0 = all cores); with --workers 0, also caps the workers, and is shared out between them.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Reader–encoder workers side by side, each with its own dataset and encoder session (0 = one per core, up to 8, on the CPU; one on CUDA).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Largest model file accepted, bytes (default 2 GiB); devices and FIFOs are
    /// always refused.
    #[arg(long, default_value_t = model::DEFAULT_MAX_MODEL_BYTES)]
    max_model_bytes: u64,
    /// Most tiles to score (after --aoi); a scene with more is refused before any
    /// pixel is read (the daemon's max_tiles rule and default).
    #[arg(long, default_value_t = engine::DEFAULT_MAX_TILES)]
    max_tiles: usize,
    /// Print a JSON summary on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Run the CLI with the process arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Score(a) => score(*a),
        Command::Eval(a) => eval::run(*a),
        Command::Embed(a) => region::embed(*a),
        Command::Select(a) => region::select(*a),
        Command::Serve(a) => serve::run(*a),
        Command::Models {
            command: ModelsCommand::Inspect { file, json },
        } => inspect(&file, json),
        Command::Runtime { json } => {
            let info = model::runtime::init()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                );
            } else {
                println!(
                    "onnxruntime: {} (found via {})",
                    info.library.display(),
                    info.found_via
                );
                println!("provider:    {} ({})", info.provider, info.provider_reason);
            }
            Ok(())
        }
    }
}

fn parse_strategy(a: &ScoreArgs) -> Result<Strategy> {
    let mut s: Strategy = a.strategy.parse()?;
    if let Strategy::Mcfps(p) = &mut s {
        if let Some(k) = a.neighbours {
            p.neighbours = k;
        }
        p.anchors = a.anchors;
    } else if a.neighbours.is_some() || a.anchors.is_some() {
        return Err(Error::Invalid(
            "--neighbours and --anchors only apply to --strategy mcfps".into(),
        ));
    }
    if let Strategy::Clustering(p) = &mut s {
        if let Some(m) = a.cluster_factor {
            p.m = m;
        }
    } else if a.cluster_factor.is_some() {
        return Err(Error::Invalid(
            "--cluster-factor only applies to --strategy clustering".into(),
        ));
    }
    if let Strategy::Auto(p) = &mut s {
        if let Some(n) = a.switch_per_class {
            p.switch_per_class = Some(n);
        }
        if let Some(b) = a.balance {
            p.balance = b;
        }
    } else if a.switch_per_class.is_some() || a.balance.is_some() {
        return Err(Error::Invalid(
            "--switch-per-class and --balance only apply to --strategy auto".into(),
        ));
    }
    if !a.min_spacing.is_finite() || a.min_spacing < 0.0 {
        return Err(Error::Invalid(format!(
            "--min-spacing must be a distance in metres >= 0, got {}",
            a.min_spacing
        )));
    }
    Ok(s)
}

/// Most `--threads` / `--workers` accepted: 4 per core, at most 256 (more only
/// costs memory: every thread and worker holds buffers, every worker a session).
pub fn max_parallelism() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).clamp(4, 256)
}

fn check_parallelism(threads: usize, workers: usize) -> Result<()> {
    let max = max_parallelism();
    for (flag, n) in [("--threads", threads), ("--workers", workers)] {
        if n > max {
            return Err(Error::Invalid(format!(
                "{flag} {n} is more than this machine can use: at most {max} (4 per core, at most 256); give 0 for the automatic choice"
            )));
        }
    }
    Ok(())
}

/// The MC-pass rule of the daemon's `mc_passes` (1 to 1000).
fn check_mc_passes(passes: usize) -> Result<()> {
    if !(1..=engine::MAX_MC_PASSES).contains(&passes) {
        return Err(Error::Invalid(format!(
            "--mc-passes must be between 1 and {}, got {passes} (1 = deterministic)",
            engine::MAX_MC_PASSES
        )));
    }
    Ok(())
}

/// Most bytes of a GeoJSON file given to `--aoi` or `--labelled`.
const MAX_GEOJSON_BYTES: u64 = 1 << 30;

/// Reads a GeoJSON file given to `flag`, refusing what is not a regular file
/// (devices, FIFOs) or is over [`MAX_GEOJSON_BYTES`] before reading it.
fn read_geojson_file(path: &Path, flag: &str, what: &str) -> Result<String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Invalid(format!("cannot read {what} {flag} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!(
            "{what} {flag} {shown} is not a regular file; give a GeoJSON file"
        )));
    }
    if meta.len() > MAX_GEOJSON_BYTES {
        return Err(Error::Invalid(format!(
            "{what} {flag} {shown} is {} bytes, more than the {MAX_GEOJSON_BYTES} read; simplify or split it",
            meta.len()
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read {what} {flag} {shown}: {e}")))
}

/// Puts the file and its flag into a GeoJSON parse error, which otherwise speaks of
/// "the AOI" whichever file it came from.
fn name_file(e: Error, path: &Path, flag: &str) -> Error {
    let want = if flag == "--labelled" {
        "a GeoJSON FeatureCollection of Point/Polygon features"
    } else {
        "a GeoJSON FeatureCollection, Feature or geometry of polygons"
    };
    match e {
        Error::Aoi(crate::aoi::AoiError::Parse(why)) => Error::Invalid(format!(
            "{flag} {} is not valid GeoJSON: {why}; give {want}",
            path.display()
        )),
        Error::Aoi(other) => Error::Invalid(format!("{flag} {}: {other}", path.display())),
        other => other,
    }
}

/// Reads the GeoJSON file given to `flag` and parses it with `parse`; every error names
/// the flag and the file.
fn parse_geojson_arg<T>(
    path: &Path,
    flag: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T>,
) -> Result<T> {
    read_geojson_file(path, flag, what)
        .and_then(|text| parse(&text))
        .map_err(|e| name_file(e, path, flag))
}

fn score(a: ScoreArgs) -> Result<()> {
    let req = build_request(&a)?;
    // A STAC ItemCollection or a folder of items: each item is a scene of its own.
    if let Some(items) = crate::raster::list_stac_items(&a.scene)? {
        return items::score_items(&a, req, &items);
    }
    let (result, paths) = score_one(&a, &req, &a.out)?;
    if a.json {
        let s = engine::summary_json(&result, Some(&paths));
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        print_summary(&result, &paths);
    }
    Ok(())
}

/// The request the flags describe (every flag checked), for the scene argument.
fn build_request(a: &ScoreArgs) -> Result<ScoreRequest> {
    let strategy = parse_strategy(a)?;
    let metric: Metric = match &a.metric {
        Some(m) => m.parse()?,
        None => engine::default_metric(&strategy),
    };
    check_parallelism(a.threads, a.workers)?;
    check_mc_passes(a.mc_passes)?;
    let aoi = match &a.aoi {
        Some(p) => Some(parse_geojson_arg(p, "--aoi", "the AOI", |text| {
            Aoi::from_geojson(text, a.aoi_crs.as_deref()).map_err(Error::from)
        })?),
        None => None,
    };
    let mut req = ScoreRequest::new(
        &a.scene,
        a.encoder
            .clone()
            .unwrap_or_else(|| default_model("encoder.onnx")),
        a.head.clone().unwrap_or_else(|| default_model("head.onnx")),
    );
    req.aoi = aoi;
    req.labelled = match &a.labelled {
        Some(p) => Some(parse_geojson_arg(
            p,
            "--labelled",
            "the labels file",
            |text| crate::aoi::Labelled::from_geojson(text, None).map_err(Error::from),
        )?),
        None => None,
    };
    req.retrain = a.retrain.then(|| engine::Retrain {
        config: crate::head::HeadConfig::default(),
        warm_from: a.warm_from.clone(),
        save_to: a.save_head.clone(),
    });
    req.tile_size = a.tile_size;
    req.overlap = a.overlap;
    req.mc_passes = a.mc_passes;
    req.strategy = strategy;
    req.metric = metric;
    req.budget = a.budget;
    req.seed = a.seed;
    req.min_spacing_m = a.min_spacing;
    req.bands = a.bands.clone();
    req.sensor = a.sensor.clone();
    req.resample = a
        .resample
        .as_deref()
        .map(str::parse::<engine::Resample>)
        .transpose()?;
    req.input_scale = a.input_scale;
    req.input_offset = a.input_offset;
    req.pair = a.pair.clone();
    req.band_names = a.band_names.clone();
    req.min_valid_fraction = a.min_valid;
    req.batch_size = a.batch_size;
    req.cache = (!a.no_cache).then(|| {
        a.cache_dir
            .clone()
            .unwrap_or_else(crate::store::EmbeddingCache::default_dir)
    });
    req.session = SessionConfig {
        intra_threads: a.threads,
        max_model_bytes: a.max_model_bytes,
        ..SessionConfig::default()
    };
    req.workers = a.workers;
    if a.max_tiles == 0 {
        return Err(Error::Invalid(format!(
            "--max-tiles must be at least 1 (the default is {})",
            engine::DEFAULT_MAX_TILES
        )));
    }
    req.max_tiles = a.max_tiles;
    Ok(req)
}

/// Scores one scene with a progress bar (unless `--quiet`), prints its warnings and
/// writes its outputs into `out`.
fn score_one(
    a: &ScoreArgs,
    req: &ScoreRequest,
    out: &Path,
) -> Result<(engine::ScoreResult, engine::OutputPaths)> {
    let bar = (!a.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {pos}/{len} tiles {elapsed_precise}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let quiet = a.quiet;
    let on_progress = |p: Progress| {
        if let Progress::Started { total } = p
            && !quiet
        {
            let line = format!("{total} tiles to score");
            match &bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
        if let Some(b) = &bar {
            match p {
                Progress::Started { total } => {
                    b.set_length(total as u64);
                    b.set_message("embedding");
                }
                Progress::Embedding { done, .. } => b.set_position(done as u64),
                Progress::Head => b.set_message("MC head"),
                Progress::Selecting => b.set_message("selecting"),
            }
        }
    };
    let cancel = AtomicBool::new(false);
    let result = engine::score(req, &on_progress, &cancel);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let result = result?;
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    let paths = engine::write_outputs(&result, out)?;
    Ok((result, paths))
}

/// The human-readable report of one `score` run: counts, the first ten suggestions and
/// where the outputs are.
fn print_summary(result: &engine::ScoreResult, paths: &engine::OutputPaths) {
    println!(
        "scored {} of {} tiles ({} skipped as nodata) of {} with {} MC passes{}",
        result.tiles.len(),
        result.candidate_tiles,
        result.skipped_nodata.len(),
        result.scene.path,
        result.mc_passes,
        if result.cache_hit {
            " (embeddings from cache)"
        } else {
            ""
        }
    );
    println!(
        "{} suggestions by {} on {}:",
        result.picks.len(),
        result.strategy.name(),
        result.metric.name()
    );
    for (r, p) in result.picks.iter().take(10).enumerate() {
        let i = p.index;
        println!(
            "  {:>3}. {:<10} {:<22} {}={:.3}",
            r + 1,
            result.tiles[i].to_string(),
            result
                .class_names
                .get(result.predicted[i])
                .map(String::as_str)
                .unwrap_or("?"),
            result.metric.name(),
            result.uncertainties.get(result.metric)[i]
        );
    }
    if result.picks.len() > 10 {
        println!(
            "  … {} more in {}",
            result.picks.len() - 10,
            paths.suggestions.display()
        );
    }
    print_input(result);
    let td = &result.training_distance;
    if let Some(q) = &td.quantiles {
        println!(
            "distance:    to the training data (reference {}): median {:.2}, p99 {:.2}, max {:.2}; {} of {} tiles > {} (heatmap band distance_to_training)",
            td.reference.name(),
            q.p50,
            q.p99,
            q.max,
            td.far_tiles,
            td.values.len(),
            td.far_threshold
        );
    }
    println!(
        "onnxruntime: {} provider ({})",
        result.runtime.provider, result.runtime.provider_reason
    );
    println!("heatmap:     {}", paths.heatmap.display());
    println!("suggestions: {}", paths.suggestions.display());
}

/// The text report's lines on how the raster became encoder input: sensor,
/// band matching, scaling.
fn print_input(result: &engine::ScoreResult) {
    let input = &result.input;
    if let Some(s) = &input.sensor {
        println!("sensor:      {} ({}; {})", s.name, s.source, s.title);
    }
    let matched: Vec<String> = result
        .scene
        .band_matching
        .iter()
        .map(|m| {
            format!(
                "{} = band {} ({}{})",
                m.model_band,
                m.raster_band,
                m.matched_by,
                if m.raster_label.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.raster_label)
                }
            )
        })
        .collect();
    println!("bands:       {}", matched.join(", "));
    println!("resampling:  {}", result.scene.resampling.message);
    println!(
        "scaling:     raw · {} + {}{} ({}; {} raster)",
        input.scaling.scale,
        input.scaling.offset,
        input
            .scaling
            .clip
            .map(|(lo, hi)| format!(", clipped to [{lo}, {hi}]"))
            .unwrap_or_default(),
        input.scaling.source,
        input.data_type
    );
}

fn inspect(file: &Path, json: bool) -> Result<()> {
    let spec = model::inspect(file)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&spec).unwrap_or_default()
        );
        return Ok(());
    }
    println!("file:        {}", spec.path.display());
    println!("sha256:      {}", spec.sha256);
    println!("name:        {}", spec.name);
    println!("role:        {:?}", spec.role);
    if let Some(d) = &spec.description {
        println!("description: {d}");
    }
    for i in &spec.inputs {
        println!("input:       {} {} {:?}", i.name, i.dtype, i.shape);
    }
    for o in &spec.outputs {
        println!("output:      {} {} {:?}", o.name, o.dtype, o.shape);
    }
    if let Some(p) = &spec.preprocess {
        println!("bands:       {}", p.bands.join(", "));
        for m in &spec.modalities {
            println!("modality:    {} = {}", m.name, m.bands.join(", "));
        }
        if spec.per_band {
            println!(
                "per band:    one band at a time, embeddings fused by {:?}; default bands {}",
                spec.band_fusion,
                if spec.default_bands.is_empty() {
                    "all it accepts that the raster has".to_string()
                } else {
                    spec.default_bands.join(", ")
                }
            );
        }
        println!(
            "scaling:     x = raw * {} + {}{}",
            p.scale,
            p.offset,
            p.clip
                .map(|(l, h)| format!(", clipped to [{l}, {h}]"))
                .unwrap_or_default()
        );
        println!("standardize: mean {:?} std {:?}", p.mean, p.std);
    }
    if let Some(t) = spec.tile_size {
        println!("tile size:   {t} px");
    }
    if let Some(r) = spec.resolution_m {
        println!("resolution:  {r} m/px");
    }
    if let Some(d) = spec.embedding_dim {
        println!("embedding:   {d}-d ({})", spec.output_name);
    }
    if !spec.class_names.is_empty() {
        println!("classes:     {}", spec.class_names.join(", "));
        println!("multi-label: {}", spec.multi_label);
        if let Some(l) = &spec.loss_output {
            println!("loss output: '{l}' (loss prediction, ranks with --metric predicted_loss)");
        }
        println!(
            "MC dropout:  {}",
            spec.mc_dropout_input
                .as_deref()
                .map(|n| format!("input '{n}' switches dropout on"))
                .unwrap_or_else(
                    || "no switch (deterministic unless the graph keeps dropout on)".into()
                )
        );
    }
    if let Some(e) = &spec.encoder_sha256 {
        println!("encoder:     trained on encoder sha256 {e}");
    }
    if spec.role == model::ModelRole::Encoder {
        let problems = spec.deepness_problems();
        if problems.is_empty() {
            println!(
                "deepness:    ready (Deepness and GeoDeep read it and feed it NextTile's input)"
            );
        }
        for p in problems {
            println!("deepness:    {p}");
        }
    }
    Ok(())
}
