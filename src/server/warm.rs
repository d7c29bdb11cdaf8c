//! Scored scenes kept in memory on the engine thread (issue 17: "a daemon that keeps
//! scored scenes warm"): after a scene is scored, or a round retrains its head, the
//! result (embeddings, MC-mean probabilities and metrics, predictions) stays here, so
//! `POST suggestions` runs only the select stage ([`engine::reselect`]) and answers
//! from memory. Bounded by bytes, least recently used first out; a result that does
//! not fit is not kept, and a miss falls back to scoring from the embedding cache.
//!
//! [`engine::reselect`]: crate::engine::reselect

use std::collections::{HashMap, VecDeque};

use crate::aoi::Labelled;
use crate::engine::{LabelTiles, ScoreRequest, ScoreResult};
use crate::paths::file_identity;

/// What identifies a project's labels at one moment: the project's id, its creation
/// time (a new project that reuses a deleted one's id is another) and its label
/// revision (one more at every change to its labels).
pub type LabelKey = (i64, String, i64);

/// Projects' labels as last read from the database, each kept until its label revision
/// changes, so a request reads and parses them once per change rather than every time.
#[derive(Default)]
pub struct LabelCache {
    entries: HashMap<i64, (LabelKey, Option<Labelled>)>,
}

impl LabelCache {
    /// The labels read at `key` (`Some(None)`: the project had none), if kept.
    pub fn get(&self, key: &LabelKey) -> Option<&Option<Labelled>> {
        self.entries
            .get(&key.0)
            .filter(|(k, _)| k == key)
            .map(|(_, l)| l)
    }

    /// Keeps `labelled` as the project's labels at `key`, replacing older ones.
    pub fn put(&mut self, key: LabelKey, labelled: Option<Labelled>) {
        self.entries.insert(key.0, (key, labelled));
    }
}

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
/// and, for a head NextTile trained, the seed (its dropout masks are drawn from it; the
/// ONNX head draws its own inside the graph, so there the seed only steers the
/// selection). Two requests with the same fingerprint give the same embeddings and
/// predictions, so one's result can answer the other's selection.
pub fn fingerprint(req: &ScoreRequest) -> String {
    let id = |p: &std::path::Path| (p.display().to_string(), file_identity(p));
    let mask_seed = (req.trained_head.is_some() || req.retrain.is_some()).then_some(req.seed);
    format!(
        "{:?}",
        (
            id(&req.scene),
            &req.stac_item,
            req.pair.as_deref().map(id),
            &req.aoi,
            id(&req.encoder),
            id(&req.head),
            req.trained_head.as_deref().map(id),
            (req.tile_size, req.overlap, req.mc_passes, mask_seed),
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
    labels: Option<(LabelKey, Option<LabelTiles>)>,
}

/// A warm result and its project's labels as mapped onto its tiles, at the labels' key
/// (`None` until mapped; `Some((key, None))`: the project had no labels then).
pub type WarmEntry<'a> = (
    &'a mut ScoreResult,
    &'a mut Option<(LabelKey, Option<LabelTiles>)>,
);

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

    /// [`get_mut`](Self::get_mut) with the labels last mapped onto the result's tiles.
    pub fn entry_mut(&mut self, scene: i64, fingerprint: &str) -> Option<WarmEntry<'_>> {
        self.get_mut(scene, fingerprint)?;
        self.entries
            .back_mut()
            .map(|e| (&mut e.result, &mut e.labels))
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
            labels: None,
        });
    }

    /// Takes the warm result of `scene` out of the set when it was scored as
    /// `fingerprint` says (give it back with [`put`](Self::put)).
    pub fn take(&mut self, scene: i64, fingerprint: &str) -> Option<ScoreResult> {
        let at = self
            .entries
            .iter()
            .position(|e| e.scene == scene && e.fingerprint == fingerprint)?;
        self.entries.remove(at).map(|e| e.result)
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

/// A scene's latest suggestions as last written to its file: a digest of the
/// FeatureCollection (to write the file only when it changes) and each suggested
/// tile's footprint and predicted class (what the next round's agreement compares the
/// analyst's labels with).
pub struct LatestSuggestions {
    /// SHA-256 of the collection's JSON.
    pub digest: [u8; 32],
    /// (footprint, predicted class) of each suggested tile.
    pub tiles: Vec<(geo::Geometry<f64>, String)>,
}

impl LatestSuggestions {
    /// What `collection` holds.
    pub fn of(collection: &geojson::FeatureCollection) -> Self {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(collection).unwrap_or_default();
        LatestSuggestions {
            digest: Sha256::digest(&json).into(),
            tiles: footprints(&collection.features),
        }
    }

    /// The tiles of a suggestions file written earlier (by a previous run of the
    /// daemon); none when it is missing or unreadable.
    pub fn read(path: &std::path::Path) -> Vec<(geo::Geometry<f64>, String)> {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.parse::<geojson::GeoJson>().ok())
            .map(|g| match g {
                geojson::GeoJson::FeatureCollection(fc) => footprints(&fc.features),
                _ => Vec::new(),
            })
            .unwrap_or_default()
    }
}

/// (footprint, predicted class) of each feature that has both.
fn footprints(features: &[geojson::Feature]) -> Vec<(geo::Geometry<f64>, String)> {
    features
        .iter()
        .filter_map(|f| {
            let class = f.property("predicted_class")?.as_str()?.to_string();
            let geom = geo::Geometry::<f64>::try_from(f.geometry.as_ref()?.value.clone()).ok()?;
            Some((geom, class))
        })
        .collect()
}
