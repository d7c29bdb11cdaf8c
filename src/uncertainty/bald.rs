//! BALD: mutual information between the prediction and the model parameters.

use ndarray::{Array1, ArrayView3, Axis};

use crate::uncertainty::entropy::{expected_entropy_f64, predictive_entropy_f64};
use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::mean::mean_probs_f64;
use crate::uncertainty::validate::validate_probs;

/// BALD score (Bayesian Active Learning by Disagreement) of every tile, in nats: the mutual
/// information `I[y; θ] = H[mean_t p_t] − mean_t H[p_t]` between the predicted class and
/// the model parameters, estimated from `T` MC-dropout passes.
///
/// Introduced by Houlsby, Huszár, Ghahramani & Lengyel 2011 (*Bayesian Active Learning for
/// Classification and Preference Learning*); estimated with MC dropout (Gal & Ghahramani
/// 2016, *Dropout as a Bayesian Approximation*) as in Gal, Islam & Ghahramani 2017 (*Deep
/// Bayesian Active Learning with Image Data*). It is high where the passes disagree
/// (epistemic uncertainty) and low where they agree, even if they agree on a flat
/// distribution.
///
/// The difference is clamped at `0` (it can only be negative through rounding), and it is
/// exactly `0` when `T == 1` or when all passes of a tile are identical.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::bald;
///
/// // ln 2 − H(0.9, 0.1) = 0.693147 − 0.325083 = 0.368064 nats.
/// let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
/// let b = bald(probs.view())?;
/// assert!((b[0] - 0.368_064).abs() < 1e-5);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn bald(probs: ArrayView3<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
    validate_probs(&probs)?;
    let mean = mean_probs_f64(&probs);
    let predictive = predictive_entropy_f64(&mean);
    let expected = expected_entropy_f64(&probs);
    Ok(bald_f64(&probs, &predictive, &expected).mapv(|b| b as f32))
}

/// BALD from precomputed predictive and expected entropies of a validated array.
pub(crate) fn bald_f64(
    probs: &ArrayView3<'_, f32>,
    predictive: &Array1<f64>,
    expected: &Array1<f64>,
) -> Array1<f64> {
    predictive
        .iter()
        .zip(expected.iter())
        .enumerate()
        .map(|(tile, (&pe, &ee))| {
            if passes_identical(probs, tile) {
                0.0
            } else {
                (pe - ee).max(0.0)
            }
        })
        .collect()
}

/// Whether every pass of `tile` equals the first pass exactly (always true for `T == 1`).
fn passes_identical(probs: &ArrayView3<'_, f32>, tile: usize) -> bool {
    let per_tile = probs.index_axis(Axis(1), tile);
    let mut passes = per_tile.outer_iter();
    match passes.next() {
        Some(first) => passes.all(|other| other == first),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn disagreeing_passes_hand_computed() {
        // Passes [0.9, 0.1] and [0.1, 0.9]:
        //   predictive entropy H(0.5, 0.5) = ln 2      = 0.693147
        //   expected entropy   H(0.9, 0.1)             = 0.325083
        //   BALD = 0.693147 − 0.325083                 = 0.368064
        let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
        assert_abs_diff_eq!(bald(probs.view()).unwrap()[0], 0.368_064, epsilon = 1e-5);
    }

    #[test]
    fn three_passes_three_classes_hand_computed() {
        // Passes [1, 0, 0], [0, 1, 0], [0, 0, 1]: each pass is certain (entropy 0) but they
        // all disagree; the mean is uniform, so BALD = ln 3 − 0 = 1.098612.
        let probs = array![[[1.0_f32, 0.0, 0.0]], [[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]];
        assert_abs_diff_eq!(bald(probs.view()).unwrap()[0], 1.098_612, epsilon = 1e-5);
    }

    #[test]
    fn identical_passes_give_exactly_zero() {
        // A flat but consistent prediction: high entropy, zero disagreement. Values like
        // 0.1 and 0.7 are not exact in binary, so only the explicit check makes this exact.
        let row = [0.1_f32, 0.2, 0.7];
        let probs = Array3::from_shape_fn((7, 2, 3), |(_, _, c)| row[c]);
        let b = bald(probs.view()).unwrap();
        assert_eq!(b[0], 0.0);
        assert_eq!(b[1], 0.0);
    }

    #[test]
    fn single_pass_gives_exactly_zero() {
        let probs = array![[[0.3_f32, 0.7], [0.5, 0.5]]];
        assert_eq!(bald(probs.view()).unwrap().to_vec(), vec![0.0, 0.0]);
    }

    #[test]
    fn never_negative() {
        // Nearly identical passes: mathematically BALD >= 0, and rounding must not flip it.
        // Second pass: the neighbouring f32 values (one ulp away) of 0.3 and 0.7.
        let up = f32::from_bits(0.3_f32.to_bits() + 1);
        let down = f32::from_bits(0.7_f32.to_bits() - 1);
        let probs = array![[[0.3_f32, 0.7]], [[up, down]]];
        assert!(bald(probs.view()).unwrap()[0] >= 0.0);
    }

    #[test]
    fn rejects_nan() {
        let probs = array![[[0.5_f32, 0.5], [0.5, f32::NAN]]];
        assert!(matches!(
            bald(probs.view()),
            Err(UncertaintyError::NonFinite { tile: 1, .. })
        ));
    }
}
