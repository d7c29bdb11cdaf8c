//! Embeds every image of an evaluation set once with the encoder and caches the result
//! (f16, in the same embedding cache as scenes), so that every strategy, seed and round
//! reuses the same embeddings.

use std::time::Instant;

use ndarray::{Array2, Array3, Array4, Axis, s};
use sha2::{Digest, Sha256};

use super::EvalError;
use crate::model::Encoder;
use crate::preprocess::Preprocess;
use crate::store::{CacheKey, CachedEmbeddings, EmbeddingCache};
use crate::tiling::TileId;

/// Images per encoder call.
pub const EMBED_BATCH: usize = 64;

/// Embeddings of an evaluation set and how they were obtained.
#[derive(Debug, Clone)]
pub struct EmbeddedSet {
    /// `[N, D]`, row `i` for image `i`.
    pub embeddings: Array2<f32>,
    /// Whether they came from the cache.
    pub cache_hit: bool,
    /// Seconds spent reading and embedding (0 on a cache hit).
    pub seconds: f64,
}

/// How raw pixel values become encoder input for an evaluation set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelScaling {
    /// Multiplier applied to raw values before the encoder's clip and standardisation
    /// (replaces the encoder's `input_scale`; `1/255` for 8-bit images such as
    /// EuroSAT-RGB's JPEGs, whose encoder was trained on 8-bit values / 255).
    pub scale: f32,
}

/// Embeds `count` images produced by `load(i)` (`[bands, H, W]` raw values; all of one
/// size) with `encoder`, using the cache entry identified by `source` (a description of
/// exactly which images, in which order, e.g. the dataset path, split and mosaic recipe)
/// when `cache` is given. With a cache the embeddings are always rounded to f16 (what
/// the cache stores), fresh or not; without one they stay f32.
///
/// # Errors
///
/// [`EvalError`] when an image cannot be read, sizes differ, or the encoder fails.
pub fn embed_set<F>(
    encoder: &mut Encoder,
    count: usize,
    source: &str,
    scaling: PixelScaling,
    cache: Option<&EmbeddingCache>,
    mut load: F,
    mut progress: impl FnMut(usize, usize),
) -> Result<EmbeddedSet, EvalError>
where
    F: FnMut(usize) -> Result<Array3<f32>, EvalError>,
{
    let started = Instant::now();
    let key = CacheKey {
        scene: format!("eval:{source}"),
        scene_size: count as u64,
        scene_mtime_ns: 0,
        tile_size: 0,
        stride: 0,
        bands: Vec::new(),
        min_valid_fraction: scaling.scale,
        candidates_sha256: format!("{:x}", Sha256::digest(source.as_bytes())),
        encoder_sha256: encoder.spec.sha256.clone(),
        second: None,
        scaling: None,
        resampled: None,
        assets: Vec::new(),
        item: None,
    };
    if let Some(cache) = cache {
        match cache.get(&key) {
            Ok(Some(hit)) if hit.embeddings.nrows() == count => {
                return Ok(EmbeddedSet {
                    embeddings: hit.embeddings,
                    cache_hit: true,
                    seconds: 0.0,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("embedding cache: {e}; recomputing"),
        }
    }
    // The encoder's own formula with the set's scale (one implementation for scenes
    // and evaluation images: `Preprocess::band`).
    // A model without preprocessing gets the identity (mean 0, std 1 for any band).
    let pre = Preprocess {
        scale: scaling.scale,
        ..encoder
            .spec
            .preprocess
            .clone()
            .unwrap_or_else(|| Preprocess::identity(0))
    };
    let mut out: Option<Array2<f32>> = None;
    let mut start = 0;
    while start < count {
        let end = (start + EMBED_BATCH).min(count);
        let mut batch: Option<Array4<f32>> = None;
        for i in start..end {
            let img = load(i)?;
            let (c, h, w) = img.dim();
            let b = batch.get_or_insert_with(|| Array4::zeros((end - start, c, h, w)));
            if b.dim().1 != c || b.dim().2 != h || b.dim().3 != w {
                return Err(EvalError::Image {
                    path: format!("image {i} of {source}").into(),
                    message: format!(
                        "is {c} × {h} × {w} but the first of its batch is {:?}; all images of a set must have one size",
                        &b.shape()[1..]
                    ),
                });
            }
            let mut dst = b.index_axis_mut(Axis(0), i - start);
            for k in 0..c {
                let input = pre.band(k);
                dst.slice_mut(s![k, .., ..])
                    .zip_mut_with(&img.slice(s![k, .., ..]), |d, &v| *d = input.apply(v));
            }
        }
        let Some(batch) = batch else { break };
        let emb = encoder.embed(batch.view())?;
        let o = out.get_or_insert_with(|| Array2::zeros((count, emb.ncols())));
        o.slice_mut(s![start..end, ..]).assign(&emb);
        start = end;
        progress(start, count);
    }
    let mut embeddings = out.unwrap_or_else(|| Array2::zeros((0, 0)));
    if let Some(cache) = cache {
        // The cache stores f16: round now too, so that a run gives the same numbers
        // whether its embeddings were just computed or read back.
        embeddings.mapv_inplace(|v| half::f16::from_f32(v).to_f32());
        let value = CachedEmbeddings {
            tiles: (0..count as u32)
                .map(|row| TileId { row, col: 0 })
                .collect(),
            valid_fraction: vec![1.0; count],
            skipped_nodata: Vec::new(),
            embeddings: embeddings.clone(),
        };
        if let Err(e) = cache.put(&key, &value) {
            tracing::warn!("embedding cache: {e}; continuing without caching");
        }
    }
    Ok(EmbeddedSet {
        embeddings,
        cache_hit: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}
