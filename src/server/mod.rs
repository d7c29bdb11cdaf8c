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
//! allowed; models only under the model roots (the shipped `onnx/` and `--model-root`),
//! by the same rules, never `/vsi…`; request bodies, tiles per scene, labels per request and the job queue are
//! bounded.

pub mod config;
pub mod error;
pub mod labels;
pub mod models;
pub mod paths;
mod region;
pub mod routes;
pub mod warm;
pub mod worker;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, patch, post};

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
    /// The address the listener got (the port of `:0` is known only then); the `Host`
    /// check compares against it.
    pub local_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Slots for heavy reads (labels pages, exports): [`HEAVY_READS`] at once.
    pub heavy_reads: Arc<tokio::sync::Semaphore>,
    /// Model contracts read once per file version (`GET /models`, projects, scenes).
    pub models: models::ModelCache,
    /// The database's schema version, read at start-up (migrations run only then), so
    /// `/health` answers without waiting for the database behind heavy reads.
    pub schema_version: i64,
}

/// How many heavy reads (labels pages, exports) run at once; more wait, then get 503.
pub const HEAVY_READS: usize = 4;

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

/// Whether `host` (a `Host` header: name or IP, optional `:port`) names this daemon
/// bound to loopback `local`: `localhost`, `127.0.0.1`, `[::1]` or the bound IP, with
/// the bound port when a port is given.
fn host_is_local(host: &str, local: std::net::SocketAddr) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]` alone has colons inside the brackets, not a port.
        Some((name, port)) if !port.ends_with(']') && !port.is_empty() => (name, Some(port)),
        _ => (host.as_str(), None),
    };
    if let Some(port) = port
        && port.parse::<u16>().ok() != Some(local.port())
    {
        return false;
    }
    let bound = match local.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    ["localhost", "127.0.0.1", "[::1]", bound.as_str()].contains(&name)
}

/// On a loopback bind, refuses a `Host` that is not this daemon's (421): a web page
/// that rebinds its own name to 127.0.0.1 sends its name as `Host`.
async fn check_host(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let local = state.local_addr.get().copied().unwrap_or(state.config.bind);
    if local.ip().is_loopback() {
        let host = req
            .headers()
            .get(header::HOST)
            .map(|v| v.to_str().unwrap_or("(not text)").to_string())
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        if let Some(host) = host
            && !host_is_local(&host, local)
        {
            let port = local.port();
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {host:?} is not this daemon's address; call it as http://127.0.0.1:{port} or http://localhost:{port} (other names are refused against DNS rebinding)"
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether a `Content-Type` value is JSON (`application/json`, or `+json` such as
/// `application/geo+json`), parameters aside.
fn is_json_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Every POST, PUT and PATCH must say its body is JSON (415 otherwise): web pages can
/// send `text/plain` and form bodies to loopback without a CORS preflight, never JSON.
/// Layered on the routes that take a body ([`json_bodies`]), so a method a route does
/// not take is still answered 405.
async fn require_json_body(req: Request, next: Next) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        let given = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        if !given.is_some_and(is_json_type) {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "send the body as JSON with `Content-Type: application/json` (got {}); an empty body is `{{}}`",
                    given.map_or("no Content-Type".to_string(), |g| format!("{g:?}"))
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Answers every error in the `{"error": …}` shape: axum's own refusals (body over the
/// limit, malformed JSON, wrong method) come as plain text otherwise.
async fn json_errors(State(state): State<Arc<AppState>>, resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_type);
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than this daemon's limit of {} bytes (max_body_bytes); send fewer features per request, or raise the limit (--max-body-bytes)",
            state.config.max_body_bytes
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this route does not take that method (see GET /openapi.json)".to_string()
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
        _ => text,
    };
    let mut out = ApiError::new(status, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// `routes` with the JSON content-type check on the methods they take; axum's 405 for
/// any other method is answered before the check, not turned into a 415.
fn json_bodies(routes: MethodRouter<Arc<AppState>>) -> MethodRouter<Arc<AppState>> {
    routes.route_layer(middleware::from_fn(require_json_body))
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
        routes::rescore_scene, routes::heatmap, routes::region_heatmap, routes::suggestions, routes::post_labels, routes::get_labels,
        routes::patch_label, routes::delete_label, routes::start_round, routes::list_rounds,
        routes::export, routes::get_job, routes::cancel_job
    ),
    components(schemas(
        error::ErrorBody, routes::NewProject, routes::NewScene, routes::SelectBody, routes::Scope,
        routes::LabelPatch, routes::RescoreBody, crate::store::Project, crate::store::SceneRow,
        crate::store::SceneStatus,
        crate::store::LabelRow, crate::store::RoundRow, crate::store::JobRow
    )),
    modifiers(&BearerAuth, &CommonErrors),
    // The token is optional: required only when the daemon is started with one.
    security((), ("bearer" = []))
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

/// Declares on every operation the refusals the middleware and axum's extractors
/// answer (token, `Host`, content type, body size, malformed input), the 507 of every
/// operation that writes (a full disk), all as [`error::ErrorBody`], and the
/// `Retry-After` header of every 429.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ContentBuilder, Ref, RefOr, ResponseBuilder, Type, header::HeaderBuilder,
            schema::ObjectBuilder,
        };
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_ids = path.contains('{');
            // GET /export writes the file it sends into the data folder.
            let get_writes = path.ends_with("/export");
            let ops = [
                (&mut item.get, false, get_writes),
                (&mut item.delete, false, true),
                (&mut item.post, true, true),
                (&mut item.put, true, true),
                (&mut item.patch, true, true),
            ];
            for (op, with_body, writes) in ops {
                let Some(op) = op.as_mut() else { continue };
                let r = &mut op.responses.responses;
                let mut add = |code: &str, description: &str| {
                    r.entry(code.to_string())
                        .or_insert_with(|| RefOr::T(error(description).build()));
                };
                add(
                    "401",
                    "This daemon requires a token: no or wrong `Authorization: Bearer`",
                );
                add(
                    "421",
                    "The `Host` header is not this daemon's loopback address (DNS rebinding)",
                );
                if has_ids || with_body {
                    add(
                        "400",
                        "Malformed request: an id that is not a 64-bit integer, a malformed query or JSON body",
                    );
                }
                if has_ids {
                    add("404", "The project, scene, label or job does not exist");
                }
                if with_body {
                    add("413", "The body is larger than max_body_bytes");
                    add(
                        "415",
                        "The body is not sent as `Content-Type: application/json`",
                    );
                    add("422", "The body does not fit the request schema");
                }
                if writes {
                    add(
                        "507",
                        "The disk of the data folder is full; the write was not kept: free space there and retry",
                    );
                }
                for busy in ["429", "503"] {
                    let Some(RefOr::T(too_many)) = r.get_mut(busy) else {
                        continue;
                    };
                    too_many.headers.insert(
                        "Retry-After".to_string(),
                        HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::Integer))
                            .description(Some("Seconds to wait before retrying"))
                            .build(),
                    );
                }
            }
        }
    }
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

async fn fallback() -> ApiError {
    ApiError::not_found("route (see the README's API table)")
}

/// The router with every route, the `Host` and token checks, the content-type check on
/// the routes that take a body, the body limit, and JSON for every error.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(routes::health))
        .route("/models", get(routes::models))
        .route("/openapi.json", get(openapi_json))
        .route(
            "/projects",
            json_bodies(get(routes::list_projects).post(routes::create_project)),
        )
        .route(
            "/projects/{id}",
            get(routes::get_project).delete(routes::delete_project),
        )
        .route(
            "/projects/{id}/scenes",
            json_bodies(get(routes::list_scenes).post(routes::add_scene)),
        )
        .route(
            "/projects/{id}/scenes/{scene}/heatmap",
            get(routes::heatmap),
        )
        .route(
            "/projects/{id}/scenes/{scene}/rescore",
            json_bodies(post(routes::rescore_scene)),
        )
        .route(
            "/projects/{id}/suggestions",
            json_bodies(post(routes::suggestions)),
        )
        .route(
            "/projects/{id}/labels",
            json_bodies(get(routes::get_labels).post(routes::post_labels)),
        )
        .route(
            "/projects/{id}/labels/{label}",
            json_bodies(patch(routes::patch_label).delete(routes::delete_label)),
        )
        .route(
            "/projects/{id}/rounds",
            json_bodies(get(routes::list_rounds).post(routes::start_round)),
        )
        .route("/projects/{id}/export", get(routes::export))
        .route("/projects/{id}/heatmap", get(routes::region_heatmap))
        .route(
            "/jobs/{id}",
            get(routes::get_job).delete(routes::cancel_job),
        )
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::map_response_with_state(
            state.clone(),
            json_errors,
        ))
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
    crate::raster::gdal_defences(config.allow_vsi);
    std::fs::create_dir_all(&config.data_dir).map_err(io(format!(
        "cannot create the data folder {}",
        config.data_dir.display()
    )))?;
    let db_path = config.data_dir.join("nexttile.sqlite");
    let db = Db::open(&db_path)?;
    let schema_version = db.schema_version()?;
    let stale = db.interrupt_stale_jobs()?;
    if stale > 0 {
        eprintln!("note: {stale} job(s) of an earlier run were marked interrupted");
    }
    let jobs: JobTable = Arc::default();
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (queue, worker) = worker::start(
        WorkerContext {
            db_path: db_path.clone(),
            data_dir: config.data_dir.clone(),
            jobs: jobs.clone(),
            max_tiles: config.max_tiles,
            max_model_bytes: config.max_model_bytes,
            confine: config.confinement(),
            model_roots: config.model_roots.clone(),
            stopping: stopping.clone(),
            warm: std::sync::Mutex::new(warm::WarmScenes::new(config.warm_scene_bytes)),
            labels: std::sync::Mutex::new(warm::LabelCache::default()),
            latest: std::sync::Mutex::new(std::collections::HashMap::new()),
            latest_region: std::sync::Mutex::new(std::collections::HashMap::new()),
        },
        config.queue_capacity,
    )
    .map_err(io("cannot start the engine thread"))?;
    let bind = config.bind;
    let header_timeout = std::time::Duration::from_secs(config.header_read_timeout_s);
    let models = models::ModelCache::new(crate::model::SessionConfig {
        max_model_bytes: config.max_model_bytes,
        ..crate::model::SessionConfig::default()
    });
    let state = Arc::new(AppState {
        config,
        db: Mutex::new(db),
        jobs,
        queue,
        runtime: runtime_info,
        local_addr: std::sync::OnceLock::new(),
        heavy_reads: Arc::new(tokio::sync::Semaphore::new(HEAVY_READS)),
        models,
        schema_version,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("cannot start the async runtime"))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(io(format!(
                "cannot listen on {bind} (another process may hold the port: stop it or choose another with --bind)"
            )))?;
        let local = listener.local_addr().map_err(io("local address"))?;
        let _ = state.local_addr.set(local);
        println!("listening on http://{local}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        serve_http1(
            listener,
            router(state.clone()),
            header_timeout,
            shutdown_signal(),
        )
        .await;
        Ok::<(), ServerError>(())
    })?;
    // Stop taking work; what did not finish ends `interrupted`.
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
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

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` resolves, then stops
/// accepting and waits for the open requests to finish (as `axum::serve` does), with a
/// header-read timeout: a connection that has not sent a request's headers within
/// `header_timeout` (a half-open or slow client, or an idle keep-alive connection) is
/// closed.
async fn serve_http1(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then accept again.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names_with_the_bound_port() {
        let local: std::net::SocketAddr = "127.0.0.1:7878".parse().unwrap();
        for ok in [
            "127.0.0.1:7878",
            "localhost:7878",
            "LOCALHOST:7878",
            "[::1]:7878",
            "localhost",
            "127.0.0.1",
            "[::1]",
        ] {
            assert!(host_is_local(ok, local), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:7878",
            "localhost:7879",
            "127.0.0.1:80",
            "127.0.0.1.nip.io:7878",
            "localhost:x",
            "",
        ] {
            assert!(!host_is_local(bad, local), "{bad}");
        }
        let v6: std::net::SocketAddr = "[::1]:9000".parse().unwrap();
        assert!(host_is_local("[::1]:9000", v6));
        assert!(!host_is_local("[::1]:7878", v6));
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/geo+json",
        ] {
            assert!(is_json_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json+plain",
            "",
        ] {
            assert!(!is_json_type(bad), "{bad}");
        }
    }
}
