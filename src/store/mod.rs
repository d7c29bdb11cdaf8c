//! Durable state. For now: the on-disk embedding cache (SQLite state for
//! projects, labels and rounds comes with the daemon).

mod embedding_cache;

pub use embedding_cache::{CacheError, CacheKey, CachedEmbeddings, EmbeddingCache};
