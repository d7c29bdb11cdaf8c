//! Variation ratio: how often the MC-dropout passes disagree with their modal class.

use ndarray::{Array1, ArrayView1, ArrayView3, Axis};

use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::validate::validate_probs;

/// Variation ratio `1 − f_m / T` of every tile, where `f_m` is the number of the `T`
/// MC-dropout passes whose arg-max class is the modal (most frequent) one.
///
/// The variation ratio is Freeman's measure of dispersion for nominal data (Freeman 1965,
/// *Elementary Applied Statistics*), used with MC dropout for active learning by Gal, Islam
/// & Ghahramani 2017 (*Deep Bayesian Active Learning with Image Data*). It is `0` when all
/// passes agree on the class and at most `1 − ⌈T/C⌉ / T` (passes spread evenly over the
/// classes); with `T == 1` it is always `0`.
///
/// Within one pass, equal probabilities are broken towards the lower class index (so
/// `[0.5, 0.5]` votes for class 0). Only the count of the modal class matters, so ties
/// between modal classes need no rule.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::variation_ratio;
///
/// // Arg-max classes 0, 0, 1 over three passes: mode 0 seen twice, 1 − 2/3 = 1/3.
/// let probs = array![[[0.9_f32, 0.1]], [[0.6, 0.4]], [[0.2, 0.8]]];
/// assert!((variation_ratio(probs.view())?[0] - 1.0 / 3.0).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn variation_ratio(probs: ArrayView3<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
    validate_probs(&probs)?;
    Ok(variation_ratio_f64(&probs).mapv(|v| v as f32))
}

/// Variation ratio of every tile of a validated `[T, N, C]` array.
pub(crate) fn variation_ratio_f64(probs: &ArrayView3<'_, f32>) -> Array1<f64> {
    let (passes, tiles, classes) = probs.dim();
    let mut counts = vec![0_usize; classes];
    (0..tiles)
        .map(|tile| {
            counts.iter_mut().for_each(|c| *c = 0);
            for row in probs.index_axis(Axis(1), tile).outer_iter() {
                if let Some(count) = argmax_first(row).and_then(|c| counts.get_mut(c)) {
                    *count += 1;
                }
            }
            let modal = counts.iter().copied().max().unwrap_or(0);
            if passes == 0 {
                0.0
            } else {
                1.0 - modal as f64 / passes as f64
            }
        })
        .collect()
}

/// Index of the largest entry, the lowest index among equal maxima; `None` when empty.
pub(crate) fn argmax_first(row: ArrayView1<'_, f32>) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &p) in row.iter().enumerate() {
        match best {
            Some((_, b)) if p <= b => {}
            _ => best = Some((i, p)),
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    use super::*;

    #[test]
    fn hand_computed() {
        // Tile 0: arg-max of [0.9, 0.1] is 0, of [0.1, 0.9] is 1 -> mode count 1 of 2
        //         -> 1 − 1/2 = 0.5.
        // Tile 1: arg-max 1 and 1                                   -> 1 − 2/2 = 0.
        // Tile 2: [0.5, 0.5] ties -> class 0; [0.4, 0.6] -> class 1 -> 1 − 1/2 = 0.5.
        let probs = array![
            [[0.9_f32, 0.1], [0.3, 0.7], [0.5, 0.5]],
            [[0.1, 0.9], [0.2, 0.8], [0.4, 0.6]]
        ];
        let v = variation_ratio(probs.view()).unwrap();
        assert_abs_diff_eq!(v[0], 0.5, epsilon = 1e-6);
        assert_eq!(v[1], 0.0);
        assert_abs_diff_eq!(v[2], 0.5, epsilon = 1e-6);
    }

    #[test]
    fn four_passes_three_classes() {
        // Arg-max classes 2, 0, 2, 1: mode 2 seen twice -> 1 − 2/4 = 0.5.
        let probs = array![
            [[0.1_f32, 0.2, 0.7]],
            [[0.6, 0.3, 0.1]],
            [[0.3, 0.3, 0.4]],
            [[0.2, 0.5, 0.3]]
        ];
        assert_abs_diff_eq!(
            variation_ratio(probs.view()).unwrap()[0],
            0.5,
            epsilon = 1e-6
        );
    }

    #[test]
    fn argmax_ties_go_to_lower_index() {
        let row = array![0.25_f32, 0.375, 0.375];
        assert_eq!(argmax_first(row.view()), Some(1));
        let empty = ndarray::Array1::<f32>::zeros(0);
        assert_eq!(argmax_first(empty.view()), None);
    }

    #[test]
    fn rejects_nan() {
        let probs = array![[[f32::NAN, 0.5]]];
        assert!(variation_ratio(probs.view()).is_err());
    }
}
