//! Margin sampling: the gap between the two most probable classes.

use ndarray::{Array1, Array2, ArrayView3};

use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::mean::mean_probs_f64;
use crate::uncertainty::validate::validate_probs;

/// Margin uncertainty `1 − (p(1) − p(2))` of every tile, where `p(1) ≥ p(2)` are the two
/// largest entries of the mean probability vector over the `T` MC-dropout passes.
///
/// Margin sampling is due to Scheffer, Decomain & Wrobel 2001 (*Active Hidden Markov Models
/// for Information Extraction*); see also Settles 2009 (*Active Learning Literature
/// Survey*). The margin is flipped so that higher means more uncertain: `0` when the mean is
/// one-hot, `1` when the top two classes tie.
///
/// A single class has no margin, so `C < 2` is rejected by the input validation
/// ([`UncertaintyError::TooFewClasses`]) rather than given an arbitrary value.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::margin;
///
/// // Mean [0.6, 0.3, 0.1]: margin 0.6 − 0.3 = 0.3, uncertainty 1 − 0.3 = 0.7.
/// let probs = array![[[0.6_f32, 0.3, 0.1]]];
/// assert!((margin(probs.view())?[0] - 0.7).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn margin(probs: ArrayView3<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
    validate_probs(&probs)?;
    let mean = mean_probs_f64(&probs);
    Ok(margin_f64(&mean).mapv(|m| m as f32))
}

/// Margin uncertainty of every row of an `[N, C]` mean-probability matrix (`C >= 2`).
pub(crate) fn margin_f64(mean: &Array2<f64>) -> Array1<f64> {
    mean.outer_iter()
        .map(|row| {
            let mut first = f64::NEG_INFINITY;
            let mut second = f64::NEG_INFINITY;
            for &p in row.iter() {
                if p > first {
                    second = first;
                    first = p;
                } else if p > second {
                    second = p;
                }
            }
            (1.0 - (first - second)).clamp(0.0, 1.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    use super::*;

    #[test]
    fn hand_computed() {
        // Tile 0: passes [0.9, 0.1], [0.1, 0.9] -> mean [0.5, 0.5] -> 1 − (0.5 − 0.5) = 1.
        // Tile 1: passes [0.7, 0.2, 0.1], [0.5, 0.2, 0.3] -> mean [0.6, 0.2, 0.2]
        //         -> 1 − (0.6 − 0.2) = 0.6.
        // Tile 2: passes [0.2, 0.3, 0.5], [0.2, 0.5, 0.3] -> mean [0.2, 0.4, 0.4]
        //         -> the top two tie at 0.4 -> 1 − 0 = 1.
        let probs = array![
            [[0.9_f32, 0.1, 0.0], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]],
            [[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.5, 0.3]]
        ];
        let m = margin(probs.view()).unwrap();
        assert_abs_diff_eq!(m[0], 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(m[1], 0.6, epsilon = 1e-6);
        assert_abs_diff_eq!(m[2], 1.0, epsilon = 1e-6);
    }

    #[test]
    fn one_hot_is_zero() {
        let probs = array![[[0.0_f32, 1.0, 0.0]], [[0.0, 1.0, 0.0]]];
        assert_eq!(margin(probs.view()).unwrap()[0], 0.0);
    }

    #[test]
    fn single_class_is_an_error() {
        let probs = array![[[1.0_f32]]];
        assert_eq!(
            margin(probs.view()),
            Err(UncertaintyError::TooFewClasses {
                classes: 1,
                needed: 2
            })
        );
    }
}
