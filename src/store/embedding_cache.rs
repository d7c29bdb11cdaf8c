//! On-disk embedding cache: the encoder runs once per (scene, grid, bands,
//! encoder) and later runs — another strategy, budget, head or MC setting —
//! reuse the embeddings.
//!
//! One file per key, `<key>.ntemb`: the magic `NTEMB1\n`, a little-endian
//! `u32` header length, a JSON header (what the key was made of, tile ids,
//! valid fractions, skipped tiles, shape) and the embeddings as little-endian
//! IEEE 754 half floats (f16), row-major. f16 halves the file and keeps about
//! 3 significant digits; the README states what that costs in predictions.
//! Files are written to a temporary name and renamed, so a killed process
//! never leaves a half-written entry behind.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use half::f16;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tiling::TileId;

const MAGIC: &[u8; 7] = b"NTEMB1\n";

/// Errors from reading or writing the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// File system error.
    #[error("embedding cache {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// A cache file that does not parse (it is ignored and rewritten).
    #[error("embedding cache file {0} is damaged; delete it (it will be recomputed)")]
    Damaged(String),
}

/// What identifies a set of embeddings. Any change gives a new key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    /// Canonical scene path.
    pub scene: String,
    /// Scene file size in bytes.
    pub scene_size: u64,
    /// Scene modification time, nanoseconds since the epoch.
    pub scene_mtime_ns: u128,
    /// Tile edge, pixels.
    pub tile_size: usize,
    /// Tile stride, pixels.
    pub stride: usize,
    /// 1-based bands in model order.
    pub bands: Vec<usize>,
    /// Minimum valid fraction used to skip tiles.
    pub min_valid_fraction: f32,
    /// SHA-256 of the candidate tile list (AOI).
    pub candidates_sha256: String,
    /// SHA-256 of the encoder file.
    pub encoder_sha256: String,
    /// The second raster of a pair (canonical path, size, mtime), if any.
    #[serde(default)]
    pub second: Option<(String, u64, u128)>,
    /// Scale and offset that replaced the encoder's (`--sensor`,
    /// `--input-scale`, `--input-offset`). Absent (and left out of the key, so
    /// older cache files still match) when they equal the encoder's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<(f32, f32)>,
    /// The ground pixel size (metres) and method the scene was resampled to
    /// before tiling (`--resample`); absent when it was not resampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampled: Option<(f64, String)>,
    /// The files of a STAC item's assets (canonical path, size, mtime), so a
    /// changed asset is not served from the cache; empty for a raster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<(String, u64, u128)>,
    /// The id of the item scored when the scene file is a STAC ItemCollection (its
    /// items share the file); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

pub use crate::paths::file_identity;

impl CacheKey {
    /// Build the key for a scene file; `None` when the file cannot be
    /// stat'ed (e.g. a `/vsi…` path): such scenes are not cached.
    #[allow(clippy::too_many_arguments)]
    pub fn for_scene(
        scene: &Path,
        tile_size: usize,
        stride: usize,
        bands: &[usize],
        min_valid_fraction: f32,
        candidates: &[TileId],
        encoder_sha256: &str,
    ) -> Option<CacheKey> {
        let (scene, scene_size, scene_mtime_ns) = file_identity(scene)?;
        let mut h = Sha256::new();
        for t in candidates {
            h.update(t.row.to_le_bytes());
            h.update(t.col.to_le_bytes());
        }
        Some(CacheKey {
            scene,
            scene_size,
            scene_mtime_ns,
            tile_size,
            stride,
            bands: bands.to_vec(),
            min_valid_fraction,
            candidates_sha256: hex(&h.finalize()),
            encoder_sha256: encoder_sha256.to_string(),
            second: None,
            scaling: None,
            resampled: None,
            assets: Vec::new(),
            item: None,
        })
    }

    /// The same key for the item `id` of an ItemCollection file (`None`: the scene file
    /// is one raster or item).
    pub fn with_item(mut self, id: Option<String>) -> CacheKey {
        self.item = id;
        self
    }

    /// The same key for a STAC item whose assets are `files`; `None` when
    /// one cannot be stat'ed.
    pub fn with_assets<'a>(
        mut self,
        files: impl IntoIterator<Item = &'a Path>,
    ) -> Option<CacheKey> {
        for f in files {
            self.assets.push(file_identity(f)?);
        }
        Some(self)
    }

    /// The same key for a scene resampled to `(metres, method)` before tiling.
    pub fn with_resampling(mut self, resampled: Option<(f64, String)>) -> CacheKey {
        self.resampled = resampled;
        self
    }

    /// The same key for input scaled by `(scale, offset)` where the encoder
    /// says `model`; unchanged when they are equal.
    pub fn with_scaling(mut self, scale: f32, offset: f32, model: (f32, f32)) -> CacheKey {
        if (scale, offset) != model {
            self.scaling = Some((scale, offset));
        }
        self
    }

    /// The same key for a scene scored together with a second raster (a
    /// pair); `None` when that file cannot be stat'ed.
    pub fn with_second(mut self, second: &Path) -> Option<CacheKey> {
        self.second = Some(file_identity(second)?);
        Some(self)
    }

    /// File name for this key.
    pub fn file_name(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{}.ntemb", &hex(&Sha256::digest(&json))[..32])
    }
}

/// Embeddings of the scored tiles of one scene, as the cache stores them.
#[derive(Debug, Clone)]
pub struct CachedEmbeddings {
    /// Scored tiles, in row order of `embeddings`.
    pub tiles: Vec<TileId>,
    /// Valid-pixel share per scored tile.
    pub valid_fraction: Vec<f32>,
    /// Candidate tiles that were skipped as nodata.
    pub skipped_nodata: Vec<TileId>,
    /// `[N, D]` embeddings (f16 on disk, f32 here).
    pub embeddings: Array2<f32>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: CacheKey,
    rows: usize,
    dim: usize,
    tiles: Vec<(u32, u32)>,
    valid_fraction: Vec<f32>,
    skipped_nodata: Vec<(u32, u32)>,
}

/// A folder of cache files.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
}

impl EmbeddingCache {
    /// Use (and create on first write) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddingCache { dir: dir.into() }
    }

    /// The default folder: `$NEXTTILE_HOME/cache/embeddings`.
    pub fn default_dir() -> PathBuf {
        crate::paths::nexttile_home().join("cache/embeddings")
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Look `key` up. A missing file is `Ok(None)`; a damaged one is an error
    /// the caller may log and treat as a miss.
    pub fn get(&self, key: &CacheKey) -> Result<Option<CachedEmbeddings>, CacheError> {
        let path = self.dir.join(key.file_name());
        let io = |e: std::io::Error| CacheError::Io {
            path: path.display().to_string(),
            source: e,
        };
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => std::io::BufReader::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let damaged = || CacheError::Damaged(path.display().to_string());
        let mut magic = [0u8; 7];
        f.read_exact(&mut magic).map_err(|_| damaged())?;
        if &magic != MAGIC {
            return Err(damaged());
        }
        let mut len = [0u8; 4];
        f.read_exact(&mut len).map_err(|_| damaged())?;
        let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
        f.read_exact(&mut header).map_err(|_| damaged())?;
        let h: Header = serde_json::from_slice(&header).map_err(|_| damaged())?;
        if &h.key != key || h.tiles.len() != h.rows || h.valid_fraction.len() != h.rows {
            return Err(damaged());
        }
        let mut raw = vec![0u8; h.rows * h.dim * 2];
        f.read_exact(&mut raw).map_err(|_| damaged())?;
        let values: Vec<f32> = raw
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let embeddings = Array2::from_shape_vec((h.rows, h.dim), values).map_err(|_| damaged())?;
        let id = |(row, col): (u32, u32)| TileId { row, col };
        Ok(Some(CachedEmbeddings {
            tiles: h.tiles.into_iter().map(id).collect(),
            valid_fraction: h.valid_fraction,
            skipped_nodata: h.skipped_nodata.into_iter().map(id).collect(),
            embeddings,
        }))
    }

    /// Store `value` under `key` (atomically: temporary file + rename).
    pub fn put(&self, key: &CacheKey, value: &CachedEmbeddings) -> Result<PathBuf, CacheError> {
        let path = self.dir.join(key.file_name());
        let io = |e: std::io::Error| CacheError::Io {
            path: path.display().to_string(),
            source: e,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let (rows, dim) = value.embeddings.dim();
        let header = Header {
            key: key.clone(),
            rows,
            dim,
            tiles: value.tiles.iter().map(|t| (t.row, t.col)).collect(),
            valid_fraction: value.valid_fraction.clone(),
            skipped_nodata: value
                .skipped_nodata
                .iter()
                .map(|t| (t.row, t.col))
                .collect(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| io(e.into()))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
            w.write_all(MAGIC).map_err(io)?;
            w.write_all(&(json.len() as u32).to_le_bytes())
                .map_err(io)?;
            w.write_all(&json).map_err(io)?;
            for v in value.embeddings.iter() {
                w.write_all(&f16::from_f32(*v).to_le_bytes()).map_err(io)?;
            }
            w.flush().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn key(scene: &Path) -> CacheKey {
        CacheKey::for_scene(
            scene,
            64,
            64,
            &[4, 3, 2],
            0.5,
            &[TileId { row: 0, col: 1 }],
            "abc",
        )
        .unwrap()
    }

    #[test]
    fn round_trip_in_f16() {
        let dir = tempfile::tempdir().unwrap();
        let scene = dir.path().join("scene.tif");
        std::fs::write(&scene, b"x").unwrap();
        let cache = EmbeddingCache::new(dir.path().join("cache"));
        let k = key(&scene);
        assert!(cache.get(&k).unwrap().is_none());
        let value = CachedEmbeddings {
            tiles: vec![TileId { row: 0, col: 1 }, TileId { row: 2, col: 3 }],
            valid_fraction: vec![1.0, 0.75],
            skipped_nodata: vec![TileId { row: 5, col: 5 }],
            embeddings: array![[0.1f32, -2.5, 1000.0], [0.0, 2.71, -0.001]],
        };
        cache.put(&k, &value).unwrap();
        let back = cache.get(&k).unwrap().unwrap();
        assert_eq!(back.tiles, value.tiles);
        assert_eq!(back.skipped_nodata, value.skipped_nodata);
        // f16 keeps ~3 significant digits: relative error ≤ 2^-11
        for (a, b) in back.embeddings.iter().zip(value.embeddings.iter()) {
            assert!((a - b).abs() <= b.abs() * 4.9e-4 + 1e-7, "{a} vs {b}");
        }
    }

    #[test]
    fn a_touched_scene_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let scene = dir.path().join("scene.tif");
        std::fs::write(&scene, b"x").unwrap();
        let k1 = key(&scene);
        std::fs::write(&scene, b"xy").unwrap();
        let k2 = key(&scene);
        assert_ne!(k1.file_name(), k2.file_name());
    }

    #[test]
    fn damaged_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let scene = dir.path().join("scene.tif");
        std::fs::write(&scene, b"x").unwrap();
        let cache = EmbeddingCache::new(dir.path());
        let k = key(&scene);
        std::fs::write(dir.path().join(k.file_name()), b"NTEMB1\ngarbage").unwrap();
        assert!(matches!(cache.get(&k), Err(CacheError::Damaged(_))));
    }
}
