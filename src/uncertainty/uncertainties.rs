//! All metrics at once, sharing one validation pass and one mean.

use ndarray::{Array1, Array2, ArrayView1, ArrayView3};

use crate::uncertainty::bald::bald_f64;
use crate::uncertainty::entropy::{expected_entropy_f64, predictive_entropy_f64};
use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::least_confidence::least_confidence_f64;
use crate::uncertainty::margin::margin_f64;
use crate::uncertainty::mean::mean_probs_f64;
use crate::uncertainty::metric::Metric;
use crate::uncertainty::predicted_class::predicted_class;
use crate::uncertainty::validate::validate_probs;
use crate::uncertainty::variation_ratio::variation_ratio_f64;

/// Mean probabilities and every [`Metric`] for `N` tiles, as returned by [`compute_all`].
/// All per-tile arrays have length `N`; higher means more uncertain.
#[derive(Debug, Clone, PartialEq)]
pub struct Uncertainties {
    /// `[N, C]` mean probabilities over the MC-dropout passes.
    pub mean: Array2<f32>,
    /// Predictive entropy in nats ([`Metric::Entropy`]).
    pub entropy: Array1<f32>,
    /// Expected entropy `mean_t H[p_t]` in nats, the aleatoric part of `entropy`
    /// (not a [`Metric`] itself: `bald = entropy − expected_entropy`).
    pub expected_entropy: Array1<f32>,
    /// Mutual information in nats ([`Metric::Bald`]).
    pub bald: Array1<f32>,
    /// `1 − (p(1) − p(2))` of the mean ([`Metric::Margin`]).
    pub margin: Array1<f32>,
    /// `1 − max` of the mean ([`Metric::LeastConfidence`]).
    pub least_confidence: Array1<f32>,
    /// `1 −` modal arg-max count `/ T` ([`Metric::VariationRatio`]).
    pub variation_ratio: Array1<f32>,
    /// MC mean of the head's loss-prediction output ([`Metric::PredictedLoss`]),
    /// when the head has one.
    pub predicted_loss: Option<Array1<f32>>,
    /// Whether `mean` holds independent per-class sigmoid probabilities
    /// (multi-label; see [`compute_all_multilabel`](crate::uncertainty::compute_all_multilabel)).
    pub multi_label: bool,
}

impl Uncertainties {
    /// The per-tile values of `metric`.
    pub fn get(&self, metric: Metric) -> ArrayView1<'_, f32> {
        match metric {
            Metric::Entropy => self.entropy.view(),
            Metric::Bald => self.bald.view(),
            Metric::Margin => self.margin.view(),
            Metric::LeastConfidence => self.least_confidence.view(),
            Metric::VariationRatio => self.variation_ratio.view(),
            // Empty when the head has no loss output; the engine refuses that
            // combination before ranking.
            Metric::PredictedLoss => match &self.predicted_loss {
                Some(l) => l.view(),
                None => ArrayView1::from(&[]),
            },
        }
    }

    /// The metrics this result holds, in output order: [`Metric::ALL`], then
    /// [`Metric::PredictedLoss`] when present.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut m = Metric::ALL.to_vec();
        if self.predicted_loss.is_some() {
            m.push(Metric::PredictedLoss);
        }
        m
    }

    /// Number of tiles `N`.
    pub fn len(&self) -> usize {
        self.mean.nrows()
    }

    /// Whether there are no tiles.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Arg-max class of every tile's mean (see
    /// [`predicted_class`](crate::uncertainty::predicted_class)).
    pub fn predicted_class(&self) -> Array1<usize> {
        predicted_class(self.mean.view())
    }
}

/// Computes the mean probabilities and every [`Metric`] for a `[T, N, C]` array of MC-dropout
/// probabilities, validating the input once and sharing the mean between metrics.
/// Values equal those of the individual functions.
///
/// # Errors
///
/// Any [`UncertaintyError`] of the input validation: `T == 0`, `C < 2`, non-finite,
/// out-of-range or unnormalised probabilities (naming the tile).
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::{Metric, compute_all};
///
/// // Tile 0: the passes disagree; tile 1: both passes are certain of class 1.
/// let probs = array![[[0.9_f32, 0.1], [0.0, 1.0]], [[0.1, 0.9], [0.0, 1.0]]];
/// let u = compute_all(probs.view())?;
/// assert!((u.get(Metric::Bald)[0] - 0.368_064).abs() < 1e-5);
/// for m in Metric::ALL {
///     assert_eq!(u.get(m)[1], 0.0);
/// }
/// assert_eq!(u.predicted_class().to_vec(), vec![0, 1]);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn compute_all(probs: ArrayView3<'_, f32>) -> Result<Uncertainties, UncertaintyError> {
    validate_probs(&probs)?;
    let mean = mean_probs_f64(&probs);
    let entropy = predictive_entropy_f64(&mean);
    let expected_entropy = expected_entropy_f64(&probs);
    let bald = bald_f64(&probs, &entropy, &expected_entropy);
    let to_f32 = |a: &Array1<f64>| a.mapv(|v| v as f32);
    Ok(Uncertainties {
        entropy: to_f32(&entropy),
        expected_entropy: to_f32(&expected_entropy),
        bald: to_f32(&bald),
        margin: to_f32(&margin_f64(&mean)),
        least_confidence: to_f32(&least_confidence_f64(&mean)),
        variation_ratio: to_f32(&variation_ratio_f64(&probs)),
        mean: mean.mapv(|p| p as f32),
        predicted_loss: None,
        multi_label: false,
    })
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::{Array3, array};

    use super::*;
    use crate::uncertainty::mean_probs;

    #[test]
    fn disagreeing_passes_hand_computed() {
        // Passes [0.9, 0.1] and [0.1, 0.9]:
        //   mean [0.5, 0.5]
        //   predictive entropy  ln 2                                   = 0.693147
        //   expected entropy    H(0.9, 0.1) = 0.094825 + 0.230259      = 0.325083
        //   BALD                0.693147 − 0.325083                    = 0.368064
        //   margin              1 − (0.5 − 0.5)                        = 1
        //   least confidence    1 − 0.5                                = 0.5
        //   variation ratio     arg-max 0 then 1: 1 − 1/2              = 0.5
        let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
        let u = compute_all(probs.view()).unwrap();
        assert_abs_diff_eq!(u.mean[[0, 0]], 0.5, epsilon = 1e-6);
        assert_abs_diff_eq!(u.mean[[0, 1]], 0.5, epsilon = 1e-6);
        assert_abs_diff_eq!(u.entropy[0], std::f32::consts::LN_2, epsilon = 1e-5);
        assert_abs_diff_eq!(u.expected_entropy[0], 0.325_083, epsilon = 1e-5);
        assert_abs_diff_eq!(u.bald[0], 0.368_064, epsilon = 1e-5);
        assert_abs_diff_eq!(u.margin[0], 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(u.least_confidence[0], 0.5, epsilon = 1e-6);
        assert_abs_diff_eq!(u.variation_ratio[0], 0.5, epsilon = 1e-6);
    }

    #[test]
    fn one_hot_certain_is_all_zero() {
        // Three passes, all [0, 0, 1, 0]: every metric is exactly 0.
        let probs =
            Array3::from_shape_fn((3, 2, 4), |(_, _, c)| if c == 2 { 1.0_f32 } else { 0.0 });
        let u = compute_all(probs.view()).unwrap();
        for m in Metric::ALL {
            assert_eq!(u.get(m).to_vec(), vec![0.0, 0.0], "{m}");
        }
        assert_eq!(u.expected_entropy.to_vec(), vec![0.0, 0.0]);
        assert_eq!(u.predicted_class().to_vec(), vec![2, 2]);
    }

    #[test]
    fn matches_individual_functions() {
        // A mixed batch: 3 passes, 3 tiles, 3 classes.
        let probs = array![
            [[0.7_f32, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
            [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3]],
            [[0.6, 0.1, 0.3], [0.2, 0.2, 0.6], [0.4, 0.3, 0.3]]
        ];
        let u = compute_all(probs.view()).unwrap();
        for m in Metric::ALL {
            assert_eq!(u.get(m), m.compute(probs.view()).unwrap(), "{m}");
        }
        assert_eq!(u.mean, mean_probs(probs.view()).unwrap());
        assert_eq!(u.len(), 3);
        assert!(!u.is_empty());
    }

    #[test]
    fn empty_tiles() {
        let probs = Array3::<f32>::zeros((5, 0, 3));
        let u = compute_all(probs.view()).unwrap();
        assert!(u.is_empty());
        for m in Metric::ALL {
            assert_eq!(u.get(m).len(), 0);
        }
        assert_eq!(u.predicted_class().len(), 0);
    }

    #[test]
    fn errors_name_the_tile() {
        let probs = array![[[0.5_f32, 0.5], [0.5, 0.5], [0.5, f32::NAN]]];
        let err = compute_all(probs.view()).unwrap_err();
        assert!(matches!(err, UncertaintyError::NonFinite { tile: 2, .. }));
        assert!(err.to_string().contains("tile 2"), "{err}");
    }
}
