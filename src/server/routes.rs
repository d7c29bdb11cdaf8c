//! HTTP handlers: each extracts, checks, makes one store or worker call and answers.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::labels::parse_labels;
use super::paths::{PathError, check_model_path, check_raster_folder, check_raster_path};
use super::worker::{JobLive, SelectParams, Task};
use crate::engine::{DEFAULT_BUDGET, DEFAULT_MC_PASSES, DEFAULT_TILE_SIZE};
use crate::model::ModelRole;
use crate::sampling::Strategy;
use crate::store::{
    Db, JobRow, JobStatus, LabelRow, Project, RoundRow, SceneInput, SceneRow, SceneStatus,
};

type ApiResult<T> = Result<T, ApiError>;

/// Runs `f` with the database on a blocking thread.
async fn with_db<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&mut Db) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut db = state
            .db
            .lock()
            .map_err(|_| ApiError::internal("database lock poisoned"))?;
        f(&mut db)
    })
    .await
    .map_err(ApiError::internal)?
}

fn project_or_404(db: &Db, id: i64) -> ApiResult<Project> {
    db.project(id)?
        .ok_or_else(|| ApiError::not_found(&format!("project {id}")))
}

/// `GET /health`: version, schema, which execution provider runs and why, the
/// selection strategies offered (the plugin's list) with the default, the ranking
/// metrics and the reserved `unusable` label class.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "Version, schema version, which execution provider (CUDA or CPU) runs and why, the strategies (with the default), the metrics and the reserved unusable class", body = Object)))]
pub async fn health(State(state): State<Arc<AppState>>) -> ApiResult<Json<serde_json::Value>> {
    // No database access: /health must answer while heavy reads hold the database.
    let schema = state.schema_version;
    Ok(Json(serde_json::json!({
        "name": "nexttile",
        "version": env!("CARGO_PKG_VERSION"),
        "schema_version": schema,
        "provider": state.runtime.provider,
        "provider_reason": state.runtime.provider_reason,
        "onnxruntime": state.runtime.library.display().to_string(),
        "token_required": state.config.token.is_some(),
        "strategies": crate::sampling::Strategy::NAMES,
        "default_strategy": crate::sampling::Strategy::product_default().name(),
        // The selection defaults the CLI and the daemon apply (the plugin's dock starts
        // from them).
        "defaults": crate::engine::defaults_json(),
        // Every ranking metric a request may name (predicted_loss: heads with a loss output).
        "metrics": crate::uncertainty::Metric::ALL
            .iter()
            .chain([&crate::uncertainty::Metric::PredictedLoss])
            .map(crate::uncertainty::Metric::name)
            .collect::<Vec<_>>(),
        // The reserved label class every project accepts (excluded, never trained on).
        "unusable_class": crate::aoi::UNUSABLE_CLASS,
    })))
}

/// The ONNX files a `GET /models` lists: those in each model root and one folder
/// below it (`onnx/<model>/*.onnx`), sorted within each root.
fn model_files(roots: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let onnx = |p: &std::path::PathBuf| p.is_file() && p.extension().is_some_and(|e| e == "onnx");
    let list = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for root in roots {
        let mut found = Vec::new();
        for entry in list(root) {
            if entry.is_dir() {
                found.extend(list(&entry).into_iter().filter(onnx));
            } else if onnx(&entry) {
                found.push(entry);
            }
        }
        found.sort();
        out.extend(found);
    }
    out
}

/// `GET /models`: the models under the model roots, with their contracts.
#[utoipa::path(get, path = "/models", tag = "system", responses((status = 200, description = "The ONNX models under the model roots (the shipped onnx/ folder and any --model-root), each with its contract or why it does not fit; `folder` is the shipped folder, `folders` every root", body = Object)))]
pub async fn models(State(state): State<Arc<AppState>>) -> ApiResult<Json<serde_json::Value>> {
    tokio::task::spawn_blocking(move || {
        let roots = &state.config.model_roots;
        let mut out = Vec::new();
        // Each file's contract is read once per version (see `server::models`).
        for p in model_files(roots) {
            match state.models.inspect(&p) {
                Ok(spec) => out.push(serde_json::to_value(&*spec).unwrap_or_default()),
                Err(e) => out.push(serde_json::json!({"path": p, "error": e.to_string()})),
            }
        }
        let folder = crate::model::shipped_model_dir();
        Ok(Json(
            serde_json::json!({"folder": folder, "folders": roots, "models": out}),
        ))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Body of `POST /projects`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Unique name.
    pub name: String,
    /// Encoder ONNX under the model roots, absolute or relative to the first (the
    /// shipped onnx/ folder); default the demo encoder.
    pub encoder: Option<String>,
    /// Head ONNX under the model roots (default: the demo head); its metadata gives the
    /// classes.
    pub head: Option<String>,
}

/// `POST /projects`.
#[utoipa::path(post, path = "/projects", tag = "projects", request_body = NewProject, responses((status = 201, description = "Created", body = Project), (status = 400, description = "`..` in a model path", body = ErrorBody), (status = 403, description = "A model path outside the model roots, or a /vsi path", body = ErrorBody), (status = 409, description = "Name taken", body = ErrorBody), (status = 413, description = "A model file is larger than max_model_bytes", body = ErrorBody), (status = 422, description = "A model is missing, not a regular file, or does not fit the contract", body = ErrorBody)))]
pub async fn create_project(
    State(state): State<Arc<AppState>>,
    Json(body): Json<NewProject>,
) -> ApiResult<Response> {
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::bad_request("name must be 1 to 200 characters"));
    }
    // Checked like rasters, against the model roots; stored canonical, so the project
    // works whatever the daemon's working folder.
    let encoder = project_model(&state, body.encoder.as_deref(), "encoder.onnx")?;
    let head = project_model(&state, body.head.as_deref(), "head.onnx")?;
    let st = state.clone();
    let (enc_spec, head_spec) = tokio::task::spawn_blocking(move || {
        (st.models.inspect(&encoder), st.models.inspect(&head))
    })
    .await
    .map_err(ApiError::internal)?;
    let bad = |e: Arc<crate::model::ModelError>| {
        let status = match *e {
            crate::model::ModelError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    };
    let enc_spec = enc_spec.map_err(bad)?;
    let head_spec = head_spec.map_err(bad)?;
    if enc_spec.role != ModelRole::Encoder || head_spec.role == ModelRole::Encoder {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "encoder must be an encoder model and head a classifier head (see GET /models)",
        ));
    }
    let name = body.name.trim().to_string();
    let project = with_db(&state, move |db| {
        db.create_project(
            &name,
            &enc_spec.path.display().to_string(),
            &head_spec.path.display().to_string(),
            &head_spec.class_names,
            head_spec.multi_label,
        )?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("a project named {name:?} exists"),
            )
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(project)).into_response())
}

/// A project's model path checked against the model roots: `given`, or the demo
/// pair's `default_file`. 403 outside the roots or for /vsi, 400 for `..`, 422 when
/// missing (as every other unusable model file).
fn project_model(
    state: &AppState,
    given: Option<&str>,
    default_file: &str,
) -> ApiResult<std::path::PathBuf> {
    let raw = match given {
        Some(g) => g.to_string(),
        None => {
            let d = crate::model::default_model(default_file);
            d.canonicalize().unwrap_or(d).display().to_string()
        }
    };
    check_model_path(&raw, &state.config.model_roots).map_err(|e| {
        let status = match e {
            PathError::Missing { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            other => return path_error(other),
        };
        ApiError::new(status, e.to_string())
    })
}

/// `GET /projects`.
#[utoipa::path(get, path = "/projects", tag = "projects", responses((status = 200, body = Vec<Project>)))]
pub async fn list_projects(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<Project>>> {
    Ok(Json(with_db(&state, |db| Ok(db.projects()?)).await?))
}

/// `GET /projects/{id}`.
#[utoipa::path(get, path = "/projects/{id}", tag = "projects", params(("id" = i64, Path, description = "Project id")), responses((status = 200, description = "Project, scenes, label count, rounds", body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let v = with_db(&state, move |db| {
        let p = project_or_404(db, id)?;
        Ok(serde_json::json!({
            "project": p,
            "scenes": db.scenes(id)?,
            "labels": db.label_count(id)?,
            "rounds": db.rounds(id)?,
        }))
    })
    .await?;
    Ok(Json(v))
}

/// `DELETE /projects/{id}`.
#[utoipa::path(delete, path = "/projects/{id}", tag = "projects", params(("id" = i64, Path)), responses((status = 204, description = "Deleted with its scenes, labels and rounds"), (status = 404, body = ErrorBody)))]
pub async fn delete_project(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let (gone, scenes) = with_db(&state, move |db| {
        let scenes: Vec<i64> = db.scenes(id)?.iter().map(|s| s.id).collect();
        Ok((db.delete_project(id)?, scenes))
    })
    .await?;
    if gone {
        // Its latest suggestions and region files go with it: SQLite gives a later
        // project (and its scenes) the ids of deleted ones, and exports read these.
        let data = state.config.data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let suggestions = data.join("suggestions");
            let mut dirs = vec![
                suggestions.join(format!("project-{id}")),
                data.join("region").join(format!("project-{id}")),
            ];
            dirs.extend(scenes.iter().map(|s| suggestions.join(s.to_string())));
            for dir in dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        })
        .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&format!("project {id}")))
    }
}

/// Body of `POST /projects/{id}/scenes`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScene {
    /// Raster path, absolute or relative to the first raster root: a raster, a STAC
    /// item, or a STAC ItemCollection or folder of item files (each item added as a
    /// scene of its own).
    pub path: String,
    /// Optional AOI: a GeoJSON object (FeatureCollection, Feature or geometry).
    #[schema(value_type = Option<Object>)]
    pub aoi: Option<serde_json::Value>,
    /// CRS of the AOI when it is not WGS 84 and does not say.
    pub aoi_crs: Option<String>,
    /// A second raster of the same place for multi-modal encoders (e.g. the
    /// Sentinel-1 raster beside a Sentinel-2 scene), under the same roots:
    /// warped onto the scene's grid and stacked after its bands.
    pub pair: Option<String>,
    /// Sensor preset (the CLI's `--sensor`): `s2-l1c`, `s2-l2a`, `landsat8`,
    /// `landsat9`, `landsat7`, `reflectance` or `rgb`.
    pub sensor: Option<String>,
    /// `auto` (default), `off` or a pixel size in metres such as `"30"` (the CLI's
    /// `--resample`).
    pub resample: Option<String>,
    /// Replaces the encoder's (or the preset's) `input_scale` (`--input-scale`).
    pub input_scale: Option<f32>,
    /// Replaces the encoder's (or the preset's) `input_offset` (`--input-offset`).
    pub input_offset: Option<f32>,
}

impl NewScene {
    /// How the raster is read, checked: 422 naming the field and what it takes.
    fn input(&self) -> ApiResult<SceneInput> {
        if let Some(s) = &self.sensor
            && crate::raster::sensor_preset(s).is_none()
        {
            return Err(unprocessable(format!(
                "sensor '{s}' is not a preset; use one of {}",
                crate::raster::sensor_names()
            )));
        }
        if let Some(r) = &self.resample {
            r.parse::<crate::engine::Resample>()
                .map_err(|e| unprocessable(e.to_string().replace("--resample", "resample")))?;
        }
        if let Some(x) = self.input_scale
            && (!x.is_finite() || x == 0.0)
        {
            return Err(unprocessable(format!(
                "input_scale must be a finite, non-zero number, got {x}"
            )));
        }
        if let Some(x) = self.input_offset
            && !x.is_finite()
        {
            return Err(unprocessable(format!(
                "input_offset must be a finite number, got {x}"
            )));
        }
        Ok(SceneInput {
            sensor: self.sensor.clone(),
            resample: self.resample.clone(),
            input_scale: self.input_scale,
            input_offset: self.input_offset,
            item: None,
        })
    }
}

/// 422 with `e`'s message.
fn unprocessable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
}

fn path_error(e: PathError) -> ApiError {
    let status = match e {
        PathError::Missing { .. } => StatusCode::NOT_FOUND,
        PathError::ParentComponent { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    ApiError::new(status, e.to_string())
}

/// 403 for a raster that reads outside the roots, 422 for any other raster error.
fn raster_error(e: crate::raster::RasterError) -> ApiError {
    let status = match &e {
        crate::raster::RasterError::Confined(c) if c.is_forbidden() => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

fn new_job(state: &AppState, db: &Db, project: i64, kind: &str) -> ApiResult<i64> {
    let id = db.create_job(Some(project), kind)?;
    if let Ok(mut jobs) = state.jobs.lock() {
        jobs.insert(
            id,
            JobLive {
                status: JobStatus::Queued,
                stage: "queued".into(),
                done: 0,
                total: 0,
                cancel: Arc::new(AtomicBool::new(false)),
            },
        );
    }
    Ok(id)
}

/// Queues `task` for job `job`; when the queue refuses it, the job is dropped from the
/// live table and recorded as failed, and the refusal (e.g. 429) is returned.
async fn submit_job(state: &Arc<AppState>, job: i64, task: Task) -> ApiResult<()> {
    submit_jobs(state, &[job], task).await
}

/// [`submit_job`] for a task that runs several jobs: all of them are failed when the
/// queue refuses it.
async fn submit_jobs(state: &Arc<AppState>, jobs: &[i64], task: Task) -> ApiResult<()> {
    let Err(e) = state.queue.submit(task) else {
        return Ok(());
    };
    if let Ok(mut live) = state.jobs.lock() {
        for job in jobs {
            live.remove(job);
        }
    }
    let why = e.message.clone();
    let jobs = jobs.to_vec();
    with_db(state, move |db| {
        for job in jobs {
            db.set_job(job, JobStatus::Failed, Some(&why), None)?;
        }
        Ok(())
    })
    .await?;
    Err(e)
}

/// The tile size a project's scoring jobs use: its encoder's (`tiles_size` metadata),
/// else the default; and the encoder's resolution (metres), which `resample` goes to. Its models are checked against the model roots first (403 when a
/// stored path is no longer under them, 422 when gone), and the encoder's contract comes
/// from the model cache.
async fn project_tile_size(
    state: &Arc<AppState>,
    project: &Project,
) -> ApiResult<(usize, Option<f64>)> {
    let roots = &state.config.model_roots;
    let refused = |e: PathError| {
        let status = match e {
            PathError::Missing { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::FORBIDDEN,
        };
        ApiError::new(status, format!("the project's model: {e}"))
    };
    let encoder = check_model_path(&project.encoder, roots).map_err(refused)?;
    check_model_path(&project.head, roots).map_err(refused)?;
    let st = state.clone();
    let spec = tokio::task::spawn_blocking(move || st.models.inspect(&encoder))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| unprocessable(format!("the project's encoder: {e}")))?;
    Ok((
        spec.tile_size.unwrap_or(DEFAULT_TILE_SIZE),
        spec.resolution_m,
    ))
}

/// Most STAC items one `POST /projects/{id}/scenes` adds (an ItemCollection or a folder
/// of items; each is a scene with its own job).
pub const MAX_ITEMS_PER_POST: usize = 100;

/// What is checked of a scene before it is kept (GDAL, blocking): the raster, STAC item
/// or item of a collection opens, with every file it makes GDAL read under the roots;
/// its pair opens and overlaps; its tiles on the grid the job tiles fit `max_tiles`.
struct Probe {
    pair: Option<std::path::PathBuf>,
    aoi: Option<crate::aoi::Aoi>,
    resample: Option<crate::engine::Resample>,
    model_m: Option<f64>,
    tile_size: usize,
    max_tiles: usize,
    confine: crate::raster::Confinement,
}

impl Probe {
    /// Checks the scene at `path` (the item `item` of it, for a collection).
    fn check(&self, path: &std::path::Path, item: Option<&str>) -> ApiResult<()> {
        let confine = Some(&self.confine);
        // Every file the raster makes GDAL read (VRT sources, side files; a STAC
        // item's assets) is checked against the roots before GDAL opens it.
        let stack = match item {
            Some(id) => Some(
                crate::raster::stack_collection_item(path, id, confine)
                    .map_err(raster_error)?
                    .1,
            ),
            None => match crate::raster::read_stac_item(path).map_err(raster_error)? {
                Some(doc) => Some(
                    crate::raster::stack_stac_item_with(path, &doc, confine)
                        .map_err(raster_error)?,
                ),
                None => None,
            },
        };
        let scene = match &stack {
            Some(s) => crate::raster::Scene::open(s.vrt.path()),
            None => crate::raster::Scene::open_with(path, confine),
        }
        .map_err(raster_error)?;
        if let Some(second) = &self.pair {
            // Refuse a pair that does not open or overlap now, not in the job.
            crate::raster::stack_pair(&scene, second, confine).map_err(raster_error)?;
        }
        // Counted on the grid the job tiles: the resampled one when it resamples.
        let (scene, _warped) = crate::engine::scene_to_tile(scene, self.resample, self.model_m)
            .map_err(unprocessable)?;
        // The CLI's rule: whole tiles, inside the AOI when there is one. A scene
        // smaller than one tile is left to the job, which says why.
        let tiles = match crate::tiling::TileGrid::new(
            scene.width,
            scene.height,
            self.tile_size,
            0,
            scene.geo_transform,
        ) {
            Ok(grid) => match &self.aoi {
                Some(aoi) => {
                    let shape = aoi.to_scene_crs(&scene.crs_wkt).map_err(unprocessable)?;
                    crate::tiling::tiles_in_aoi(&grid, &shape)
                        .map_err(unprocessable)?
                        .len()
                }
                None => grid.len(),
            },
            Err(_) => 0,
        };
        if tiles > self.max_tiles {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                crate::engine::too_many_tiles(tiles, self.tile_size, self.max_tiles),
            ));
        }
        Ok(())
    }
}

/// A scene to add: its file and, for an item of a STAC ItemCollection, the item's id.
type NewSceneFile = (std::path::PathBuf, Option<String>);

/// The scenes a posted path adds, each checked by `probe`: the raster or STAC item
/// itself (`false`), or every item of a STAC ItemCollection or folder of items
/// (`true`); all or none.
fn scenes_to_add(
    path: &std::path::Path,
    config: &super::config::ServerConfig,
    probe: &Probe,
) -> ApiResult<(bool, Vec<NewSceneFile>)> {
    let Some(listed) = crate::raster::list_stac_items(path).map_err(raster_error)? else {
        if path.is_dir() {
            return Err(unprocessable(format!(
                "{} is a folder without .json files; give a raster file, a STAC item, a STAC ItemCollection, or a folder of STAC item files",
                path.display()
            )));
        }
        probe.check(path, None)?;
        return Ok((false, vec![(path.to_path_buf(), None)]));
    };
    if listed.items.len() > MAX_ITEMS_PER_POST {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} holds {} STAC items, more than the {MAX_ITEMS_PER_POST} one request adds; split it into smaller collections or folders, or post the items one by one",
                path.display(),
                listed.items.len()
            ),
        ));
    }
    let mut scenes = Vec::with_capacity(listed.items.len());
    for item in &listed.items {
        let prefix = |e: ApiError| {
            let message = format!(
                "item '{}' of {}: {}; no scene was added",
                item.id,
                path.display(),
                e.message
            );
            ApiError { message, ..e }
        };
        if let Some(problem) = &item.problem {
            return Err(prefix(unprocessable(problem)));
        }
        // A folder's item file is checked like a posted path (a link out of the roots).
        let file = match item.in_collection {
            true => item.file.clone(),
            false => check_raster_path(
                &item.file.display().to_string(),
                &config.roots,
                config.allow_vsi,
            )
            .map_err(|e| prefix(path_error(e)))?,
        };
        let id = item.in_collection.then(|| item.id.clone());
        probe.check(&file, id.as_deref()).map_err(prefix)?;
        scenes.push((file, id));
    }
    Ok((true, scenes))
}

/// `POST /projects/{id}/scenes`: checks the path (a raster, a STAC item, or a STAC
/// ItemCollection or folder of items: each item a scene), the input options and the
/// size (on the grid the job tiles), then queues the scoring.
#[utoipa::path(post, path = "/projects/{id}/scenes", tag = "scenes", params(("id" = i64, Path)), request_body = NewScene, responses((status = 202, description = "Scene added; a scoring job started (`{scene, job, poll}`). For a STAC ItemCollection or a folder of items, every item added as a scene with its own job: `{scenes, jobs, poll}`", body = Object), (status = 400, description = "`..` in the path", body = ErrorBody), (status = 403, description = "Outside the raster roots, a /vsi path, or a raster (VRT) whose sources or side files, or a STAC item whose assets, are outside the roots or virtual; or the project's models are no longer under the model roots", body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, description = "Too many tiles at the encoder's tile size (on the resampled grid when `resample` resamples), or more than 100 STAC items in one request", body = ErrorBody), (status = 422, description = "Not a readable raster or STAC item with a CRS (for a collection or folder: any of its items, named; nothing is added), a bad AOI, or a bad sensor, resample, input_scale or input_offset", body = ErrorBody), (status = 429, description = "Job queue full; the scene is not kept", body = ErrorBody)))]
pub async fn add_scene(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Json(body): Json<NewScene>,
) -> ApiResult<Response> {
    let roots = &state.config.roots;
    let path = match check_raster_path(&body.path, roots, state.config.allow_vsi) {
        Ok(p) => p,
        // A folder of STAC items under the roots (each item file is checked again).
        Err(e @ PathError::OutsideRoots { .. }) => {
            check_raster_folder(&body.path, roots).map_err(|_| path_error(e))?
        }
        Err(e) => return Err(path_error(e)),
    };
    let pair = match &body.pair {
        Some(p) => Some(
            check_raster_path(p, &state.config.roots, state.config.allow_vsi)
                .map_err(path_error)?,
        ),
        None => None,
    };
    // Every CRS and AOI is checked now, not inside the job.
    if let Some(crs) = &body.aoi_crs {
        crate::crs::parse_srs(crs).map_err(|e| unprocessable(format!("aoi_crs: {e}")))?;
    }
    let aoi_text = body.aoi.as_ref().map(|a| a.to_string());
    let aoi = match &aoi_text {
        Some(text) => Some(
            crate::aoi::Aoi::from_geojson(text, body.aoi_crs.as_deref()).map_err(unprocessable)?,
        ),
        None => None,
    };
    // Tiles are counted at the size the job will use: the encoder's.
    let project = with_db(&state, move |db| project_or_404(db, id)).await?;
    let (tile_size, model_m) = project_tile_size(&state, &project).await?;
    let input = body.input()?;
    let resample = match &input.resample {
        Some(r) => Some(r.parse().map_err(unprocessable)?),
        None => None,
    };
    let probe = Probe {
        pair: pair.clone(),
        aoi,
        resample,
        model_m,
        tile_size,
        max_tiles: state.config.max_tiles,
        confine: state.config.confinement(),
    };
    // Open the raster(s) (GDAL, blocking) to refuse unreadable or oversized scenes now.
    let (st, probed) = (state.clone(), path.clone());
    let (many, scenes) =
        tokio::task::spawn_blocking(move || scenes_to_add(&probed, &st.config, &probe))
            .await
            .map_err(ApiError::internal)??;
    let st = state.clone();
    let (project, added) = with_db(&state, move |db| {
        let project = project_or_404(db, id)?;
        let mut added = Vec::with_capacity(scenes.len());
        for (file, item) in scenes {
            let job = new_job(&st, db, id, "score")?;
            let scene = db.add_scene(
                id,
                &file.display().to_string(),
                aoi_text.as_deref(),
                body.aoi_crs.as_deref(),
                pair.as_ref().map(|p| p.display().to_string()).as_deref(),
                Some(job),
            )?;
            let input = SceneInput {
                item,
                ..input.clone()
            };
            db.set_scene_input(scene.id, &input)?;
            added.push((job, SceneRow { input, ..scene }));
        }
        Ok((project, added))
    })
    .await?;
    queue_added(&state, project, &added).await?;
    let poll = |job: &i64| format!("/jobs/{job}");
    let answer = match added.as_slice() {
        [(job, scene)] if !many => {
            serde_json::json!({"scene": scene, "job": job, "poll": poll(job)})
        }
        _ => serde_json::json!({
            "scenes": added.iter().map(|(_, s)| s).collect::<Vec<_>>(),
            "jobs": added.iter().map(|(j, _)| j).collect::<Vec<_>>(),
            "poll": added.iter().map(|(j, _)| poll(j)).collect::<Vec<_>>(),
        }),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Queues the scoring of newly added scenes (one task, one place in the queue); when the
/// queue refuses it, every job is recorded failed and no scene is kept: it would never
/// be scored, and suggestions would answer 409 "still being scored" for it.
async fn queue_added(
    state: &Arc<AppState>,
    project: Project,
    added: &[(i64, SceneRow)],
) -> ApiResult<()> {
    let task = match added {
        [(job, scene)] => Task::Score {
            job: *job,
            project,
            scene: scene.clone(),
        },
        _ => Task::ScoreMany {
            project,
            scenes: added.to_vec(),
        },
    };
    let jobs: Vec<i64> = added.iter().map(|(j, _)| *j).collect();
    let Err(refused) = submit_jobs(state, &jobs, task).await else {
        return Ok(());
    };
    let ids: Vec<i64> = added.iter().map(|(_, s)| s.id).collect();
    with_db(state, move |db| {
        for id in ids {
            db.delete_scene(id)?;
        }
        Ok(())
    })
    .await?;
    Err(refused)
}

/// Body of `POST /projects/{id}/scenes/{scene}/rescore`: no fields (send `{}`); the
/// scene is scored again as it was added (same raster, pair, AOI and CRS).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescoreBody {}

/// `POST /projects/{id}/scenes/{scene}/rescore`: queues a new scoring job for a scene
/// (one that failed or was interrupted, or a scored one whose raster changed); 409
/// while it is being scored.
#[utoipa::path(post, path = "/projects/{id}/scenes/{scene}/rescore", tag = "scenes", params(("id" = i64, Path), ("scene" = i64, Path)), request_body(content = RescoreBody, description = "Empty: `{}`"), responses((status = 202, description = "A new scoring job started; the scene is `scoring` until it ends", body = Object), (status = 403, description = "The raster or its pair is no longer under the raster roots", body = ErrorBody), (status = 404, description = "No such project or scene, or its raster is gone", body = ErrorBody), (status = 409, description = "The scene is being scored: wait for its job", body = ErrorBody), (status = 429, description = "Job queue full; the scene keeps its status", body = ErrorBody)))]
pub async fn rescore_scene(
    State(state): State<Arc<AppState>>,
    Path((id, scene_id)): Path<(i64, i64)>,
    // `{}` or no body: nothing to read, but unknown fields are refused (422).
    _body: Option<Json<RescoreBody>>,
) -> ApiResult<Response> {
    let st = state.clone();
    let (project, scene, before) = with_db(&state, move |db| {
        let project = project_or_404(db, id)?;
        let scene = db
            .scene(scene_id)?
            .filter(|s| s.project_id == id)
            .ok_or_else(|| ApiError::not_found(&format!("scene {scene_id} of project {id}")))?;
        if scene.status == SceneStatus::Scoring {
            let job = scene.job.map_or(String::new(), |j| format!(" by job {j}"));
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "scene {scene_id} is being scored{job}; wait for that job to end (GET /jobs/{{id}}) before rescoring it"
                ),
            ));
        }
        // The stored paths are checked again: the roots or the files may have changed.
        let (roots, vsi) = (&st.config.roots, st.config.allow_vsi);
        for p in std::iter::once(&scene.path).chain(scene.pair.as_ref()) {
            check_raster_path(p, roots, vsi).map_err(path_error)?;
        }
        let before = (scene.job, scene.status);
        let job = new_job(&st, db, id, "score")?;
        db.set_scene_job(scene_id, Some(job), SceneStatus::Scoring)?;
        let scene = SceneRow {
            job: Some(job),
            status: SceneStatus::Scoring,
            ..scene
        };
        Ok((project, scene, before))
    })
    .await?;
    let job = scene.job.unwrap_or_default();
    let task = Task::Score {
        job,
        project,
        scene: scene.clone(),
    };
    if let Err(refused) = submit_job(&state, job, task).await {
        // Not queued: the scene keeps its earlier job and status.
        with_db(&state, move |db| {
            Ok(db.set_scene_job(scene_id, before.0, before.1)?)
        })
        .await?;
        return Err(refused);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"scene": scene, "job": job, "poll": format!("/jobs/{job}")})),
    )
        .into_response())
}

/// `GET /projects/{id}/scenes`.
#[utoipa::path(get, path = "/projects/{id}/scenes", tag = "scenes", params(("id" = i64, Path)), responses((status = 200, body = Vec<SceneRow>)))]
pub async fn list_scenes(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<SceneRow>>> {
    Ok(Json(
        with_db(&state, move |db| {
            project_or_404(db, id)?;
            Ok(db.scenes(id)?)
        })
        .await?,
    ))
}

/// `GET /jobs/{id}`: live progress while queued or running, the stored record after.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = i64, Path)), responses((status = 200, description = "Status, stage, tiles done / total, message, result", body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let live = state.jobs.lock().ok().and_then(|j| j.get(&id).cloned());
    let row = with_db(&state, move |db| {
        db.job(id)?
            .ok_or_else(|| ApiError::not_found(&format!("job {id}")))
    })
    .await?;
    let mut v = serde_json::to_value(&row).unwrap_or_default();
    if let Some(live) = live {
        v["status"] = live.status.name().into();
        v["stage"] = live.stage.into();
        v["done"] = live.done.into();
        v["total"] = live.total.into();
    }
    Ok(Json(v))
}

/// `DELETE /jobs/{id}`: asks a queued or running job to stop; a job that has ended
/// is not changed (409 naming its state).
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs", params(("id" = i64, Path)), responses((status = 202, description = "Cancellation requested: the job ends `cancelled` (or `done`, if it was finishing)"), (status = 404, description = "No such job", body = ErrorBody), (status = 409, description = "The job has ended (done, failed, cancelled or interrupted); the message names its state", body = ErrorBody)))]
pub async fn cancel_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let found = state
        .jobs
        .lock()
        .ok()
        .and_then(|j| {
            j.get(&id)
                .map(|l| l.cancel.store(true, std::sync::atomic::Ordering::SeqCst))
        })
        .is_some();
    if found {
        return Ok(StatusCode::ACCEPTED);
    }
    let (row, scene) = with_db(&state, move |db| {
        let row = db
            .job(id)?
            .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
        // The scene this job last scored, if any, for the hint.
        let scene = match row.project_id {
            Some(p) if row.kind == "score" => db.scenes(p)?.into_iter().find(|s| s.job == Some(id)),
            _ => None,
        };
        Ok((row, scene))
    })
    .await?;
    let hint = match scene {
        Some(s) if s.status != SceneStatus::Scored => format!(
            "; to score its scene again, POST /projects/{}/scenes/{}/rescore",
            s.project_id, s.id
        ),
        _ => String::new(),
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "job {id} has already ended: it is {}; only a queued or running job can be cancelled{hint}",
            row.status
        ),
    ))
}

/// Body of suggestion and round requests (all optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectBody {
    /// Scene id (default: the project's latest scene). Not with `"scope": "project"`.
    pub scene_id: Option<i64>,
    /// `scene` (the default: one scene, `scene_id` or the latest) or `project`: one
    /// selection (and, for a round, one retraining) over every scored scene of the
    /// project; each suggestion then names its `scene_id`.
    pub scope: Option<Scope>,
    /// Strategy: a name (`auto`, the default, `mcfps`, `top_k`, `random`, `coreset`,
    /// `clustering`, `typiclust`, `probcover`) or an object with parameters
    /// (`{"mcfps": {"neighbours": 8}}`, `{"auto": {"switch_per_class": 10}}`).
    #[schema(value_type = Option<Object>)]
    pub strategy: Option<serde_json::Value>,
    /// Ranking metric name (default: margin; least_confidence for mcfps).
    pub metric: Option<String>,
    /// Suggestions wanted.
    pub budget: Option<usize>,
    /// MC passes.
    pub mc_passes: Option<usize>,
    /// Minimum ground spacing, metres.
    pub min_spacing_m: Option<f64>,
    /// Seed.
    pub seed: Option<u64>,
    /// AOI (GeoJSON object) limiting the candidates.
    #[schema(value_type = Option<Object>)]
    pub aoi: Option<serde_json::Value>,
    /// CRS of the AOI.
    pub aoi_crs: Option<String>,
}

/// What a suggestions request or a round selects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One scene: `scene_id`, else the project's latest.
    #[default]
    Scene,
    /// Every scored scene of the project (a region project).
    Project,
}

/// The body's scope; 422 for `"scope": "project"` with a `scene_id`.
fn body_scope(b: &SelectBody) -> ApiResult<Scope> {
    let scope = b.scope.unwrap_or_default();
    if scope == Scope::Project && b.scene_id.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "\"scope\": \"project\" selects over every scored scene of the project: leave out scene_id (or use \"scope\": \"scene\")",
        ));
    }
    Ok(scope)
}

fn select_params(b: &SelectBody) -> ApiResult<SelectParams> {
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    let strategy = match &b.strategy {
        None => Strategy::product_default(),
        Some(serde_json::Value::String(s)) => s
            .parse()
            .map_err(|e: crate::sampling::SamplingError| bad(e.to_string()))?,
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            bad(format!(
                "strategy: {e}; use one of {}",
                Strategy::names_list()
            ))
        })?,
    };
    let metric = match &b.metric {
        None => crate::engine::default_metric(&strategy),
        Some(m) => m
            .parse()
            .map_err(|e: crate::uncertainty::UncertaintyError| bad(e.to_string()))?,
    };
    let budget = b.budget.unwrap_or(DEFAULT_BUDGET);
    if budget == 0 || budget > crate::engine::MAX_BUDGET {
        return Err(bad(format!(
            "budget must be between 1 and {}, got {budget}",
            crate::engine::MAX_BUDGET
        )));
    }
    let mc_passes = b.mc_passes.unwrap_or(DEFAULT_MC_PASSES);
    if !(1..=crate::engine::MAX_MC_PASSES).contains(&mc_passes) {
        return Err(bad(format!(
            "mc_passes must be between 1 and {}, got {mc_passes} (1 = deterministic)",
            crate::engine::MAX_MC_PASSES
        )));
    }
    let min_spacing_m = b
        .min_spacing_m
        .unwrap_or(crate::engine::DEFAULT_MIN_SPACING_M);
    if !min_spacing_m.is_finite() || min_spacing_m < 0.0 {
        return Err(bad("min_spacing_m must be a distance in metres >= 0".into()));
    }
    // The AOI and its CRS are checked here, before the engine queue, as for scenes.
    if let Some(crs) = &b.aoi_crs {
        crate::crs::parse_srs(crs).map_err(|e| bad(format!("aoi_crs: {e}")))?;
    }
    if let Some(aoi) = &b.aoi {
        crate::aoi::Aoi::from_geojson(&aoi.to_string(), b.aoi_crs.as_deref())
            .map_err(|e| bad(format!("aoi: {e}")))?;
    }
    Ok(SelectParams {
        strategy,
        metric,
        budget,
        mc_passes,
        min_spacing_m,
        seed: b.seed.unwrap_or(crate::engine::DEFAULT_SEED),
        aoi: b.aoi.as_ref().map(|a| (a.to_string(), b.aoi_crs.clone())),
    })
}

/// 409 for a scene that is not `scored`: still scoring (poll its job), or failed or
/// interrupted (say why, and how to score it again).
fn not_scored(scene: &SceneRow, job: Option<&JobRow>) -> ApiError {
    let (project, id) = (scene.project_id, scene.id);
    let rescore = format!("POST /projects/{project}/scenes/{id}/rescore to score it again");
    let message = match (scene.status, job) {
        (SceneStatus::Scored, _) => format!("scene {id} has no scoring output; {rescore}"),
        (SceneStatus::Scoring, Some(j)) => {
            format!(
                "scene {id} is still being scored; poll its job (GET /jobs/{})",
                j.id
            )
        }
        (SceneStatus::Scoring, None) => format!("scene {id} is still being scored"),
        (SceneStatus::Failed, Some(j)) => format!(
            "scene {id} failed to score (job {}: {}); fix the cause, then {rescore}",
            j.id,
            j.message.as_deref().unwrap_or("no message")
        ),
        (SceneStatus::Failed, None) => format!("scene {id} failed to score; {rescore}"),
        (SceneStatus::Interrupted, Some(j)) => format!(
            "scene {id} was interrupted before it was scored (job {} {}); {rescore}",
            j.id, j.status
        ),
        (SceneStatus::Interrupted, None) => {
            format!("scene {id} was interrupted before it was scored; {rescore}")
        }
    };
    ApiError::new(StatusCode::CONFLICT, message)
}

/// Ok for a `scored` scene; otherwise [`not_scored`]'s 409, naming its job.
async fn require_scored(state: &Arc<AppState>, scene: &SceneRow) -> ApiResult<()> {
    if scene.status == SceneStatus::Scored {
        return Ok(());
    }
    let scene = scene.clone();
    with_db(state, move |db| {
        let job = match scene.job {
            Some(j) => db.job(j)?,
            None => None,
        };
        Err(not_scored(&scene, job.as_ref()))
    })
    .await
}

async fn project_and_scene(
    state: &Arc<AppState>,
    id: i64,
    scene_id: Option<i64>,
) -> ApiResult<(Project, SceneRow)> {
    with_db(state, move |db| {
        let p = project_or_404(db, id)?;
        let scene = match scene_id {
            Some(s) => db
                .scene(s)?
                .filter(|s| s.project_id == id)
                .ok_or_else(|| ApiError::not_found(&format!("scene {s} of project {id}")))?,
            None => db.scenes(id)?.pop().ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "the project has no scene yet: POST /projects/{id}/scenes first",
                )
            })?,
        };
        Ok((p, scene))
    })
    .await
}

/// `POST /projects/{id}/suggestions`: ranked "label next" tiles as a GeoJSON
/// FeatureCollection (EPSG:4326), from cached embeddings and the latest round's head.
#[utoipa::path(post, path = "/projects/{id}/suggestions", tag = "suggestions", params(("id" = i64, Path)), request_body(content = SelectBody, description = "All fields optional"), responses((status = 200, description = "Ranked GeoJSON FeatureCollection, EPSG:4326", body = Object), (status = 409, description = "No scene yet, or the scene is not `scored`: still scoring (poll its job), or failed or interrupted (rescore it)", body = ErrorBody), (status = 422, description = "Bad strategy, metric or parameter", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn suggestions(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    body: Option<Json<SelectBody>>,
) -> ApiResult<Json<serde_json::Value>> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let params = select_params(&body)?;
    if body_scope(&body)? == Scope::Project {
        let project = with_db(&state, move |db| project_or_404(db, id)).await?;
        let (tx, rx) = oneshot::channel();
        state.queue.submit(Task::SuggestRegion {
            project,
            params,
            reply: tx,
        })?;
        let fc = rx
            .await
            .map_err(|_| ApiError::internal("the engine worker stopped"))??;
        return Ok(Json(fc));
    }
    let (project, scene) = project_and_scene(&state, id, body.scene_id).await?;
    require_scored(&state, &scene).await?;
    let (tx, rx) = oneshot::channel();
    state.queue.submit(Task::Suggest {
        project,
        scene,
        params,
        reply: tx,
    })?;
    let fc = rx
        .await
        .map_err(|_| ApiError::internal("the engine worker stopped"))??;
    Ok(Json(fc))
}

/// `GET /projects/{id}/scenes/{scene}/heatmap`: the scene's uncertainty COG.
#[utoipa::path(get, path = "/projects/{id}/scenes/{scene}/heatmap", tag = "scenes", params(("id" = i64, Path), ("scene" = i64, Path)), responses((status = 200, description = "Cloud-optimised GeoTIFF: one band per uncertainty metric, the scene CRS", content_type = "image/tiff"), (status = 409, description = "The scene is not `scored`: still scoring (poll its job), or failed or interrupted (rescore it)", body = ErrorBody)))]
pub async fn heatmap(
    State(state): State<Arc<AppState>>,
    Path((id, scene_id)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    let (_, scene) = project_and_scene(&state, id, Some(scene_id)).await?;
    require_scored(&state, &scene).await?;
    let dir = scene
        .out_dir
        .clone()
        .ok_or_else(|| not_scored(&scene, None))?;
    stream_cog(&std::path::Path::new(&dir).join("heatmap.tif")).await
}

/// A COG file as a response, streamed from disk, not loaded whole: a granule's heatmap
/// is large.
async fn stream_cog(path: &std::path::Path) -> ApiResult<Response> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(ApiError::internal)?;
    let bytes = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [(
            header::CONTENT_TYPE,
            "image/tiff; application=geotiff; profile=cloud-optimized",
        )],
        bytes,
    )
        .into_response())
}

/// `GET /projects/{id}/heatmap`: the region heatmap, every scored scene of the project
/// in one COG (the first scene's CRS; each scene from the latest region round that
/// rescored it, else from its scoring).
#[utoipa::path(get, path = "/projects/{id}/heatmap", tag = "scenes", params(("id" = i64, Path)), responses((status = 200, description = "Cloud-optimised GeoTIFF: the per-scene heatmaps mosaicked in the first scene's CRS, one band per uncertainty metric", content_type = "image/tiff"), (status = 404, body = ErrorBody), (status = 409, description = "No scene of the project is scored yet", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn region_heatmap(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let project = with_db(&state, move |db| project_or_404(db, id)).await?;
    let (tx, rx) = oneshot::channel();
    state
        .queue
        .submit(Task::RegionHeatmap { project, reply: tx })?;
    let path = rx
        .await
        .map_err(|_| ApiError::internal("the engine worker stopped"))??;
    stream_cog(&path).await
}

/// Query of `POST /projects/{id}/labels`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CrsQuery {
    /// CRS of the coordinates when not EPSG:4326.
    pub crs: Option<String>,
}

/// `POST /projects/{id}/labels`: stores every label of a FeatureCollection (all or
/// none); 201 means they are on disk.
#[utoipa::path(post, path = "/projects/{id}/labels", tag = "labels", params(("id" = i64, Path), CrsQuery), request_body(content = Object, description = "GeoJSON FeatureCollection of Point/Polygon features with a `class` property", content_type = "application/geo+json"), responses((status = 201, description = "Stored (on disk) with these ids", body = Object), (status = 413, description = "Body too large", body = ErrorBody), (status = 422, description = "Malformed label or unknown class (the message lists the valid classes)", body = ErrorBody)))]
pub async fn post_labels(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Query(q): Query<CrsQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let max = state.config.max_labels;
    let ids = with_db(&state, move |db| {
        let project = project_or_404(db, id)?;
        let labels = parse_labels(&body, &project.classes, q.crs.as_deref(), max)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        Ok(db.add_labels(id, &labels)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"ids": ids}))).into_response())
}

/// Labels per page of `GET /projects/{id}/labels` when `limit` is not given.
pub const DEFAULT_LABELS_PAGE: usize = 1000;

/// The largest `limit` of `GET /projects/{id}/labels`.
pub const MAX_LABELS_PAGE: usize = 10_000;

/// How long a heavy read (a labels page, an export) waits for a free slot before it
/// is answered 503.
const HEAVY_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for one of the few slots for heavy reads (labels pages, exports), so that many
/// clients at once cannot hold many large bodies in memory; 503 with `Retry-After` when
/// none frees up within [`HEAVY_READ_WAIT`].
async fn heavy_read(state: &Arc<AppState>) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    acquire_slot(&state.heavy_reads, HEAVY_READ_WAIT).await
}

/// A permit of `slots`, waiting at most `wait`; 503 (with `Retry-After`) after that.
async fn acquire_slot(
    slots: &Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(ApiError::internal("the daemon is stopping")),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many large reads (labels pages, exports) are running; retry in about {} s (Retry-After)",
                super::error::RETRY_AFTER_S
            ),
        )),
    }
}

/// Query of `GET /projects/{id}/labels`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LabelsQuery {
    /// Labels per page, 1 to 10000 (default 1000).
    pub limit: Option<usize>,
    /// Where the page starts: the `cursor` of the previous page's `next` link (labels
    /// come by id, so a page is stable while labels are added); default the first.
    pub cursor: Option<i64>,
    /// Only labels whose bounding box meets `min_lon,min_lat,max_lon,max_lat`
    /// (EPSG:4326).
    pub bbox: Option<String>,
}

/// A stored label as a GeoJSON Feature.
fn label_feature(l: &LabelRow) -> serde_json::Value {
    serde_json::json!({"type": "Feature", "id": l.id, "geometry": l.geometry,
        "properties": {"id": l.id, "class": l.class, "author": l.author, "source": l.source, "created": l.created, "updated": l.updated}})
}

/// `GET /projects/{id}/labels`: one page of labels as a GeoJSON FeatureCollection
/// (EPSG:4326), by id, with a `next` link while more remain; streamed.
#[utoipa::path(get, path = "/projects/{id}/labels", tag = "labels", params(("id" = i64, Path), LabelsQuery), responses((status = 200, description = "GeoJSON FeatureCollection (EPSG:4326) of at most `limit` labels (default 1000, at most 10000), by id; `next` is the path of the next page (with its `cursor`) while more remain, else null", body = Object, content_type = "application/geo+json"), (status = 422, description = "`limit` outside 1 to 10000, or a malformed `bbox`", body = ErrorBody), (status = 503, description = "Too many heavy reads at once; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn get_labels(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Query(q): Query<LabelsQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(DEFAULT_LABELS_PAGE);
    if !(1..=MAX_LABELS_PAGE).contains(&limit) {
        return Err(unprocessable(format!(
            "limit must be between 1 and {MAX_LABELS_PAGE} labels per page, got {limit}; follow `next` for more"
        )));
    }
    let bbox = q
        .bbox
        .as_deref()
        .map(super::labels::parse_bbox)
        .transpose()
        .map_err(unprocessable)?;
    let after = q.cursor.unwrap_or(0);
    let permit = heavy_read(&state).await?;
    let (page, more) = with_db(&state, move |db| {
        project_or_404(db, id)?;
        let keep = |l: &LabelRow| {
            bbox.is_none_or(|b| {
                super::labels::geometry_bbox(&l.geometry)
                    .is_some_and(|g| super::labels::bboxes_meet(&g, &b))
            })
        };
        Ok(db.labels_page(id, after, limit, &keep)?)
    })
    .await?;
    let next = match page.last() {
        Some(last) if more => {
            let bbox = bbox.map_or(String::new(), |[a, b, c, d]| {
                format!("&bbox={a},{b},{c},{d}")
            });
            Some(format!(
                "/projects/{id}/labels?limit={limit}&cursor={}{bbox}",
                last.id
            ))
        }
        _ => None,
    };
    let head = format!(
        r#"{{"type":"FeatureCollection","limit":{limit},"next":{},"features":["#,
        serde_json::Value::from(next)
    );
    // Serialised 256 features at a time as the client reads, never the page at once.
    let mut chunks = Vec::new();
    let mut rows = page.into_iter().peekable();
    while rows.peek().is_some() {
        chunks.push(rows.by_ref().take(256).collect::<Vec<LabelRow>>());
    }
    let features = chunks.into_iter().enumerate().map(|(i, chunk)| {
        let mut out = Vec::new();
        for (j, l) in chunk.iter().enumerate() {
            if i > 0 || j > 0 {
                out.push(b',');
            }
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &label_feature(l));
        }
        Bytes::from(out)
    });
    let parts = std::iter::once(Bytes::from(head))
        .chain(features)
        .chain(std::iter::once(Bytes::from_static(b"]}")));
    // The heavy-read slot is held until the body is sent.
    let stream = futures_util::stream::iter(parts.map(move |b| {
        let _slot = &permit;
        Ok::<Bytes, std::convert::Infallible>(b)
    }));
    Ok((
        [(header::CONTENT_TYPE, "application/geo+json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Body of `PATCH /projects/{id}/labels/{label}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelPatch {
    /// New class.
    pub class: Option<String>,
    /// New GeoJSON geometry (EPSG:4326).
    #[schema(value_type = Option<Object>)]
    pub geometry: Option<serde_json::Value>,
}

/// `PATCH /projects/{id}/labels/{label}`: corrects a label.
#[utoipa::path(patch, path = "/projects/{id}/labels/{label}", tag = "labels", params(("id" = i64, Path), ("label" = i64, Path)), request_body = LabelPatch, responses((status = 204, description = "Corrected"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_label(
    State(state): State<Arc<AppState>>,
    Path((id, label)): Path<(i64, i64)>,
    Json(p): Json<LabelPatch>,
) -> ApiResult<StatusCode> {
    let max = state.config.max_labels;
    let ok = with_db(&state, move |db| {
        let project = project_or_404(db, id)?;
        // Validate through the same parser as new labels.
        let Some(current) = db.label(id, label)? else {
            return Err(ApiError::not_found(&format!("label {label}")));
        };
        let class = p.class.clone().unwrap_or(current.class);
        let geometry = p.geometry.clone().unwrap_or(current.geometry);
        let doc = serde_json::json!({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"class": class}, "geometry": geometry}]});
        let parsed = parse_labels(doc.to_string().as_bytes(), &project.classes, None, max)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        let new = &parsed[0];
        Ok(db.update_label(id, label, Some(&new.class), Some(&new.geometry))?)
    })
    .await?;
    if ok {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&format!("label {label}")))
    }
}

/// `DELETE /projects/{id}/labels/{label}`.
#[utoipa::path(delete, path = "/projects/{id}/labels/{label}", tag = "labels", params(("id" = i64, Path), ("label" = i64, Path)), responses((status = 204, description = "Deleted (kept in the database, marked deleted)"), (status = 404, body = ErrorBody)))]
pub async fn delete_label(
    State(state): State<Arc<AppState>>,
    Path((id, label)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let ok = with_db(&state, move |db| Ok(db.delete_label(id, label)?)).await?;
    if ok {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&format!("label {label}")))
    }
}

/// `POST /projects/{id}/rounds`: retrain the head on all labels and rescore (a job).
#[utoipa::path(post, path = "/projects/{id}/rounds", tag = "rounds", params(("id" = i64, Path)), request_body(content = SelectBody, description = "All fields optional"), responses((status = 202, description = "Retraining job started", body = Object), (status = 409, description = "No labels or no scene yet", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn start_round(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    body: Option<Json<SelectBody>>,
) -> ApiResult<Response> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let params = select_params(&body)?;
    let scope = body_scope(&body)?;
    let (project, scene) = project_and_scene(&state, id, body.scene_id).await?;
    let st = state.clone();
    let job = with_db(&state, move |db| {
        if db.labels(id)?.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "the project has no labels yet: POST /projects/{id}/labels first",
            ));
        }
        new_job(&st, db, id, "round")
    })
    .await?;
    let task = match scope {
        Scope::Project => Task::RoundRegion {
            job,
            project,
            params,
        },
        Scope::Scene => Task::Round {
            job,
            project,
            scene,
            params,
        },
    };
    submit_job(&state, job, task).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"job": job, "poll": format!("/jobs/{job}")})),
    )
        .into_response())
}

/// `GET /projects/{id}/rounds`.
#[utoipa::path(get, path = "/projects/{id}/rounds", tag = "rounds", params(("id" = i64, Path)), responses((status = 200, body = Vec<RoundRow>)))]
pub async fn list_rounds(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let rounds = with_db(&state, move |db| {
        project_or_404(db, id)?;
        Ok(db.rounds(id)?)
    })
    .await?;
    Ok(Json(serde_json::to_value(rounds).unwrap_or_default()))
}

/// Query of `GET /projects/{id}/export`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `gpkg` (suggestions + labels layers), `gpx` (waypoints) or `csv`.
    pub format: String,
    /// Scene (default: the project's latest). Not with `scope=project`.
    pub scene_id: Option<i64>,
    /// `scene` (default) or `project`: the project's latest region suggestions (those
    /// of the last `"scope": "project"` suggestions request or round).
    pub scope: Option<Scope>,
}

/// `GET /projects/{id}/export?format=gpkg|gpx|csv`: the latest suggestions of a scene
/// in a short visit order, for survey teams (GeoPackage also carries the labels).
#[utoipa::path(get, path = "/projects/{id}/export", tag = "exports", params(("id" = i64, Path), ExportQuery), responses((status = 200, description = "GeoPackage, GPX or CSV of the latest suggestions in visit order"), (status = 400, description = "Unknown format", body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, description = "Too many heavy reads at once; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn export(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let format = q.format.to_ascii_lowercase();
    let (ext, mime) = match format.as_str() {
        "gpkg" | "geopackage" => ("gpkg", "application/geopackage+sqlite3"),
        "gpx" => ("gpx", "application/gpx+xml"),
        "csv" => ("csv", "text/csv"),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown export format {other:?}; use gpkg, gpx or csv"
            )));
        }
    };
    let region = q.scope == Some(Scope::Project);
    if region && q.scene_id.is_some() {
        return Err(ApiError::bad_request(
            "scope=project exports the project's region suggestions: leave out scene_id",
        ));
    }
    let (_, scene) = project_and_scene(&state, id, q.scene_id).await?;
    let _slot = heavy_read(&state).await?;
    // The GeoPackage's labels layer holds every label.
    let labels = with_db(&state, move |db| Ok(db.labels(id)?)).await?;
    let labels = serde_json::json!({"type": "FeatureCollection",
        "features": labels.iter().map(label_feature).collect::<Vec<_>>()});
    let data_dir = state.config.data_dir.clone();
    let bytes = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let latest = data_dir
            .join("suggestions")
            .join(scene.id.to_string())
            .join("suggestions.geojson");
        let region_latest = data_dir
            .join("suggestions")
            .join(format!("project-{id}"))
            .join("suggestions.geojson");
        let source = if region {
            if !region_latest.is_file() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("project {id} has no region suggestions yet: POST /projects/{id}/suggestions with \"scope\": \"project\" first"),
                ));
            }
            region_latest
        } else if latest.is_file() {
            latest
        } else {
            let dir = scene
                .out_dir
                .clone()
                .ok_or_else(|| not_scored(&scene, None))?;
            std::path::Path::new(&dir).join("suggestions.geojson")
        };
        let text = std::fs::read_to_string(&source).map_err(ApiError::internal)?;
        let fc: serde_json::Value = serde_json::from_str(&text).map_err(ApiError::internal)?;
        let points = crate::output::survey_points(&fc).map_err(ApiError::internal)?;
        let coords: Vec<(f64, f64)> = points.iter().map(|p| (p.lon, p.lat)).collect();
        let order = crate::output::visit_order(&coords);
        let dir = data_dir.join("exports");
        std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
        let tmp = tempfile_in(&dir, ext)?;
        let written = match ext {
            "gpkg" => crate::output::write_geopackage(&fc, &points, &order, &labels, &tmp),
            "gpx" => crate::output::write_gpx(&points, &order, &tmp),
            _ => crate::output::write_survey_csv(&points, &order, &tmp),
        };
        let out = written
            .map_err(ApiError::internal)
            .and_then(|()| std::fs::read(&tmp).map_err(ApiError::internal));
        let _ = std::fs::remove_file(&tmp);
        out
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"project-{id}-suggestions.{ext}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// A fresh file name in `dir` (GDAL drivers want to create the file themselves).
fn tempfile_in(dir: &std::path::Path, ext: &str) -> ApiResult<std::path::PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("export-{}-{n}.{ext}", std::process::id());
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heavy read waits for a free slot, and gets 503 with `Retry-After` when none
    /// frees up in time.
    #[tokio::test]
    async fn heavy_reads_wait_then_get_503() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let wait = std::time::Duration::from_millis(50);
        let held = acquire_slot(&slots, wait).await.unwrap();
        let refused = acquire_slot(&slots, wait).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            refused.message.contains("Retry-After"),
            "{}",
            refused.message
        );
        let resp = refused.into_response();
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
        // Freed within the wait: the next one gets it.
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            drop(held);
        });
        assert!(
            acquire_slot(&slots, std::time::Duration::from_secs(5))
                .await
                .is_ok()
        );
        release.await.unwrap();
    }
}
