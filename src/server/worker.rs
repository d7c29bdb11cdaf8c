//! The engine worker: one dedicated OS thread that runs every scoring, suggestion and
//! retraining task in turn (onnxruntime and GDAL never run on the async runtime), fed
//! by a bounded queue; a full queue is answered with HTTP 429 instead of growing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::oneshot;

use super::error::ApiError;
use crate::aoi::{Aoi, Labelled};
use crate::engine::{self, Progress, Retrain, ScoreRequest};
use crate::sampling::Strategy;
use crate::store::{Db, JobStatus, Project, SceneRow, SceneStatus};
use crate::uncertainty::Metric;

/// Live state of a job, for polling.
#[derive(Debug, Clone, Serialize)]
pub struct JobLive {
    /// Queued or running (serialised as `queued`, `running`).
    pub status: JobStatus,
    /// Engine stage (`embedding`, `head`, `selecting`, ...).
    pub stage: String,
    /// Tiles done.
    pub done: usize,
    /// Tiles in all.
    pub total: usize,
    /// Set to stop the job.
    #[serde(skip)]
    pub cancel: Arc<AtomicBool>,
}

/// Jobs in flight, by id.
pub type JobTable = Arc<Mutex<HashMap<i64, JobLive>>>;

/// Selection parameters of a suggestions request or a round.
#[derive(Debug, Clone, Serialize)]
pub struct SelectParams {
    /// Strategy.
    pub strategy: Strategy,
    /// Ranking metric.
    pub metric: Metric,
    /// Suggestions wanted.
    pub budget: usize,
    /// MC passes.
    pub mc_passes: usize,
    /// Minimum ground spacing, metres.
    pub min_spacing_m: f64,
    /// Seed.
    pub seed: u64,
    /// Optional AOI (GeoJSON text) and its CRS.
    pub aoi: Option<(String, Option<String>)>,
}

/// Work for the engine thread.
pub enum Task {
    /// Score a newly added scene, or rescore one (embeds it, writes its heatmap); the
    /// scene's status follows the job's end.
    Score {
        /// Job id.
        job: i64,
        /// The project.
        project: Project,
        /// The scene.
        scene: SceneRow,
    },
    /// Score several newly added scenes one after the other (the items of a STAC
    /// ItemCollection or folder posted at once): each is a [`Task::Score`] with its own
    /// job, taking one place in the queue for all of them.
    ScoreMany {
        /// The project.
        project: Project,
        /// Each scene and its job.
        scenes: Vec<(i64, SceneRow)>,
    },
    /// Retrain on all labels and rescore: a new round.
    Round {
        /// Job id.
        job: i64,
        /// The project.
        project: Project,
        /// The scene.
        scene: SceneRow,
        /// Selection parameters.
        params: SelectParams,
    },
    /// Retrain on the labels of every scene and select over all scored scenes of the
    /// project: a region round (`"scope": "project"`).
    RoundRegion {
        /// Job id.
        job: i64,
        /// The project.
        project: Project,
        /// Selection parameters.
        params: SelectParams,
    },
    /// Suggestions over every scored scene of the project, answered directly.
    SuggestRegion {
        /// The project.
        project: Project,
        /// Selection parameters.
        params: SelectParams,
        /// Where the FeatureCollection goes.
        reply: oneshot::Sender<Result<serde_json::Value, ApiError>>,
    },
    /// The project's region heatmap, answered with its path.
    RegionHeatmap {
        /// The project.
        project: Project,
        /// Where the path goes.
        reply: oneshot::Sender<Result<PathBuf, ApiError>>,
    },
    /// Suggestions, answered directly.
    Suggest {
        /// The project.
        project: Project,
        /// The scene.
        scene: SceneRow,
        /// Selection parameters.
        params: SelectParams,
        /// Where the FeatureCollection goes.
        reply: oneshot::Sender<Result<serde_json::Value, ApiError>>,
    },
}

/// The sending side of the bounded queue.
#[derive(Clone)]
pub struct Queue(SyncSender<Task>);

impl Queue {
    /// Enqueues `task`, or answers 429 when the queue is full.
    pub fn submit(&self, task: Task) -> Result<(), ApiError> {
        self.0.try_send(task).map_err(|e| match e {
            TrySendError::Full(_) => ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the job queue is full; wait for running jobs to finish (GET /jobs/{{id}}) and retry in about {} s (Retry-After)",
                    super::error::RETRY_AFTER_S
                ),
            ),
            TrySendError::Disconnected(_) => ApiError::internal("the engine worker has stopped"),
        })
    }
}

/// Shared worker context.
pub struct WorkerContext {
    /// Database path (the worker opens its own connection).
    pub db_path: PathBuf,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Live jobs.
    pub jobs: JobTable,
    /// Most candidate tiles one scoring run may have (the configuration's `max_tiles`).
    pub max_tiles: usize,
    /// Cap on model file sizes (the configuration's `max_model_bytes`).
    pub max_model_bytes: u64,
    /// The raster roots every scene and every file it reads must lie under.
    pub confine: crate::raster::Confinement,
    /// The model roots a project's encoder and head must lie under (checked again at
    /// job time: a project stored before the roots changed is refused, not run).
    pub model_roots: Vec<PathBuf>,
    /// Set when the daemon is stopping (SIGINT/SIGTERM): jobs it cancels end
    /// `interrupted`, not `cancelled` (which is what `DELETE /jobs/{id}` does).
    pub stopping: Arc<AtomicBool>,
    /// Scored scenes kept in memory so suggestions run only the select stage.
    pub warm: std::sync::Mutex<super::warm::WarmScenes>,
    /// Projects' labels as last read, by label revision.
    pub labels: std::sync::Mutex<super::warm::LabelCache>,
    /// Each scene's latest suggestions as last written (what the file holds), so the
    /// file is written once per change, not per request, and a round's agreement is
    /// computed from memory.
    pub latest: std::sync::Mutex<HashMap<i64, super::warm::LatestSuggestions>>,
    /// Each project's latest region suggestions (`"scope": "project"`) as last written.
    pub latest_region: std::sync::Mutex<HashMap<i64, super::warm::LatestSuggestions>>,
}

impl WorkerContext {
    /// The warm scenes (a poisoned lock only means a job panicked while holding it;
    /// the set is still consistent: every change to it is one call).
    pub(super) fn warm(&self) -> std::sync::MutexGuard<'_, super::warm::WarmScenes> {
        self.warm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The label cache (a poisoned lock: as for [`warm`](Self::warm)).
    fn labels(&self) -> std::sync::MutexGuard<'_, super::warm::LabelCache> {
        self.labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts the engine thread with a queue of `capacity` tasks.
pub fn start(
    ctx: WorkerContext,
    capacity: usize,
) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(capacity);
    let handle = std::thread::Builder::new()
        .name("nexttile-engine".into())
        .spawn(move || run(ctx, rx))?;
    Ok((Queue(tx), handle))
}

fn run(ctx: WorkerContext, rx: Receiver<Task>) {
    let db = match Db::open(&ctx.db_path) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!("engine worker cannot open the database: {e}");
            return;
        }
    };
    while let Ok(task) = rx.recv() {
        match task {
            Task::Score {
                job,
                project,
                scene,
            } => score_job(&ctx, &db, job, &project, &scene),
            Task::ScoreMany { project, scenes } => {
                for (job, scene) in &scenes {
                    score_job(&ctx, &db, *job, &project, scene);
                }
            }
            Task::Round {
                job,
                project,
                scene,
                params,
            } => {
                let outcome = run_job(&ctx, &db, job, |cancel, progress| {
                    round(&ctx, &db, &project, &scene, &params, cancel, progress)
                });
                finish(&ctx, &db, job, outcome);
            }
            Task::RoundRegion {
                job,
                project,
                params,
            } => {
                let outcome = run_job(&ctx, &db, job, |cancel, progress| {
                    super::region::round_region(&ctx, &db, &project, &params, cancel, progress)
                });
                finish(&ctx, &db, job, outcome);
            }
            Task::SuggestRegion {
                project,
                params,
                reply,
            } => {
                let never = AtomicBool::new(false);
                let r = survive_panics(|| {
                    super::region::suggest_region(&ctx, &db, &project, &params, &never)
                });
                let _ = reply.send(r);
            }
            Task::RegionHeatmap { project, reply } => {
                let mut path = None;
                let r = survive_panics(|| {
                    path = Some(super::region::region_heatmap(&ctx, &db, &project)?);
                    Ok(serde_json::Value::Null)
                });
                let _ = reply.send(r.and_then(|_| {
                    path.ok_or_else(|| ApiError::internal("the region heatmap was not made"))
                }));
            }
            Task::Suggest {
                project,
                scene,
                params,
                reply,
            } => {
                let never = AtomicBool::new(false);
                let r = survive_panics(|| suggest(&ctx, &db, &project, &scene, &params, &never));
                let _ = reply.send(r);
            }
        }
    }
}

/// What a task answers: its JSON, or the error to answer.
pub(super) type Outcome = Result<serde_json::Value, ApiError>;

/// Runs the scoring job `job` of `scene` and records how it ended; the scene follows
/// its job: scored, failed or interrupted.
fn score_job(ctx: &WorkerContext, db: &Db, job: i64, project: &Project, scene: &SceneRow) {
    let outcome = run_job(ctx, db, job, |cancel, progress| {
        score_scene(ctx, db, project, scene, cancel, progress)
    });
    let status = finish(ctx, db, job, outcome);
    if let Err(e) = db.set_scene_status(scene.id, job, SceneStatus::after_job(status)) {
        tracing::error!("scene {}: {e}", scene.id);
    }
}

fn run_job(
    ctx: &WorkerContext,
    db: &Db,
    job: i64,
    work: impl FnOnce(&AtomicBool, &dyn Fn(Progress)) -> Outcome,
) -> Outcome {
    let cancel = {
        let Ok(mut jobs) = ctx.jobs.lock() else {
            return Err(ApiError::internal("job table poisoned"));
        };
        let Some(live) = jobs.get_mut(&job) else {
            return Err(ApiError::internal("job vanished"));
        };
        if live.cancel.load(Ordering::SeqCst) {
            return Err(crate::Error::Cancelled.into());
        }
        live.status = JobStatus::Running;
        live.cancel.clone()
    };
    let _ = db.set_job(job, JobStatus::Running, None, None);
    let jobs = ctx.jobs.clone();
    let progress = move |p: Progress| {
        if let Ok(mut t) = jobs.lock()
            && let Some(live) = t.get_mut(&job)
        {
            match p {
                Progress::Started { total } => {
                    live.stage = "started".into();
                    live.total = total;
                }
                Progress::Embedding { done, total } => {
                    live.stage = "embedding".into();
                    live.done = done;
                    live.total = total;
                }
                Progress::Head => live.stage = "head".into(),
                Progress::Selecting => live.stage = "selecting".into(),
            }
        }
    };
    survive_panics(|| work(&cancel, &progress))
}

/// Debug builds only: with `NEXTTILE_TEST_PANIC_ONCE` set, the first scoring job
/// panics, so tests/daemon.rs can check that the engine thread survives a panic (there is
/// no input left that makes it panic on purpose). Release builds ignore the variable.
fn test_panic_once() {
    #[cfg(debug_assertions)]
    {
        static DONE: AtomicBool = AtomicBool::new(false);
        if std::env::var_os("NEXTTILE_TEST_PANIC_ONCE").is_some()
            && !DONE.swap(true, Ordering::SeqCst)
        {
            panic!("NEXTTILE_TEST_PANIC_ONCE: a panic injected by the tests");
        }
    }
}

/// Runs `work` on the engine thread; a panic in it (a bug, never user input's fault)
/// fails this job or request with a 500 that says so, and the thread keeps serving the
/// next task instead of ending and failing every later job.
fn survive_panics(work: impl FnOnce() -> Outcome) -> Outcome {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(outcome) => outcome,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            tracing::error!("a job panicked: {what}");
            Err(ApiError::internal(format!(
                "internal error in the engine ({what}); the job was stopped and the daemon keeps serving — please report this with the daemon's log"
            )))
        }
    }
}

/// Records how job `job` ended and drops it from the live table; returns the status
/// recorded (done, failed, cancelled or interrupted).
fn finish(ctx: &WorkerContext, db: &Db, job: i64, outcome: Outcome) -> JobStatus {
    let (status, message, result) = match &outcome {
        Ok(v) => (JobStatus::Done, None, Some(v)),
        Err(e) if e.kind == crate::ErrorKind::Cancelled && ctx.stopping.load(Ordering::SeqCst) => (
            JobStatus::Interrupted,
            Some("the daemon was stopped (SIGINT/SIGTERM) before the job finished; start it again"),
            None,
        ),
        Err(e) if e.kind == crate::ErrorKind::Cancelled => {
            (JobStatus::Cancelled, Some(e.message.as_str()), None)
        }
        Err(e) => (JobStatus::Failed, Some(e.message.as_str()), None),
    };
    if let Err(e) = db.set_job(job, status, message, result) {
        tracing::error!("job {job}: {e}");
    }
    if let Ok(mut t) = ctx.jobs.lock() {
        t.remove(&job);
    }
    status
}

/// The request every task starts from: the project's models, the scene, its AOI, all
/// of the project's labels, the embedding cache, and the last round's head.
fn base_request(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    scene: &SceneRow,
) -> Result<ScoreRequest, ApiError> {
    let mut req = unlabelled_request(ctx, db, project, scene)?;
    req.labelled = cached_labels(ctx, db, project)?.1;
    Ok(req)
}

/// [`base_request`] without the labels (`labelled` is `None`).
pub(super) fn unlabelled_request(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    scene: &SceneRow,
) -> Result<ScoreRequest, ApiError> {
    let confined = |p: &str| {
        super::paths::check_model_path(p, &ctx.model_roots)
            .map_err(|e| ApiError::new(axum::http::StatusCode::FORBIDDEN, e.to_string()))
    };
    let encoder = confined(&project.encoder)?;
    let head = confined(&project.head)?;
    let mut req = ScoreRequest::new(&scene.path, &encoder, &head);
    req.cache = Some(ctx.data_dir.join("cache"));
    req.max_tiles = ctx.max_tiles;
    req.session.max_model_bytes = ctx.max_model_bytes;
    // Checked again at open time (the file may have changed since the POST).
    req.confine = Some(ctx.confine.clone());
    req.pair = scene.pair.as_ref().map(PathBuf::from);
    // How the raster is read, as the scene was added (checked then).
    req.sensor = scene.input.sensor.clone();
    req.resample = match &scene.input.resample {
        Some(r) => Some(
            r.parse()
                .map_err(|e: crate::Error| ApiError::bad_request(e.to_string()))?,
        ),
        None => None,
    };
    req.input_scale = scene.input.input_scale;
    req.input_offset = scene.input.input_offset;
    req.stac_item = scene.input.item.clone();
    if let Some(aoi) = &scene.aoi {
        req.aoi = Some(
            Aoi::from_geojson(aoi, scene.aoi_crs.as_deref())
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        );
    }
    req.trained_head = db
        .rounds(project.id)?
        .last()
        .and_then(|r| r.head_path.clone())
        .map(PathBuf::from);
    Ok(req)
}

/// The key of a project's labels now: its id, creation time and label revision.
fn label_key(db: &Db, project: &Project) -> Result<super::warm::LabelKey, ApiError> {
    let revision = db.label_revision(project.id)?.unwrap_or(0);
    Ok((project.id, project.created.clone(), revision))
}

/// A project's labels ([`project_labels`]) and their key, read from the database only
/// when they changed since they were last read.
pub(super) fn cached_labels(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
) -> Result<(super::warm::LabelKey, Option<Labelled>), ApiError> {
    let key = label_key(db, project)?;
    if let Some(labelled) = ctx.labels().get(&key) {
        return Ok((key, labelled.clone()));
    }
    let labelled = project_labels(db, project.id)?;
    ctx.labels().put(key.clone(), labelled.clone());
    Ok((key, labelled))
}

/// All labels of a project as a [`Labelled`] (EPSG:4326), or `None` when there are none.
pub fn project_labels(db: &Db, project_id: i64) -> Result<Option<Labelled>, ApiError> {
    let labels = db.labels(project_id)?;
    if labels.is_empty() {
        return Ok(None);
    }
    let features: Vec<serde_json::Value> = labels
        .iter()
        .map(|l| serde_json::json!({"type": "Feature", "properties": {"class": l.class}, "geometry": l.geometry}))
        .collect();
    let text = serde_json::json!({"type": "FeatureCollection", "features": features}).to_string();
    Labelled::from_geojson(&text, None)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("stored labels: {e}")))
}

/// [`base_request`] with the selection parameters of a suggestions request or round.
fn select_request(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    scene: &SceneRow,
    p: &SelectParams,
) -> Result<ScoreRequest, ApiError> {
    let mut req = base_request(ctx, db, project, scene)?;
    with_selection(&mut req, p)?;
    Ok(req)
}

/// Sets a request's selection parameters (and AOI, when given) from `p`.
pub(super) fn with_selection(req: &mut ScoreRequest, p: &SelectParams) -> Result<(), ApiError> {
    req.strategy = p.strategy;
    req.metric = p.metric;
    req.budget = p.budget;
    req.mc_passes = p.mc_passes;
    req.min_spacing_m = p.min_spacing_m;
    req.seed = p.seed;
    if let Some((aoi, crs)) = &p.aoi {
        req.aoi = Some(
            Aoi::from_geojson(aoi, crs.as_deref())
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        );
    }
    Ok(())
}

fn score_scene(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    scene: &SceneRow,
    cancel: &AtomicBool,
    progress: &dyn Fn(Progress),
) -> Outcome {
    let req = base_request(ctx, db, project, scene)?;
    test_panic_once();
    ctx.warm().forget(scene.id);
    let result = engine::score(&req, progress, cancel)?;
    let dir = ctx.data_dir.join("scenes").join(scene.id.to_string());
    let paths = engine::write_outputs(&result, &dir)?;
    let summary = engine::summary_json(&result, Some(&paths));
    db.set_scene_scored(scene.id, &summary, &dir.display().to_string())?;
    ctx.warm()
        .put(scene.id, super::warm::fingerprint(&req), result);
    Ok(summary)
}

/// The file holding a scene's latest suggestions (what exports read).
fn latest_path(ctx: &WorkerContext, scene: i64) -> PathBuf {
    ctx.data_dir
        .join("suggestions")
        .join(scene.to_string())
        .join("suggestions.geojson")
}

/// Makes a result's suggestions the scene's latest (what exports and the next round's
/// agreement read) and answers them from memory ([`keep_latest`]).
fn latest_suggestions(ctx: &WorkerContext, scene: i64, result: &engine::ScoreResult) -> Outcome {
    let collection = crate::output::suggestions_collection(result).map_err(crate::Error::from)?;
    keep_latest(&ctx.latest, scene, &latest_path(ctx, scene), &collection)?;
    serde_json::to_value(&collection).map_err(ApiError::internal)
}

/// Keeps `collection` as the latest suggestions of `key` in `kept` and in the file
/// `path`, which is written only when they differ from what it was last given (or it
/// has gone): a repeated request writes nothing.
pub(super) fn keep_latest(
    kept: &Mutex<HashMap<i64, super::warm::LatestSuggestions>>,
    key: i64,
    path: &std::path::Path,
    collection: &geojson::FeatureCollection,
) -> Result<(), ApiError> {
    let latest = super::warm::LatestSuggestions::of(collection);
    let mut kept = kept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let unchanged = kept.get(&key).is_some_and(|k| k.digest == latest.digest) && path.is_file();
    if !unchanged {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(ApiError::internal)?;
        }
        crate::output::write_collection(collection, path).map_err(crate::Error::from)?;
        kept.insert(key, latest);
    }
    Ok(())
}

/// The suggested tiles (footprint, predicted class) of `key`'s latest suggestions: from
/// memory, or from the file `path` when this daemon has not written them yet.
pub(super) fn previous_tiles(
    kept: &Mutex<HashMap<i64, super::warm::LatestSuggestions>>,
    key: i64,
    path: &std::path::Path,
) -> Vec<(geo::Geometry<f64>, String)> {
    kept.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .map(|l| l.tiles.clone())
        .unwrap_or_else(|| super::warm::LatestSuggestions::read(path))
}

/// Suggestions for a scene: on a warm scene only the select stage runs, with the
/// project's labels mapped onto its tiles once per label revision; otherwise the scene
/// is scored (from the embedding cache) and kept warm.
fn suggest(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    scene: &SceneRow,
    params: &SelectParams,
    cancel: &AtomicBool,
) -> Outcome {
    let mut req = unlabelled_request(ctx, db, project, scene)?;
    with_selection(&mut req, params)?;
    let key = super::warm::fingerprint(&req);
    let label_key = label_key(db, project)?;
    {
        let mut warm = ctx.warm();
        if let Some((result, labels)) = warm.entry_mut(scene.id, &key) {
            let fresh = labels.as_ref().is_some_and(|(k, _)| *k == label_key);
            if !fresh {
                let (k, labelled) = cached_labels(ctx, db, project)?;
                let tiles = match &labelled {
                    Some(l) => Some(engine::label_tiles(l, result)?),
                    None => None,
                };
                *labels = Some((k, tiles));
            }
            let tiles = labels.as_ref().and_then(|(_, t)| t.as_ref());
            engine::reselect_with(result, &req, tiles)?;
            return latest_suggestions(ctx, scene.id, result);
        }
    }
    req.labelled = cached_labels(ctx, db, project)?.1;
    let result = engine::score(&req, &|_| {}, cancel)?;
    let answer = latest_suggestions(ctx, scene.id, &result)?;
    ctx.warm().put(scene.id, key, result);
    Ok(answer)
}

fn round(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    scene: &SceneRow,
    params: &SelectParams,
    cancel: &AtomicBool,
    progress: &dyn Fn(Progress),
) -> Outcome {
    let mut req = select_request(ctx, db, project, scene, params)?;
    if req.labelled.is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "this project has no labels yet: POST labels before starting a round",
        ));
    }
    let labels = round_labels(db, project)?;
    let rounds = db.rounds(project.id)?;
    let number = rounds.len() + 1;
    // Before the round replaces them: the scene's latest suggestions hold what the
    // previous head predicted on the tiles the analyst has labelled since (from
    // memory; from the file only when this daemon has not written them yet).
    let previous = previous_tiles(&ctx.latest, scene.id, &latest_path(ctx, scene.id));
    let agreement = round_agreement(&labels, rounds.last(), &previous);
    let heads = ctx.data_dir.join("heads");
    std::fs::create_dir_all(&heads).map_err(ApiError::internal)?;
    let head_path = heads.join(format!("project-{}-round-{number}.safetensors", project.id));
    // The scene as the last suggestions left it in memory, if it is still warm.
    let key = super::warm::fingerprint(&req);
    let warm = ctx.warm().take(scene.id, &key).map(|r| (key, r));
    req.retrain = Some(Retrain {
        warm_from: req.trained_head.take(),
        save_to: Some(head_path.clone()),
        ..Retrain::default()
    });
    let result = round_result(ctx, scene.id, warm, &req, progress, cancel)?;
    let dir = ctx
        .data_dir
        .join("rounds")
        .join(format!("project-{}-round-{number}", project.id));
    let paths = engine::write_outputs(&result, &dir)?;
    // The round's suggestions become the scene's latest (what exports use).
    let suggestions = latest_suggestions(ctx, scene.id, &result)?;
    let mut summary = engine::summary_json(&result, Some(&paths));
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("agreement".into(), agreement.clone());
    }
    let strategy = serde_json::to_value(params).unwrap_or(serde_json::Value::Null);
    let row = db.add_round(
        project.id,
        scene.id,
        &strategy,
        &head_path.display().to_string(),
        &summary,
    )?;
    // The next suggestions score with the head this round saved: keep the round's
    // result warm under that request's fingerprint.
    req.retrain = None;
    req.trained_head = Some(head_path);
    ctx.warm()
        .put(scene.id, super::warm::fingerprint(&req), result);
    Ok(serde_json::json!({
        "round": row.number,
        "retrained": summary["retrained"],
        "agreement": agreement,
        "suggestions": suggestions,
    }))
}

/// A round's result: train → predict → score → select on the warm result when there
/// is one (an error leaves it warm, unchanged), else the whole pipeline from the
/// embedding cache.
fn round_result(
    ctx: &WorkerContext,
    scene: i64,
    warm: Option<(String, engine::ScoreResult)>,
    req: &ScoreRequest,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<engine::ScoreResult, ApiError> {
    let Some((key, mut result)) = warm else {
        return Ok(engine::score(req, progress, cancel)?);
    };
    progress(Progress::Head);
    match engine::retrain_warm(&mut result, req, None) {
        Ok(_) => Ok(result),
        Err(e) => {
            ctx.warm().put(scene, key, result);
            Err(e.into())
        }
    }
}

/// The project's labels for a round: 422 when every one is `unusable` (never trained
/// on) and the head has no class of that name.
pub(super) fn round_labels(
    db: &Db,
    project: &Project,
) -> Result<Vec<crate::store::LabelRow>, ApiError> {
    let labels = db.labels(project.id)?;
    if labels.iter().all(|l| l.class == crate::aoi::UNUSABLE_CLASS)
        && !project
            .classes
            .iter()
            .any(|c| c == crate::aoi::UNUSABLE_CLASS)
    {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "every label of this project is \"{}\" (never trained on): label at least one tile with one of the classes {} before starting a round",
                crate::aoi::UNUSABLE_CLASS,
                project.classes.join(", ")
            ),
        ));
    }
    Ok(labels)
}

/// The round's `agreement` summary: the labels added since the previous round (by
/// class, `unusable` included), and on those of them that fall in a tile of the
/// scene's latest suggestions (made by the previous round's head, or the project's
/// ONNX head before the first round) how often that head's `predicted_class` was the
/// class the analyst chose (`tiles`: each suggested tile's footprint and predicted
/// class, as [`LatestSuggestions`](super::warm::LatestSuggestions) keeps them).
/// `unusable` labels are not compared. No ground truth is
/// needed: it is the model's agreement with the analyst on the tiles it asked about.
/// `labels_through` (the highest label id counted) lets the next round find its own
/// new labels; a previous round without it (older daemons) is placed by its time.
pub fn round_agreement(
    labels: &[crate::store::LabelRow],
    previous: Option<&crate::store::RoundRow>,
    tiles: &[(geo::Geometry<f64>, String)],
) -> serde_json::Value {
    use geo::{Contains, InteriorPoint};

    let through = previous.and_then(|r| {
        r.summary
            .as_ref()?
            .get("agreement")?
            .get("labels_through")?
            .as_i64()
    });
    let new: Vec<&crate::store::LabelRow> = labels
        .iter()
        .filter(|l| match (through, previous) {
            (Some(t), _) => l.id > t,
            (None, Some(r)) => l.created > r.created,
            (None, None) => true,
        })
        .collect();
    let mut added = serde_json::Map::new();
    for l in &new {
        let n = added
            .get(&l.class)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        added.insert(l.class.clone(), serde_json::json!(n + 1));
    }
    let (mut compared, mut agreed) = (0u64, 0u64);
    for l in new.iter().filter(|l| l.class != crate::aoi::UNUSABLE_CLASS) {
        let Ok(value) = serde_json::from_value::<geojson::Geometry>(l.geometry.clone()) else {
            continue;
        };
        let Some(point) = geo::Geometry::<f64>::try_from(value.value)
            .ok()
            .and_then(|g| g.interior_point())
        else {
            continue;
        };
        if let Some((_, predicted)) = tiles.iter().find(|(g, _)| g.contains(&point)) {
            compared += 1;
            agreed += u64::from(*predicted == l.class);
        }
    }
    serde_json::json!({
        "new_labels": new.len(),
        "added": added,
        "compared": compared,
        "agreed": agreed,
        "rate": if compared > 0 { Some(agreed as f64 / compared as f64) } else { None },
        "labels_through": labels.iter().map(|l| l.id).max(),
    })
}
