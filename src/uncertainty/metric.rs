//! The [`Metric`] enum: names, parsing and dispatch for the uncertainty metrics.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array1, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::uncertainty::bald::bald;
use crate::uncertainty::entropy::predictive_entropy;
use crate::uncertainty::error::UncertaintyError;
use crate::uncertainty::least_confidence::least_confidence;
use crate::uncertainty::margin::margin;
use crate::uncertainty::variation_ratio::variation_ratio;

/// An uncertainty metric over MC-dropout probabilities. Every metric yields one value per
/// tile where higher means more uncertain, so all of them rank the same way.
///
/// Serialises (serde) and parses ([`FromStr`]) as its snake_case [`name`](Metric::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Predictive entropy `H[mean_t p_t]` (see [`predictive_entropy`]).
    Entropy,
    /// Mutual information, BALD (see [`bald`]).
    Bald,
    /// `1 −` margin between the two most probable mean classes (see [`margin`]).
    Margin,
    /// `1 − max` mean class probability, the MCFPS criterion (see [`least_confidence`]).
    LeastConfidence,
    /// Variation ratio of the per-pass arg-max classes (see [`variation_ratio`]).
    VariationRatio,
    /// The loss-prediction module's output, MC mean (LL of Möllenbrok et al. 2023, Eq. 4);
    /// only for heads with a `loss_output`, so not in [`Metric::ALL`].
    PredictedLoss,
}

impl Metric {
    /// Every metric, in declaration order.
    pub const ALL: [Metric; 5] = [
        Metric::Entropy,
        Metric::Bald,
        Metric::Margin,
        Metric::LeastConfidence,
        Metric::VariationRatio,
    ];

    /// The snake_case name used on the command line, in configuration files and by serde.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Entropy => "entropy",
            Metric::Bald => "bald",
            Metric::Margin => "margin",
            Metric::LeastConfidence => "least_confidence",
            Metric::VariationRatio => "variation_ratio",
            Metric::PredictedLoss => "predicted_loss",
        }
    }

    /// Computes this metric for every tile of a `[T, N, C]` probability array.
    ///
    /// # Errors
    ///
    /// Any [`UncertaintyError`] of the input validation.
    ///
    /// # Examples
    ///
    /// ```
    /// use ndarray::array;
    /// use nexttile::uncertainty::Metric;
    ///
    /// let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
    /// let metric: Metric = "least_confidence".parse()?;
    /// let u = metric.compute(probs.view())?;
    /// assert!((u[0] - 0.5).abs() < 1e-6);
    /// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
    /// ```
    pub fn compute(&self, probs: ArrayView3<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
        match self {
            Metric::Entropy => predictive_entropy(probs),
            Metric::Bald => bald(probs),
            Metric::Margin => margin(probs),
            Metric::LeastConfidence => least_confidence(probs),
            Metric::VariationRatio => variation_ratio(probs),
            Metric::PredictedLoss => Err(UncertaintyError::NeedsLossOutput),
        }
    }

    /// The valid names joined by `", "`, for error messages and help texts.
    pub fn names_list() -> String {
        let mut names: Vec<&str> = Metric::ALL.iter().map(Metric::name).collect();
        names.push("predicted_loss (heads with a loss output)");
        names.join(", ")
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = UncertaintyError;

    /// Parses a metric name. Case, surrounding whitespace and `-` versus `_` are ignored
    /// (`"Least-Confidence"` parses as [`Metric::LeastConfidence`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalised = s.trim().to_ascii_lowercase().replace('-', "_");
        if normalised == "predicted_loss" || normalised == "ll" {
            return Ok(Metric::PredictedLoss);
        }
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == normalised)
            .ok_or_else(|| UncertaintyError::UnknownMetric {
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn names_round_trip() {
        let names: Vec<_> = Metric::ALL.iter().map(Metric::name).collect();
        assert_eq!(
            names,
            [
                "entropy",
                "bald",
                "margin",
                "least_confidence",
                "variation_ratio"
            ]
        );
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(" Least-Confidence ".parse(), Ok(Metric::LeastConfidence));
        assert_eq!("BALD".parse(), Ok(Metric::Bald));
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = "mutual_info".parse::<Metric>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("mutual_info"), "{msg}");
        assert!(
            msg.contains("entropy, bald, margin, least_confidence, variation_ratio"),
            "{msg}"
        );
    }

    #[test]
    fn serde_uses_snake_case_names() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};

        for m in Metric::ALL {
            let de: StrDeserializer<'_, Error> = m.name().into_deserializer();
            assert_eq!(Metric::deserialize(de), Ok(m));
        }
        let de: StrDeserializer<'_, Error> = "LeastConfidence".into_deserializer();
        assert!(Metric::deserialize(de).is_err());
    }

    #[test]
    fn compute_dispatches() {
        // Passes [0.9, 0.1] and [0.1, 0.9] (values derived in the per-metric tests).
        let probs = array![[[0.9_f32, 0.1]], [[0.1, 0.9]]];
        let expected = [std::f32::consts::LN_2, 0.368_064, 1.0, 0.5, 0.5];
        for (m, e) in Metric::ALL.into_iter().zip(expected) {
            let u = m.compute(probs.view()).unwrap();
            assert!((u[0] - e).abs() < 1e-5, "{m}: {} != {e}", u[0]);
        }
    }
}
