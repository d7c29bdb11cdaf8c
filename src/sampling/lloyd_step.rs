//! One Lloyd step of k-means in a single pass over the points from main memory: a
//! block of points is assigned to the nearest centroids and, while it is still in
//! cache, added to those centroids' sums, instead of one pass over all points to assign
//! and a second to sum.
//!
//! Both halves of a Lloyd step read every point, and on a granule (10,000 points of
//! 1,024 values, 41 MB) every read of a point came from main memory, so the second pass
//! cost about as much as the first. The numbers are those of the two passes bit for
//! bit: each point's products and nearest centroid come from the same code on the same
//! values (a product does not depend on which other rows are multiplied with it), and
//! each centroid's sums are those of its points added in row order in `f64`. Two ways
//! keep that order:
//! - [`by_rows`], when every sum is exact whatever the order ([`sums_are_exact`]: values
//!   on the `f16` grid, as cached embeddings are, and not too large): each thread
//!   assigns and sums its own contiguous rows, and the threads' sums are added. Each row
//!   is read once, in order, by one thread.
//! - [`by_dims`] otherwise: the threads go through the points together, a block at a
//!   time: each assigns its share of the block's rows ([`assign_rows`]), and after a
//!   barrier each adds every row of the block, in row order, over its own share of the
//!   dimensions (`one_pass_equals_two_passes` in `kmeans`). Each thread reads half of
//!   every row, which took about twice as long as [`by_rows`] on a 2-core AMD EPYC.

use std::sync::{Barrier, PoisonError, RwLock};

use ndarray::{Array2, ArrayView2, s};

use crate::sampling::kmeans::{Dots, add_rows, assign_rows, cluster_sizes, move_to_means};
use crate::sampling::lloyd_bounds::{Near, Prior};

/// Rows each thread assigns per block: the block (`threads ×` this, 2 MiB for two
/// threads at 1,024 values) stays in cache between the assignment and the sums.
const ROWS_PER_THREAD: usize = 256;

/// The nearest centroid of every point (equal distances: the lower index) and the
/// centroids moved to the means of their points (a centroid without points stays where
/// it is), in one pass on `threads` threads (see the module docs). `exact`: the points'
/// sums are exact in any order ([`sums_are_exact`]), so each thread takes its own rows
/// ([`by_rows`]); otherwise each its own dimensions ([`by_dims`]). `None` when a worker
/// thread failed (then nothing was applied).
pub(crate) fn assign_and_move(
    points: &ArrayView2<'_, f32>,
    dots: &Dots<'_>,
    prior: Option<&Prior<'_>>,
    threads: usize,
    exact: bool,
) -> Option<(Vec<Near>, Array2<f32>)> {
    let threads = threads.max(1);
    let centroids = dots.centroids;
    if centroids.nrows() == 0 {
        return None;
    }
    let (assignment, sums) = if exact {
        by_rows(points, dots, prior, threads)?
    } else {
        by_dims(points, dots, prior, threads)?
    };
    let sizes = cluster_sizes(assignment.iter().map(|n| n.cluster), centroids.nrows());
    let mut moved = centroids.clone();
    move_to_means(moved.view_mut(), &sums, &sizes);
    Some((assignment, moved))
}

/// Whether every sum of the points' values over any rows of a dimension is exact in
/// `f64`, whatever the order of the additions: every value is a multiple of `2⁻²⁴`
/// (as every `f16` is, and so every embedding from the cache) and rows × the largest
/// `|value|` stays under `2²⁹`, so that every partial sum is a multiple of `2⁻²⁴` below
/// `2²⁹`, which `f64`'s 53 bits hold. Then [`by_rows`] gives the sums of the
/// row-ordered additions bit for bit.
pub(crate) fn sums_are_exact(points: &ArrayView2<'_, f32>) -> bool {
    use rayon::prelude::*;
    let largest = match points.as_slice() {
        Some(flat) => flat
            .par_chunks(1 << 16)
            .map(grid_max)
            .reduce(|| 0.0, f32::max),
        None => points.outer_iter().fold(0.0_f32, |m, row| {
            m.max(row.as_slice().map_or(f32::INFINITY, grid_max))
        }),
    };
    largest.is_finite() && f64::from(largest) * (points.nrows() as f64) < f64::from(1_u32 << 29)
}

crate::simd::widest! {
    /// The largest `|v|` of `x`, or `+∞` when a value is not a multiple of `2⁻²⁴` or not
    /// finite (scaling by `2²⁴` is exact, so a multiple scales to an integer).
    fn grid_max(x: &[f32]) -> f32 {
        let mut largest = 0.0_f32;
        for &v in x {
            let scaled = v * 16_777_216.0;
            let a = if scaled.trunc() == scaled { v.abs() } else { f32::INFINITY };
            largest = largest.max(a);
        }
        largest
    }
}

/// The exact-sums step: each thread assigns its own contiguous rows a block at a time
/// and adds each block, still in cache, to its own sums over every dimension; the
/// threads' sums are then added. Every sum is exact ([`sums_are_exact`]), so they are
/// those of the row-ordered additions. Rows are read from memory once, in order, by one
/// thread (reading every row's half on each thread, as [`by_dims`] must, took about
/// twice as long on a 2-core AMD EPYC).
fn by_rows(
    points: &ArrayView2<'_, f32>,
    dots: &Dots<'_>,
    prior: Option<&Prior<'_>>,
    threads: usize,
) -> Option<(Vec<Near>, Array2<f64>)> {
    let n = points.nrows();
    let (k, depth) = dots.centroids.dim();
    let chunk = n.div_ceil(threads).max(1);
    let run = |first: usize| {
        let end = (first + chunk).min(n);
        let mut near = vec![Near::default(); end - first];
        let mut sums = Array2::<f64>::zeros((k, depth));
        for (b, slots) in near.chunks_mut(ROWS_PER_THREAD).enumerate() {
            let start = first + b * ROWS_PER_THREAD;
            assign_rows(points, start, dots, prior, slots);
            let rows = points.slice(s![start..start + slots.len(), ..]);
            add_rows(&mut sums, &rows, slots.iter().map(|n| n.cluster), 0..depth);
        }
        (near, sums)
    };
    let parts = on_threads(n.div_ceil(chunk), |t| run(t * chunk));
    let mut assignment = Vec::with_capacity(n);
    let mut total = Array2::<f64>::zeros((k, depth));
    for part in parts {
        let (near, sums) = part?;
        assignment.extend(near);
        total += &sums;
    }
    Some((assignment, total))
}

/// The general step: the threads go through the points a block at a time, each
/// assigning its share of the block's rows, then (after a barrier) adding every row of
/// the block over its own share of the dimensions, so that each dimension's sums add
/// their rows in row order. Returns the assignment and the `[k, D]` sums.
fn by_dims(
    points: &ArrayView2<'_, f32>,
    dots: &Dots<'_>,
    prior: Option<&Prior<'_>>,
    threads: usize,
) -> Option<(Vec<Near>, Array2<f64>)> {
    let (k, depth) = dots.centroids.dim();
    let barrier = Barrier::new(threads);
    // Each thread's rows of a block, twice: one block is read while the next is written.
    let nearest: Vec<[RwLock<Vec<Near>>; 2]> = (0..threads)
        .map(|_| [RwLock::new(Vec::new()), RwLock::new(Vec::new())])
        .collect();
    let work = Work {
        points,
        dots,
        prior,
        threads,
        barrier: &barrier,
        nearest: &nearest,
    };
    let dims = |t: usize| t * depth / threads..(t + 1) * depth / threads;
    let parts: Vec<Part> = on_threads(threads, |t| work.run(t, dims(t)))
        .into_iter()
        .collect::<Option<_>>()?;
    let mut sums = Array2::<f64>::zeros((k, depth));
    for (t, part) in parts.iter().enumerate() {
        sums.slice_mut(s![.., dims(t)]).assign(&part.sums);
    }
    let assignment = parts.into_iter().next()?.assignment;
    Some((assignment, sums))
}

/// `run(t)` for `t` in `0..count`, 0 on the calling thread and the others on scoped
/// threads, in order; `None` for a thread that panicked.
fn on_threads<T: Send>(count: usize, run: impl Fn(usize) -> T + Sync) -> Vec<Option<T>> {
    std::thread::scope(|scope| {
        let run = &run;
        let handles: Vec<_> = (1..count).map(|t| scope.spawn(move || run(t))).collect();
        let mut parts: Vec<Option<T>> = (0..count.min(1)).map(|t| Some(run(t))).collect();
        parts.extend(handles.into_iter().map(|h| h.join().ok()));
        parts
    })
}

/// What the threads of [`assign_and_move`] share.
struct Work<'a> {
    points: &'a ArrayView2<'a, f32>,
    dots: &'a Dots<'a>,
    /// The last assignment, whose points may be carried over ([`assign_rows`]).
    prior: Option<&'a Prior<'a>>,
    threads: usize,
    barrier: &'a Barrier,
    /// Per thread and parity: the nearest centroids of its rows of the current block.
    nearest: &'a [[RwLock<Vec<Near>>; 2]],
}

/// One thread's result: the whole assignment (thread 0 only) and its dimensions' sums.
struct Part {
    assignment: Vec<Near>,
    sums: Array2<f64>,
}

impl Work<'_> {
    /// Thread `t`'s share: in every block, its rows' nearest centroids, the barrier, then
    /// every row of the block added over `dims`. Every thread passes every barrier (no
    /// early return), so none waits for ever.
    fn run(&self, t: usize, dims: std::ops::Range<usize>) -> Part {
        let n = self.points.nrows();
        let k = self.dots.centroids.nrows();
        let block = ROWS_PER_THREAD * self.threads;
        let mut sums = Array2::<f64>::zeros((k, dims.len()));
        let mut assignment = Vec::with_capacity(if t == 0 { n } else { 0 });
        for (b, first) in (0..n).step_by(block).enumerate() {
            let end = (first + block).min(n);
            let mine = (first + t * ROWS_PER_THREAD).min(end)
                ..(first + (t + 1) * ROWS_PER_THREAD).min(end);
            {
                let mut out = self.nearest[t][b % 2]
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                out.clear();
                out.resize(mine.len(), Near::default());
                assign_rows(self.points, mine.start, self.dots, self.prior, &mut out);
            }
            self.barrier.wait();
            let all: Vec<_> = self
                .nearest
                .iter()
                .map(|n| n[b % 2].read().unwrap_or_else(PoisonError::into_inner))
                .collect();
            let rows = self.points.slice(s![first..end, ..]);
            let clusters = all.iter().flat_map(|part| part.iter());
            add_rows(
                &mut sums,
                &rows,
                clusters.clone().map(|n| n.cluster),
                dims.clone(),
            );
            if t == 0 {
                assignment.extend(clusters.copied());
            }
        }
        Part { assignment, sums }
    }
}
