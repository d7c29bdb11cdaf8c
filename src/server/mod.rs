//! `nexttile serve`: the HTTP daemon over the same engine as the CLI.
//!
//! axum on tokio serves JSON; handlers are thin (extract → one store or worker call →
//! answer); the database runs on blocking threads and every onnxruntime/GDAL task on one
//! dedicated engine thread behind a bounded queue ([`worker`]). State lives in one
//! SQLite file ([`crate::store::Db`]) under the data folder, with the embedding cache,
//! outputs and trained heads beside it.
//!
//! Safe by default ([`config`], [`paths`]): loopback bind; a non-loopback bind needs a
//! bearer token; rasters only under configured roots, no `..`, no `/vsi…` paths unless
//! allowed; request bodies, tiles per scene, labels per request and the job queue are
//! bounded.

pub mod config;
pub mod error;
pub mod labels;
pub mod paths;
pub mod routes;
pub mod worker;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};

pub use config::{ConfigError, ConfigLayer, ServerConfig};
use error::ApiError;
use worker::{JobTable, Queue, WorkerContext};

use crate::model::RuntimeInfo;
use crate::store::Db;

/// Everything the handlers share.
pub struct AppState {
    /// The merged configuration.
    pub config: ServerConfig,
    /// The database (handlers use it on blocking threads).
    pub db: Mutex<Db>,
    /// Live jobs.
    pub jobs: JobTable,
    /// The engine worker's queue.
    pub queue: Queue,
    /// onnxruntime library and execution provider.
    pub runtime: RuntimeInfo,
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database.
    #[error(transparent)]
    Db(#[from] crate::store::DbError),
    /// onnxruntime is missing.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// Sockets, threads, folders.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

async fn require_token(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            let msg = if given.is_none() {
                "this daemon requires a token: send `Authorization: Bearer <token>`"
            } else {
                "wrong token"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
        }
    }
    next.run(req).await
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The OpenAPI 3 description of every route, generated from the handlers' annotations
/// and the request/response types (served at `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "NextTile daemon", description = "Which part of a satellite scene to label next: projects, scenes, scoring jobs, suggestions, labels, retraining rounds and survey exports."),
    paths(
        routes::health, routes::models, routes::create_project, routes::list_projects,
        routes::get_project, routes::delete_project, routes::add_scene, routes::list_scenes,
        routes::heatmap, routes::suggestions, routes::post_labels, routes::get_labels,
        routes::patch_label, routes::delete_label, routes::start_round, routes::list_rounds,
        routes::export, routes::get_job, routes::cancel_job
    ),
    components(schemas(
        error::ErrorBody, routes::NewProject, routes::NewScene, routes::SelectBody,
        routes::LabelPatch, crate::store::Project, crate::store::SceneRow,
        crate::store::LabelRow, crate::store::RoundRow, crate::store::JobRow
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Declares the optional bearer token in the OpenAPI document.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

async fn fallback() -> ApiError {
    ApiError::not_found("route (see the README's API table)")
}

/// The router with every route, the token check and the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(routes::health))
        .route("/models", get(routes::models))
        .route("/openapi.json", get(openapi_json))
        .route(
            "/projects",
            get(routes::list_projects).post(routes::create_project),
        )
        .route(
            "/projects/{id}",
            get(routes::get_project).delete(routes::delete_project),
        )
        .route(
            "/projects/{id}/scenes",
            get(routes::list_scenes).post(routes::add_scene),
        )
        .route(
            "/projects/{id}/scenes/{scene}/heatmap",
            get(routes::heatmap),
        )
        .route("/projects/{id}/suggestions", post(routes::suggestions))
        .route(
            "/projects/{id}/labels",
            get(routes::get_labels).post(routes::post_labels),
        )
        .route(
            "/projects/{id}/labels/{label}",
            patch(routes::patch_label).delete(routes::delete_label),
        )
        .route(
            "/projects/{id}/rounds",
            get(routes::list_rounds).post(routes::start_round),
        )
        .route("/projects/{id}/export", get(routes::export))
        .route(
            "/jobs/{id}",
            get(routes::get_job).delete(routes::cancel_job),
        )
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Runs the daemon until SIGINT/SIGTERM. Prints `listening on http://ADDR` on stdout
/// once the socket is bound (so scripts and tests can read the port of `:0`).
///
/// # Errors
///
/// [`ServerError`] when it cannot start.
pub fn serve(config: ServerConfig) -> Result<(), ServerError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
        eprintln!("warning: {w}");
    }
    let runtime_info = crate::model::runtime::init()?;
    std::fs::create_dir_all(&config.data_dir).map_err(io(format!(
        "cannot create the data folder {}",
        config.data_dir.display()
    )))?;
    let db_path = config.data_dir.join("nexttile.sqlite");
    let db = Db::open(&db_path)?;
    let stale = db.interrupt_stale_jobs()?;
    if stale > 0 {
        eprintln!("note: {stale} job(s) of an earlier run were marked interrupted");
    }
    let jobs: JobTable = Arc::default();
    let (queue, worker) = worker::start(
        WorkerContext {
            db_path: db_path.clone(),
            data_dir: config.data_dir.clone(),
            jobs: jobs.clone(),
            max_tiles: config.max_tiles,
            max_model_bytes: config.max_model_bytes,
        },
        config.queue_capacity,
    )
    .map_err(io("cannot start the engine thread"))?;
    let bind = config.bind;
    let state = Arc::new(AppState {
        config,
        db: Mutex::new(db),
        jobs,
        queue,
        runtime: runtime_info,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("cannot start the async runtime"))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(io(format!("cannot listen on {bind}")))?;
        let local = listener.local_addr().map_err(io("local address"))?;
        println!("listening on http://{local}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(io("server"))
    })?;
    // Stop taking work; mark what did not finish.
    if let Ok(jobs) = state.jobs.lock() {
        for live in jobs.values() {
            live.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    drop(state);
    let _ = worker.join();
    if let Ok(db) = Db::open(&db_path) {
        let _ = db.interrupt_stale_jobs();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: finishing requests, cancelling running jobs");
}
