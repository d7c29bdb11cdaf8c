//! Region projects (issue 15) on the engine thread: suggestions, rounds and the
//! heatmap over **every scored scene of a project at once** (`"scope": "project"` in a
//! suggestions or round body; `GET /projects/{id}/heatmap`).
//!
//! Each scene is scored as a single-scene request would score it (the same warm result,
//! taken out of the warm set for the call and put back after, scored from the embedding
//! cache when it is not warm), then the engine's `*_across` stages run over all of them:
//! one budget, diversity and spacing across scene borders, labelled tiles of every scene
//! excluded, one head trained on the labels of every scene (a label in overlapping
//! scenes trains on the most recently added scene's tile).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use axum::http::StatusCode;

use super::error::ApiError;
use super::warm::fingerprint;
use super::worker::{
    Outcome, SelectParams, WorkerContext, cached_labels, keep_latest, previous_tiles,
    round_agreement, round_labels, unlabelled_request, with_selection,
};
use crate::engine::{self, LabelTiles, Progress, Retrain, ScoreRequest, ScoreResult};
use crate::store::{Db, Project, SceneRow, SceneStatus};

/// The scored scenes of a project, each with its request, its warm key and its result
/// (taken out of the warm set: [`put_back`] returns them).
struct Pool {
    scenes: Vec<SceneRow>,
    reqs: Vec<ScoreRequest>,
    keys: Vec<String>,
    results: Vec<ScoreResult>,
    /// The results' embeddings stacked once ([`engine::stack_embeddings`]).
    embeddings: ndarray::Array2<f32>,
}

/// The project's scored scenes in the order they were added; 409 when there is none.
fn scored_scenes(db: &Db, project: &Project) -> Result<Vec<SceneRow>, ApiError> {
    let all = db.scenes(project.id)?;
    if all.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "project {} has no scene yet: POST /projects/{}/scenes first",
                project.id, project.id
            ),
        ));
    }
    let scored: Vec<SceneRow> = all
        .into_iter()
        .filter(|s| s.status == SceneStatus::Scored)
        .collect();
    if scored.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "no scene of project {} is scored yet: wait for the scoring jobs (GET /projects/{}/scenes), or rescore the failed ones",
                project.id, project.id
            ),
        ));
    }
    Ok(scored)
}

/// Every scored scene of `project` with `params`' selection, warm: taken from the warm
/// set, or scored (from the embedding cache) when it is not there.
fn take_pool(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    params: &SelectParams,
    cancel: &AtomicBool,
) -> Result<Pool, ApiError> {
    let scenes = scored_scenes(db, project)?;
    let mut pool = Pool {
        scenes: Vec::with_capacity(scenes.len()),
        reqs: Vec::new(),
        keys: Vec::new(),
        results: Vec::new(),
        embeddings: ndarray::Array2::zeros((0, 0)),
    };
    for scene in scenes {
        let taken = (|| -> Result<_, ApiError> {
            let mut req = unlabelled_request(ctx, db, project, &scene)?;
            with_selection(&mut req, params)?;
            let key = fingerprint(&req);
            let warm = ctx.warm().take(scene.id, &key);
            let result = match warm {
                Some(r) => r,
                None => {
                    let mut scoring = req.clone();
                    scoring.labelled = cached_labels(ctx, db, project)?.1;
                    match engine::score(&scoring, &|_| {}, cancel) {
                        Ok(r) => r,
                        // An AOI limits the region: a scene it misses adds no tile.
                        Err(crate::Error::Tiling(
                            crate::tiling::TilingError::AoiOutsideScene { .. },
                        )) if params.aoi.is_some() => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            Ok(Some((req, key, result)))
        })();
        match taken {
            Ok(None) => {}
            Ok(Some((req, key, result))) => {
                pool.scenes.push(scene);
                pool.reqs.push(req);
                pool.keys.push(key);
                pool.results.push(result);
            }
            Err(e) => {
                put_back(ctx, pool);
                return Err(e);
            }
        }
    }
    if pool.results.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the AOI is outside every scored scene of the project: draw it over a scene (GET /projects/{id}/scenes lists them)",
        ));
    }
    match engine::stack_embeddings(&pool.results) {
        Ok(stacked) => pool.embeddings = stacked,
        Err(e) => {
            put_back(ctx, pool);
            return Err(e.into());
        }
    }
    Ok(pool)
}

/// Returns the pool's results to the warm set under their keys.
fn put_back(ctx: &WorkerContext, pool: Pool) {
    let mut warm = ctx.warm();
    for ((scene, key), result) in pool.scenes.iter().zip(pool.keys).zip(pool.results) {
        warm.put(scene.id, key, result);
    }
}

/// The project's labels mapped onto each result of the pool (`None`s without labels).
fn pool_labels(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    results: &[ScoreResult],
) -> Result<Vec<Option<LabelTiles>>, ApiError> {
    let labelled = cached_labels(ctx, db, project)?.1;
    results
        .iter()
        .map(|r| match &labelled {
            Some(l) => Ok(Some(engine::label_tiles(l, r)?)),
            None => Ok(None),
        })
        .collect()
}

/// The file holding a project's latest region suggestions.
fn latest_region_path(ctx: &WorkerContext, project: i64) -> PathBuf {
    ctx.data_dir
        .join("suggestions")
        .join(format!("project-{project}"))
        .join("suggestions.geojson")
}

/// Selects over the pool and makes the picks the project's latest region suggestions
/// (the file is written only when they change).
fn select_pool(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    pool: &mut Pool,
) -> Result<geojson::FeatureCollection, ApiError> {
    let labels = pool_labels(ctx, db, project, &pool.results)?;
    let first = pool
        .reqs
        .first()
        .ok_or_else(|| ApiError::internal("an empty pool of scenes"))?;
    let order = engine::reselect_across(&mut pool.results, pool.embeddings.view(), &labels, first)?;
    let ids: Vec<i64> = pool.scenes.iter().map(|s| s.id).collect();
    let collection = crate::output::region_collection(&pool.results, &ids, &order)
        .map_err(crate::Error::from)?;
    keep_latest(
        &ctx.latest_region,
        project.id,
        &latest_region_path(ctx, project.id),
        &collection,
    )?;
    Ok(collection)
}

/// `POST /projects/{id}/suggestions` with `"scope": "project"`: one ranked selection
/// over every scored scene of the project; each feature names its `scene_id`.
pub(super) fn suggest_region(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    params: &SelectParams,
    cancel: &AtomicBool,
) -> Outcome {
    let mut pool = take_pool(ctx, db, project, params, cancel)?;
    let answer = select_pool(ctx, db, project, &mut pool)
        .and_then(|c| serde_json::to_value(c).map_err(ApiError::internal));
    put_back(ctx, pool);
    answer
}

/// `POST /projects/{id}/rounds` with `"scope": "project"`: the head retrained once on
/// the labels of every scene, every scene predicted again with it, one selection over
/// all of them; per-scene outputs and the region heatmap in the round's folder.
pub(super) fn round_region(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    params: &SelectParams,
    cancel: &AtomicBool,
    progress: &dyn Fn(Progress),
) -> Outcome {
    let labels = round_labels(db, project)?;
    let labelled = cached_labels(ctx, db, project)?.1.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this project has no labels yet: POST labels before starting a round",
        )
    })?;
    let rounds = db.rounds(project.id)?;
    let previous = previous_tiles(
        &ctx.latest_region,
        project.id,
        &latest_region_path(ctx, project.id),
    );
    let agreement = round_agreement(&labels, rounds.last(), &previous);
    let mut pool = take_pool(ctx, db, project, params, cancel)?;
    progress(Progress::Head);
    let number = rounds.len() + 1;
    let outcome = retrain_pool(ctx, db, project, &mut pool, &labelled, number, params);
    let answer = outcome.and_then(|(head_path, mut summary, collection)| {
        if let Some(obj) = summary.as_object_mut() {
            obj.insert("agreement".into(), agreement.clone());
        }
        let mut strategy = serde_json::to_value(params).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = strategy.as_object_mut() {
            obj.insert("scope".into(), "project".into());
        }
        let last_scene = pool.scenes.last().map_or(0, |s| s.id);
        let row = db.add_round(
            project.id,
            last_scene,
            &strategy,
            &head_path.display().to_string(),
            &summary,
        )?;
        // Kept warm under the key of the next request: the head this round saved.
        for (req, key) in pool.reqs.iter_mut().zip(pool.keys.iter_mut()) {
            req.trained_head = Some(head_path.clone());
            *key = fingerprint(req);
        }
        Ok(serde_json::json!({
            "round": row.number,
            "scope": "project",
            "retrained": summary["retrained"],
            "scenes": summary["scenes"],
            "heatmap": summary["heatmap"],
            "agreement": agreement,
            "suggestions": collection,
        }))
    });
    put_back(ctx, pool);
    answer
}

/// The training, prediction, selection and outputs of a region round: the saved
/// head's path, the round's summary and its suggestions.
fn retrain_pool(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
    pool: &mut Pool,
    labelled: &crate::aoi::Labelled,
    number: usize,
    params: &SelectParams,
) -> Result<(PathBuf, serde_json::Value, geojson::FeatureCollection), ApiError> {
    let heads = ctx.data_dir.join("heads");
    std::fs::create_dir_all(&heads).map_err(ApiError::internal)?;
    let head_path = heads.join(format!("project-{}-round-{number}.safetensors", project.id));
    let retrain = Retrain {
        warm_from: pool.reqs.first().and_then(|r| r.trained_head.clone()),
        save_to: Some(head_path.clone()),
        ..Retrain::default()
    };
    let mut training = engine::retrain_across(
        &pool.results,
        pool.embeddings.view(),
        labelled,
        &retrain,
        params.seed,
    )?;
    for r in pool.results.iter_mut() {
        engine::repredict(
            r,
            &mut training.head,
            params.mc_passes,
            params.seed,
            &training.summary,
        )?;
    }
    engine::distance_across(&mut pool.results, pool.embeddings.view(), &training.rows)?;
    let collection = select_pool(ctx, db, project, pool)?;
    let dir = ctx
        .data_dir
        .join("rounds")
        .join(format!("project-{}-round-{number}", project.id));
    let mut scenes = Vec::with_capacity(pool.results.len());
    let mut heatmaps = Vec::with_capacity(pool.results.len());
    for ((scene, result), trained) in pool
        .scenes
        .iter()
        .zip(&pool.results)
        .zip(&training.per_scene)
    {
        let paths = engine::write_outputs(result, &dir.join(format!("scene-{}", scene.id)))?;
        scenes.push(serde_json::json!({
            "scene_id": scene.id,
            "path": scene.path,
            "tiles": result.tiles.len(),
            "trained_on": trained,
            "labelled_tiles": result.labelled_tiles,
            "picks": result.picks.len(),
            "heatmap": paths.heatmap.display().to_string(),
            "suggestions": paths.suggestions.display().to_string(),
        }));
        heatmaps.push(paths.heatmap);
    }
    let mosaic = dir.join("region_heatmap.tif");
    let sources: Vec<&Path> = heatmaps.iter().map(PathBuf::as_path).collect();
    crate::output::write_mosaic(&sources, &mosaic).map_err(crate::Error::from)?;
    crate::output::write_collection(&collection, &dir.join("suggestions.geojson"))
        .map_err(crate::Error::from)?;
    let summary = serde_json::json!({
        "scope": "project",
        "retrained": training.summary,
        "scenes": scenes,
        "heatmap": mosaic.display().to_string(),
        "suggestions": dir.join("suggestions.geojson").display().to_string(),
        "warnings": training.warnings,
    });
    Ok((head_path, summary, collection))
}

/// `GET /projects/{id}/heatmap`: the region heatmap of every scored scene, each from
/// the latest region round that wrote one for it, else from its scoring, as one COG
/// (rebuilt only when one of them changed). Answers its path.
pub(super) fn region_heatmap(
    ctx: &WorkerContext,
    db: &Db,
    project: &Project,
) -> Result<PathBuf, ApiError> {
    let scenes = scored_scenes(db, project)?;
    let from_round: Vec<(i64, String)> = db
        .rounds(project.id)?
        .iter()
        .rev()
        .find_map(|r| {
            let summary = r.summary.as_ref()?;
            (summary.get("scope")? == "project")
                .then(|| summary.get("scenes")?.as_array().cloned())?
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            Some((
                s.get("scene_id")?.as_i64()?,
                s.get("heatmap")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut sources = Vec::with_capacity(scenes.len());
    for s in &scenes {
        let path = match from_round.iter().find(|(id, _)| *id == s.id) {
            Some((_, p)) => PathBuf::from(p),
            None => match &s.out_dir {
                Some(d) => Path::new(d).join("heatmap.tif"),
                None => continue,
            },
        };
        if path.is_file() {
            sources.push(path);
        }
    }
    if sources.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no scored scene of this project has a heatmap on disk: rescore a scene",
        ));
    }
    let dir = ctx
        .data_dir
        .join("region")
        .join(format!("project-{}", project.id));
    std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
    let out = dir.join("heatmap.tif");
    let stamp_path = dir.join("heatmap.sources.json");
    let stamp = serde_json::json!(
        sources
            .iter()
            .map(|p| (
                p.display().to_string(),
                format!("{:?}", crate::paths::file_identity(p))
            ))
            .collect::<Vec<_>>()
    )
    .to_string();
    let current = std::fs::read_to_string(&stamp_path).unwrap_or_default();
    if current != stamp || !out.is_file() {
        let staged = dir.join("heatmap.staged.tif");
        let refs: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
        crate::output::write_mosaic(&refs, &staged).map_err(crate::Error::from)?;
        std::fs::rename(&staged, &out).map_err(ApiError::internal)?;
        if staged.with_extension("qml").is_file() {
            let _ = std::fs::rename(staged.with_extension("qml"), out.with_extension("qml"));
        }
        std::fs::write(&stamp_path, stamp).map_err(ApiError::internal)?;
    }
    Ok(out)
}
