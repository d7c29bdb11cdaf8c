//! Distance of each tile's embedding to the data the model was trained on, so that
//! out-of-distribution tiles show as such instead of as merely "uncertain" (issue 14).
//!
//! The score is a diagonal Mahalanobis distance, reported as a root mean square over
//! the `D` embedding features so that it reads in standard deviations whatever `D` is:
//!
//! ```text
//! d(x) = sqrt( (1/D) · Σ_j ((x_j − μ_j) / σ_j)² )
//! ```
//!
//! For an embedding drawn from the reference distribution `E[d²] = 1`; a tile at
//! `d = 3` is on average three standard deviations off in every feature. This is the
//! Mahalanobis score of Lee, Lee, Lee & Shin 2018, *A simple unified framework for
//! detecting out-of-distribution samples and adversarial attacks* (NeurIPS,
//! arXiv:1807.03888), with one class and a diagonal covariance (cheap, and all a model
//! can reasonably carry in its metadata). With labelled tiles as the reference it is
//! the nearest-neighbour distance of Sun, Ming, Zhu & Li 2022, *Out-of-distribution
//! detection with deep nearest neighbors* (ICML, arXiv:2204.06507), in the same
//! per-feature standardised units: `d(x) = min_l sqrt((1/D) Σ_j ((x_j − y_lj) / σ_j)²)`.
//!
//! The reference ([`ReferenceKind`]) is chosen by the engine, and always named in the
//! outputs: the labelled tiles a retrained head learnt from; else the statistics of the
//! training embeddings a model declares in its metadata ([`METADATA_MEAN`],
//! [`METADATA_STD`]); else — no statement about training data at all — the scene's own
//! per-feature mean and standard deviation ([`scene_stats`]), which mark tiles atypical
//! *for the scene*, not for the model.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView2};
use serde::Serialize;

/// Metadata key: the mean of the training embeddings, one number (every feature) or a
/// JSON array of `D` numbers.
pub const METADATA_MEAN: &str = "nexttile_embedding_mean";

/// Metadata key: the standard deviation of the training embeddings, one number or a
/// JSON array of `D` positive numbers.
pub const METADATA_STD: &str = "nexttile_embedding_std";

/// A tile is "far" from the reference beyond this distance (3 standard deviations,
/// root mean square over the features; the input check's 3 σ rule, per feature).
pub const FAR_DISTANCE: f32 = 3.0;

/// Warn when more than this share of the scored tiles is far from a training reference
/// (model metadata or labelled tiles; never for the scene's own statistics).
pub const FAR_SHARE_WARNING: f64 = 0.25;

/// What the distances are measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// The labelled tiles the retrained head learnt from (nearest-neighbour distance).
    LabelledTiles,
    /// Training-embedding statistics in the head's or the encoder's metadata.
    ModelMetadata,
    /// The scene's own per-feature mean and standard deviation (no training reference
    /// known).
    Scene,
}

impl ReferenceKind {
    /// The snake_case name used in `summary.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::LabelledTiles => "labelled_tiles",
            Self::ModelMetadata => "model_metadata",
            Self::Scene => "scene",
        }
    }
}

/// Per-feature location and scale of a reference distribution. A feature whose scale is
/// 0 (constant in the reference) is left out of the distance.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Per-feature mean.
    pub mean: Vec<f32>,
    /// Per-feature standard deviation; 0 leaves the feature out.
    pub std: Vec<f32>,
}

/// Quantiles of the distances over the scored tiles (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DistanceQuantiles {
    /// Smallest.
    pub min: f32,
    /// 10th percentile.
    pub p10: f32,
    /// Median.
    pub p50: f32,
    /// 90th percentile.
    pub p90: f32,
    /// 99th percentile.
    pub p99: f32,
    /// Largest.
    pub max: f32,
}

/// The distance-to-training score of every scored tile and what it was measured against.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingDistance {
    /// The reference.
    pub reference: ReferenceKind,
    /// Where the reference came from, in words (which metadata, how many labelled tiles).
    pub reference_detail: String,
    /// One distance per scored tile (not serialised: it is the heatmap band and a column).
    #[serde(skip)]
    pub values: Vec<f32>,
    /// Distance beyond which a tile counts as far ([`FAR_DISTANCE`]).
    pub far_threshold: f32,
    /// Tiles farther than the threshold.
    pub far_tiles: usize,
    /// Their share of the scored tiles.
    pub far_share: f64,
    /// Quantiles of the distances (`None` when no tile was scored).
    pub quantiles: Option<DistanceQuantiles>,
}

impl TrainingDistance {
    /// Gathers `values` measured against `reference` with their far count and quantiles.
    pub fn new(reference: ReferenceKind, reference_detail: String, values: Vec<f32>) -> Self {
        let far_tiles = values.iter().filter(|d| **d > FAR_DISTANCE).count();
        let far_share = far_tiles as f64 / values.len().max(1) as f64;
        Self {
            reference,
            reference_detail,
            far_threshold: FAR_DISTANCE,
            far_tiles,
            far_share,
            quantiles: quantiles(&values),
            values,
        }
    }

    /// The warning to show when many tiles are far from a training reference, if any.
    pub fn warning(&self) -> Option<String> {
        if self.reference == ReferenceKind::Scene || self.far_share <= FAR_SHARE_WARNING {
            return None;
        }
        Some(format!(
            "{} of {} tiles ({:.0} %) are far from the training data (distance_to_training > {}, reference: {}): their classes and uncertainties are extrapolation, not a model's informed doubt; check the input bands and scaling, or use a model trained on data like this scene",
            self.far_tiles,
            self.values.len(),
            self.far_share * 100.0,
            self.far_threshold,
            self.reference_detail
        ))
    }
}

/// Reads [`METADATA_MEAN`] and [`METADATA_STD`] from a model's metadata for embeddings
/// of width `dim`. `Ok(None)` when neither key is present.
///
/// # Errors
///
/// Only one of the keys, a value that is neither a number nor a JSON array of `dim`
/// numbers, or a standard deviation that is not finite and positive.
pub fn reference_from_metadata(
    metadata: &BTreeMap<String, String>,
    dim: usize,
) -> Result<Option<FeatureStats>, String> {
    let (mean, std) = match (metadata.get(METADATA_MEAN), metadata.get(METADATA_STD)) {
        (None, None) => return Ok(None),
        (Some(m), Some(s)) => (m, s),
        _ => {
            return Err(format!(
                "metadata has only one of {METADATA_MEAN} and {METADATA_STD}; set both (one number each, or JSON arrays of {dim} numbers)"
            ));
        }
    };
    let mean = numbers(METADATA_MEAN, mean, dim)?;
    let std = numbers(METADATA_STD, std, dim)?;
    if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(format!(
            "metadata {METADATA_STD} must be finite and positive, has {bad}"
        ));
    }
    if let Some(bad) = mean.iter().find(|m| !m.is_finite()) {
        return Err(format!(
            "metadata {METADATA_MEAN} must be finite, has {bad}"
        ));
    }
    Ok(Some(FeatureStats { mean, std }))
}

/// One number broadcast to `dim`, or a JSON array of exactly `dim` numbers.
fn numbers(key: &str, value: &str, dim: usize) -> Result<Vec<f32>, String> {
    if let Ok(v) = value.trim().parse::<f32>() {
        return Ok(vec![v; dim]);
    }
    let v: Vec<f32> = serde_json::from_str(value).map_err(|e| {
        format!("metadata {key} is neither a number nor a JSON array of numbers ({e})")
    })?;
    if v.len() != dim {
        return Err(format!(
            "metadata {key} has {} numbers, the embedding has {dim} features",
            v.len()
        ));
    }
    Ok(v)
}

/// The scene's own statistics: per-feature mean and standard deviation over the scored
/// tiles, so that the mean of `d²` over the scene is exactly 1 (features constant over
/// the scene have σ 0 and are left out). Not a robust estimate on purpose: a median and
/// MAD blow up sparse features (a ReLU feature that is 0 on most tiles has MAD ≈ 0),
/// which put half of the sample's tiles "3 σ off" with the SimSiam encoder.
pub fn scene_stats(embeddings: ArrayView2<'_, f32>) -> FeatureStats {
    let (mut mean, mut std) = (Vec::new(), Vec::new());
    for col in embeddings.columns() {
        let v: Vec<f64> = col
            .iter()
            .filter(|x| x.is_finite())
            .map(|x| f64::from(*x))
            .collect();
        let n = v.len().max(1) as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
        mean.push(m as f32);
        std.push(var.sqrt() as f32);
    }
    FeatureStats { mean, std }
}

/// Root-mean-square standardised distance between `a` and `b`, features with scale 0
/// left out (and out of the count).
fn rms_distance(a: impl Iterator<Item = f32>, b: &[f32], scale: &[f32]) -> f32 {
    let (mut sum, mut n) = (0f64, 0usize);
    for ((x, m), s) in a.zip(b).zip(scale) {
        if *s > 0.0 {
            let z = (f64::from(x) - f64::from(*m)) / f64::from(*s);
            sum += z * z;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64).sqrt() as f32
    }
}

/// The diagonal Mahalanobis distance of every row of `embeddings` to `reference`, as a
/// root mean square over the features (see the module documentation).
pub fn mahalanobis_diag(embeddings: ArrayView2<'_, f32>, reference: &FeatureStats) -> Vec<f32> {
    embeddings
        .rows()
        .into_iter()
        .map(|r| rms_distance(r.iter().copied(), &reference.mean, &reference.std))
        .collect()
}

/// The distance of every row of `embeddings` to its nearest row with `labelled` set, in
/// units of `scale` per feature (root mean square); `None` when no row is labelled.
///
/// The nearest labelled row is found with matrix products (‖a − b‖² = ‖a‖² + ‖b‖² −
/// 2 a·b over the scaled features, in blocks of rows and of labelled rows, so memory
/// stays bounded however many tiles are labelled), then its distance is measured
/// exactly; a labelled row is at distance 0. A full granule (29,241 tiles, 1,024
/// features, 200 labelled) took 22 s one pair at a time, under half a second this way.
/// Blocks of rows run side by side on the selection pool.
pub fn nearest_labelled(
    embeddings: ArrayView2<'_, f32>,
    labelled: &[bool],
    scale: &[f32],
) -> Option<Vec<f32>> {
    nearest_labelled_on(embeddings, labelled, scale, true)
}

/// [`nearest_labelled`] on the calling thread alone (the same numbers), for running
/// beside other work, such as a round's head training, without taking its core.
pub fn nearest_labelled_serial(
    embeddings: ArrayView2<'_, f32>,
    labelled: &[bool],
    scale: &[f32],
) -> Option<Vec<f32>> {
    nearest_labelled_on(embeddings, labelled, scale, false)
}

/// [`nearest_labelled`], its blocks of rows on the selection pool when `parallel`.
fn nearest_labelled_on(
    embeddings: ArrayView2<'_, f32>,
    labelled: &[bool],
    scale: &[f32],
    parallel: bool,
) -> Option<Vec<f32>> {
    const ROWS: usize = 2048;
    const REFS: usize = 2048;
    let refs: Vec<usize> = (0..embeddings.nrows())
        .filter(|&i| labelled.get(i).copied().unwrap_or(false))
        .collect();
    if refs.is_empty() {
        return None;
    }
    // Features with a scale, each divided by it (the others are left out, as in
    // `rms_distance`).
    let kept: Vec<usize> = (0..embeddings.ncols())
        .filter(|&k| scale.get(k).is_some_and(|s| *s > 0.0))
        .collect();
    let scaled = |rows: &[usize]| {
        Array2::from_shape_fn((rows.len(), kept.len()), |(i, j)| {
            embeddings[[rows[i], kept[j]]] / scale[kept[j]]
        })
    };
    let norms = |m: &Array2<f32>| -> Vec<f32> { m.rows().into_iter().map(|r| r.dot(&r)).collect() };
    let ref_blocks: Vec<(Vec<usize>, Array2<f32>, Vec<f32>)> = refs
        .chunks(REFS)
        .map(|c| {
            let m = scaled(c);
            let n = norms(&m);
            (c.to_vec(), m, n)
        })
        .collect();
    let all: Vec<usize> = (0..embeddings.nrows()).collect();
    // Blocks of rows are independent: they run side by side on the selection pool, with
    // the same numbers as one after another.
    let block_distances = |rows: &[usize]| -> Vec<f32> {
        let block = scaled(rows);
        let block_norms = norms(&block);
        // (squared distance, labelled row) of each row's nearest so far.
        let mut best = vec![(f32::INFINITY, 0usize); rows.len()];
        for (ids, m, m_norms) in &ref_blocks {
            let dots = block.dot(&m.t());
            for (i, dot_row) in dots.rows().into_iter().enumerate() {
                for (j, d) in dot_row.iter().enumerate() {
                    let sq = block_norms[i] + m_norms[j] - 2.0 * d;
                    if sq < best[i].0 {
                        best[i] = (sq, ids[j]);
                    }
                }
            }
        }
        rows.iter()
            .enumerate()
            .map(|(i, &row)| {
                if labelled.get(row).copied().unwrap_or(false) {
                    return 0.0;
                }
                let nearest = embeddings.row(best[i].1);
                let x = embeddings.row(row);
                match nearest.as_slice() {
                    Some(y) => rms_distance(x.iter().copied(), y, scale),
                    None => rms_distance(x.iter().copied(), &nearest.to_vec(), scale),
                }
            })
            .collect()
    };
    let blocks: Vec<Vec<f32>> = if parallel {
        crate::threads::on_selection_pool(|| {
            use rayon::prelude::*;
            all.par_chunks(ROWS).map(block_distances).collect()
        })
    } else {
        all.chunks(ROWS).map(block_distances).collect()
    };
    let out: Vec<f32> = blocks.concat();
    Some(out)
}

/// Nearest-rank quantiles of the finite values; `None` when there are none.
pub fn quantiles(values: &[f32]) -> Option<DistanceQuantiles> {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(DistanceQuantiles {
        min: v[0],
        p10: q(0.10),
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn stats(mean: &[f32], std: &[f32]) -> FeatureStats {
        FeatureStats {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    #[test]
    fn the_reference_mean_scores_zero_and_a_far_point_more() {
        let r = stats(&[1.0, -2.0], &[0.5, 2.0]);
        let e = array![[1.0f32, -2.0], [1.5, 0.0], [4.0, 4.0]];
        let d = mahalanobis_diag(e.view(), &r);
        assert_eq!(d[0], 0.0);
        // (1, 1) σ off in both features: RMS 1.
        assert!((d[1] - 1.0).abs() < 1e-6, "{}", d[1]);
        // (6, 3) σ off: sqrt((36 + 9) / 2).
        assert!((d[2] - (22.5f32).sqrt()).abs() < 1e-5, "{}", d[2]);
        assert!(d[2] > d[1]);
    }

    #[test]
    fn a_feature_with_scale_zero_is_left_out() {
        let r = stats(&[0.0, 0.0], &[1.0, 0.0]);
        let d = mahalanobis_diag(array![[2.0f32, 100.0]].view(), &r);
        assert!((d[0] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn nearest_labelled_on_one_thread_gives_the_same_numbers() {
        // Several blocks of rows (2,048 each) and of labelled rows.
        let e = Array2::from_shape_fn((5000, 12), |(i, j)| ((i * 37 + j * 11) % 101) as f32 * 0.3);
        let labelled: Vec<bool> = (0..5000).map(|i| i % 2 == 0 && i % 7 != 0).collect();
        let scale: Vec<f32> = (0..12)
            .map(|j| if j == 3 { 0.0 } else { 0.5 + j as f32 })
            .collect();
        let pool = nearest_labelled(e.view(), &labelled, &scale).unwrap();
        let serial = nearest_labelled_serial(e.view(), &labelled, &scale).unwrap();
        assert_eq!(pool.len(), 5000);
        assert!(
            pool.iter()
                .zip(&serial)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn nearest_labelled_is_the_distance_to_the_closest_labelled_tile() {
        let e = array![
            [0.0f32, 0.0],
            [10.0, 0.0],
            [1.0, 0.0],
            [9.0, 0.0],
            [5.0, 0.0]
        ];
        let labelled = [true, true, false, false, false];
        let d = nearest_labelled(e.view(), &labelled, &[1.0, 1.0]).unwrap();
        // Labelled tiles are at distance 0 of themselves; the RMS over 2 features
        // divides the squared distance by 2.
        let rms = |dx: f32| (dx * dx / 2.0).sqrt();
        assert_eq!(&d[..2], &[0.0, 0.0]);
        assert!((d[2] - rms(1.0)).abs() < 1e-6);
        assert!((d[3] - rms(1.0)).abs() < 1e-6);
        assert!((d[4] - rms(5.0)).abs() < 1e-6);
        assert!(nearest_labelled(e.view(), &[false; 5], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn metadata_numbers_broadcast_arrays_are_checked() {
        let mut m = BTreeMap::new();
        assert_eq!(reference_from_metadata(&m, 3), Ok(None));
        m.insert(METADATA_MEAN.to_string(), "0".to_string());
        assert!(
            reference_from_metadata(&m, 3)
                .unwrap_err()
                .contains("only one")
        );
        m.insert(METADATA_STD.to_string(), "[1, 2, 3]".to_string());
        let r = reference_from_metadata(&m, 3).unwrap().unwrap();
        assert_eq!(r, stats(&[0.0; 3], &[1.0, 2.0, 3.0]));
        assert!(
            reference_from_metadata(&m, 4)
                .unwrap_err()
                .contains("has 3 numbers, the embedding has 4")
        );
        m.insert(METADATA_STD.to_string(), "[1, 0, 3]".to_string());
        assert!(
            reference_from_metadata(&m, 3)
                .unwrap_err()
                .contains("positive")
        );
        m.insert(METADATA_STD.to_string(), "wide".to_string());
        assert!(
            reference_from_metadata(&m, 3)
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn scene_stats_give_a_mean_squared_distance_of_one_over_the_scene() {
        let e = array![[0.0f32, 1.0], [2.0, 1.0], [4.0, 1.0], [10.0, 1.0]];
        let r = scene_stats(e.view());
        assert_eq!(r.mean, vec![4.0, 1.0]);
        // Variance (16 + 4 + 0 + 36) / 4 = 14; the constant feature has σ 0, left out.
        assert!((r.std[0] - 14f32.sqrt()).abs() < 1e-5);
        assert_eq!(r.std[1], 0.0);
        let d = mahalanobis_diag(e.view(), &r);
        let mean_sq = d.iter().map(|x| x * x).sum::<f32>() / d.len() as f32;
        assert!((mean_sq - 1.0).abs() < 1e-5, "{d:?}");
        assert_eq!(d[2], 0.0);
        assert!(d[3] > d[0] && d[0] > d[1], "{d:?}");
    }

    #[test]
    fn far_tiles_quantiles_and_the_warning() {
        let values = vec![0.5, 1.0, 4.0, 5.0];
        let t = TrainingDistance::new(ReferenceKind::ModelMetadata, "head metadata".into(), values);
        assert_eq!(t.far_tiles, 2);
        assert!((t.far_share - 0.5).abs() < 1e-12);
        let q = t.quantiles.unwrap();
        assert_eq!((q.min, q.p50, q.max), (0.5, 1.0, 5.0));
        let w = t.warning().unwrap();
        assert!(
            w.starts_with("2 of 4 tiles (50 %) are far from the training data"),
            "{w}"
        );
        // The scene's own statistics say nothing about training data: no warning.
        let s = TrainingDistance::new(ReferenceKind::Scene, "scene".into(), t.values.clone());
        assert!(s.warning().is_none());
        assert!(quantiles(&[]).is_none());
    }
}
