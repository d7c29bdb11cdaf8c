//! Every [`Metric`] for multi-label heads: each class an independent Bernoulli.
//!
//! A multi-label head (one sigmoid per class, trained with binary cross-entropy, as in
//! Möllenbrok, Sumbul & Demir 2023, *Deep Active Learning for Multi-Label Classification
//! of Remote Sensing Images*, IEEE GRSL, Sec. II) gives `C` independent probabilities
//! per tile, so the softmax metrics do not apply as they are. Here each class is a
//! binary problem and the per-tile value combines them:
//!
//! | metric | multi-label form |
//! |---|---|
//! | entropy | `Σ_c H_b(p̄_c)`, binary entropies of the MC-mean probabilities |
//! | bald | `Σ_c [H_b(p̄_c) − mean_t H_b(p_tc)]` (Houlsby et al. 2011, per label) |
//! | margin | `1 − min_c |2 p̄_c − 1|`: the label closest to its decision boundary |
//! | least_confidence | `1 − min_c max(p̄_c, 1 − p̄_c)` |
//! | variation_ratio | `1 −` (passes whose thresholded label set is the modal set) `/ T` |

use std::collections::HashMap;

use ndarray::{Array1, ArrayView3, Axis};

use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::mean_sigmoid_probs;
use crate::uncertainty::uncertainties::Uncertainties;

/// Binary entropy in nats, `0 · ln 0 = 0`.
fn binary_entropy(p: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    let h = |q: f64| if q > 0.0 { -q * q.ln() } else { 0.0 };
    h(p) + h(1.0 - p)
}

/// Mean sigmoid probabilities and every metric for `[T, N, C]` multi-label MC-dropout
/// outputs (see the module docs for the formulas). Rows need not sum to 1.
///
/// # Errors
///
/// Those of [`mean_sigmoid_probs`]: no passes, no classes, non-finite or out-of-range
/// values.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::{Metric, compute_all_multilabel};
///
/// // One tile, two labels, two passes that disagree on the second label.
/// let probs = array![[[0.99_f32, 0.9]], [[0.99, 0.1]]];
/// let u = compute_all_multilabel(probs.view())?;
/// assert!((u.mean[[0, 1]] - 0.5).abs() < 1e-6);
/// assert!(u.get(Metric::Bald)[0] > 0.3);
/// assert!((u.get(Metric::VariationRatio)[0] - 0.5).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn compute_all_multilabel(
    probs: ArrayView3<'_, f32>,
) -> Result<Uncertainties, UncertaintyError> {
    let mean = mean_sigmoid_probs(probs)?;
    let (passes, tiles, _) = probs.dim();
    let mut entropy = Array1::<f32>::zeros(tiles);
    let mut expected = Array1::<f32>::zeros(tiles);
    let mut bald = Array1::<f32>::zeros(tiles);
    let mut margin = Array1::<f32>::zeros(tiles);
    let mut least = Array1::<f32>::zeros(tiles);
    let mut variation = Array1::<f32>::zeros(tiles);
    for n in 0..tiles {
        let row = mean.row(n);
        let h: f64 = row.iter().map(|&p| binary_entropy(f64::from(p))).sum();
        let per_tile = probs.index_axis(Axis(1), n);
        let e: f64 = per_tile
            .outer_iter()
            .map(|pass| {
                pass.iter()
                    .map(|&p| binary_entropy(f64::from(p)))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / passes as f64;
        let closest = row
            .iter()
            .map(|&p| (2.0 * f64::from(p) - 1.0).abs())
            .fold(f64::INFINITY, f64::min);
        let mut sets: HashMap<Vec<bool>, usize> = HashMap::new();
        for pass in per_tile.outer_iter() {
            *sets
                .entry(pass.iter().map(|&p| p >= 0.5).collect())
                .or_default() += 1;
        }
        let modal = sets.values().copied().max().unwrap_or(passes);
        entropy[n] = h as f32;
        expected[n] = e as f32;
        bald[n] = (h - e).max(0.0) as f32;
        margin[n] = (1.0 - closest) as f32;
        least[n] = (1.0 - (1.0 + closest) / 2.0) as f32;
        variation[n] = (1.0 - modal as f64 / passes as f64) as f32;
    }
    Ok(Uncertainties {
        mean,
        entropy,
        expected_entropy: expected,
        bald,
        margin,
        least_confidence: least,
        variation_ratio: variation,
        predicted_loss: None,
        multi_label: true,
    })
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    use super::*;
    use crate::uncertainty::Metric;

    #[test]
    fn agreeing_confident_passes_are_certain() {
        let probs = array![[[1.0_f32, 0.0, 1.0]], [[1.0, 0.0, 1.0]]];
        let u = compute_all_multilabel(probs.view()).unwrap();
        for m in Metric::ALL {
            assert_abs_diff_eq!(u.get(m)[0], 0.0, epsilon = 1e-6);
        }
        assert!(u.multi_label);
    }

    #[test]
    fn hand_computed_two_labels() {
        // Passes (0.8, 0.5) and (0.6, 0.5): mean (0.7, 0.5).
        let probs = array![[[0.8_f32, 0.5]], [[0.6, 0.5]]];
        let u = compute_all_multilabel(probs.view()).unwrap();
        let hb = |p: f64| -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        let h = hb(0.7) + hb(0.5);
        let e = ((hb(0.8) + hb(0.5)) + (hb(0.6) + hb(0.5))) / 2.0;
        assert_abs_diff_eq!(f64::from(u.entropy[0]), h, epsilon = 1e-5);
        assert_abs_diff_eq!(f64::from(u.bald[0]), h - e, epsilon = 1e-5);
        // label 2 sits on the boundary: margin 1, least confidence 0.5
        assert_abs_diff_eq!(u.margin[0], 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(u.least_confidence[0], 0.5, epsilon = 1e-6);
        // both passes threshold to {label 1, label 2}
        assert_abs_diff_eq!(u.variation_ratio[0], 0.0, epsilon = 1e-6);
    }

    #[test]
    fn rows_need_not_sum_to_one_but_must_be_probabilities() {
        let ok = array![[[0.9_f32, 0.9, 0.9]]];
        assert!(compute_all_multilabel(ok.view()).is_ok());
        let bad = array![[[1.5_f32, 0.2]]];
        assert!(compute_all_multilabel(bad.view()).is_err());
    }
}
