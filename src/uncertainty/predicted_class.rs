//! Predicted class: the arg-max of the mean probabilities.

use ndarray::{Array1, ArrayView2};

/// Predicted class of every tile: the arg-max of its row of the `[N, C]` mean-probability
/// matrix (as returned by [`mean_probs`](crate::uncertainty::mean_probs) or held in
/// [`Uncertainties::mean`](crate::uncertainty::Uncertainties::mean)). Equal probabilities
/// go to the lower class index.
///
/// Infallible by design: it is meant for means that were already validated (finite,
/// `C >= 2`). On unvalidated input it still never panics: NaN entries never win, and a
/// row without any comparable entry (`C == 0`, or all NaN) gets class `0`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::predicted_class;
///
/// let mean = array![[0.2_f32, 0.5, 0.3], [0.6, 0.2, 0.2]];
/// assert_eq!(predicted_class(mean.view()).to_vec(), vec![1, 0]);
/// ```
pub fn predicted_class(mean: ArrayView2<'_, f32>) -> Array1<usize> {
    mean.outer_iter()
        .map(|row| {
            let mut best: Option<(usize, f32)> = None;
            for (class, &p) in row.iter().enumerate() {
                if p.is_nan() {
                    continue;
                }
                // Strictly greater: among equal probabilities the lower class stays.
                if best.is_none_or(|(_, b)| p > b) {
                    best = Some((class, p));
                }
            }
            best.map_or(0, |(class, _)| class)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::*;

    #[test]
    fn argmax_with_ties_to_lower_index() {
        // Row 2 ties between classes 0 and 2 at 0.4 -> class 0.
        let mean = array![[0.1_f32, 0.9, 0.0], [0.2, 0.3, 0.5], [0.4, 0.2, 0.4]];
        assert_eq!(predicted_class(mean.view()).to_vec(), vec![1, 2, 0]);
    }

    #[test]
    fn degenerate_input_does_not_panic() {
        let no_tiles = Array2::<f32>::zeros((0, 3));
        assert_eq!(predicted_class(no_tiles.view()).len(), 0);
        // No classes: class 0 by convention.
        let no_classes = Array2::<f32>::zeros((2, 0));
        assert_eq!(predicted_class(no_classes.view()).to_vec(), vec![0, 0]);
        // NaN never wins; an all-NaN row falls back to class 0.
        let nan = array![[f32::NAN, 0.2, 0.8], [f32::NAN, f32::NAN, f32::NAN]];
        assert_eq!(predicted_class(nan.view()).to_vec(), vec![2, 0]);
    }
}
