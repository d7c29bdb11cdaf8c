//! Durable state: the on-disk embedding cache, the GeoParquet embedding store of
//! `nexttile embed`, and the daemon's SQLite database of projects, scenes, labels,
//! rounds and jobs.

mod db;
mod embedding_cache;
mod geoparquet;

pub use db::{
    Db, DbError, JobRow, JobStatus, LabelRow, NewLabel, Project, RoundRow, SceneInput, SceneRow,
    SceneStatus,
};

pub use embedding_cache::{CacheError, CacheKey, CachedEmbeddings, EmbeddingCache, file_identity};

pub use geoparquet::{
    ENCODER_KEY, GRID_KEY, META_KEY, STORE_EXTENSION, StoreBatch, StoreError, StoreMeta, StoreRows,
    TMP_SUFFIX, list_store, polygon_wkb, read_embeddings, read_footprints, read_meta, read_rows,
    tmp_path, wkb_polygon, write_scene_file,
};
