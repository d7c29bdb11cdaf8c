//! The contracts of the model files the daemon is asked about (`GET /models`, project
//! creation, scene checks), read once per file version: an entry is keyed by the
//! canonical path and reused while the file's size and modification time stay the
//! same, so repeated requests build no onnxruntime session.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::{ModelError, ModelSpec, SessionConfig};

/// What reading a model file gave: its contract, or why it is not usable.
pub type Inspected = Result<Arc<ModelSpec>, Arc<ModelError>>;

/// One file version's result.
struct Entry {
    size: u64,
    mtime_ns: u128,
    result: Inspected,
}

/// Model contracts by file identity (canonical path, size, modification time).
pub struct ModelCache {
    session: SessionConfig,
    entries: Mutex<HashMap<String, Entry>>,
    reads: AtomicUsize,
}

impl ModelCache {
    /// An empty cache whose reads use `session` (its model size cap among them).
    pub fn new(session: SessionConfig) -> Self {
        ModelCache {
            session,
            entries: Mutex::new(HashMap::new()),
            reads: AtomicUsize::new(0),
        }
    }

    /// The contract of the model at `path`: the cached one while the file is unchanged,
    /// else read now (an onnxruntime session is built and dropped) and kept. Errors
    /// that depend only on the file's content (not ONNX, contract, too large) are kept
    /// too; a file that cannot be stat'ed or read is tried again next time.
    pub fn inspect(&self, path: &Path) -> Inspected {
        // The identity is taken before the read: if the file changes meanwhile, the
        // next call sees a new identity and reads it again.
        let Some((key, size, mtime_ns)) = crate::store::file_identity(path) else {
            return self.read(path);
        };
        if let Ok(entries) = self.entries.lock()
            && let Some(e) = entries.get(&key)
            && e.size == size
            && e.mtime_ns == mtime_ns
        {
            return e.result.clone();
        }
        let result = self.read(path);
        let keep = match &result {
            Ok(_) => true,
            Err(e) => !matches!(**e, ModelError::Read { .. } | ModelError::RuntimeMissing(_)),
        };
        if keep && let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                key,
                Entry {
                    size,
                    mtime_ns,
                    result: result.clone(),
                },
            );
        }
        result
    }

    /// How many times a model file was read (a session built) since the start.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    fn read(&self, path: &Path) -> Inspected {
        self.reads.fetch_add(1, Ordering::Relaxed);
        crate::model::inspect_with(path, self.session)
            .map(Arc::new)
            .map_err(Arc::new)
    }

    /// The canonical paths cached now (for tests and logs).
    pub fn cached_paths(&self) -> Vec<PathBuf> {
        self.entries
            .lock()
            .map(|e| e.keys().map(PathBuf::from).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    /// An unchanged file is answered from the cache (no second read, the same spec);
    /// a changed one is read again; a broken file's error is kept as well.
    #[test]
    fn caches_by_file_identity_and_rereads_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.onnx");
        std::fs::copy(fixture("sum_head_15.onnx"), &path).unwrap();
        let cache = ModelCache::new(SessionConfig::default());
        let first = cache.inspect(&path).unwrap();
        let again = cache.inspect(&path).unwrap();
        assert_eq!(cache.reads(), 1);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.inputs[0].shape.last(), Some(&15));
        assert_eq!(cache.cached_paths(), vec![path.canonicalize().unwrap()]);
        // Another model in its place (another size; the modification time is moved
        // too, so the test does not depend on the clock's resolution).
        std::fs::copy(fixture("sum_head_2.onnx"), &path).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let changed = cache.inspect(&path).unwrap();
        assert_eq!(cache.reads(), 2);
        assert_eq!(changed.inputs[0].shape.last(), Some(&2));
        assert!(Arc::ptr_eq(&changed, &cache.inspect(&path).unwrap()));
        assert_eq!(cache.reads(), 2);
        // A file that does not fit the contract: read once, its error kept.
        let broken = fixture("no_metadata.onnx");
        assert!(cache.inspect(&broken).is_err());
        assert!(cache.inspect(&broken).is_err());
        assert_eq!(cache.reads(), 3);
        // A missing file is not cached.
        let missing = dir.path().join("gone.onnx");
        assert!(matches!(
            *cache.inspect(&missing).unwrap_err(),
            ModelError::Read { .. }
        ));
        assert!(cache.inspect(&missing).is_err());
        assert_eq!(cache.reads(), 5);
    }
}
