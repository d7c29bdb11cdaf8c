//! Farthest-first traversal (Gonzalez 1985, *Clustering to Minimize the Maximum
//! Intercluster Distance*): the running nearest-centre distances shared by farthest-point
//! sampling, MCFPS and core-set, lowered as centres are added.
//!
//! The textbook traversal makes one pass over all `N` rows per centre, and at a million
//! tiles those passes are memory-bound. Two exact shortcuts cut the bytes read:
//!
//! - **Several centres per pass.** Let `f₁, f₂, …` be the unchosen rows ranked by their
//!   current nearest distance `n(·)` (largest first, lower index among equals). Adding
//!   `f₁` only lowers distances, so `f₂` is the next farthest whenever `d(f₁, f₂) ≥ n(f₂)`;
//!   in general `f_j` follows `f₁ … f_{j−1}` whenever `d(f_i, f_j) ≥ n(f_j)` for all
//!   `i < j`. Those few exact distances are checked before the pass, and the longest
//!   certain prefix (up to [`MAX_BATCH`]) is added in one pass that reads each row once.
//! - **An 8-bit [`Sketch`]** of rows in standard layout: a row is measured exactly (the
//!   `f32` kernel of [`crate::sampling::distance`]) only when the sketch's lower bound
//!   says a new centre could be nearer than its current nearest one, and an MCFPS
//!   neighbourhood is the exact `k` nearest among the rows whose lower bound does not
//!   rule them out.
//!
//! Every distance that decides anything is the exact one, so picks, scores and
//! neighbourhoods are identical to the textbook traversal (tested against it).
//! `NEXTTILE_SELECTION_PLAIN=1` runs the textbook traversal instead, to measure what the
//! shortcuts save or to rule them out.

use std::collections::BinaryHeap;

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::sampling::distance::{row_distance, squared_distances_into, threads_for};
use crate::sampling::knn::knn_from_distances;
use crate::sampling::sketch::{Sketch, distance_portable};
#[cfg(target_arch = "x86_64")]
use crate::sampling::sketch::{distance4_avx2, has_avx2};

/// Most centres one pass adds.
pub(crate) const MAX_BATCH: usize = 16;

/// Centres per pass when adding given centres (labelled tiles): their codes stay in L1.
const GIVEN_PER_PASS: usize = 64;

/// How many rows ahead a sketched pass asks for the codes it will read.
#[cfg(target_arch = "x86_64")]
const PREFETCH_ROWS: usize = 16;

/// Whether `NEXTTILE_SELECTION_PLAIN=1` asks for the textbook traversal.
fn plain_requested() -> bool {
    use std::sync::OnceLock;
    static PLAIN: OnceLock<bool> = OnceLock::new();
    *PLAIN.get_or_init(|| std::env::var_os("NEXTTILE_SELECTION_PLAIN").is_some_and(|v| v == "1"))
}

/// A centre added by [`Traversal::advance`].
pub(crate) struct Centre {
    /// Its row.
    pub(crate) index: usize,
    /// Its squared distance to the nearest earlier centre when it was chosen.
    pub(crate) squared: f64,
    /// Its `k` nearest eligible rows, nearest first (itself first among equals, then lower
    /// index), when `k > 0` was asked for.
    pub(crate) neighbours: Vec<usize>,
}

/// The traversal state over `N` rows.
pub(crate) struct Traversal<'v, 'a> {
    view: &'v ArrayView2<'a, f32>,
    eligible: &'v [bool],
    sketch: Option<Sketch>,
    batch: usize,
    /// Exact squared distance of each row to its nearest centre (`+∞` before any).
    nearest: Vec<f64>,
    /// With a sketch: the distance a new centre's lower bound must reach for a row to be
    /// skipped, `√((nearest + a)/(1 − γ)) + e_row` (see [`Bounds`]).
    reach: Vec<f64>,
    chosen: Vec<bool>,
    /// The eligible, unchosen rows with the largest `nearest` (largest first, lower index
    /// among equals), at most [`MAX_BATCH`], as of the last pass.
    ranked: Vec<(usize, f64)>,
    /// Scratch distances of the exact path.
    distances: Vec<f64>,
    bounds: Bounds,
    /// Rows measured exactly by sketched passes, and passes made.
    exact_rows: u64,
    passes: u64,
}

/// How far the `f32` kernel's squared distance can be from the true one:
/// `(1 − γ)·d² − a ≤ computed ≤ (1 + γ)·d² + a`, with `γ = 2u(D + 16)` (u = 2⁻²⁴: the
/// subtraction, the square and `D/8 + 16` sequential additions of positive terms) and an
/// absolute `a` for underflow.
#[derive(Clone, Copy)]
struct Bounds {
    gamma: f64,
    absolute: f64,
}

impl Bounds {
    fn new(dim: usize) -> Self {
        let u = f64::from(f32::EPSILON) / 2.0;
        Bounds {
            gamma: 2.0 * u * (dim as f64 + 16.0),
            absolute: (dim as f64 + 16.0) * f64::from(f32::MIN_POSITIVE),
        }
    }

    /// The skip radius of a row with exact nearest squared distance `nearest` and sketch
    /// error `error`.
    fn reach(self, nearest: f64, error: f64) -> f64 {
        ((nearest + self.absolute) / (1.0 - self.gamma)).sqrt() * (1.0 + 1e-12) + error
    }
}

/// Inserts row `i` with value `v` into `ranked` (largest first, lower index among
/// equals, at most [`MAX_BATCH`]); rows must be offered in ascending index order.
#[inline]
fn offer(ranked: &mut Vec<(usize, f64)>, i: usize, v: f64) {
    if ranked.len() >= MAX_BATCH && ranked.last().is_none_or(|&(_, w)| v <= w) {
        return;
    }
    let at = ranked.partition_point(|&(_, w)| w >= v);
    ranked.insert(at, (i, v));
    ranked.truncate(MAX_BATCH);
}

impl<'v, 'a> Traversal<'v, 'a> {
    /// A traversal over the `eligible` rows of `view`, whose centres will be eligible rows
    /// or rows listed in `centres`; all of those rows must be finite.
    pub(crate) fn new(
        view: &'v ArrayView2<'a, f32>,
        eligible: &'v [bool],
        centres: &[usize],
    ) -> Self {
        if plain_requested() {
            return Self::plain(view, eligible);
        }
        let mut used = eligible.to_vec();
        for &c in centres {
            if let Some(u) = used.get_mut(c) {
                *u = true;
            }
        }
        let sketch = Sketch::build(view, &used);
        Self::with(view, eligible, sketch, MAX_BATCH)
    }

    /// The textbook traversal: one exact pass over every row per centre.
    pub(crate) fn plain(view: &'v ArrayView2<'a, f32>, eligible: &'v [bool]) -> Self {
        Self::with(view, eligible, None, 1)
    }

    fn with(
        view: &'v ArrayView2<'a, f32>,
        eligible: &'v [bool],
        sketch: Option<Sketch>,
        batch: usize,
    ) -> Self {
        let rows = view.nrows();
        Traversal {
            view,
            eligible,
            reach: if sketch.is_some() {
                vec![f64::INFINITY; rows]
            } else {
                Vec::new()
            },
            sketch,
            batch,
            nearest: vec![f64::INFINITY; rows],
            chosen: vec![false; rows],
            ranked: Vec::new(),
            distances: Vec::new(),
            bounds: Bounds::new(view.ncols()),
            exact_rows: 0,
            passes: 0,
        }
    }

    /// Rows measured exactly by sketched passes so far, and passes made.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.exact_rows, self.passes)
    }

    /// Makes the given rows centres (and never farthest again), lowering every eligible
    /// row's nearest distance; returns each centre's `k` nearest eligible rows (empty
    /// vectors for `k == 0`).
    pub(crate) fn add_centres(&mut self, centres: &[usize], k: usize) -> Vec<Vec<usize>> {
        let rows = self.view.nrows();
        let centres: Vec<usize> = centres.iter().copied().filter(|&c| c < rows).collect();
        for &c in &centres {
            self.chosen[c] = true;
        }
        let mut hoods = Vec::with_capacity(centres.len());
        if self.sketch.is_some() {
            for group in centres.chunks(GIVEN_PER_PASS) {
                hoods.extend(self.pass_sketched(group, k));
            }
        } else {
            for &c in &centres {
                hoods.push(self.pass_exact(c, k));
            }
            self.rank_exact();
        }
        hoods
    }

    /// Adds the next centres of the traversal, up to `max` of them, as the textbook
    /// traversal would choose them one by one, in as few passes as that allows (one when
    /// the batch rule above certifies them all); empty when no eligible row is left.
    pub(crate) fn advance(&mut self, max: usize, k: usize) -> Vec<Centre> {
        let max = max.min(self.batch);
        let Some(&lead) = self.ranked.first() else {
            return Vec::new();
        };
        if max == 0 {
            return Vec::new();
        }
        let mut batch = vec![lead];
        for &(j, nj) in self.ranked.iter().skip(1) {
            if batch.len() >= max {
                break;
            }
            let q = self.view.row(j).to_vec();
            let certain = batch
                .iter()
                .all(|&(i, _)| f64::from(row_distance(self.view, i, &q)) >= nj);
            if !certain {
                break;
            }
            batch.push((j, nj));
        }
        let indices: Vec<usize> = batch.iter().map(|&(i, _)| i).collect();
        let hoods = self.add_centres(&indices, k);
        batch
            .into_iter()
            .zip(hoods)
            .map(|((index, squared), neighbours)| Centre {
                index,
                squared,
                neighbours,
            })
            .collect()
    }

    /// One full exact pass for `centre`.
    fn pass_exact(&mut self, centre: usize, k: usize) -> Vec<usize> {
        self.passes += 1;
        let rows = self.view.nrows();
        self.distances.resize(rows, f64::INFINITY);
        squared_distances_into(self.view, centre, self.eligible, &mut self.distances);
        for ((near, &d), &ok) in self
            .nearest
            .iter_mut()
            .zip(&self.distances)
            .zip(self.eligible)
        {
            if ok {
                *near = near.min(d);
            }
        }
        if k > 0 {
            knn_from_distances(&self.distances, centre, k, self.eligible)
        } else {
            Vec::new()
        }
    }

    /// `ranked` from a scan of `nearest`.
    fn rank_exact(&mut self) {
        self.ranked.clear();
        let rows = self
            .nearest
            .iter()
            .zip(self.eligible.iter().zip(&self.chosen));
        for (i, (&v, (&ok, &taken))) in rows.enumerate() {
            if ok && !taken {
                offer(&mut self.ranked, i, v);
            }
        }
    }

    /// One pass through the sketch for `centres` (at most [`GIVEN_PER_PASS`]), split
    /// across cores.
    fn pass_sketched(&mut self, centres: &[usize], k: usize) -> Vec<Vec<usize>> {
        let Some(sketch) = &self.sketch else {
            return Vec::new();
        };
        self.passes += 1;
        let view = self.view;
        let queries: Vec<Query> = centres
            .iter()
            .map(|&c| Query {
                centre: c,
                row: view.row(c).to_vec(),
                code: sketch.row(c),
                error: sketch.error(c),
            })
            .collect();
        let pass = Pass {
            sketch,
            view,
            eligible: self.eligible,
            chosen: &self.chosen,
            queries: &queries,
            bounds: self.bounds,
            k,
        };
        let rows = view.nrows();
        let threads = threads_for(rows.saturating_mul(view.ncols())).max(1);
        let chunk = rows.div_ceil(threads).max(1);
        let parts: Vec<Part> = if threads == 1 {
            vec![pass.run(0, &mut self.nearest, &mut self.reach)]
        } else {
            self.nearest
                .par_chunks_mut(chunk)
                .zip(self.reach.par_chunks_mut(chunk))
                .enumerate()
                .map(|(t, (near, reach))| pass.run(t * chunk, near, reach))
                .collect()
        };
        self.exact_rows += parts.iter().map(|p| p.exact).sum::<u64>();
        // Largest first, lower index among equals, from every part's top rows.
        self.ranked = parts
            .iter()
            .flat_map(|p| p.ranked.iter().copied())
            .collect();
        self.ranked
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.ranked.truncate(MAX_BATCH);
        (0..queries.len())
            .map(|q| {
                if k > 0 {
                    pass.neighbours(q, &parts)
                } else {
                    Vec::new()
                }
            })
            .collect()
    }
}

/// A centre of a sketched pass.
struct Query<'p> {
    centre: usize,
    row: Vec<f32>,
    code: &'p [u8],
    error: f64,
}

/// What one sketched pass reads.
struct Pass<'p> {
    sketch: &'p Sketch,
    view: &'p ArrayView2<'p, f32>,
    eligible: &'p [bool],
    chosen: &'p [bool],
    queries: &'p [Query<'p>],
    bounds: Bounds,
    k: usize,
}

/// What one thread of a pass found in its rows.
struct Part {
    ranked: Vec<(usize, f64)>,
    /// Per query: the `k` smallest sketch distances `I` of the part.
    smallest: Vec<Vec<u32>>,
    /// Per query: rows that may be among its `k` nearest, with their `I`.
    candidates: Vec<Vec<(usize, u32)>>,
    exact: u64,
}

impl Pass<'_> {
    /// The rows starting at `first`, whose `nearest` and `reach` slots are given.
    fn run(&self, first: usize, nearest: &mut [f64], reach: &mut [f64]) -> Part {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.run_avx2(first, nearest, reach) };
        }
        self.run_with(
            first,
            nearest,
            reach,
            |row, g| {
                let mut out = [0u32; 4];
                for (o, q) in out.iter_mut().zip(self.queries.iter().skip(4 * g)) {
                    *o = distance_portable(row, q.code);
                }
                out
            },
            |_| {},
        )
    }

    /// [`Pass::run`] compiled for AVX2, so the byte kernel is inlined into the loop.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_avx2(&self, first: usize, nearest: &mut [f64], reach: &mut [f64]) -> Part {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let wide: Vec<Vec<i16>> = self
            .queries
            .iter()
            .map(|q| q.code.iter().map(|&c| i16::from(c)).collect())
            .collect();
        // Groups of four centres, the last one padded with its last centre.
        let groups: Vec<[&[i16]; 4]> = wide
            .chunks(4)
            .map(|g| {
                let at = |l: usize| g.get(l).or(g.last()).map_or(&[][..], Vec::as_slice);
                [at(0), at(1), at(2), at(3)]
            })
            .collect();
        let codes = self.sketch.rows(first, nearest.len());
        let dim = self.sketch.dim();
        let prefetch = |j: usize| {
            let at = (j + PREFETCH_ROWS) * dim;
            if let Some(ahead) = codes.get(at..at + dim) {
                for line in ahead.chunks(64) {
                    _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>());
                }
            }
        };
        self.run_with(
            first,
            nearest,
            reach,
            |row, g| distance4_avx2(row, groups[g]),
            prefetch,
        )
    }

    #[inline(always)]
    fn run_with(
        &self,
        first: usize,
        nearest: &mut [f64],
        reach: &mut [f64],
        distance4: impl Fn(&[u8], usize) -> [u32; 4],
        prefetch: impl Fn(usize),
    ) -> Part {
        let step = self.sketch.step();
        let inv_step2 = 1.0 / (step * step) * (1.0 + 1e-12);
        let queries = self.queries.len();
        let knn = self.k > 0;
        let mut heaps: Vec<BinaryHeap<u32>> = (0..if knn { queries } else { 0 })
            .map(|_| BinaryHeap::with_capacity(self.k + 1))
            .collect();
        let mut limits = vec![f64::INFINITY; heaps.len()];
        let mut part = Part {
            ranked: Vec::with_capacity(MAX_BATCH + 1),
            smallest: Vec::new(),
            candidates: vec![Vec::new(); heaps.len()],
            exact: 0,
        };
        let count = nearest.len();
        let dim = self.sketch.dim().max(1);
        let codes = self.sketch.rows(first, count).chunks_exact(dim);
        let eligible = self.eligible.get(first..first + count).unwrap_or(&[]);
        let chosen = self.chosen.get(first..first + count).unwrap_or(&[]);
        let rows = nearest
            .iter_mut()
            .zip(reach.iter_mut())
            .zip(codes)
            .zip(eligible.iter().zip(chosen));
        for (j, (((near, reach), code), (&ok, &taken))) in rows.enumerate() {
            prefetch(j);
            if !ok {
                continue;
            }
            let i = first + j;
            for (g, group) in self.queries.chunks(4).enumerate() {
                let ints = distance4(code, g);
                for (l, (query, &int)) in group.iter().zip(&ints).enumerate() {
                    let q = 4 * g + l;
                    let fi = f64::from(int);
                    // Skip when s·√I − e_i − e_c ≥ √((nearest + a)/(1 − γ)): then the
                    // exact distance is at least the current nearest one.
                    let r = *reach + query.error;
                    if fi < r * r * inv_step2 {
                        part.exact += 1;
                        let d = f64::from(row_distance(self.view, i, &query.row));
                        if d < *near {
                            *near = d;
                            *reach = self.bounds.reach(d, self.sketch.error(i));
                        }
                    }
                    if knn {
                        let heap = &mut heaps[q];
                        if heap.len() < self.k {
                            heap.push(int);
                            if heap.len() == self.k {
                                limits[q] = self.limit(q, heap.peek().copied());
                            }
                        } else if heap.peek().is_some_and(|&top| int < top) {
                            heap.pop();
                            heap.push(int);
                            limits[q] = self.limit(q, heap.peek().copied());
                        }
                        if fi <= limits[q] {
                            part.candidates[q].push((i, int));
                        }
                    }
                }
            }
            if !taken {
                offer(&mut part.ranked, i, *near);
            }
        }
        part.smallest = heaps.into_iter().map(BinaryHeap::into_vec).collect();
        part
    }

    /// The largest `I` a row can have and still be among query `q`'s `k` nearest, given
    /// `k` rows with `I` at most `kth`: their exact distances are at most
    /// `τ = (1 + γ)(s√kth + e_max + e_c)² + a`, and a row whose lower bound
    /// `(1 − γ)(s√I − e_max − e_c)² − a` exceeds `τ` cannot beat them.
    fn limit(&self, q: usize, kth: Option<u32>) -> f64 {
        let Some(kth) = kth else {
            return f64::INFINITY;
        };
        let s = self.sketch.step();
        let spread = self.sketch.max_error() + self.queries[q].error;
        let b = self.bounds;
        let tau = (1.0 + b.gamma) * (s * f64::from(kth).sqrt() + spread).powi(2) + b.absolute;
        let root = ((tau + b.absolute) / (1.0 - b.gamma)).sqrt() + spread;
        (root / s).powi(2) * (1.0 + 1e-9)
    }

    /// The exact `k` nearest eligible rows of query `q` from the candidates of all parts.
    fn neighbours(&self, q: usize, parts: &[Part]) -> Vec<usize> {
        let mut smallest: Vec<u32> = parts
            .iter()
            .flat_map(|p| p.smallest[q].iter().copied())
            .collect();
        smallest.sort_unstable();
        let limit = self.limit(q, smallest.get(self.k - 1).copied());
        let query = &self.queries[q];
        let mut measured: Vec<(f64, bool, usize)> = parts
            .iter()
            .flat_map(|p| p.candidates[q].iter())
            .filter(|(_, int)| f64::from(*int) <= limit)
            .map(|&(i, _)| {
                let d = f64::from(row_distance(self.view, i, &query.row));
                (d, i != query.centre, i)
            })
            .collect();
        measured
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        measured
            .into_iter()
            .take(self.k)
            .map(|(_, _, i)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The textbook traversal from `first`, written out: one exact pass per centre, then
    /// the largest nearest distance (lower index among equals). Returns every centre with
    /// its squared distance bits and neighbourhood.
    fn textbook(
        view: &ArrayView2<'_, f32>,
        eligible: &[bool],
        first: usize,
        count: usize,
        k: usize,
    ) -> Vec<(usize, u64, Vec<usize>)> {
        let n = view.nrows();
        let mut nearest = vec![f64::INFINITY; n];
        let mut chosen = vec![false; n];
        let mut distances = vec![0.0; n];
        let mut out = Vec::new();
        let mut current = (first, f64::INFINITY);
        loop {
            chosen[current.0] = true;
            squared_distances_into(view, current.0, eligible, &mut distances);
            let hood = if k > 0 {
                knn_from_distances(&distances, current.0, k, eligible)
            } else {
                Vec::new()
            };
            out.push((current.0, current.1.to_bits(), hood));
            if out.len() >= count {
                return out;
            }
            let mut best: Option<(usize, f64)> = None;
            for i in 0..n {
                if eligible[i] {
                    nearest[i] = nearest[i].min(distances[i]);
                    if !chosen[i] && best.is_none_or(|(_, b)| nearest[i] > b) {
                        best = Some((i, nearest[i]));
                    }
                }
            }
            match best {
                Some(b) => current = b,
                None => return out,
            }
        }
    }

    /// The same through a [`Traversal`].
    fn traced(
        t: &mut Traversal<'_, '_>,
        first: usize,
        count: usize,
        k: usize,
    ) -> Vec<(usize, u64, Vec<usize>)> {
        let hood = t.add_centres(&[first], k).pop().unwrap_or_default();
        let mut out = vec![(first, f64::INFINITY.to_bits(), hood)];
        while out.len() < count {
            let batch = t.advance(count - out.len(), k);
            if batch.is_empty() {
                break;
            }
            out.extend(
                batch
                    .into_iter()
                    .map(|c| (c.index, c.squared.to_bits(), c.neighbours)),
            );
        }
        out
    }

    #[test]
    fn shortcuts_give_the_textbook_traversal() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Clusters with duplicates and one wide row: 2,000 × 53 (a 32-byte chunk, a
        // 16-byte one and a tail in the byte kernel); then uniform data, where many
        // centres are certified per pass.
        let (n, d) = (2000, 53);
        let centres = Array2::from_shape_fn((12, d), |_| rng.random::<f32>() * 10.0);
        let mut clustered = Array2::from_shape_fn((n, d), |(i, j)| {
            centres[[i % 12, j]] + rng.random::<f32>() * 0.3
        });
        for j in 0..d {
            clustered[[7, j]] *= 40.0;
        }
        for i in (100..n).step_by(97) {
            let row = clustered.row(i - 1).to_owned();
            clustered.row_mut(i).assign(&row);
        }
        let uniform = Array2::from_shape_fn((n, d), |_| rng.random::<f32>());
        let mut eligible = vec![true; n];
        for i in (0..n).step_by(13) {
            eligible[i] = i == 0;
        }
        for (name, emb) in [("clustered", &clustered), ("uniform", &uniform)] {
            let view = emb.view();
            for k in [0, 1, 16] {
                let expected = textbook(&view, &eligible, 0, 400, k);
                assert_eq!(expected.len(), 400);
                let mut fast = Traversal::new(&view, &eligible, &[]);
                assert!(fast.sketch.is_some());
                assert_eq!(traced(&mut fast, 0, 400, k), expected, "{name}, k = {k}");
                let mut plain = Traversal::plain(&view, &eligible);
                assert_eq!(traced(&mut plain, 0, 400, k), expected, "{name}, k = {k}");
                let (exact, passes) = fast.counts();
                let rows = eligible.iter().filter(|e| **e).count() as u64;
                // The sketch decided for most rows ...
                assert!(exact < 400 * rows / 4, "{name}: {exact} exact rows");
                // ... and on uniform data most passes added several centres.
                if name == "uniform" {
                    assert!(passes < 200, "{name}: {passes} passes for 400 centres");
                }
                assert_eq!(plain.counts().1, 400);
            }
        }
    }

    #[test]
    fn given_centres_and_non_standard_layout() {
        let emb = Array2::from_shape_fn((40, 6), |(i, j)| ((i * 7 + j * 3) % 11) as f32);
        let transposed = emb.t().as_standard_layout().into_owned();
        let columns = transposed.t();
        assert!(!columns.is_standard_layout());
        let rows = emb.view();
        let mut eligible = vec![true; 40];
        eligible[3] = false;
        eligible[30] = false;
        let mut direct = Traversal::new(&columns, &eligible, &[3, 30]);
        assert!(direct.sketch.is_none());
        let mut sketched = Traversal::new(&rows, &eligible, &[3, 30]);
        assert!(sketched.sketch.is_some());
        direct.add_centres(&[3, 30], 0);
        sketched.add_centres(&[3, 30], 0);
        assert_eq!(direct.ranked, sketched.ranked);
        let a: Vec<_> = (0..5)
            .flat_map(|_| direct.advance(4, 3))
            .map(|c| (c.index, c.neighbours))
            .collect();
        let b: Vec<_> = (0..5)
            .flat_map(|_| sketched.advance(4, 3))
            .map(|c| (c.index, c.neighbours))
            .collect();
        assert_eq!(a, b);
        assert!(a.len() >= 5);
        // Centres the sketch was not told about are measured exactly, with the same result.
        let mut untold = Traversal::new(&rows, &eligible, &[]);
        untold.add_centres(&[3, 30], 0);
        let mut told = Traversal::new(&rows, &eligible, &[3, 30]);
        told.add_centres(&[3, 30], 0);
        assert_eq!(untold.ranked, told.ranked);
        assert_eq!(untold.nearest, told.nearest);
    }
}
