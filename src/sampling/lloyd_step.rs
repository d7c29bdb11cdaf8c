//! One Lloyd step of k-means in a single pass over the points from main memory: a
//! block of points is assigned to the nearest centroids and, while it is still in
//! cache, added to those centroids' sums, instead of one pass over all points to assign
//! and a second to sum.
//!
//! Both halves of a Lloyd step read every point, and on a granule (10,000 points of
//! 1,024 values, 41 MB) every read of a point came from main memory, so the second pass
//! cost about as much as the first. Here the threads go through the points together,
//! a block at a time: each assigns its share of the block's rows (as the two-pass
//! assignment does, [`assign_rows`]), and after a barrier each adds every row of the
//! block, in row order, over its own share of the dimensions. The numbers are those of
//! the two passes bit for bit:
//! - each point's products and nearest centroid come from the same code on the same
//!   values (a product does not depend on which other rows are multiplied with it);
//! - each dimension of a centroid's sum still adds its points in row order in `f64`, as
//!   the two-pass update does (`one_pass_equals_two_passes` in `kmeans`).

use std::sync::{Barrier, PoisonError, RwLock};

use ndarray::{Array2, ArrayView2, s};

use crate::sampling::kmeans::{Dots, add_widened, assign_rows};

/// Rows each thread assigns per block: the block (`threads ×` this, 2 MiB for two
/// threads at 1,024 values) stays in cache between the assignment and the sums.
const ROWS_PER_THREAD: usize = 256;

/// The nearest centroid of every point (equal distances: the lower index) and the
/// centroids moved to the means of their points (a centroid without points stays where
/// it is), in one pass on `threads` threads (see the module docs). `None` when a worker
/// thread failed (then nothing was applied).
pub(crate) fn assign_and_move(
    points: &ArrayView2<'_, f32>,
    dots: &Dots<'_>,
    threads: usize,
) -> Option<(Vec<usize>, Array2<f32>)> {
    let threads = threads.max(1);
    let centroids = dots.centroids;
    if centroids.nrows() == 0 {
        return None;
    }
    let depth = centroids.ncols();
    let barrier = Barrier::new(threads);
    // Each thread's rows of a block, twice: one block is read while the next is written.
    let nearest: Vec<[RwLock<Vec<usize>>; 2]> = (0..threads)
        .map(|_| [RwLock::new(Vec::new()), RwLock::new(Vec::new())])
        .collect();
    let work = Work {
        points,
        dots,
        threads,
        barrier: &barrier,
        nearest: &nearest,
    };
    let dims = |t: usize| t * depth / threads..(t + 1) * depth / threads;
    let parts: Vec<Option<Part>> = std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = (1..threads)
            .map(|t| scope.spawn(move || work.run(t, dims(t))))
            .collect();
        let mut parts = vec![Some(work.run(0, dims(0)))];
        parts.extend(handles.into_iter().map(|h| h.join().ok()));
        parts
    });
    let parts: Vec<Part> = parts.into_iter().collect::<Option<_>>()?;
    let assignment = parts.first()?.assignment.clone();
    let mut counts = vec![0_usize; centroids.nrows()];
    for &c in &assignment {
        if let Some(count) = counts.get_mut(c) {
            *count += 1;
        }
    }
    let mut moved = centroids.clone();
    for (t, part) in parts.iter().enumerate() {
        for ((mut centroid, sum), &count) in moved
            .slice_mut(s![.., dims(t)])
            .outer_iter_mut()
            .zip(part.sums.outer_iter())
            .zip(&counts)
        {
            if count > 0 {
                let n = count as f64;
                centroid.zip_mut_with(&sum, |c, &s| *c = (s / n) as f32);
            }
        }
    }
    Some((assignment, moved))
}

/// What the threads of [`assign_and_move`] share.
struct Work<'a> {
    points: &'a ArrayView2<'a, f32>,
    dots: &'a Dots<'a>,
    threads: usize,
    barrier: &'a Barrier,
    /// Per thread and parity: the nearest centroids of its rows of the current block.
    nearest: &'a [[RwLock<Vec<usize>>; 2]],
}

/// One thread's result: the whole assignment (thread 0 only) and its dimensions' sums.
struct Part {
    assignment: Vec<usize>,
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
                out.resize(mine.len(), 0);
                assign_rows(self.points, mine.start, self.dots, &mut out);
            }
            self.barrier.wait();
            let all: Vec<_> = self
                .nearest
                .iter()
                .map(|n| n[b % 2].read().unwrap_or_else(PoisonError::into_inner))
                .collect();
            let rows = self.points.slice(s![first..end, ..]);
            let clusters = all.iter().flat_map(|part| part.iter());
            for (row, &c) in rows.outer_iter().zip(clusters.clone()) {
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
            if t == 0 {
                assignment.extend(clusters);
            }
        }
        Part { assignment, sums }
    }
}
