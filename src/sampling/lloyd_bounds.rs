//! Hamerly's bounds for Lloyd's assignment: a point whose nearest centroid cannot have
//! changed since the last assignment keeps it without its products being computed.
//!
//! After Hamerly 2010: each point keeps an upper bound `u` on its
//! distance to its centroid and a lower bound `l` on its distance to every other
//! centroid. When the centroids move by `δ`, the triangle inequality keeps them bounds
//! after `u += δ(own)` and `l −= max δ(others)`; while `u < l`, no other centroid can be
//! nearer, and the point's products are not computed.
//!
//! Here a point is passed over only when `u² + m < l²`, with a margin `m` of
//! [`TOLERANCE`] `· (‖x‖² + max ‖c‖²)` that covers every rounding error of the
//! assignment's `f32` arithmetic, so that a point passed over keeps exactly the centroid
//! the full computation would give it (not merely the nearest in exact arithmetic):
//! - the assignment compares `‖c‖² − 2 x·c` in `f32`: the product is a chain of at most
//!   256 fused multiply-adds per depth block plus the blocks' sums, `‖c‖²` a plain sum
//!   over the depth, so each compared value is within about `1.6·10⁻⁴ (‖x‖² + ‖c‖²)` of
//!   its exact value at `D = 1,024` (Higham's `γ_n` bounds), the comparison of two within
//!   twice that;
//! - the bounds start from those same computed values, widened by the same margin, and
//!   `‖x‖²` and the shifts `δ` (in `f64`) err far less.
//!
//! [`TOLERANCE`] is about three times the worst case of both together; points nearer a
//! tie than that are computed, so the assignment (and with it every centroid, k-means
//! result and TypiClust pick) is the one without bounds bit for bit
//! (`bounds_keep_the_assignment_of_full_passes` in `kmeans`). Only the AVX2 + FMA path
//! passes points over: its products do not depend on which rows are computed together
//! ([`dots_of_rows`](crate::sampling::dots::dots_of_rows)).
//!
//! # References
//!
//! - G. Hamerly, "Making k-means even faster", Proceedings of the 2010 SIAM International
//!   Conference on Data Mining (SDM), pp. 130–140, DOI 10.1137/1.9781611972801.12.

use ndarray::Array2;

use crate::sampling::distance::distance_f64;

/// Margin of the bounds, relative to `‖x‖² + max ‖c‖²` (see the module docs).
const TOLERANCE: f64 = 1e-3;

/// A point's nearest centroid and Hamerly's bounds on its distances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Near {
    /// The nearest centroid (equal distances: the lower index).
    pub(crate) cluster: usize,
    /// At least the distance to `cluster`.
    upper: f64,
    /// At most the distance to any other centroid (`+∞` with one centroid).
    lower: f64,
    /// `‖x‖²` (rounded; the margin covers it).
    norm: f64,
}

impl Default for Near {
    /// Cluster 0 with bounds that carry nothing (`lower` 0): a slot not yet assigned.
    fn default() -> Self {
        Self {
            cluster: 0,
            upper: f64::INFINITY,
            lower: 0.0,
            norm: 0.0,
        }
    }
}

impl Near {
    /// The nearest centroid of a point from its computed `‖c‖² − 2 x·c` values
    /// (`distances`, one per centroid; strictly smaller wins, so equal ones keep the lower
    /// index), with bounds from the nearest and second nearest widened by the margin.
    /// `norm` is the point's `‖x‖²`, `reach` the largest `‖c‖²`.
    pub(crate) fn from_distances(distances: &[f32], norm: f64, reach: f64) -> Self {
        let mut best = (0_usize, f32::INFINITY);
        let mut second = f32::INFINITY;
        for (c, &d) in distances.iter().enumerate() {
            // Strictly smaller: among equal distances the lower cluster index stays.
            if d < best.1 {
                second = best.1;
                best = (c, d);
            } else if d < second {
                second = d;
            }
        }
        let margin = TOLERANCE * (norm + reach);
        Self {
            cluster: best.0,
            upper: (norm + f64::from(best.1) + margin).max(0.0).sqrt(),
            lower: (norm + f64::from(second) - margin).max(0.0).sqrt(),
            norm,
        }
    }
}

/// What one assignment leaves the next: each point's [`Near`] and how far every centroid
/// has moved since.
pub(crate) struct Prior<'a> {
    /// Every point's [`Near`] from the last assignment.
    near: &'a [Near],
    /// Distance each centroid moved.
    shift: Vec<f64>,
    /// The centroid that moved most, its shift, and the largest shift of the others.
    largest: (usize, f64, f64),
}

impl<'a> Prior<'a> {
    /// The last assignment `near`, made with the `before` centroids, which have since
    /// moved to `after` (same shape).
    pub(crate) fn new(near: &'a [Near], before: &Array2<f32>, after: &Array2<f32>) -> Self {
        let shift: Vec<f64> = before
            .outer_iter()
            .zip(after.outer_iter())
            .map(|(b, a)| distance_f64(b, a))
            .collect();
        let mut largest = (usize::MAX, 0.0_f64, 0.0_f64);
        for (c, &s) in shift.iter().enumerate() {
            // A NaN shift counts as infinite: no point near it is carried.
            let s = if s.is_nan() { f64::INFINITY } else { s };
            if s > largest.1 {
                largest = (c, s, largest.1);
            } else if s > largest.2 {
                largest.2 = s;
            }
        }
        Self {
            near,
            shift,
            largest,
        }
    }

    /// Point `i`'s last [`Near`] with its bounds moved by the shifts, when its nearest
    /// centroid provably has not changed (`reach`: the largest `‖c‖²` now); `None` when
    /// it must be computed.
    pub(crate) fn carried(&self, i: usize, reach: f64) -> Option<Near> {
        let last = self.near.get(i)?;
        let own = self.shift.get(last.cluster)?;
        let others = if last.cluster == self.largest.0 {
            self.largest.2
        } else {
            self.largest.1
        };
        let upper = last.upper + own;
        let lower = last.lower - others;
        let margin = TOLERANCE * (last.norm + reach);
        // Written so that any NaN or infinity on the left computes the point.
        (lower > 0.0 && upper * upper + margin < lower * lower).then_some(Near {
            upper,
            lower,
            ..*last
        })
    }

    /// Point `i`'s `‖x‖²` from the last assignment, if it had one.
    pub(crate) fn norm(&self, i: usize) -> Option<f64> {
        self.near.get(i).map(|n| n.norm)
    }
}

/// `‖x‖²` of a point, in eight `f32` lanes summed in `f64` (within about `10⁻⁵` of exact;
/// the margin covers it).
pub(crate) fn squared_norm(x: &[f32]) -> f64 {
    let mut lanes = [0.0_f32; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v * v;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v * v)).sum();
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn nearest_and_second_with_ties_to_the_lower_index() {
        let n = Near::from_distances(&[3.0, 1.0, 1.0, 2.0], 10.0, 0.0);
        assert_eq!(n.cluster, 1);
        // The second nearest is the tie at 1: lower bound sqrt(10 + 1 − margin).
        assert!((n.lower - (11.0 - 1e-2_f64).sqrt()).abs() < 1e-12);
        assert!((n.upper - (11.0 + 1e-2_f64).sqrt()).abs() < 1e-12);
        let one = Near::from_distances(&[5.0], 1.0, 0.0);
        assert_eq!(one.lower, f64::INFINITY);
    }

    #[test]
    fn a_point_is_carried_only_while_the_bounds_hold() {
        // x = (0, 0); centroids at (1, 0) and (5, 0): ‖c‖² − 2 x·c = 1 and 25.
        let near = [Near::from_distances(&[1.0, 25.0], 0.0, 25.0)];
        let before = array![[1.0_f32, 0.0], [5.0, 0.0]];
        // Both move by 1: u ≈ 2, l ≈ 4; carried.
        let after = array![[2.0_f32, 0.0], [4.0, 0.0]];
        let prior = Prior::new(&near, &before, &after);
        let carried = prior.carried(0, 16.0).unwrap();
        assert_eq!(carried.cluster, 0);
        assert!(carried.upper >= 2.0 && carried.lower <= 4.0);
        // The other centroid moves to 0.9 from x, nearer than the first: computed.
        let after = array![[1.0_f32, 0.0], [0.9, 0.0]];
        assert_eq!(Prior::new(&near, &before, &after).carried(0, 1.0), None);
        // A non-finite shift never carries a point.
        let after = array![[1.0_f32, 0.0], [f32::NAN, 0.0]];
        assert_eq!(Prior::new(&near, &before, &after).carried(0, 1.0), None);
    }

    #[test]
    fn squared_norm_of_a_row() {
        let x: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let want: f64 = (0..19).map(|i| f64::from(i * i)).sum();
        assert_eq!(squared_norm(&x), want);
    }
}
