//! The daemon's durable state: one SQLite file (WAL journal, `synchronous = FULL`, so a
//! label acknowledged to a client survives a crash or a killed process) holding projects,
//! scenes, labels, rounds and jobs. The schema is versioned with SQLite's `user_version`
//! and migrated forward on open.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Schema migrations, in order; `user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    encoder     TEXT NOT NULL,
    head        TEXT NOT NULL,
    classes     TEXT NOT NULL,          -- JSON array of class names
    multi_label INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE scenes (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    aoi         TEXT,                   -- GeoJSON as given
    aoi_crs     TEXT,
    summary     TEXT,                   -- JSON summary of the last scoring
    out_dir     TEXT,
    created     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE labels (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    class       TEXT NOT NULL,
    geometry    TEXT NOT NULL,          -- GeoJSON geometry, EPSG:4326 lon/lat
    author      TEXT,
    source      TEXT,
    created     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated     TEXT,
    deleted     TEXT                    -- set instead of removing the row
);
CREATE INDEX labels_project ON labels(project_id) WHERE deleted IS NULL;
CREATE TABLE rounds (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    scene_id    INTEGER REFERENCES scenes(id) ON DELETE SET NULL,
    strategy    TEXT NOT NULL,          -- JSON
    head_path   TEXT,
    summary     TEXT,                   -- JSON summary of the scoring
    created     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (project_id, number)
);
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER REFERENCES projects(id) ON DELETE SET NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,          -- queued, running, done, failed, cancelled, interrupted
    message     TEXT,
    result      TEXT,                   -- JSON
    created     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated     TEXT
);
"#,
    r#"
-- 2: a second raster (e.g. Sentinel-1 beside Sentinel-2) for multi-modal encoders
ALTER TABLE scenes ADD COLUMN pair TEXT;
"#,
    r#"
-- 3: a scene's scoring status (scoring, scored, failed, interrupted) and its last
-- scoring job. Older rows had neither: a scene with a summary was scored; otherwise
-- its job is the first `score` job of its project created at or after it (the route
-- created the two one after the other), and the scene's status follows that job's.
ALTER TABLE scenes ADD COLUMN status TEXT NOT NULL DEFAULT 'scoring';
ALTER TABLE scenes ADD COLUMN job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL;
UPDATE scenes SET job_id = (
    SELECT j.id FROM jobs j
    WHERE j.kind = 'score' AND j.project_id = scenes.project_id AND j.created >= scenes.created
    ORDER BY j.id LIMIT 1
);
UPDATE scenes SET status = CASE
    WHEN summary IS NOT NULL THEN 'scored'
    WHEN (SELECT status FROM jobs WHERE id = scenes.job_id) = 'failed' THEN 'failed'
    -- queued or running jobs of an earlier process are stale (marked interrupted at
    -- start), as are cancelled ones and scenes whose job cannot be found
    ELSE 'interrupted'
END;
"#,
    r#"
-- 4: a project's label revision, one more at every change to its labels (added,
-- corrected, deleted), so the daemon can keep the labels it read until they change
ALTER TABLE projects ADD COLUMN label_revision INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- 5: how a scene's raster is read (sensor preset, resampling, input scale/offset),
-- JSON as the POST gave it; NULL: the encoder's defaults
ALTER TABLE scenes ADD COLUMN input TEXT;
"#,
];

/// Counts one more change to a project's labels (`?1`: the project id).
const BUMP_LABEL_REVISION: &str =
    "UPDATE projects SET label_revision = label_revision + 1 WHERE id = ?1";

/// Where a job stands, stored and served as these lowercase names (the QGIS plugin
/// matches them): `queued`, `running`, `done`, `failed`, `cancelled`, `interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting in the engine's queue.
    Queued,
    /// On the engine thread.
    Running,
    /// Finished; its result is stored.
    Done,
    /// Stopped by an error (its message says which).
    Failed,
    /// Stopped by `DELETE /jobs/{id}`.
    Cancelled,
    /// Stopped because the daemon stopped.
    Interrupted,
}

impl JobStatus {
    /// The stored (and served) name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// The status of a stored name (`None` for a name no build writes).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Done,
            Self::Failed,
            Self::Cancelled,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a scene's raster is read, as `POST /projects/{id}/scenes` gave it (the CLI's
/// `--sensor`, `--resample`, `--input-scale`, `--input-offset`); kept for rescoring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SceneInput {
    /// Sensor preset (`s2-l1c`, `s2-l2a`, `landsat8`, `landsat9`, `landsat7`,
    /// `reflectance`, `rgb`): band order and reflectance scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    /// `auto` (default), `off` or a pixel size in metres (e.g. `"30"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resample: Option<String>,
    /// Replaces the encoder's (or the preset's) `input_scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_scale: Option<f32>,
    /// Replaces the encoder's (or the preset's) `input_offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_offset: Option<f32>,
    /// When the scene's `path` is a STAC ItemCollection: the id of its item this scene
    /// is (each item of a collection posted to `POST /projects/{id}/scenes` is a scene).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

impl SceneInput {
    /// Whether it sets nothing (the encoder's defaults).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Where a scene's scoring stands; suggestions and the heatmap need `scored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SceneStatus {
    /// Its scoring job is queued or running.
    Scoring,
    /// Scored: its heatmap and suggestions can be read.
    Scored,
    /// Its scoring job failed (the job's message says why); rescore it.
    Failed,
    /// Its scoring job was cancelled (`DELETE /jobs/{id}`) or the daemon stopped
    /// before it finished; rescore it.
    Interrupted,
}

impl SceneStatus {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scoring => "scoring",
            Self::Scored => "scored",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// The status a scene's scoring job leaves it in: `done` → scored, `failed` →
    /// failed, `queued`/`running` → scoring, anything else (cancelled, interrupted) →
    /// interrupted.
    pub fn after_job(job_status: JobStatus) -> Self {
        match job_status {
            JobStatus::Done => Self::Scored,
            JobStatus::Failed => Self::Failed,
            JobStatus::Queued | JobStatus::Running => Self::Scoring,
            JobStatus::Cancelled | JobStatus::Interrupted => Self::Interrupted,
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "scoring" => Self::Scoring,
            "scored" => Self::Scored,
            "failed" => Self::Failed,
            _ => Self::Interrupted,
        }
    }
}

/// A database error, with what the daemon was doing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused.
    #[error("database {path}: {message}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's message, with the operation.
        message: String,
    },
    /// The disk holding the database is full (SQLite's `SQLITE_FULL`, "database or disk
    /// is full"): the statement that failed was rolled back.
    #[error("database {path}: {message}")]
    Full {
        /// The database file.
        path: PathBuf,
        /// SQLite's message, with the operation.
        message: String,
    },
    /// The file was written by a newer NextTile.
    #[error(
        "database {path} has schema version {found}, newer than this nexttile ({supported}); upgrade nexttile"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
}

impl DbError {
    /// SQLite's error `e` during `op` on the database at `path`: [`DbError::Full`] for
    /// `SQLITE_FULL`, else [`DbError::Sqlite`].
    pub fn sqlite(path: &Path, op: &str, e: &rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        let message = format!("{op}: {e}");
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            DbError::Full { path, message }
        } else {
            DbError::Sqlite { path, message }
        }
    }
}

/// A project: which models, which classes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Project {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Encoder ONNX path.
    pub encoder: String,
    /// Head ONNX path.
    pub head: String,
    /// Class names, in head output order.
    pub classes: Vec<String>,
    /// Multi-label head.
    pub multi_label: bool,
    /// Creation time (UTC, ISO 8601).
    pub created: String,
}

/// A scene of a project.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SceneRow {
    /// Id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// Raster path.
    pub path: String,
    /// AOI GeoJSON as given, if any.
    pub aoi: Option<String>,
    /// CRS of the AOI when not WGS 84.
    pub aoi_crs: Option<String>,
    /// Second raster of a multi-modal pair, warped onto this scene's grid.
    pub pair: Option<String>,
    /// Summary of the last scoring (JSON), if scored.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    /// Folder with the last scoring's heatmap and suggestions.
    pub out_dir: Option<String>,
    /// Creation time.
    pub created: String,
    /// Where its scoring stands: suggestions and the heatmap need `scored`; a
    /// `failed` or `interrupted` scene is scored again with
    /// `POST /projects/{id}/scenes/{scene}/rescore`.
    pub status: SceneStatus,
    /// Its latest scoring job (`GET /jobs/{id}`), if known.
    pub job: Option<i64>,
    /// How its raster is read (sensor, resampling, scale/offset); empty: the defaults.
    pub input: SceneInput,
}

/// A stored label.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LabelRow {
    /// Id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// Class name (one of the project's).
    pub class: String,
    /// GeoJSON geometry in EPSG:4326.
    #[schema(value_type = Object)]
    pub geometry: serde_json::Value,
    /// Who labelled it, if given.
    pub author: Option<String>,
    /// Where it came from (e.g. `qgis`, `api`), if given.
    pub source: Option<String>,
    /// Creation time.
    pub created: String,
    /// Last correction time.
    pub updated: Option<String>,
}

/// A label to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLabel {
    /// Class name.
    pub class: String,
    /// GeoJSON geometry in EPSG:4326.
    pub geometry: serde_json::Value,
    /// Who.
    pub author: Option<String>,
    /// Where from.
    pub source: Option<String>,
}

/// A retraining round.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RoundRow {
    /// Id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// 1, 2, ... per project.
    pub number: i64,
    /// Scene the round scored.
    pub scene_id: Option<i64>,
    /// Strategy (JSON).
    #[schema(value_type = Object)]
    pub strategy: serde_json::Value,
    /// The trained head's checkpoint.
    pub head_path: Option<String>,
    /// Summary of the scoring (JSON): as a scoring summary, plus `agreement`
    /// (`new_labels`, `added` per class, `compared`, `agreed`, `rate`,
    /// `labels_through`): how often the previous head predicted the class the analyst
    /// then chose on the tiles labelled since the previous round.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    /// Creation time.
    pub created: String,
}

/// A job's durable record.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobRow {
    /// Id.
    pub id: i64,
    /// Project, if any.
    pub project_id: Option<i64>,
    /// `score` or `round`.
    pub kind: String,
    /// Queued, running, done, failed, cancelled or interrupted.
    pub status: JobStatus,
    /// Error or note.
    pub message: Option<String>,
    /// Result (JSON) when done.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Creation time.
    pub created: String,
    /// Last change.
    pub updated: Option<String>,
}

/// The daemon's database.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

fn json_or_null(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Debug builds only: `NEXTTILE_TEST_MAX_PAGE_COUNT=N` caps the database at `N` pages
/// (SQLite's `max_page_count`), so tests can fill "the disk" where they cannot mount a
/// small file system; SQLite then answers exactly what a full disk makes it answer
/// (SQLITE_FULL). Release builds ignore the variable.
fn test_page_limit(conn: &Connection) {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("NEXTTILE_TEST_MAX_PAGE_COUNT")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        let _ = conn.pragma_update(None, "max_page_count", n);
    }
    #[cfg(not(debug_assertions))]
    let _ = conn;
}

impl Db {
    /// Opens (creating if needed) the database at `path`, sets WAL journaling,
    /// `synchronous = FULL` and foreign keys, and applies pending migrations.
    ///
    /// # Errors
    ///
    /// [`DbError::Sqlite`] when the file cannot be opened or migrated,
    /// [`DbError::TooNew`] for a schema from a newer release.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let err = |op: &str, e: rusqlite::Error| DbError::sqlite(path, op, &e);
        let mut conn = Connection::open(path).map_err(|e| err("open", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| err("busy timeout", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err("journal_mode=WAL", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| err("synchronous=FULL", e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| err("foreign_keys", e))?;
        test_page_limit(&conn);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| err("read user_version", e))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(DbError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(|e| err("begin migration", e))?;
            tx.execute_batch(sql)
                .map_err(|e| err(&format!("migration {}", i + 1), e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| err("set user_version", e))?;
            tx.commit().map_err(|e| err("commit migration", e))?;
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, DbError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err("read user_version", e))
    }

    fn err(&self, op: &str, e: rusqlite::Error) -> DbError {
        DbError::sqlite(&self.path, op, &e)
    }

    /// Creates a project; `None` when the name is taken.
    pub fn create_project(
        &self,
        name: &str,
        encoder: &str,
        head: &str,
        classes: &[String],
        multi_label: bool,
    ) -> Result<Option<Project>, DbError> {
        let classes_json = serde_json::to_string(classes).unwrap_or_else(|_| "[]".into());
        let inserted = self.conn.execute(
            "INSERT INTO projects (name, encoder, head, classes, multi_label) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO NOTHING",
            params![name, encoder, head, classes_json, multi_label],
        );
        match inserted {
            Ok(0) => Ok(None),
            Ok(_) => self.project(self.conn.last_insert_rowid()),
            Err(e) => Err(self.err("create project", e)),
        }
    }

    fn project_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
        let classes: String = r.get(4)?;
        Ok(Project {
            id: r.get(0)?,
            name: r.get(1)?,
            encoder: r.get(2)?,
            head: r.get(3)?,
            classes: serde_json::from_str(&classes).unwrap_or_default(),
            multi_label: r.get(5)?,
            created: r.get(6)?,
        })
    }

    /// Every project, by id.
    pub fn projects(&self) -> Result<Vec<Project>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, name, encoder, head, classes, multi_label, created FROM projects ORDER BY id")
            .map_err(|e| self.err("list projects", e))?;
        st.query_map([], Self::project_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("list projects", e))
    }

    /// One project.
    pub fn project(&self, id: i64) -> Result<Option<Project>, DbError> {
        self.conn
            .query_row(
                "SELECT id, name, encoder, head, classes, multi_label, created FROM projects WHERE id = ?1",
                [id],
                Self::project_from_row,
            )
            .optional()
            .map_err(|e| self.err("read project", e))
    }

    /// Deletes a project with its scenes, labels and rounds; false when it did not exist.
    pub fn delete_project(&self, id: i64) -> Result<bool, DbError> {
        self.conn
            .execute("DELETE FROM projects WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|e| self.err("delete project", e))
    }

    /// Adds a scene to a project, in status `scoring` by job `job`.
    pub fn add_scene(
        &self,
        project_id: i64,
        path: &str,
        aoi: Option<&str>,
        aoi_crs: Option<&str>,
        pair: Option<&str>,
        job: Option<i64>,
    ) -> Result<SceneRow, DbError> {
        self.conn
            .execute(
                "INSERT INTO scenes (project_id, path, aoi, aoi_crs, pair, status, job_id) VALUES (?1, ?2, ?3, ?4, ?5, 'scoring', ?6)",
                params![project_id, path, aoi, aoi_crs, pair, job],
            )
            .map_err(|e| self.err("add scene", e))?;
        let id = self.conn.last_insert_rowid();
        self.scene(id)?
            .ok_or_else(|| self.err("read new scene", rusqlite::Error::QueryReturnedNoRows))
    }

    fn scene_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SceneRow> {
        Ok(SceneRow {
            id: r.get(0)?,
            project_id: r.get(1)?,
            path: r.get(2)?,
            aoi: r.get(3)?,
            aoi_crs: r.get(4)?,
            summary: json_or_null(r.get(5)?),
            out_dir: r.get(6)?,
            created: r.get(7)?,
            pair: r.get(8)?,
            status: SceneStatus::from_name(&r.get::<_, String>(9)?),
            job: r.get(10)?,
            input: r
                .get::<_, Option<String>>(11)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
        })
    }

    /// Stores how a scene's raster is read (nothing stored when `input` is empty).
    pub fn set_scene_input(&self, id: i64, input: &SceneInput) -> Result<(), DbError> {
        let text = if input.is_empty() {
            None
        } else {
            serde_json::to_string(input).ok()
        };
        self.conn
            .execute(
                "UPDATE scenes SET input = ?1 WHERE id = ?2",
                params![text, id],
            )
            .map_err(|e| self.err("set scene input", e))?;
        Ok(())
    }

    /// One scene.
    pub fn scene(&self, id: i64) -> Result<Option<SceneRow>, DbError> {
        self.conn
            .query_row(
                "SELECT id, project_id, path, aoi, aoi_crs, summary, out_dir, created, pair, status, job_id, input FROM scenes WHERE id = ?1",
                [id],
                Self::scene_from_row,
            )
            .optional()
            .map_err(|e| self.err("read scene", e))
    }

    /// A project's scenes, by id.
    pub fn scenes(&self, project_id: i64) -> Result<Vec<SceneRow>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, project_id, path, aoi, aoi_crs, summary, out_dir, created, pair, status, job_id, input FROM scenes WHERE project_id = ?1 ORDER BY id")
            .map_err(|e| self.err("list scenes", e))?;
        st.query_map([project_id], Self::scene_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("list scenes", e))
    }

    /// Removes a scene (one whose scoring job the queue refused, so that it does not
    /// stay behind as "still being scored"). True when a row was removed.
    pub fn delete_scene(&self, id: i64) -> Result<bool, DbError> {
        self.conn
            .execute("DELETE FROM scenes WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|e| self.err("delete scene", e))
    }

    /// Records a scene's scoring result; the scene is `scored`.
    pub fn set_scene_scored(
        &self,
        id: i64,
        summary: &serde_json::Value,
        out_dir: &str,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE scenes SET summary = ?2, out_dir = ?3, status = 'scored' WHERE id = ?1",
                params![id, summary.to_string(), out_dir],
            )
            .map(|_| ())
            .map_err(|e| self.err("record scoring", e))
    }

    /// Sets the status of a scene whose latest scoring job is `job` (a scene already
    /// given to a newer job is left alone); true when a row changed.
    pub fn set_scene_status(
        &self,
        id: i64,
        job: i64,
        status: SceneStatus,
    ) -> Result<bool, DbError> {
        self.conn
            .execute(
                "UPDATE scenes SET status = ?3 WHERE id = ?1 AND job_id = ?2",
                params![id, job, status.name()],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err("set scene status", e))
    }

    /// Hands a scene to scoring job `job` (status `scoring`), or back to an earlier
    /// job and status when the new job could not be queued.
    pub fn set_scene_job(
        &self,
        id: i64,
        job: Option<i64>,
        status: SceneStatus,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE scenes SET job_id = ?2, status = ?3 WHERE id = ?1",
                params![id, job, status.name()],
            )
            .map(|_| ())
            .map_err(|e| self.err("set scene job", e))
    }

    /// Inserts labels in one transaction (all or none) and returns their ids. With
    /// `synchronous = FULL` the call returns only once they are on disk.
    pub fn add_labels(
        &mut self,
        project_id: i64,
        labels: &[NewLabel],
    ) -> Result<Vec<i64>, DbError> {
        let path = self.path.clone();
        let err = |op: &str, e: rusqlite::Error| DbError::sqlite(&path, op, &e);
        let tx = self.conn.transaction().map_err(|e| err("begin", e))?;
        let mut ids = Vec::with_capacity(labels.len());
        {
            let mut st = tx
                .prepare("INSERT INTO labels (project_id, class, geometry, author, source) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(|e| err("prepare insert label", e))?;
            for l in labels {
                st.execute(params![
                    project_id,
                    l.class,
                    l.geometry.to_string(),
                    l.author,
                    l.source
                ])
                .map_err(|e| err("insert label", e))?;
                ids.push(tx.last_insert_rowid());
            }
        }
        if !labels.is_empty() {
            tx.execute(BUMP_LABEL_REVISION, [project_id])
                .map_err(|e| err("bump label revision", e))?;
        }
        tx.commit().map_err(|e| err("commit labels", e))?;
        Ok(ids)
    }

    fn label_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LabelRow> {
        let geometry: String = r.get(3)?;
        Ok(LabelRow {
            id: r.get(0)?,
            project_id: r.get(1)?,
            class: r.get(2)?,
            geometry: serde_json::from_str(&geometry).unwrap_or(serde_json::Value::Null),
            author: r.get(4)?,
            source: r.get(5)?,
            created: r.get(6)?,
            updated: r.get(7)?,
        })
    }

    /// A project's labels (not deleted), by id.
    pub fn labels(&self, project_id: i64) -> Result<Vec<LabelRow>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, project_id, class, geometry, author, source, created, updated FROM labels WHERE project_id = ?1 AND deleted IS NULL ORDER BY id")
            .map_err(|e| self.err("list labels", e))?;
        st.query_map([project_id], Self::label_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("list labels", e))
    }

    /// One page of a project's labels (not deleted), by id: those with an id above
    /// `after` that `keep` accepts, at most `limit` of them, and whether more remain.
    /// Rows are read one at a time, so a page costs its own size whatever the total.
    pub fn labels_page(
        &self,
        project_id: i64,
        after: i64,
        limit: usize,
        keep: &dyn Fn(&LabelRow) -> bool,
    ) -> Result<(Vec<LabelRow>, bool), DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, project_id, class, geometry, author, source, created, updated FROM labels WHERE project_id = ?1 AND deleted IS NULL AND id > ?2 ORDER BY id")
            .map_err(|e| self.err("list labels", e))?;
        let mut rows = st
            .query(params![project_id, after])
            .map_err(|e| self.err("list labels", e))?;
        let mut page = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err("list labels", e))? {
            let label = Self::label_from_row(row).map_err(|e| self.err("read label", e))?;
            if !keep(&label) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, true));
            }
            page.push(label);
        }
        Ok((page, false))
    }

    /// How many labels (not deleted) a project has.
    pub fn label_count(&self, project_id: i64) -> Result<usize, DbError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM labels WHERE project_id = ?1 AND deleted IS NULL",
                [project_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| self.err("count labels", e))
    }

    /// One label of a project (not deleted).
    pub fn label(&self, project_id: i64, id: i64) -> Result<Option<LabelRow>, DbError> {
        self.conn
            .query_row(
                "SELECT id, project_id, class, geometry, author, source, created, updated FROM labels WHERE project_id = ?1 AND id = ?2 AND deleted IS NULL",
                params![project_id, id],
                Self::label_from_row,
            )
            .optional()
            .map_err(|e| self.err("read label", e))
    }

    /// Corrects a label's class and/or geometry; false when there is no such label.
    pub fn update_label(
        &self,
        project_id: i64,
        id: i64,
        class: Option<&str>,
        geometry: Option<&serde_json::Value>,
    ) -> Result<bool, DbError> {
        let changed = self
            .conn
            .execute(
                "UPDATE labels SET class = COALESCE(?3, class), geometry = COALESCE(?4, geometry),
                 updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?2 AND project_id = ?1 AND deleted IS NULL",
                params![project_id, id, class, geometry.map(|g| g.to_string())],
            )
            .map_err(|e| self.err("update label", e))?;
        self.bump_label_revision(project_id, changed)
    }

    /// Marks a label deleted (the row is kept); false when there is no such label.
    pub fn delete_label(&self, project_id: i64, id: i64) -> Result<bool, DbError> {
        let changed = self
            .conn
            .execute(
                "UPDATE labels SET deleted = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?2 AND project_id = ?1 AND deleted IS NULL",
                params![project_id, id],
            )
            .map_err(|e| self.err("delete label", e))?;
        self.bump_label_revision(project_id, changed)
    }

    /// After a change of `changed` labels of a project: one more revision when any
    /// changed; whether any did.
    fn bump_label_revision(&self, project_id: i64, changed: usize) -> Result<bool, DbError> {
        if changed > 0 {
            self.conn
                .execute(BUMP_LABEL_REVISION, [project_id])
                .map_err(|e| self.err("bump label revision", e))?;
        }
        Ok(changed > 0)
    }

    /// A project's label revision: one more at every change to its labels (0 before
    /// any), so what was read at one revision holds until it changes; `None` when there
    /// is no such project.
    pub fn label_revision(&self, project_id: i64) -> Result<Option<i64>, DbError> {
        self.conn
            .query_row(
                "SELECT label_revision FROM projects WHERE id = ?1",
                [project_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err("read label revision", e))
    }

    /// Records a round; its number is one more than the project's last.
    pub fn add_round(
        &self,
        project_id: i64,
        scene_id: i64,
        strategy: &serde_json::Value,
        head_path: &str,
        summary: &serde_json::Value,
    ) -> Result<RoundRow, DbError> {
        self.conn
            .execute(
                "INSERT INTO rounds (project_id, number, scene_id, strategy, head_path, summary)
                 VALUES (?1, (SELECT COALESCE(MAX(number), 0) + 1 FROM rounds WHERE project_id = ?1), ?2, ?3, ?4, ?5)",
                params![project_id, scene_id, strategy.to_string(), head_path, summary.to_string()],
            )
            .map_err(|e| self.err("add round", e))?;
        let id = self.conn.last_insert_rowid();
        self.conn
            .query_row(
                "SELECT id, project_id, number, scene_id, strategy, head_path, summary, created FROM rounds WHERE id = ?1",
                [id],
                Self::round_from_row,
            )
            .map_err(|e| self.err("read round", e))
    }

    fn round_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RoundRow> {
        Ok(RoundRow {
            id: r.get(0)?,
            project_id: r.get(1)?,
            number: r.get(2)?,
            scene_id: r.get(3)?,
            strategy: json_or_null(r.get(4)?).unwrap_or(serde_json::Value::Null),
            head_path: r.get(5)?,
            summary: json_or_null(r.get(6)?),
            created: r.get(7)?,
        })
    }

    /// A project's rounds, oldest first.
    pub fn rounds(&self, project_id: i64) -> Result<Vec<RoundRow>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, project_id, number, scene_id, strategy, head_path, summary, created FROM rounds WHERE project_id = ?1 ORDER BY number")
            .map_err(|e| self.err("list rounds", e))?;
        st.query_map([project_id], Self::round_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("list rounds", e))
    }

    /// Creates a job record in state `queued`.
    pub fn create_job(&self, project_id: Option<i64>, kind: &str) -> Result<i64, DbError> {
        self.conn
            .execute(
                "INSERT INTO jobs (project_id, kind, status) VALUES (?1, ?2, 'queued')",
                params![project_id, kind],
            )
            .map_err(|e| self.err("create job", e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Sets a job's status, message and result.
    pub fn set_job(
        &self,
        id: i64,
        status: JobStatus,
        message: Option<&str>,
        result: Option<&serde_json::Value>,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE jobs SET status = ?2, message = ?3, result = COALESCE(?4, result),
                 updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                params![id, status.name(), message, result.map(|r| r.to_string())],
            )
            .map(|_| ())
            .map_err(|e| self.err("update job", e))
    }

    /// One job.
    pub fn job(&self, id: i64) -> Result<Option<JobRow>, DbError> {
        self.conn
            .query_row(
                "SELECT id, project_id, kind, status, message, result, created, updated FROM jobs WHERE id = ?1",
                [id],
                |r| {
                    let name: String = r.get(3)?;
                    let status = JobStatus::from_name(&name).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            3,
                            rusqlite::types::Type::Text,
                            format!("unknown job status {name:?}").into(),
                        )
                    })?;
                    Ok(JobRow {
                        id: r.get(0)?,
                        project_id: r.get(1)?,
                        kind: r.get(2)?,
                        status,
                        message: r.get(4)?,
                        result: json_or_null(r.get(5)?),
                        created: r.get(6)?,
                        updated: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err("read job", e))
    }

    /// Marks jobs left queued or running by a previous process as `interrupted`, and
    /// the scenes they were scoring too (called at start-up and after shutdown);
    /// returns how many jobs.
    pub fn interrupt_stale_jobs(&self) -> Result<usize, DbError> {
        let n = self
            .conn
            .execute(
                "UPDATE jobs SET status = 'interrupted', message = 'the daemon stopped before the job finished; start it again',
                 updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE status IN ('queued', 'running')",
                [],
            )
            .map_err(|e| self.err("interrupt stale jobs", e))?;
        // No job of an earlier process is scoring any more.
        self.conn
            .execute(
                "UPDATE scenes SET status = 'interrupted' WHERE status = 'scoring'",
                [],
            )
            .map_err(|e| self.err("interrupt stale scenes", e))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(class: &str, x: f64) -> NewLabel {
        NewLabel {
            class: class.into(),
            geometry: serde_json::json!({"type": "Point", "coordinates": [x, 1.0]}),
            author: Some("ana".into()),
            source: Some("test".into()),
        }
    }

    /// Every change to a project's labels (added, corrected, deleted) counts one more
    /// label revision; a change that finds no label, and other projects' changes, do not.
    #[test]
    fn label_revisions_count_every_change_to_a_projects_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("state.sqlite")).unwrap();
        let classes = vec!["Forest".to_string(), "River".to_string()];
        let p = db
            .create_project("p", "e.onnx", "h.onnx", &classes, false)
            .unwrap()
            .unwrap();
        let q = db
            .create_project("q", "e.onnx", "h.onnx", &classes, false)
            .unwrap()
            .unwrap();
        let rev = |db: &Db| db.label_revision(p.id).unwrap().unwrap();
        assert_eq!(rev(&db), 0);
        let ids = db
            .add_labels(p.id, &[label("Forest", 1.0), label("Forest", 2.0)])
            .unwrap();
        assert_eq!(rev(&db), 1, "one batch, one revision");
        db.add_labels(q.id, &[label("Forest", 3.0)]).unwrap();
        assert_eq!(rev(&db), 1, "another project's labels");
        assert!(db.update_label(p.id, ids[0], Some("River"), None).unwrap());
        assert_eq!(rev(&db), 2);
        assert!(db.delete_label(p.id, ids[1]).unwrap());
        assert_eq!(rev(&db), 3);
        assert!(!db.delete_label(p.id, ids[1]).unwrap(), "already deleted");
        assert!(!db.update_label(p.id, 999, Some("River"), None).unwrap());
        db.add_labels(p.id, &[]).unwrap();
        assert_eq!(rev(&db), 3, "no change, no revision");
        assert_eq!(db.label_revision(999).unwrap(), None);
    }

    /// A real `SQLITE_FULL` (the database capped with `max_page_count`, as a full disk
    /// would stop it): the label post fails as [`DbError::Full`], and the labels stored
    /// before it are all still there.
    #[test]
    fn a_full_database_is_told_apart_and_loses_nothing_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("state.sqlite")).unwrap();
        let classes = vec!["Forest".to_string()];
        let p = db
            .create_project("p", "e.onnx", "h.onnx", &classes, false)
            .unwrap()
            .unwrap();
        let stored = db.add_labels(p.id, &[label("Forest", 1.0)]).unwrap();
        let pages: i64 = db
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        db.conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let batch: Vec<NewLabel> = (0..2000).map(|i| label("Forest", f64::from(i))).collect();
        let e = db.add_labels(p.id, &batch).unwrap_err();
        assert!(matches!(e, DbError::Full { .. }), "{e:?}");
        assert!(e.to_string().contains("database or disk is full"), "{e}");
        db.conn
            .pragma_update(None, "max_page_count", 1_073_741_823_i64)
            .unwrap();
        let ids: Vec<i64> = db.labels(p.id).unwrap().iter().map(|l| l.id).collect();
        assert_eq!(ids, stored);
    }

    #[test]
    fn migrates_and_round_trips_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let mut db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let classes = vec!["Forest".to_string(), "SeaLake".to_string()];
        let p = db
            .create_project("p", "enc.onnx", "head.onnx", &classes, false)
            .unwrap()
            .unwrap();
        assert_eq!(p.classes, classes);
        assert!(
            db.create_project("p", "e", "h", &classes, false)
                .unwrap()
                .is_none()
        );
        let s = db
            .add_scene(p.id, "/data/s.tif", None, None, None, None)
            .unwrap();
        assert_eq!(s.status, SceneStatus::Scoring);
        db.set_scene_scored(s.id, &serde_json::json!({"tiles": 3}), "/tmp/o")
            .unwrap();
        assert_eq!(
            db.scene(s.id).unwrap().unwrap().summary.unwrap()["tiles"],
            3
        );
        let ids = db
            .add_labels(p.id, &[label("Forest", 0.0), label("SeaLake", 2.0)])
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(
            db.update_label(p.id, ids[0], Some("SeaLake"), None)
                .unwrap()
        );
        assert!(db.delete_label(p.id, ids[1]).unwrap());
        assert!(!db.delete_label(p.id, ids[1]).unwrap());
        let labels = db.labels(p.id).unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(db.label_count(p.id).unwrap(), 1);
        assert_eq!(db.label(p.id, ids[0]).unwrap().unwrap().class, "SeaLake");
        assert!(db.label(p.id, ids[1]).unwrap().is_none());
        assert_eq!(labels[0].class, "SeaLake");
        assert!(labels[0].updated.is_some());
        let r1 = db
            .add_round(
                p.id,
                s.id,
                &serde_json::json!("random"),
                "/h1",
                &serde_json::json!({}),
            )
            .unwrap();
        let r2 = db
            .add_round(
                p.id,
                s.id,
                &serde_json::json!("random"),
                "/h2",
                &serde_json::json!({}),
            )
            .unwrap();
        assert_eq!((r1.number, r2.number), (1, 2));
        let job = db.create_job(Some(p.id), "score").unwrap();
        db.set_job(job, JobStatus::Running, None, None).unwrap();
        drop(db);
        // Reopen: nothing lost; the running job is marked interrupted.
        let db = Db::open(&path).unwrap();
        assert_eq!(db.labels(p.id).unwrap().len(), 1);
        assert_eq!(db.interrupt_stale_jobs().unwrap(), 1);
        assert_eq!(db.job(job).unwrap().unwrap().status, JobStatus::Interrupted);
        for s in [JobStatus::Queued, JobStatus::Done, JobStatus::Cancelled] {
            assert_eq!(JobStatus::from_name(s.name()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert!(db.delete_project(p.id).unwrap());
        assert!(db.projects().unwrap().is_empty());
        assert!(db.labels(p.id).unwrap().is_empty());
    }

    /// Migration 3 gives scenes of an older database a status derived from their
    /// summary and their scoring job, and start-up interrupts scenes left scoring.
    #[test]
    fn scene_status_is_derived_for_older_databases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            // A version-2 database as an earlier release left it.
            let mut c = Connection::open(&path).unwrap();
            for (i, sql) in MIGRATIONS.iter().take(2).enumerate() {
                let tx = c.transaction().unwrap();
                tx.execute_batch(sql).unwrap();
                tx.pragma_update(None, "user_version", (i + 1) as i64)
                    .unwrap();
                tx.commit().unwrap();
            }
            c.execute_batch(
                "INSERT INTO projects (id, name, encoder, head, classes) VALUES (1, 'p', 'e', 'h', '[]');
                 INSERT INTO scenes (id, project_id, path, summary, out_dir, created) VALUES (1, 1, 'a.tif', '{}', '/o', '2026-01-01T00:00:00.000Z');
                 INSERT INTO jobs (id, project_id, kind, status, created) VALUES (1, 1, 'score', 'done', '2026-01-01T00:00:00.000Z');
                 INSERT INTO jobs (id, project_id, kind, status, created) VALUES (2, 1, 'round', 'failed', '2026-01-01T00:00:01.000Z');
                 INSERT INTO scenes (id, project_id, path, created) VALUES (2, 1, 'b.tif', '2026-01-01T00:00:02.000Z');
                 INSERT INTO jobs (id, project_id, kind, status, created) VALUES (3, 1, 'score', 'failed', '2026-01-01T00:00:02.000Z');
                 INSERT INTO scenes (id, project_id, path, created) VALUES (3, 1, 'c.tif', '2026-01-01T00:00:03.000Z');
                 INSERT INTO jobs (id, project_id, kind, status, created) VALUES (4, 1, 'score', 'running', '2026-01-01T00:00:03.001Z');
                 INSERT INTO scenes (id, project_id, path, created) VALUES (4, 1, 'd.tif', '2026-01-01T00:00:04.000Z');
                 INSERT INTO jobs (id, project_id, kind, status, created) VALUES (5, 1, 'score', 'cancelled', '2026-01-01T00:00:04.000Z');
                 INSERT INTO scenes (id, project_id, path, created) VALUES (5, 1, 'e.tif', '2026-01-01T00:00:05.000Z');",
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let got: Vec<(SceneStatus, Option<i64>)> = db
            .scenes(1)
            .unwrap()
            .into_iter()
            .map(|s| (s.status, s.job))
            .collect();
        use SceneStatus::*;
        assert_eq!(
            got,
            vec![
                (Scored, Some(1)),
                (Failed, Some(3)),
                (Interrupted, Some(4)),
                (Interrupted, Some(5)),
                (Interrupted, None),
            ]
        );
        // A scene still scoring when the daemon stopped is interrupted at start-up.
        let s = db.add_scene(1, "f.tif", None, None, None, Some(4)).unwrap();
        assert_eq!(s.status, Scoring);
        db.interrupt_stale_jobs().unwrap();
        assert_eq!(db.scene(s.id).unwrap().unwrap().status, Interrupted);
        // Only the scene's latest job sets its status.
        assert!(!db.set_scene_status(s.id, 3, Scored).unwrap());
        assert!(db.set_scene_status(s.id, 4, Failed).unwrap());
        assert_eq!(db.scene(s.id).unwrap().unwrap().status, Failed);
        assert_eq!(SceneStatus::after_job(JobStatus::Cancelled), Interrupted);
        assert_eq!(SceneStatus::after_job(JobStatus::Done), Scored);
    }

    /// Pages hold at most `limit` labels, say whether more remain, and together hold
    /// every kept label once.
    #[test]
    fn label_pages_cover_every_label_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("state.sqlite")).unwrap();
        let classes = vec!["Forest".to_string()];
        let p = db
            .create_project("p", "e", "h", &classes, false)
            .unwrap()
            .unwrap();
        let all: Vec<NewLabel> = (0..25).map(|i| label("Forest", f64::from(i))).collect();
        let ids = db.add_labels(p.id, &all).unwrap();
        db.delete_label(p.id, ids[3]).unwrap();
        let even = |l: &LabelRow| l.geometry["coordinates"][0].as_f64().unwrap_or(1.0) % 2.0 == 0.0;
        for (keep, want) in [
            (&(|_: &LabelRow| true) as &dyn Fn(&LabelRow) -> bool, 24),
            (&even, 13),
        ] {
            let (mut after, mut seen) = (0, Vec::new());
            loop {
                let (page, more) = db.labels_page(p.id, after, 4, keep).unwrap();
                assert!(page.len() <= 4);
                seen.extend(page.iter().map(|l| l.id));
                if !more {
                    break;
                }
                after = page.last().unwrap().id;
            }
            let mut unique = seen.clone();
            unique.dedup();
            assert_eq!((seen.len(), unique.len()), (want, want));
        }
        let (page, more) = db.labels_page(p.id, 0, 24, &|_| true).unwrap();
        assert_eq!((page.len(), more), (24, false));
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let msg = Db::open(&path).unwrap_err().to_string();
        assert!(msg.contains("99") && msg.contains("upgrade"), "{msg}");
    }
}
