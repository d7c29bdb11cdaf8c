//! Mean of the MC-dropout probabilities over the passes.

use ndarray::{Array2, ArrayView3, Axis};

use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::validate::validate_probs;

/// Mean probability vector of every tile over the `T` MC-dropout passes
/// (the predictive distribution of MC dropout, Gal & Ghahramani 2016).
///
/// `probs` has shape `[T, N, C]`; the result has shape `[N, C]`. The sum is taken in `f64`.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation: `T == 0`, `C < 2`, a non-finite value,
/// a value outside `[0, 1]` or a vector that does not sum to 1.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::mean_probs;
///
/// // Two passes over one tile with two classes.
/// let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
/// let mean = mean_probs(probs.view())?;
/// assert!((mean[[0, 0]] - 0.5).abs() < 1e-6);
/// assert!((mean[[0, 1]] - 0.5).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn mean_probs(probs: ArrayView3<'_, f32>) -> Result<Array2<f32>, UncertaintyError> {
    validate_probs(&probs)?;
    Ok(mean_probs_f64(&probs).mapv(|p| p as f32))
}

/// `[N, C]` mean over the pass axis in `f64`, without validation (`T >= 1` assumed).
pub(crate) fn mean_probs_f64(probs: &ArrayView3<'_, f32>) -> Array2<f64> {
    let (passes, tiles, classes) = probs.dim();
    let mut acc = Array2::<f64>::zeros((tiles, classes));
    for pass in probs.axis_iter(Axis(0)) {
        acc.zip_mut_with(&pass, |a, &p| *a += f64::from(p));
    }
    if passes > 0 {
        acc /= passes as f64;
    }
    acc
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn averages_over_passes() {
        // Tile 0: (0.2 + 0.4 + 0.6) / 3 = 0.4 and (0.8 + 0.6 + 0.4) / 3 = 0.6.
        // Tile 1: the same vector three times, so the mean is that vector.
        let probs = array![
            [[0.2_f32, 0.8], [0.7, 0.3]],
            [[0.4, 0.6], [0.7, 0.3]],
            [[0.6, 0.4], [0.7, 0.3]]
        ];
        let mean = mean_probs(probs.view()).unwrap();
        assert_eq!(mean.dim(), (2, 2));
        assert_abs_diff_eq!(mean[[0, 0]], 0.4, epsilon = 1e-6);
        assert_abs_diff_eq!(mean[[0, 1]], 0.6, epsilon = 1e-6);
        assert_abs_diff_eq!(mean[[1, 0]], 0.7, epsilon = 1e-6);
        assert_abs_diff_eq!(mean[[1, 1]], 0.3, epsilon = 1e-6);
    }

    #[test]
    fn empty_tile_axis_gives_empty_mean() {
        let probs = Array3::<f32>::zeros((2, 0, 3));
        assert_eq!(mean_probs(probs.view()).unwrap().dim(), (0, 3));
    }

    #[test]
    fn rejects_no_passes() {
        let probs = Array3::<f32>::zeros((0, 1, 3));
        assert!(matches!(
            mean_probs(probs.view()),
            Err(UncertaintyError::NoPasses { .. })
        ));
    }
}
