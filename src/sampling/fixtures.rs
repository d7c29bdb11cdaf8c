//! Test fixtures shared by the strategy tests.

use ndarray::{Array2, array};

use crate::sampling::Pick;

/// Three well separated clusters of three points each in 2-D:
/// A = rows 0–2 near (0, 0), B = rows 3–5 near (10, 0), C = rows 6–8 near (0, 10).
pub(crate) fn clusters() -> Array2<f32> {
    array![
        [0.0, 0.0],  // 0  cluster A
        [1.0, 0.0],  // 1  cluster A
        [0.0, 1.0],  // 2  cluster A
        [10.0, 0.0], // 3  cluster B
        [11.0, 0.0], // 4  cluster B
        [10.0, 1.0], // 5  cluster B
        [0.0, 10.0], // 6  cluster C
        [1.0, 10.0], // 7  cluster C
        [0.0, 11.0], // 8  cluster C
    ]
}

/// The tile indices of picks, in rank order.
pub(crate) fn indices(picks: &[Pick]) -> Vec<usize> {
    picks.iter().map(|p| p.index).collect()
}
