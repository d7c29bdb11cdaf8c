//! k-means clustering: k-means++ seeding followed by Lloyd iterations.
//!
//! Seeding follows Arthur & Vassilvitskii 2007, *k-means++: The Advantages of Careful
//! Seeding* (SODA), Sec. 2.2: the first centre is a uniformly random point, every next one
//! a point drawn with probability `D(x)² / Σ D(x)²`, `D(x)` being the distance from `x` to
//! its nearest centre so far (an `O(log k)`-competitive start). Lloyd's iterations then
//! alternate assigning every point to its nearest centroid and moving every centroid to
//! the mean of its points. The clustering strategy
//! ([`clustering`](crate::sampling::clustering)) runs this on the most uncertain tiles, as
//! Möllenbrok, Sumbul & Demir 2023 (Sec. II-B) do.
//!
//! Both run with exact accelerations that skip work by the triangle inequality, with
//! margins for rounding, so that seeds, assignments and centroids are those of every
//! distance computed, bit for bit: seeding as Raff 2021 prunes it
//! ([`nearer_to_new_seed`]), Lloyd's assignment with Hamerly 2010's bounds
//! ([`lloyd_bounds`](crate::sampling::lloyd_bounds)).
//!
//! # References
//!
//! - D. Arthur, S. Vassilvitskii, "k-means++: The Advantages of Careful Seeding",
//!   SODA 2007, pp. 1027–1035.
//! - E. Raff, "Exact Acceleration of K-Means++ and K-Means‖", IJCAI 2021, pp.
//!   2928–2935, DOI 10.24963/ijcai.2021/403.
//! - G. Hamerly, "Making k-means even faster", SIAM SDM 2010, pp. 130–140,
//!   DOI 10.1137/1.9781611972801.12.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sampling::distance::{distance_f64, row_distance, threads_for};
use crate::sampling::dots::{Panels, dots_of_rows};
use crate::sampling::error::SamplingError;
use crate::sampling::input::check_embeddings;
use crate::sampling::lloyd_bounds::{Near, Prior, squared_norm};
use crate::sampling::lloyd_step::{assign_and_move, sums_are_exact};

/// The result of [`kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// `[K, D]` centroids, `K <= k` (fewer when there are fewer distinct points than `k`).
    pub centroids: Array2<f32>,
    /// `[N]` cluster of every point, an index into `centroids` (the nearest centroid;
    /// equal distances: the lower cluster index). A cluster may end up with no point.
    pub assignment: Vec<usize>,
    /// Lloyd iterations run (at most the number asked for; fewer when the assignment
    /// stopped changing).
    pub iterations: usize,
}

impl KMeans {
    /// Number of clusters `K` (rows of `centroids`).
    pub fn clusters(&self) -> usize {
        self.centroids.nrows()
    }
}

/// Chooses up to `k` seed points among the rows of the `[N, D]` `points` by k-means++
/// (Arthur & Vassilvitskii 2007, Sec. 2.2), returned in the order they were drawn.
///
/// The first seed is uniform among the rows, each next one drawn with probability
/// proportional to its squared distance to the nearest seed so far (ChaCha8 seeded with
/// `seed`). A row that coincides with a seed has probability 0, so seeds are distinct
/// points; when every row coincides with a seed, seeding stops early and fewer than `k`
/// seeds come back (all distinct points, when `k` is at least their number).
///
/// `O(k · N · D)` time, `O(N)` memory.
///
/// # Errors
///
/// [`SamplingError::ZeroClusters`] for `k == 0`, [`SamplingError::NoEmbeddingDimensions`]
/// for `D == 0`, [`SamplingError::NonFiniteEmbedding`] for a row with NaN or infinity.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::kmeans_plus_plus;
///
/// // Two groups of identical points: once a seed is in one group, the other points of
/// // that group are at distance 0, so the second seed must come from the other group.
/// let points = array![[0.0_f32, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0]];
/// let seeds = kmeans_plus_plus(points.view(), 3, 7)?;
/// assert_eq!(seeds.len(), 2); // only two distinct points
/// assert_ne!(seeds[0] < 2, seeds[1] < 2);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn kmeans_plus_plus(
    points: ArrayView2<'_, f32>,
    k: usize,
    seed: u64,
) -> Result<Vec<usize>, SamplingError> {
    validate(&points, k)?;
    Ok(seed_rows(&points, k, seed))
}

/// Clusters the rows of the `[N, D]` `points` into at most `k` clusters: k-means++ seeding
/// ([`kmeans_plus_plus`], ChaCha8 seeded with `seed`), then up to `iterations` Lloyd
/// iterations (stopping early once the assignment no longer changes).
///
/// Every Lloyd iteration moves each centroid to the mean of its points (a centroid that
/// lost all its points stays where it is) and reassigns every point to its nearest
/// centroid (equal distances: lower cluster index). With `iterations == 0` the points are
/// only assigned to their nearest seed. Fewer than `k` clusters come back when there are
/// fewer than `k` distinct points.
///
/// `O((k + iterations) · N · k · D)` worst case: seeding is `O(k · N · D)`, each iteration
/// one `[N, D] × [D, k]` matrix product (blocked, split across cores for large inputs),
/// with the centroid sums taken in the same pass over the points
/// (`sampling/lloyd_step.rs`). Seeding computes a new seed's distance
/// only to the points it may be nearer to than their seed so far (Raff 2021), and
/// Lloyd's iterations pass over the points whose centroid cannot have changed (Hamerly
/// 2010, `sampling/lloyd_bounds.rs`); both with margins for
/// rounding, so the results are those of every distance computed.
/// Assignment distances use `‖x‖² − 2 x·c + ‖c‖²` in `f32`, so points almost equidistant
/// from two centroids may go either way.
///
/// # Errors
///
/// Those of [`kmeans_plus_plus`].
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::sampling::kmeans;
///
/// let points = array![[0.0_f32, 0.0], [0.0, 2.0], [100.0, 0.0], [100.0, 2.0]];
/// let result = kmeans(points.view(), 2, 20, 1)?;
/// // The second seed lands in the other pair with probability 99.98 % (it does for this
/// // seed), and Lloyd moves the centroids to (0, 1) and (100, 1).
/// assert_eq!(result.assignment[0], result.assignment[1]);
/// assert_eq!(result.assignment[2], result.assignment[3]);
/// assert_ne!(result.assignment[0], result.assignment[2]);
/// let left = result.centroids.row(result.assignment[0]);
/// assert_eq!(left.to_vec(), vec![0.0, 1.0]);
/// # Ok::<(), nexttile::sampling::SamplingError>(())
/// ```
pub fn kmeans(
    points: ArrayView2<'_, f32>,
    k: usize,
    iterations: usize,
    seed: u64,
) -> Result<KMeans, SamplingError> {
    if k == 0 {
        return Err(SamplingError::ZeroClusters);
    }
    // One scan tells whether the sums are exact, which also finds every value finite;
    // the full check (which names a bad value) runs when that scan could not tell.
    let exact = iterations > 0 && points.ncols() > 0 && sums_are_exact(&points);
    if !exact {
        validate(&points, k)?;
    }
    let seeds = seed_rows(&points, k, seed);
    let centroids = points.select(Axis(0), &seeds);
    Ok(lloyd(&points, centroids, iterations, exact))
}

/// `k >= 1`, `D >= 1` and finite rows.
fn validate(points: &ArrayView2<'_, f32>, k: usize) -> Result<(), SamplingError> {
    if k == 0 {
        return Err(SamplingError::ZeroClusters);
    }
    check_embeddings(points, &vec![true; points.nrows()])
}

/// k-means++ seeding on validated points. Each new seed's squared distances are
/// computed only for the points it may come nearer to than their nearest seed so far
/// ([`nearer_to_new_seed`]); the others keep their distance, which is what `min` with
/// the computed value would give.
fn seed_rows(points: &ArrayView2<'_, f32>, k: usize, seed: u64) -> Vec<usize> {
    let rows = points.nrows();
    if rows == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut nearest = Nearest {
        squared: vec![f64::INFINITY; rows],
        seed: vec![usize::MAX; rows],
    };
    let mut seeds = Vec::with_capacity(k.min(rows));
    let mut current = rng.random_range(0..rows);
    loop {
        seeds.push(current);
        if seeds.len() >= k {
            break;
        }
        nearer_to_new_seed(points, &seeds, &mut nearest);
        let total: f64 = nearest.squared.iter().sum();
        if total.is_nan() || total <= 0.0 {
            break; // every point coincides with a seed
        }
        let target = rng.random::<f64>() * total;
        match draw(&nearest.squared, target) {
            Some(next) => current = next,
            None => break,
        }
    }
    seeds
}

/// Each point's squared distance to its nearest seed so far (`+∞` before the first)
/// and that seed's position in the seeds (`usize::MAX` before the first).
struct Nearest {
    squared: Vec<f64>,
    seed: Vec<usize>,
}

/// Lowers every point's [`Nearest`] to its squared distance to the last of `seeds`
/// where that is smaller, as
/// [`squared_distances_into`](crate::sampling::distance::squared_distances_into) then
/// `min` would, but computes
/// the distance only where the triangle inequality allows it to be smaller.
///
/// After Raff 2021: a point at squared distance `D` from its nearest seed `s`
/// cannot come nearer to the new seed `c` when `d(s, c) ≥ 2 √D`. The test here is
/// `d(s, c) ≥ 2 √(D / (1 − ε))`, where `ε` covers the relative rounding error of the
/// `f32` squared distances (sums of non-negative terms, eight lanes: under
/// `(dims/8 + 10) · 2⁻²⁴`; `ε` is over eight times that plus `10⁻³`), so a point passed
/// over is one whose computed distance would not be below `D` either, and the seeds are
/// the same as with every distance computed (`pruned_seeding_equals_full_seeding`).
///
/// # References
///
/// - E. Raff, "Exact Acceleration of K-Means++ and K-Means‖", Proceedings of the
///   Thirtieth International Joint Conference on Artificial Intelligence (IJCAI) 2021,
///   pp. 2928–2935, DOI 10.24963/ijcai.2021/403, arXiv:2105.02936.
fn nearer_to_new_seed(points: &ArrayView2<'_, f32>, seeds: &[usize], nearest: &mut Nearest) {
    use rayon::prelude::*;
    let Some((&new, before)) = seeds.split_last() else {
        return;
    };
    let q = points.row(new).to_vec();
    // Distance from every earlier seed to the new one, in f64 (shaved by 10⁻⁹ for its
    // own rounding).
    let apart: Vec<f64> = before
        .iter()
        .map(|&s| distance_f64(points.row(s), points.row(new)) * (1.0 - 1e-9))
        .collect();
    let epsilon = 1e-3 + points.ncols() as f64 * 2_f64.powi(-23);
    let position = before.len();
    let update = |first: usize, squared: &mut [f64], owner: &mut [usize]| {
        for (j, (d, o)) in squared.iter_mut().zip(owner.iter_mut()).enumerate() {
            let far = apart
                .get(*o)
                .is_some_and(|&a| a >= 2.0 * (*d / (1.0 - epsilon)).sqrt());
            if far {
                continue;
            }
            let computed = f64::from(row_distance(points, first + j, &q));
            if computed < *d {
                *o = position;
            }
            *d = d.min(computed);
        }
    };
    let rows = points.nrows();
    let threads = threads_for(rows.saturating_mul(points.ncols()));
    if threads <= 1 {
        update(0, &mut nearest.squared, &mut nearest.seed);
        return;
    }
    let chunk = rows.div_ceil(threads);
    nearest
        .squared
        .par_chunks_mut(chunk)
        .zip(nearest.seed.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(t, (squared, owner))| update(t * chunk, squared, owner));
}

/// The first index whose running sum of `weights` exceeds `target` (`0 <= target < Σ`),
/// skipping zero weights; when rounding leaves the sum at or below `target`, the last
/// index with a positive weight.
fn draw(weights: &[f64], target: f64) -> Option<usize> {
    let mut sum = 0.0;
    let mut last_positive = None;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            sum += w;
            last_positive = Some(i);
            if sum > target {
                return Some(i);
            }
        }
    }
    last_positive
}

/// Lloyd's iterations from the given `[K, D]` centroids on validated points. From the
/// second assignment on, points whose nearest centroid provably has not changed keep it
/// without their products ([`lloyd_bounds`](crate::sampling::lloyd_bounds)). `exact`:
/// the points' sums are exact in any order ([`sums_are_exact`]; `false` is always
/// right, only slower).
pub(crate) fn lloyd(
    points: &ArrayView2<'_, f32>,
    mut centroids: Array2<f32>,
    iterations: usize,
    exact: bool,
) -> KMeans {
    // `moved`: where the current assignment moves the centroids, when the pass that
    // assigned also summed (the one-pass step); otherwise `update` computes it.
    let step = |centroids: &Array2<f32>, then_move: bool, prior: Option<&Prior<'_>>| {
        assign_pass(points, centroids, then_move, prior, exact)
    };
    let (mut near, mut moved) = step(&centroids, iterations > 0, None);
    let mut done = 0;
    while done < iterations {
        done += 1;
        let next_centroids = match moved.take() {
            Some(next) => next,
            None => {
                let mut next = centroids.clone();
                update(points, &clusters_of(&near), &mut next);
                next
            }
        };
        let (next, next_moved) = {
            let prior = Prior::new(&near, &centroids, &next_centroids);
            centroids = next_centroids;
            step(&centroids, done < iterations, Some(&prior))
        };
        let stable = next.iter().zip(&near).all(|(a, b)| a.cluster == b.cluster);
        near = next;
        moved = next_moved;
        if stable {
            break;
        }
    }
    KMeans {
        centroids,
        assignment: clusters_of(&near),
        iterations: done,
    }
}

/// The nearest centroid of every point.
fn clusters_of(near: &[Near]) -> Vec<usize> {
    near.iter().map(|n| n.cluster).collect()
}

/// The nearest centroid of every point (with [`Near`]'s bounds) and, when `then_move`,
/// the centroids moved to their points' means in the same pass
/// ([`lloyd_step`](crate::sampling::lloyd_step); the same numbers as [`assign_with`]
/// then [`update`], which run when the one-pass step could not finish). `prior`: the
/// last assignment, whose points may be carried over ([`assign_rows`]); `exact`: the
/// points' sums are exact in any order
/// ([`sums_are_exact`](crate::sampling::lloyd_step::sums_are_exact)).
fn assign_pass(
    points: &ArrayView2<'_, f32>,
    centroids: &Array2<f32>,
    then_move: bool,
    prior: Option<&Prior<'_>>,
    exact: bool,
) -> (Vec<Near>, Option<Array2<f32>>) {
    let norms = centroid_norms(centroids);
    let panels = Panels::new(centroids);
    let dots = Dots {
        centroids,
        panels: panels.as_ref(),
        norms: &norms,
    };
    let threads = assign_threads(points, centroids);
    if then_move && let Some((near, moved)) = assign_and_move(points, &dots, prior, threads, exact)
    {
        return (near, Some(moved));
    }
    (assign_with(points, &dots, prior, threads), None)
}

/// Moves every centroid with at least one point to the mean of its points (in `f64`).
/// Large inputs split the dimensions among the pool's threads; each dimension still adds
/// its points in row order, so the means are the same as one thread's.
fn update(points: &ArrayView2<'_, f32>, assignment: &[usize], centroids: &mut Array2<f32>) {
    use rayon::prelude::*;
    let (clusters, dims) = centroids.dim();
    let counts = cluster_sizes(assignment.iter().copied(), clusters);
    let threads = if points.len() >= PARALLEL_MIN_WORK {
        rayon::current_num_threads().clamp(1, MAX_THREADS)
    } else {
        1
    };
    let width = dims.div_ceil(threads).max(1);
    let column_sums = |first: usize| -> Array2<f64> {
        let last = (first + width).min(dims);
        let mut sums = Array2::<f64>::zeros((clusters, last - first));
        add_rows(&mut sums, points, assignment.iter().copied(), first..last);
        sums
    };
    let firsts: Vec<usize> = (0..dims).step_by(width).collect();
    let parts: Vec<Array2<f64>> = if firsts.len() > 1 {
        firsts.par_iter().map(|&f| column_sums(f)).collect()
    } else {
        firsts.iter().map(|&f| column_sums(f)).collect()
    };
    for (&first, sums) in firsts.iter().zip(&parts) {
        let part = centroids.slice_mut(s![.., first..first + sums.ncols()]);
        move_to_means(part, sums, &counts);
    }
}

/// How many of `clusters` (cluster indices) fall in each of `k` clusters (out of range
/// ones in none).
pub(crate) fn cluster_sizes(clusters: impl Iterator<Item = usize>, k: usize) -> Vec<usize> {
    let mut sizes = vec![0_usize; k];
    for c in clusters {
        if let Some(size) = sizes.get_mut(c) {
            *size += 1;
        }
    }
    sizes
}

/// Moves every centroid with points to the mean of its points, `sum / size` in `f64`
/// (`centroids` and `sums` cover the same dimensions); one without points stays.
pub(crate) fn move_to_means(
    mut centroids: ArrayViewMut2<'_, f32>,
    sums: &Array2<f64>,
    sizes: &[usize],
) {
    for ((mut centroid, sum), &size) in centroids.outer_iter_mut().zip(sums.outer_iter()).zip(sizes)
    {
        if size > 0 {
            let n = size as f64;
            centroid.zip_mut_with(&sum, |c, &s| *c = (s / n) as f32);
        }
    }
}

/// Adds every row of `rows` to the sums of its cluster over `dims` (`sums` holds those
/// dimensions only), in row order; clusters out of range are passed over.
pub(crate) fn add_rows(
    sums: &mut Array2<f64>,
    rows: &ArrayView2<'_, f32>,
    clusters: impl Iterator<Item = usize>,
    dims: std::ops::Range<usize>,
) {
    let k = sums.nrows();
    for (row, c) in rows.outer_iter().zip(clusters) {
        if c >= k {
            continue;
        }
        let mut sum = sums.row_mut(c);
        match (sum.as_slice_mut(), row.as_slice()) {
            (Some(sum), Some(x)) => add_widened(sum, &x[dims.clone()]),
            _ => sum.zip_mut_with(&row.slice(s![dims.clone()]), |s, &x| {
                *s += f64::from(x);
            }),
        }
    }
}

crate::simd::widest! {
    /// `sum[i] += f64::from(x[i])`: the inner loop of [`update`] on plain slices, so
    /// that it compiles to vector code (one exact widening and one addition per element,
    /// the same bits at any width).
    pub(crate) fn add_widened(sum: &mut [f64], x: &[f32]) {
        for (s, &v) in sum.iter_mut().zip(x) {
            *s += f64::from(v);
        }
    }
}

/// Rows per block of the assignment product (bounds the `[rows, K]` scratch matrix).
const BLOCK_ROWS: usize = 256;
/// Below this many multiply-adds per assignment, threads cost more than they save.
const PARALLEL_MIN_WORK: usize = 1 << 22;
/// Upper bound on worker threads for one assignment.
const MAX_THREADS: usize = 16;

/// The nearest centroid of every point (equal: lower index), by `‖c‖² − 2 x·c` (`‖x‖²` is
/// the same for all centroids of a point).
#[cfg(test)]
fn assign(points: &ArrayView2<'_, f32>, centroids: &Array2<f32>) -> Vec<usize> {
    clusters_of(&assign_pass(points, centroids, false, None, false).0)
}

/// The nearest centroid of every point (equal: lower index), by `‖c‖² − 2 x·c`, with
/// the centroids laid out and the threads chosen (`prior`: see [`assign_rows`]).
fn assign_with(
    points: &ArrayView2<'_, f32>,
    dots: &Dots<'_>,
    prior: Option<&Prior<'_>>,
    threads: usize,
) -> Vec<Near> {
    let rows = points.nrows();
    let mut out = vec![Near::default(); rows];
    let chunk = rows.div_ceil(threads.max(1)).max(1);
    if threads <= 1 {
        assign_rows(points, 0, dots, prior, &mut out);
    } else {
        std::thread::scope(|s| {
            for (t, part) in out.chunks_mut(chunk).enumerate() {
                s.spawn(move || assign_rows(points, t * chunk, dots, prior, part));
            }
        });
    }
    out
}

/// `‖c‖²` of every centroid.
fn centroid_norms(centroids: &Array2<f32>) -> Vec<f32> {
    centroids
        .outer_iter()
        .map(|c| c.iter().map(|v| v * v).sum())
        .collect()
}

/// Threads for one assignment: the cores (at most [`MAX_THREADS`]) when the products
/// are at least [`PARALLEL_MIN_WORK`] multiply-adds, else 1.
fn assign_threads(points: &ArrayView2<'_, f32>, centroids: &Array2<f32>) -> usize {
    let work = points
        .nrows()
        .saturating_mul(centroids.nrows())
        .saturating_mul(centroids.ncols());
    if work >= PARALLEL_MIN_WORK {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
    } else {
        1
    }
}

/// The centroids as [`assign_rows`] reads them.
pub(crate) struct Dots<'a> {
    /// `[k, D]`.
    pub(crate) centroids: &'a Array2<f32>,
    /// Laid out for [`dots_of_rows`] where the CPU takes that path.
    pub(crate) panels: Option<&'a Panels>,
    /// `‖c‖²` of each.
    pub(crate) norms: &'a [f32],
}

/// `out[j]` = nearest centroid of point `first + j` with its bounds, in blocks of
/// [`BLOCK_ROWS`]. With a `prior` assignment and the AVX2 + FMA products, a point whose
/// nearest centroid provably has not changed keeps it ([`Prior::carried`]); only the
/// others' products are computed, which are the same bits as in a full block
/// ([`dots_of_rows`]). Without either, every point is computed.
pub(crate) fn assign_rows(
    points: &ArrayView2<'_, f32>,
    first: usize,
    dots: &Dots<'_>,
    prior: Option<&Prior<'_>>,
    out: &mut [Near],
) {
    let k = dots.centroids.nrows();
    let reach = dots.norms.iter().fold(0.0_f64, |m, &n| m.max(f64::from(n)));
    let prior = prior.filter(|_| dots.panels.is_some());
    let mut products = Vec::new();
    let mut distances = vec![0.0_f32; k];
    let mut todo: Vec<usize> = Vec::with_capacity(BLOCK_ROWS);
    for (b, slots) in out.chunks_mut(BLOCK_ROWS).enumerate() {
        let start = first + b * BLOCK_ROWS;
        todo.clear();
        for (j, slot) in slots.iter_mut().enumerate() {
            match prior.and_then(|p| p.carried(start + j, reach)) {
                Some(near) => *slot = near,
                None => todo.push(j),
            }
        }
        if todo.is_empty() {
            continue;
        }
        let block = points.slice(s![start..start + slots.len(), ..]);
        products.clear();
        products.resize(todo.len() * k, 0.0_f32);
        let direct = dots.panels.is_some_and(|panels| {
            let rows: Option<Vec<&[f32]>> = todo.iter().map(|&j| block.row(j).to_slice()).collect();
            rows.is_some_and(|rows| dots_of_rows(&rows, block.ncols(), panels, &mut products))
        });
        if !direct {
            // Rows are carried only on the AVX2 + FMA path, where `dot`'s products of a
            // row are those of `dots_of_rows` and do not depend on the other rows either.
            let full = if todo.len() == slots.len() {
                block.dot(&dots.centroids.t())
            } else {
                block.select(Axis(0), &todo).dot(&dots.centroids.t())
            };
            products.clear();
            products.extend(full.iter());
        }
        for (&j, dots_row) in todo.iter().zip(products.chunks_exact(k.max(1))) {
            for ((d, &dot), &norm) in distances.iter_mut().zip(dots_row).zip(dots.norms) {
                *d = norm - 2.0 * dot;
            }
            let row = block.row(j);
            let norm = prior.and_then(|p| p.norm(start + j)).unwrap_or_else(|| {
                row.as_slice()
                    .map_or_else(|| squared_norm(&row.to_vec()), squared_norm)
            });
            slots[j] = Near::from_distances(&distances, norm, reach);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn draw_follows_the_running_sum() {
        // Weights 0, 1, 0, 3 -> running sums over positive weights: 1 at 1, 4 at 3.
        let w = [0.0, 1.0, 0.0, 3.0];
        assert_eq!(draw(&w, 0.0), Some(1));
        assert_eq!(draw(&w, 0.999), Some(1));
        assert_eq!(draw(&w, 1.0), Some(3)); // 1 is not > 1
        assert_eq!(draw(&w, 3.999), Some(3));
        // Rounding past the end: the last positive weight, never a zero one.
        assert_eq!(draw(&w, 4.0), Some(3));
        assert_eq!(draw(&[0.0, 0.0], 0.0), None);
    }

    #[test]
    fn seeds_are_distinct_points_and_deterministic() {
        // Three groups of identical points: whatever the first seed, its group drops to
        // weight 0, so the three seeds fall in three different groups, then seeding stops.
        let points = array![
            [0.0_f32, 0.0],
            [0.0, 0.0],
            [4.0, 0.0],
            [4.0, 0.0],
            [4.0, 0.0],
            [0.0, 3.0]
        ];
        let group = |i: usize| match i {
            0 | 1 => 0,
            2..=4 => 1,
            _ => 2,
        };
        for seed in 0..20 {
            let seeds = kmeans_plus_plus(points.view(), 5, seed).unwrap();
            assert_eq!(seeds, kmeans_plus_plus(points.view(), 5, seed).unwrap());
            let mut groups: Vec<usize> = seeds.iter().map(|&i| group(i)).collect();
            groups.sort_unstable();
            assert_eq!(groups, vec![0, 1, 2], "seed {seed}: {seeds:?}");
        }
    }

    #[test]
    fn lloyd_hand_worked() {
        // Points on a line: 0, 1, 2, 10, 11. Start centroids 0 and 1 (deliberately bad).
        // Assign: 0 -> c0 (0 vs 1), 1 -> c1, 2 -> c1, 10 -> c1, 11 -> c1.
        // Update: c0 = 0, c1 = (1 + 2 + 10 + 11) / 4 = 6.
        // Assign: 1 -> c0 (1 vs 25), 2 -> c0 (4 vs 16), 10, 11 -> c1.
        // Update: c0 = (0 + 1 + 2) / 3 = 1, c1 = 10.5. Assign: unchanged -> stop after 2.
        let points = array![[0.0_f32], [1.0], [2.0], [10.0], [11.0]];
        let start = array![[0.0_f32], [1.0]];
        let result = lloyd(&points.view(), start.clone(), 20, false);
        assert_eq!(result.assignment, vec![0, 0, 0, 1, 1]);
        assert_eq!(result.centroids, array![[1.0_f32], [10.5]]);
        assert_eq!(result.iterations, 2);
        assert_eq!(result.clusters(), 2);
        // One iteration: centroids 0 and 6, assignment already final.
        let one = lloyd(&points.view(), start.clone(), 1, false);
        assert_eq!(one.centroids, array![[0.0_f32], [6.0]]);
        assert_eq!(one.assignment, vec![0, 0, 0, 1, 1]);
        // No iteration: nearest start centroid only.
        let none = lloyd(&points.view(), start, 0, false);
        assert_eq!(none.assignment, vec![0, 1, 1, 1, 1]);
        assert_eq!(none.iterations, 0);
    }

    #[test]
    fn empty_cluster_keeps_its_centroid_and_ties_go_to_lower_index() {
        // Points 0 and 2, centroids 1, 1 and 5: both points are 1 from the two equal
        // centroids -> the lower index 0; cluster 1 (the duplicate) and 2 stay empty and
        // keep their positions. Update: c0 = 1 (unchanged) -> stable after 1 iteration.
        let points = array![[0.0_f32], [2.0]];
        let start = array![[1.0_f32], [1.0], [5.0]];
        let result = lloyd(&points.view(), start, 5, false);
        assert_eq!(result.assignment, vec![0, 0]);
        assert_eq!(result.centroids, array![[1.0_f32], [1.0], [5.0]]);
        assert_eq!(result.iterations, 1);
    }

    #[test]
    fn kmeans_separates_clear_groups() {
        // Pairs around (0, 1) and (1000, 1) plus an identical pair at (500, 2000). Seeding
        // puts two seeds in the same pair with probability below 1e-5 (weight 4 against
        // ≥ 1e6 for the others); the assertion is deterministic for these seeds. With one
        // seed per pair, Lloyd moves the centroids to the pair means and stops.
        let points = array![
            [0.0_f32, 0.0],
            [0.0, 2.0],
            [1000.0, 0.0],
            [1000.0, 2.0],
            [500.0, 2000.0],
            [500.0, 2000.0]
        ];
        for seed in 0..20 {
            let r = kmeans(points.view(), 3, 20, seed).unwrap();
            let a = &r.assignment;
            assert!(
                a[0] == a[1] && a[2] == a[3] && a[4] == a[5],
                "seed {seed}: {a:?}"
            );
            assert!(
                a[0] != a[2] && a[0] != a[4] && a[2] != a[4],
                "seed {seed}: {a:?}"
            );
            assert_eq!(r.centroids.row(a[0]).to_vec(), vec![0.0, 1.0]);
            assert_eq!(r.centroids.row(a[2]).to_vec(), vec![1000.0, 1.0]);
            assert_eq!(r.centroids.row(a[4]).to_vec(), vec![500.0, 2000.0]);
            assert_eq!(r, kmeans(points.view(), 3, 20, seed).unwrap());
        }
    }

    #[test]
    fn large_inputs_match_across_threads() {
        // Above PARALLEL_MIN_WORK the assignment is split over threads; it must equal the
        // single-threaded result.
        let n = 3000;
        let points = Array2::from_shape_fn((n, 48), |(i, d)| ((i * 31 + d * 7) % 97) as f32);
        let centroids = points.select(Axis(0), &(0..40).map(|i| i * 70).collect::<Vec<_>>());
        assert!(n * 40 * 48 >= PARALLEL_MIN_WORK);
        let parallel = assign(&points.view(), &centroids);
        let norms: Vec<f32> = centroids
            .outer_iter()
            .map(|c| c.iter().map(|v| v * v).sum())
            .collect();
        let mut serial = vec![Near::default(); n];
        let panels = Panels::new(&centroids);
        let dots = Dots {
            centroids: &centroids,
            panels: panels.as_ref(),
            norms: &norms,
        };
        assign_rows(&points.view(), 0, &dots, None, &mut serial);
        assert_eq!(parallel, clusters_of(&serial));
        // And the same with ndarray's `dot` for the products, wherever `Panels` is used.
        let mut by_dot = vec![Near::default(); n];
        let dots = Dots {
            panels: None,
            ..dots
        };
        assign_rows(&points.view(), 0, &dots, None, &mut by_dot);
        assert_eq!(parallel, clusters_of(&by_dot));
    }

    #[test]
    fn update_split_by_dimensions_equals_one_thread() {
        // Large enough to split; 3 threads over 1,000 dimensions give uneven ranges.
        let (n, dims, k) = (4500, 1000, 7);
        assert!(n * dims >= PARALLEL_MIN_WORK);
        let points =
            Array2::from_shape_fn((n, dims), |(i, d)| ((i * 131 + d * 17) % 251) as f32 * 0.37);
        let assignment: Vec<usize> = (0..n).map(|i| (i * 5 + i / 3) % k).collect();
        // The one-thread sums, row after row, in f64 (the previous implementation).
        let mut want = Array2::<f32>::zeros((k, dims));
        let mut sums = Array2::<f64>::zeros((k, dims));
        let mut counts = vec![0_usize; k];
        for (row, &c) in points.outer_iter().zip(&assignment) {
            counts[c] += 1;
            sums.row_mut(c)
                .zip_mut_with(&row, |s, &x| *s += f64::from(x));
        }
        for c in 0..k {
            for d in 0..dims {
                want[[c, d]] = (sums[[c, d]] / counts[c] as f64) as f32;
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut got = Array2::<f32>::zeros((k, dims));
        pool.install(|| update(&points.view(), &assignment, &mut got));
        assert_eq!(got, want);
    }

    #[test]
    fn one_pass_equals_two_passes() {
        // The one-pass step (lloyd_step) against assign then update, bit for bit, on 1,
        // 2, 3 and 5 threads (blocks split unevenly, a last partial block), a depth
        // across matrixmultiply's 256 block, an empty cluster, and a view whose rows are
        // not contiguous. Three groups set apart by the first value (0, 2^60, 2^61), so
        // the clusters are known; in every other dimension a group's first row holds
        // +2^40 and its last −2^40 around values near 1, so its f64 sum rounds at every
        // step and comes out differently in any other order (reversing the rows within
        // a block fails this test).
        let (n, dims, k) = (2_100, 300, 4);
        let mut s = 7_u64;
        let wide = Array2::from_shape_fn((n, dims + 3), |(i, d)| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let group = i % 3;
            match d {
                0 => group as f32 * 2_f32.powi(60),
                _ if i < 3 => 2_f32.powi(40),
                _ if i >= n - 3 => -(2_f32.powi(40)),
                _ => ((s >> 40) as f32) / 16_777_216.0 - 0.5,
            }
        });
        let strided = wide.slice(s![.., ..dims]);
        let owned = strided.to_owned();
        // Sums whose order shows: kmeans keeps the dimension split for these.
        assert!(!sums_are_exact(&owned.view()));
        let mut centroids = owned.select(Axis(0), &[3, 4, 5, 6]);
        centroids[[3, 0]] = -(2_f32.powi(61)); // nearest to no point: stays empty
        for points in [owned.view(), strided] {
            let norms = centroid_norms(&centroids);
            let panels = Panels::new(&centroids);
            let dots = Dots {
                centroids: &centroids,
                panels: panels.as_ref(),
                norms: &norms,
            };
            let want_assignment = assign(&points, &centroids);
            assert!(want_assignment.iter().enumerate().all(|(i, &c)| c == i % 3));
            let mut want = centroids.clone();
            update(&points, &want_assignment, &mut want);
            for threads in [1, 2, 3, 5] {
                let (assignment, moved) =
                    assign_and_move(&points, &dots, None, threads, false).unwrap();
                assert_eq!(
                    clusters_of(&assignment),
                    want_assignment,
                    "{threads} threads"
                );
                assert_eq!(moved.dim(), (k, dims));
                for (g, w) in moved.iter().zip(&want) {
                    assert_eq!(g.to_bits(), w.to_bits(), "{threads} threads: {g} vs {w}");
                }
            }
        }
        // And whole runs: the one-pass lloyd against the two passes, iteration by
        // iteration.
        let mut c = centroids.clone();
        let mut a = assign(&owned.view(), &c);
        for _ in 0..3 {
            update(&owned.view(), &a, &mut c);
            a = assign(&owned.view(), &c);
        }
        let r = lloyd(&owned.view(), centroids, 3, false);
        assert_eq!(r.assignment, a);
        assert_eq!(r.centroids, c);
    }

    /// Lloyd as it ran before bounds and row-split sums: every point computed, the
    /// centroids moved by the two-pass `update`.
    fn plain_lloyd(points: &ArrayView2<'_, f32>, start: Array2<f32>, iterations: usize) -> KMeans {
        let mut centroids = start;
        let mut assignment = assign(points, &centroids);
        let mut done = 0;
        while done < iterations {
            done += 1;
            update(points, &assignment, &mut centroids);
            let next = assign(points, &centroids);
            let stable = next == assignment;
            assignment = next;
            if stable {
                break;
            }
        }
        KMeans {
            centroids,
            assignment,
            iterations: done,
        }
    }

    /// Points on the `f16` grid (multiples of 2⁻¹⁰) around `groups` centres `spread`
    /// apart per dimension (noise ±8), every tenth exactly halfway between two centres.
    fn grid_points(n: usize, dims: usize, groups: usize, spread: f32) -> Array2<f32> {
        let mut s = 11_u64;
        let centre = |g: usize, d: usize| ((g * 37 + d * 11) % 29) as f32 * spread;
        Array2::from_shape_fn((n, dims), |(i, d)| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((s >> 50) as f32 - 8192.0) / 1024.0;
            match i % 10 {
                0 => (centre(i % groups, d) + centre((i + 1) % groups, d)) / 2.0,
                _ => centre(i % groups, d) + noise,
            }
        })
    }

    #[test]
    fn bounds_and_row_split_sums_keep_every_bit() {
        // 3,000 points of 128 dimensions, 12 clusters: above PARALLEL_MIN_WORK, so
        // threads run; every tenth point is a tie between two groups, and every
        // seventh repeats the one before.
        let (n, dims, k) = (3_000, 128, 12);
        let mut points = grid_points(n, dims, 9, 0.5);
        for i in (7..n).step_by(7) {
            let before = points.row(i - 1).to_owned();
            points.row_mut(i).assign(&before);
        }
        assert!(n * k * dims >= PARALLEL_MIN_WORK);
        let view = points.view();
        assert!(sums_are_exact(&view));
        for seed in 0..4 {
            let start = view.select(Axis(0), &seed_rows(&view, k, seed));
            let want = plain_lloyd(&view, start.clone(), 20);
            assert!(
                want.iterations > 2,
                "seed {seed}: too few iterations to test"
            );
            for exact in [false, true] {
                let got = lloyd(&view, start.clone(), 20, exact);
                assert_eq!(
                    got.assignment, want.assignment,
                    "seed {seed}, exact {exact}"
                );
                assert_eq!(
                    got.iterations, want.iterations,
                    "seed {seed}, exact {exact}"
                );
                for (g, w) in got.centroids.iter().zip(&want.centroids) {
                    assert_eq!(g.to_bits(), w.to_bits(), "seed {seed}, exact {exact}");
                }
            }
            assert_eq!(kmeans(view, k, 20, seed).unwrap(), want, "seed {seed}");
        }
    }

    #[test]
    fn points_are_carried_only_where_their_centroid_stays() {
        // One step of the centroids after an assignment: with the prior assignment,
        // some points are carried (their bounds differ from a fresh computation's)
        // and every point keeps the cluster a fresh computation gives it.
        let points = grid_points(2_000, 64, 6, 4.0);
        let view = points.view();
        let start = view.select(Axis(0), &seed_rows(&view, 8, 3));
        let Some(_) = Panels::new(&start) else {
            eprintln!("this CPU computes every point (no AVX2 + FMA path); nothing carried");
            return;
        };
        let (first, moved) = assign_pass(&view, &start, true, None, false);
        let moved = moved.unwrap();
        let prior = Prior::new(&first, &start, &moved);
        let (carried, _) = assign_pass(&view, &moved, false, Some(&prior), false);
        let (fresh, _) = assign_pass(&view, &moved, false, None, false);
        assert_eq!(clusters_of(&carried), clusters_of(&fresh));
        let kept = carried.iter().zip(&fresh).filter(|(c, f)| c != f).count();
        assert!(kept > 100, "only {kept} of 2,000 points carried");
        assert!(kept < 2_000);
    }

    #[test]
    fn sums_are_exact_only_on_the_grid_and_in_range() {
        let on = array![[0.5_f32, -3.0], [1.0 / 1024.0, 2.0_f32.powi(-24)]];
        assert!(sums_are_exact(&on.view()));
        let fine = array![[0.5_f32, 2.0_f32.powi(-25)]];
        assert!(!sums_are_exact(&fine.view()));
        let big = array![[2.0_f32.powi(28)], [1.0]];
        assert!(!sums_are_exact(&big.view()));
        let nan = array![[f32::NAN, 0.0]];
        assert!(!sums_are_exact(&nan.view()));
        let inf = array![[f32::INFINITY, 0.0]];
        assert!(!sums_are_exact(&inf.view()));
        // Off the grid, kmeans still checks every value.
        assert!(matches!(
            kmeans(nan.view(), 1, 5, 0),
            Err(SamplingError::NonFiniteEmbedding { tile: 0, .. })
        ));
    }

    /// k-means++ seeding as it ran before the pruning: every distance computed.
    fn full_seeding(points: &ArrayView2<'_, f32>, k: usize, seed: u64) -> Vec<usize> {
        let rows = points.nrows();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let all = vec![true; rows];
        let mut nearest = vec![f64::INFINITY; rows];
        let mut distances = vec![0.0_f64; rows];
        let mut seeds = Vec::new();
        let mut current = rng.random_range(0..rows);
        loop {
            seeds.push(current);
            if seeds.len() >= k {
                break;
            }
            crate::sampling::distance::squared_distances_into(
                points,
                current,
                &all,
                &mut distances,
            );
            for (n, &d) in nearest.iter_mut().zip(&distances) {
                *n = n.min(d);
            }
            let total: f64 = nearest.iter().sum();
            if total.is_nan() || total <= 0.0 {
                break;
            }
            let target = rng.random::<f64>() * total;
            match draw(&nearest, target) {
                Some(next) => current = next,
                None => break,
            }
        }
        seeds
    }

    #[test]
    fn pruned_seeding_equals_full_seeding() {
        // Separated groups (most points pruned), a near continuum (few), duplicates and
        // ties, one and several threads (3,000 × 512 values is above the distance
        // passes' parallel threshold).
        for (n, dims, groups, spread) in [
            (3_000, 512, 9, 4.0),
            (3_000, 512, 9, 0.25),
            (400, 16, 5, 8.0),
            (50, 3, 2, 0.0),
        ] {
            let mut points = grid_points(n, dims, groups, spread);
            for i in (7..n).step_by(7) {
                let before = points.row(i - 1).to_owned();
                points.row_mut(i).assign(&before);
            }
            let view = points.view();
            for (k, seed) in [(20, 0), (20, 1), (40, 2), (3, 3), (60, 4)] {
                assert_eq!(
                    seed_rows(&view, k, seed),
                    full_seeding(&view, k, seed),
                    "{n} × {dims}, spread {spread}, k {k}, seed {seed}"
                );
            }
        }
    }

    #[test]
    fn degenerate_inputs() {
        let points = array![[0.0_f32], [1.0]];
        assert_eq!(
            kmeans(points.view(), 0, 5, 0),
            Err(SamplingError::ZeroClusters)
        );
        let flat = Array2::<f32>::zeros((2, 0));
        assert_eq!(
            kmeans_plus_plus(flat.view(), 1, 0),
            Err(SamplingError::NoEmbeddingDimensions)
        );
        let nan = array![[0.0_f32], [f32::NAN]];
        assert!(matches!(
            kmeans(nan.view(), 1, 5, 0),
            Err(SamplingError::NonFiniteEmbedding { tile: 1, .. })
        ));
        let empty = Array2::<f32>::zeros((0, 3));
        let r = kmeans(empty.view(), 2, 5, 0).unwrap();
        assert_eq!(r.clusters(), 0);
        assert!(r.assignment.is_empty());
        // k > N: every distinct point is its own cluster.
        let r = kmeans(points.view(), 5, 5, 0).unwrap();
        assert_eq!(r.clusters(), 2);
        assert_ne!(r.assignment[0], r.assignment[1]);
    }
}
