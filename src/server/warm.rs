//! Scored scenes kept in memory on the engine thread (issue 17: "a daemon that keeps
//! scored scenes warm"): after a scene is scored, or a round retrains its head, the
//! result (embeddings, MC-mean probabilities and metrics, predictions) stays here, so
//! `POST suggestions` runs only the select stage ([`engine::reselect`]) and answers
//! from memory. Bounded by bytes, least recently used first out; a result that does
//! not fit is not kept, and a miss falls back to scoring from the embedding cache.
//!
//! [`engine::reselect`]: crate::engine::reselect

use std::collections::VecDeque;

use crate::engine::{ScoreRequest, ScoreResult};
use crate::paths::file_identity;

/// Bytes a result holds in memory (its per-tile arrays), as counted against the budget.
pub fn result_bytes(r: &ScoreResult) -> u64 {
    let f = std::mem::size_of::<f32>();
    let n = r.tiles.len();
    let metrics = 8 * n * f;
    let arrays = r.embeddings.len() * f + r.uncertainties.mean.len() * f + metrics;
    let per_tile = n * (std::mem::size_of::<usize>() * 3 + f);
    (arrays + per_tile) as u64
}

/// What a request scores, as opposed to what it selects: the scene, its pair and AOI,
/// the models (by file version), the trained head, the grid, bands, scaling, MC passes
/// and seed. Two requests with the same fingerprint give the same embeddings and
/// predictions, so one's result can answer the other's selection.
pub fn fingerprint(req: &ScoreRequest) -> String {
    let id = |p: &std::path::Path| (p.display().to_string(), file_identity(p));
    format!(
        "{:?}",
        (
            id(&req.scene),
            req.pair.as_deref().map(id),
            &req.aoi,
            id(&req.encoder),
            id(&req.head),
            req.trained_head.as_deref().map(id),
            (req.tile_size, req.overlap, req.mc_passes, req.seed),
            (&req.bands, &req.band_names, &req.sensor),
            (req.input_scale, req.input_offset, req.min_valid_fraction),
        )
    )
}

/// The warm scenes, most recently used last.
pub struct WarmScenes {
    capacity: u64,
    entries: VecDeque<Entry>,
}

struct Entry {
    scene: i64,
    fingerprint: String,
    bytes: u64,
    result: ScoreResult,
}

impl WarmScenes {
    /// An empty set that keeps at most `capacity` bytes of results.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            entries: VecDeque::new(),
        }
    }

    /// The warm result of `scene` when it was scored as `fingerprint` says, marked most
    /// recently used.
    pub fn get_mut(&mut self, scene: i64, fingerprint: &str) -> Option<&mut ScoreResult> {
        let at = self
            .entries
            .iter()
            .position(|e| e.scene == scene && e.fingerprint == fingerprint)?;
        let entry = self.entries.remove(at)?;
        self.entries.push_back(entry);
        self.entries.back_mut().map(|e| &mut e.result)
    }

    /// Keeps `result` as `scene`'s warm result (replacing any older one of the scene),
    /// dropping the least recently used until it fits; a result larger than the whole
    /// budget is not kept.
    pub fn put(&mut self, scene: i64, fingerprint: String, result: ScoreResult) {
        self.forget(scene);
        let bytes = result_bytes(&result);
        if bytes > self.capacity {
            return;
        }
        while self.bytes() + bytes > self.capacity {
            if self.entries.pop_front().is_none() {
                break;
            }
        }
        self.entries.push_back(Entry {
            scene,
            fingerprint,
            bytes,
            result,
        });
    }

    /// Drops `scene`'s warm result, if any.
    pub fn forget(&mut self, scene: i64) {
        self.entries.retain(|e| e.scene != scene);
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// Scenes held, least recently used first.
    pub fn scenes(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.scene).collect()
    }
}
