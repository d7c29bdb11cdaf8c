//! Least confidence: one minus the largest mean class probability (the MCFPS criterion).

use ndarray::{Array1, Array2, ArrayView3};

use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::mean::mean_probs_f64;
use crate::uncertainty::validate::validate_probs;

/// Least-confidence uncertainty `1 − max_c mean_t p_t[c]` of every tile.
///
/// This is the uncertainty used by MCFPS (Pogorzelski & Arlinghaus, *Enhancing Active
/// Learning for Sentinel 2 Imagery through Contrastive Learning and Uncertainty
/// Estimation*, Sec. III-B step 5 and Algorithm 1, lines 14–21): the `t` MC-dropout
/// outcomes `Ŷ ∈ R^{t×C}` of a tile are averaged to `Ŷ_Mean ∈ R^C` and the maximum of
/// `Ŷ_Mean` is taken; the tile whose maximum is lowest is the most uncertain. Flipping it
/// to `1 − max` makes higher mean more uncertain, like every other metric here. The
/// criterion itself is classic least-confidence sampling (Settles 2009, *Active Learning
/// Literature Survey*, cited as \[1\] by the paper).
///
/// The range is `[0, 1 − 1/C]`: `0` for a one-hot mean, `1 − 1/C` for a uniform one.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::least_confidence;
///
/// // Mean of [0.9, 0.1] and [0.1, 0.9] is [0.5, 0.5]: 1 − 0.5 = 0.5.
/// let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
/// assert!((least_confidence(probs.view())?[0] - 0.5).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn least_confidence(probs: ArrayView3<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
    validate_probs(&probs)?;
    let mean = mean_probs_f64(&probs);
    Ok(least_confidence_f64(&mean).mapv(|u| u as f32))
}

/// Least-confidence uncertainty of every row of an `[N, C]` mean-probability matrix.
pub(crate) fn least_confidence_f64(mean: &Array2<f64>) -> Array1<f64> {
    mean.outer_iter()
        .map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (1.0 - max).clamp(0.0, 1.0)
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
        // Tile 0: mean of [0.9, 0.1] and [0.1, 0.9] is [0.5, 0.5]       -> 1 − 0.5 = 0.5.
        // Tile 1: mean of [0.7, 0.2, 0.1] and [0.5, 0.2, 0.3] is [0.6, 0.2, 0.2]
        //                                                              -> 1 − 0.6 = 0.4.
        // Tile 2: the max of the MEAN, not the mean of the per-pass max:
        //         passes [0.8, 0.2, 0] and [0, 0.2, 0.8] -> mean [0.4, 0.2, 0.4]
        //         -> 1 − 0.4 = 0.6 (the mean of the per-pass max would give 1 − 0.8 = 0.2).
        let probs = array![
            [[0.9_f32, 0.1, 0.0], [0.7, 0.2, 0.1], [0.8, 0.2, 0.0]],
            [[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.0, 0.2, 0.8]]
        ];
        let lc = least_confidence(probs.view()).unwrap();
        assert_abs_diff_eq!(lc[0], 0.5, epsilon = 1e-6);
        assert_abs_diff_eq!(lc[1], 0.4, epsilon = 1e-6);
        assert_abs_diff_eq!(lc[2], 0.6, epsilon = 1e-6);
    }

    #[test]
    fn one_hot_is_zero_uniform_is_maximal() {
        // Uniform over C = 4: 1 − 1/4 = 0.75.
        let probs = array![[[0.0_f32, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]]];
        let lc = least_confidence(probs.view()).unwrap();
        assert_eq!(lc[0], 0.0);
        assert_abs_diff_eq!(lc[1], 0.75, epsilon = 1e-6);
    }

    #[test]
    fn rejects_nan() {
        let probs = array![[[0.5_f32, 0.5], [f32::NAN, 0.5], [0.5, 0.5]]];
        let err = least_confidence(probs.view()).unwrap_err();
        assert!(matches!(err, UncertaintyError::NonFinite { tile: 1, .. }));
    }
}
