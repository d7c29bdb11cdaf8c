//! The prepare stage: [`ScoreRequest`] → [`Prepared`]. Opens the scene (or STAC item,
//! resampled to the encoder's resolution, stacked with its pair), loads the encoder and
//! the head, chooses the bands and the scaling, checks the pair, the tile size and the
//! input's distribution, and lays out the tile grid and its candidate tiles. Nothing is
//! embedded yet.

use crate::error::{Error, Result};
use crate::model::{BandFusion, Encoder, Head, ModelSpec, Preprocess, SessionConfig};
use crate::raster::{BandMatch, MemVrt, RasterError, Scene, StacRadiometry, StacStack, stack_pair};
use crate::report::{BandCheck, ResampleReport, ScalingReport, SensorUse};
use crate::tiling::{TileGrid, TileId, tiles_in_aoi};
use crate::uncertainty::Metric;

use super::embed::embed_workers;
use super::request::{DEFAULT_TILE_SIZE, ScoreRequest, check_tile_count};
use super::{input, resample};

/// A scene ready to embed: its rasters, models, bands, scaling, grid and candidate
/// tiles, and what the checks found.
pub(super) struct Prepared {
    /// The raster the readers open (resampled and stacked when asked).
    pub scene: Scene,
    /// The first raster of a pair, kept open while its stack is read.
    pub _first: Option<Scene>,
    /// The in-memory warped VRT the scene (or its stack) reads, kept alive.
    pub _warped: Option<MemVrt>,
    /// The STAC item's stack, when the scene is one (kept alive while read).
    pub stac: Option<StacStack>,
    /// The encoder (loaded with a worker's share of the threads when `workers > 1`).
    pub encoder: Encoder,
    /// The session settings of each reader–encoder worker.
    pub encoder_session: SessionConfig,
    /// Reader–encoder workers ([`embed_workers`]).
    pub workers: usize,
    /// The ONNX head.
    pub head: Head,
    /// The encoder's preprocessing, for the chosen bands and scaling.
    pub pre: Preprocess,
    /// How each model band was matched to a raster band.
    pub matches: Vec<BandMatch>,
    /// 1-based raster bands, in model order.
    pub bands: Vec<usize>,
    /// The encoder's own `(scale, offset)`, before a preset or the user replaced them.
    pub model_scaling: (f32, f32),
    /// The scaling applied, and where it came from.
    pub scaling: ScalingReport,
    /// The sensor preset used, if any.
    pub sensor_use: Option<SensorUse>,
    /// What resampling did.
    pub resampling: ResampleReport,
    /// The tile grid.
    pub grid: TileGrid,
    /// Candidate tiles (in the AOI), row-major.
    pub candidates: Vec<TileId>,
    /// Tiles the input check read, its per-band results and the raster's data type.
    pub input_check: (usize, Vec<BandCheck>, String),
    /// Warnings so far, in order.
    pub warnings: Vec<String>,
}

/// The prepare stage: opens, loads and checks everything a run needs before reading
/// tiles. In: the request. Out: [`Prepared`], or the first refusal.
pub(super) fn prepare(req: &ScoreRequest) -> Result<Prepared> {
    if req.budget == 0 || req.budget > super::request::MAX_BUDGET {
        return Err(Error::Invalid(format!(
            "--budget must be between 1 and {}, got {}",
            super::request::MAX_BUDGET,
            req.budget
        )));
    }
    if !(0.0..=1.0).contains(&req.min_valid_fraction) {
        return Err(Error::Invalid("--min-valid must be between 0 and 1".into()));
    }
    let (first, stac, loaded) = open_and_load(req)?;
    let (workers, encoder_session, encoder, head) = loaded;
    let mut warnings = Vec::new();
    check_head_use(req, &head.spec)?;
    let radiometry = stac.as_ref().map(|s| &s.radiometry);
    let (first, sensor) = sensor_of(req, first, radiometry, &encoder.spec, &mut warnings)?;
    // Resampled to the encoder's resolution (an in-memory warped VRT, kept alive by
    // `_warped` while readers open it), then a second raster is warped onto that grid
    // and stacked after its bands; the readers then open the stack.
    let (first, _warped, resampling) = resample::resample_for(
        first,
        req.resample,
        encoder.spec.resolution_m,
        &mut warnings,
    )?;
    let (scene, _first) = match &req.pair {
        // The stack is an in-memory VRT over the two checked rasters.
        Some(second) => (
            Scene::open(&stack_pair(&first, second, req.confine.as_ref())?)?,
            Some(first),
        ),
        None => (first, None),
    };
    let mut pre = model_preprocess(req, &encoder.spec, &scene)?;
    check_modalities(&encoder.spec, &scene, req)?;
    let preset = sensor.as_ref().map(|c| &c.preset);
    // Only a preset that places bands by position explains a band it cannot find.
    let placing = sensor
        .as_ref()
        .filter(|c| c.places_bands)
        .map(|c| &c.preset);
    let matches = input::match_bands(req, &scene, &pre.bands, placing)?;
    let bands: Vec<usize> = matches.iter().map(|m| m.raster_band).collect();
    let model_scaling = (pre.scale, pre.offset);
    let scaling = input::apply_scaling(req, preset, &mut pre)?;
    warnings.extend(input::display_note(preset, &scaling));
    let fused = match (encoder.spec.per_band, encoder.spec.band_fusion) {
        (true, BandFusion::Concat) => pre.bands.len(),
        _ => 1,
    };
    check_pair(&encoder.spec, &head.spec, fused, &mut warnings)?;
    let (grid, candidates) = tile_grid(req, &scene, &encoder.spec, &mut warnings)?;
    let check = input::CheckInput {
        scene: &scene,
        matches: &matches,
        grid: &grid,
        candidates: &candidates,
        pre: &pre,
        min_valid: req.min_valid_fraction,
    };
    let input_check = input::check_distribution(&check, &scaling, &mut warnings)?;
    Ok(Prepared {
        scene,
        _first,
        _warped,
        stac,
        encoder,
        encoder_session,
        workers,
        head,
        pre,
        matches,
        bands,
        model_scaling,
        scaling,
        sensor_use: sensor.map(|c| c.usage),
        resampling,
        grid,
        candidates,
        input_check,
        warnings,
    })
}

/// The models of a run and how its readers–encoders are laid out: workers, each
/// worker's session, the encoder and the head.
type Loaded = (usize, SessionConfig, Encoder, Head);

/// Opens the scene while onnxruntime starts and the models load on a second thread
/// (GDAL opening the scene and PROJ identifying its CRS take tens of ms each).
fn open_and_load(req: &ScoreRequest) -> Result<(Scene, Option<StacStack>, Loaded)> {
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
    let (first, stac) = first?;
    Ok((first, stac, models?))
}

/// The sensor preset of the scene (given, said by its STAC item, or recognised; it may
/// name the scene's bands) and a warning when the band names were assumed.
fn sensor_of(
    req: &ScoreRequest,
    mut first: Scene,
    stac: Option<&StacRadiometry>,
    encoder: &ModelSpec,
    warnings: &mut Vec<String>,
) -> Result<(Scene, Option<input::ChosenSensor>)> {
    let model_bands = encoder
        .preprocess
        .as_ref()
        .map(|p| p.bands.clone())
        .unwrap_or_default();
    let sensor = input::choose_sensor(req, &mut first, stac, &model_bands, warnings)?;
    if first.names_assumed {
        warnings.push(format!(
            "{} has no band descriptions; assumed the standard Sentinel-2 band order",
            req.scene.display()
        ));
    }
    Ok((first, sensor))
}

/// The encoder's preprocessing for this run: its contract, narrowed to the chosen bands
/// for a per-band encoder; `--band-names` refused for a fixed-band encoder.
fn model_preprocess(req: &ScoreRequest, encoder: &ModelSpec, scene: &Scene) -> Result<Preprocess> {
    let full = encoder
        .preprocess
        .clone()
        .ok_or_else(|| Error::Invalid("encoder has no preprocessing contract".into()))?;
    if encoder.per_band {
        return per_band_preprocess(encoder, &full, scene, req.band_names.as_deref());
    }
    if req.band_names.is_some() {
        return Err(Error::Invalid(format!(
            "--band-names is for per-band encoders; {} takes the fixed bands [{}] (use --bands to map them to raster band numbers)",
            encoder.path.display(),
            full.bands.join(", ")
        )));
    }
    Ok(full)
}

/// The tile grid at the request's (else the encoder's, else the default) tile size and
/// its candidate tiles (the AOI's, else all), refused beyond `max_tiles`; a warning
/// when the scene's pixels are far from the encoder's resolution.
fn tile_grid(
    req: &ScoreRequest,
    scene: &Scene,
    encoder: &ModelSpec,
    warnings: &mut Vec<String>,
) -> Result<(TileGrid, Vec<TileId>)> {
    let tile = req
        .tile_size
        .or(encoder.tile_size)
        .unwrap_or(DEFAULT_TILE_SIZE);
    encoder.check_tile_size(tile)?;
    if let Some(model_res) = encoder.resolution_m {
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
    check_tile_count(candidates.len(), grid.tile_size, req.max_tiles)?;
    Ok((grid, candidates))
}

/// Open the request's scene: a raster (confined to the daemon's roots when
/// set), or a STAC item (its assets likewise) stacked into an in-memory VRT (the stack is returned
/// too: keep it alive while the scene is read), its bands named by the item
/// (`matched_by` = `stac_asset:<key>`); an item of an ItemCollection when the request
/// names one.
fn open_scene(req: &ScoreRequest) -> Result<(Scene, Option<StacStack>)> {
    // Under the daemon's roots, every asset file is checked before GDAL opens it.
    let stack = match &req.stac_item {
        Some(id) => crate::raster::stack_collection_item(&req.scene, id, req.confine.as_ref())?.1,
        None => {
            let Some(doc) = crate::raster::read_stac_item(&req.scene)? else {
                return Ok((Scene::open_with(&req.scene, req.confine.as_ref())?, None));
            };
            crate::raster::stack_stac_item_with(&req.scene, &doc, req.confine.as_ref())?
        }
    };
    let mut scene = Scene::open(stack.vrt.path())?;
    for (b, s) in scene.bands.iter_mut().zip(&stack.bands) {
        b.named_by = format!("stac_asset:{}", s.asset);
    }
    Ok((scene, Some(stack)))
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
    full: &Preprocess,
    scene: &Scene,
    wanted: Option<&[String]>,
) -> Result<Preprocess> {
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
    let mut out = Preprocess {
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

#[cfg(test)]
mod tests {
    #[test]
    fn short_hash_takes_characters_not_bytes() {
        // A head's metadata may hold any text: 12 characters of a non-ASCII value, no
        // panic on a char boundary (issue 17).
        assert_eq!(super::short_hash("é".repeat(20).as_str()), "é".repeat(12));
        assert_eq!(super::short_hash("abc"), "abc");
        assert_eq!(super::short_hash("0123456789abcdef"), "0123456789ab");
    }
}
