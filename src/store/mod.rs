//! Durable state: the on-disk embedding cache and the daemon's SQLite database of
//! projects, scenes, labels, rounds and jobs.

mod db;
mod embedding_cache;

pub use db::{
    Db, DbError, JobRow, JobStatus, LabelRow, NewLabel, Project, RoundRow, SceneInput, SceneRow,
    SceneStatus,
};

pub use embedding_cache::{CacheError, CacheKey, CachedEmbeddings, EmbeddingCache, file_identity};
