//! A multi-label benchmark derived from a single-label image folder: 2 × 2 mosaics of
//! four images whose label set is the classes present.
//!
//! No multi-label remote-sensing archive is at hand offline (seed 004 uses UCMerced's
//! and TreeSatAI's multi-labels), so NextTile derives one from EuroSAT-RGB. Each mosaic
//! draws `k` distinct classes uniformly from `1..=max_classes`, fills the four cells so
//! that each of the `k` classes appears at least once (remaining cells: a uniform choice
//! among the `k`), shuffles the cells, and draws a different image for every cell from
//! the class's images **of one split** — pool mosaics use only train images and test
//! mosaics only test images, so no image is shared between the two. The label vector is
//! 1 for the `k` classes. The recipe is fully determined by the seed.

use std::collections::BTreeSet;

use ndarray::{Array2, Array3, s};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::EvalError;
use super::dataset::{ImageFolder, Split};

/// Mosaic cells per side.
pub const CELLS: usize = 2;

/// One derived multi-label sample: four image indices (row-major cells) and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mosaic {
    /// Indices into [`ImageFolder::items`], cells in row-major order.
    pub cells: [usize; CELLS * CELLS],
    /// Class indices present, ascending.
    pub classes: Vec<usize>,
}

/// Draws `count` mosaics from the images of `split`.
///
/// # Errors
///
/// [`EvalError::Config`] when `max_classes` is 0 or exceeds the number of classes, or a
/// class has no image in the split.
pub fn make_mosaics(
    folder: &ImageFolder,
    split: Split,
    count: usize,
    max_classes: usize,
    seed: u64,
) -> Result<Vec<Mosaic>, EvalError> {
    make_mosaics_from(
        folder,
        &folder.indices(split),
        &format!("{split:?}"),
        count,
        max_classes,
        seed,
    )
}

/// Draws `count` mosaics from the images `members` (indices into
/// [`ImageFolder::items`], e.g. the pool or the validation fold of `train`); `name` names
/// the set in errors.
///
/// # Errors
///
/// As [`make_mosaics`].
pub fn make_mosaics_from(
    folder: &ImageFolder,
    members: &[usize],
    name: &str,
    count: usize,
    max_classes: usize,
    seed: u64,
) -> Result<Vec<Mosaic>, EvalError> {
    let n_classes = folder.classes.len();
    if max_classes == 0 || max_classes > n_classes.min(CELLS * CELLS) {
        return Err(EvalError::Config(format!(
            "mosaic max classes {max_classes} must be between 1 and {}",
            n_classes.min(CELLS * CELLS)
        )));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for &i in members {
        if let Some(item) = folder.items.get(i) {
            by_class[item.class].push(i);
        }
    }
    if let Some(c) = by_class.iter().position(Vec::is_empty) {
        return Err(EvalError::Config(format!(
            "class {} has no image in the {name} set; mosaics need every class",
            folder.classes[c]
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all: Vec<usize> = (0..n_classes).collect();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let k = rng.random_range(1..=max_classes);
        let chosen: Vec<usize> = all.choose_multiple(&mut rng, k).copied().collect();
        let mut cell_classes: Vec<usize> = chosen.clone();
        while cell_classes.len() < CELLS * CELLS {
            let c = *chosen.choose(&mut rng).unwrap_or(&chosen[0]);
            cell_classes.push(c);
        }
        cell_classes.shuffle(&mut rng);
        let mut cells = [0usize; CELLS * CELLS];
        let mut used = BTreeSet::new();
        for (cell, &c) in cells.iter_mut().zip(&cell_classes) {
            let pool = &by_class[c];
            let mut pick = pool[rng.random_range(0..pool.len())];
            // A different image in every cell when the class has enough of them.
            for _ in 0..8 {
                if used.insert(pick) {
                    break;
                }
                pick = pool[rng.random_range(0..pool.len())];
            }
            *cell = pick;
        }
        let classes: BTreeSet<usize> = chosen.into_iter().collect();
        out.push(Mosaic {
            cells,
            classes: classes.into_iter().collect(),
        });
    }
    Ok(out)
}

/// The `[N, C]` 0/1 label matrix of `mosaics`.
pub fn mosaic_targets(mosaics: &[Mosaic], classes: usize) -> Array2<f32> {
    let mut y = Array2::zeros((mosaics.len(), classes));
    for (i, m) in mosaics.iter().enumerate() {
        for &c in &m.classes {
            y[[i, c]] = 1.0;
        }
    }
    y
}

/// Assembles a mosaic's pixels from its four `[bands, H, W]` cell images.
///
/// # Errors
///
/// [`EvalError::Image`] when the cells differ in size.
pub fn assemble(cells: &[Array3<f32>]) -> Result<Array3<f32>, EvalError> {
    let (b, h, w) = cells.first().map(|c| c.dim()).unwrap_or((0, 0, 0));
    let mut out = Array3::zeros((b, h * CELLS, w * CELLS));
    for (i, cell) in cells.iter().enumerate() {
        if cell.dim() != (b, h, w) {
            return Err(EvalError::Image {
                path: format!("mosaic cell {i}").into(),
                message: format!(
                    "is {:?} but the first cell is {:?}; mosaic images must share one size",
                    cell.shape(),
                    [b, h, w]
                ),
            });
        }
        let (r, c) = (i / CELLS, i % CELLS);
        out.slice_mut(s![.., r * h..(r + 1) * h, c * w..(c + 1) * w])
            .assign(cell);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ndarray::Array3;

    use super::*;
    use crate::eval::dataset::ImageItem;

    fn folder() -> ImageFolder {
        let mut items = Vec::new();
        for class in 0..5 {
            for n in 0..10 {
                items.push(ImageItem {
                    path: PathBuf::from(format!("c{class}/{n}.jpg")),
                    class,
                    split: if n < 7 { Split::Train } else { Split::Test },
                });
            }
        }
        ImageFolder {
            root: PathBuf::from("/nonexistent"),
            classes: (0..5).map(|c| format!("c{c}")).collect(),
            items,
            split_source: "test".into(),
        }
    }

    #[test]
    fn labels_are_the_classes_present_and_cells_stay_in_their_split() {
        let f = folder();
        for split in [Split::Train, Split::Test] {
            let ms = make_mosaics(&f, split, 200, 3, 4).unwrap();
            assert_eq!(ms.len(), 200);
            let mut sizes = std::collections::BTreeSet::new();
            for m in &ms {
                let mut present: Vec<usize> = m.cells.iter().map(|&i| f.items[i].class).collect();
                present.sort_unstable();
                present.dedup();
                assert_eq!(present, m.classes);
                assert!(m.cells.iter().all(|&i| f.items[i].split == split));
                sizes.insert(m.classes.len());
            }
            assert_eq!(sizes, [1, 2, 3].into_iter().collect());
            let y = mosaic_targets(&ms, 5);
            for (row, m) in y.outer_iter().zip(&ms) {
                assert_eq!(row.sum() as usize, m.classes.len());
            }
        }
        // Deterministic.
        assert_eq!(
            make_mosaics(&f, Split::Train, 20, 3, 9).unwrap(),
            make_mosaics(&f, Split::Train, 20, 3, 9).unwrap()
        );
        assert!(make_mosaics(&f, Split::Train, 1, 0, 0).is_err());
        assert!(make_mosaics(&f, Split::Train, 1, 6, 0).is_err());
    }

    #[test]
    fn assemble_places_cells_row_major() {
        let cells: Vec<Array3<f32>> = (0..4)
            .map(|k| Array3::from_elem((1, 2, 2), k as f32))
            .collect();
        let m = assemble(&cells).unwrap();
        assert_eq!(m.dim(), (1, 4, 4));
        assert_eq!(m[[0, 0, 0]], 0.0);
        assert_eq!(m[[0, 0, 3]], 1.0);
        assert_eq!(m[[0, 3, 0]], 2.0);
        assert_eq!(m[[0, 3, 3]], 3.0);
        let odd = vec![Array3::zeros((1, 2, 2)), Array3::zeros((1, 3, 2))];
        assert!(assemble(&odd).is_err());
    }
}
