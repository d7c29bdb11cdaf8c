//! Shannon entropy of the MC-dropout predictions: predictive entropy and expected entropy.
//!
//! Entropy (Shannon 1948, *A Mathematical Theory of Communication*) is measured in nats
//! (natural logarithm) with the convention `0 · ln 0 = 0`.

use ndarray::{Array1, Array2, ArrayView3, Axis};

use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::mean::mean_probs_f64;
use crate::uncertainty::validate::validate_probs;

/// Predictive entropy `H[mean_t p_t]` of every tile, in nats: the entropy of the mean
/// probability vector over the `T` MC-dropout passes (Gal, Islam & Ghahramani 2017,
/// *Deep Bayesian Active Learning with Image Data*). It captures total uncertainty
/// (model + data); higher means more uncertain, `0` for a one-hot mean, `ln C` for a
/// uniform one.
///
/// `probs` has shape `[T, N, C]`; the result has length `N`.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation (`T == 0`, `C < 2`, non-finite,
/// out-of-range or unnormalised probabilities).
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::predictive_entropy;
///
/// // Mean of [0.9, 0.1] and [0.1, 0.9] is [0.5, 0.5], whose entropy is ln 2.
/// let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
/// let h = predictive_entropy(probs.view())?;
/// assert!((h[0] - std::f32::consts::LN_2).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn predictive_entropy(probs: ArrayView3<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
    validate_probs(&probs)?;
    let mean = mean_probs_f64(&probs);
    Ok(predictive_entropy_f64(&mean).mapv(|h| h as f32))
}

/// Expected entropy `mean_t H[p_t]` of every tile, in nats: the average entropy of the
/// individual MC-dropout passes. It estimates the aleatoric (data) part of the predictive
/// entropy; the difference between the two is [`bald`](crate::uncertainty::bald) (Houlsby
/// et al. 2011).
///
/// `probs` has shape `[T, N, C]`; the result has length `N`.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::expected_entropy;
///
/// // Both passes have entropy H(0.9, 0.1) = -0.9 ln 0.9 - 0.1 ln 0.1 = 0.3251 nats.
/// let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
/// let h = expected_entropy(probs.view())?;
/// assert!((h[0] - 0.325_083).abs() < 1e-5);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn expected_entropy(probs: ArrayView3<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
    validate_probs(&probs)?;
    Ok(expected_entropy_f64(&probs).mapv(|h| h as f32))
}

/// Shannon entropy in nats of one probability vector, skipping zero (and tiny negative)
/// entries so that `0 · ln 0 = 0`; clamped at `0` against rounding.
pub(crate) fn entropy_nats(p: impl IntoIterator<Item = f64>) -> f64 {
    let h: f64 = p
        .into_iter()
        .filter(|&x| x > 0.0)
        .map(|x| -x * x.ln())
        .sum();
    h.max(0.0)
}

/// Predictive entropy of every row of an `[N, C]` mean-probability matrix.
pub(crate) fn predictive_entropy_f64(mean: &Array2<f64>) -> Array1<f64> {
    mean.outer_iter()
        .map(|row| entropy_nats(row.iter().copied()))
        .collect()
}

/// Expected entropy of every tile of a validated `[T, N, C]` array.
pub(crate) fn expected_entropy_f64(probs: &ArrayView3<'_, f32>) -> Array1<f64> {
    let passes = probs.len_of(Axis(0));
    let mut acc = Array1::<f64>::zeros(probs.len_of(Axis(1)));
    for pass in probs.axis_iter(Axis(0)) {
        for (a, row) in acc.iter_mut().zip(pass.outer_iter()) {
            *a += entropy_nats(row.iter().map(|&p| f64::from(p)));
        }
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
    fn disagreeing_passes() {
        // Passes [0.9, 0.1] and [0.1, 0.9]:
        //   mean = [0.5, 0.5]                  -> predictive entropy = ln 2 = 0.693147
        //   H(0.9, 0.1) = 0.9·0.105361 + 0.1·2.302585 = 0.094825 + 0.230259 = 0.325083
        //   both passes have that entropy      -> expected entropy = 0.325083
        let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
        let pe = predictive_entropy(probs.view()).unwrap();
        let ee = expected_entropy(probs.view()).unwrap();
        assert_abs_diff_eq!(pe[0], std::f32::consts::LN_2, epsilon = 1e-5);
        assert_abs_diff_eq!(ee[0], 0.325_083, epsilon = 1e-5);
    }

    #[test]
    fn three_classes_hand_computed() {
        // One pass [0.5, 0.25, 0.25]:
        //   H = -0.5 ln 0.5 - 2 · 0.25 ln 0.25 = 0.5·0.693147 + 0.5·1.386294 = 1.039721
        // Uniform over 3 classes: H = ln 3 = 1.098612 (the maximum for C = 3).
        let probs = array![[[0.5_f32, 0.25, 0.25], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]]];
        let pe = predictive_entropy(probs.view()).unwrap();
        assert_abs_diff_eq!(pe[0], 1.039_721, epsilon = 1e-5);
        assert_abs_diff_eq!(pe[1], 1.098_612, epsilon = 1e-5);
        // With T = 1 the predictive and expected entropy coincide.
        let ee = expected_entropy(probs.view()).unwrap();
        assert_abs_diff_eq!(ee[0], pe[0], epsilon = 1e-6);
        assert_abs_diff_eq!(ee[1], pe[1], epsilon = 1e-6);
    }

    #[test]
    fn one_hot_is_zero_and_zero_log_zero_is_zero() {
        let probs = array![[[1.0_f32, 0.0, 0.0]], [[1.0, 0.0, 0.0]]];
        assert_eq!(predictive_entropy(probs.view()).unwrap()[0], 0.0);
        assert_eq!(expected_entropy(probs.view()).unwrap()[0], 0.0);
    }

    #[test]
    fn empty_tiles_and_errors() {
        let empty = Array3::<f32>::zeros((4, 0, 2));
        assert_eq!(predictive_entropy(empty.view()).unwrap().len(), 0);
        assert_eq!(expected_entropy(empty.view()).unwrap().len(), 0);
        let nan = array![[[0.5_f32, 0.5]], [[f32::NAN, 0.5]]];
        assert!(matches!(
            predictive_entropy(nan.view()),
            Err(UncertaintyError::NonFinite {
                tile: 0,
                pass: 1,
                ..
            })
        ));
        assert!(expected_entropy(nan.view()).is_err());
    }
}
