//! The [`MultiLabelMetric`] enum: names and parsing of the multi-label uncertainties.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::uncertainty::error::UncertaintyError;

/// A multi-label uncertainty of Möllenbrok, Sumbul & Demir 2023 (Sec. II-A). Each is
/// computed from different model outputs, so there is no common `compute`: call
/// [`predicted_loss`](crate::uncertainty::predicted_loss), [`tpd`](crate::uncertainty::tpd)
/// or [`mge`](crate::uncertainty::mge), and select with
/// [`Strategy::Clustering`](crate::sampling::Strategy::Clustering) for the paper's
/// "+Clustering" query functions.
///
/// Serialises (serde) and parses ([`FromStr`]) as its snake_case [`name`](Self::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultiLabelMetric {
    /// Learned loss, the loss-prediction module's output (Eq. 4; see
    /// [`predicted_loss`](crate::uncertainty::predicted_loss)).
    Ll,
    /// Temporal prediction discrepancy between two rounds (Eq. 5; see
    /// [`tpd`](crate::uncertainty::tpd)).
    Tpd,
    /// Magnitude of the pseudo-labelled gradient embedding (Eqs. 6–7; see
    /// [`mge`](crate::uncertainty::mge)).
    Mge,
}

impl MultiLabelMetric {
    /// Every multi-label metric, in declaration order.
    pub const ALL: [MultiLabelMetric; 3] = [
        MultiLabelMetric::Ll,
        MultiLabelMetric::Tpd,
        MultiLabelMetric::Mge,
    ];

    /// The snake_case name used on the command line, in configuration files and by serde.
    pub fn name(&self) -> &'static str {
        match self {
            MultiLabelMetric::Ll => "ll",
            MultiLabelMetric::Tpd => "tpd",
            MultiLabelMetric::Mge => "mge",
        }
    }

    /// Whether the metric needs the previous round's model outputs (only TPD). Without
    /// them, in the first round, the paper samples at random (Sec. II-A-2); see
    /// [`tpd_round_strategy`](crate::sampling::tpd_round_strategy).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexttile::uncertainty::MultiLabelMetric;
    ///
    /// let metric: MultiLabelMetric = "tpd".parse()?;
    /// assert!(metric.needs_previous_round());
    /// assert!(!MultiLabelMetric::Mge.needs_previous_round());
    /// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
    /// ```
    pub fn needs_previous_round(&self) -> bool {
        matches!(self, MultiLabelMetric::Tpd)
    }

    /// The valid names joined by `", "`, for error messages and help texts.
    pub fn names_list() -> String {
        MultiLabelMetric::ALL
            .iter()
            .map(MultiLabelMetric::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for MultiLabelMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MultiLabelMetric {
    type Err = UncertaintyError;

    /// Parses a metric name; case and surrounding whitespace are ignored (`"MGE"` parses
    /// as [`MultiLabelMetric::Mge`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalised = s.trim().to_ascii_lowercase();
        MultiLabelMetric::ALL
            .into_iter()
            .find(|m| m.name() == normalised)
            .ok_or_else(|| UncertaintyError::UnknownMultiLabelMetric {
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, StrDeserializer};

    use super::*;

    #[test]
    fn names_round_trip() {
        let names: Vec<_> = MultiLabelMetric::ALL
            .iter()
            .map(MultiLabelMetric::name)
            .collect();
        assert_eq!(names, ["ll", "tpd", "mge"]);
        for m in MultiLabelMetric::ALL {
            assert_eq!(m.name().parse::<MultiLabelMetric>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
            let de: StrDeserializer<'_, Error> = m.name().into_deserializer();
            assert_eq!(MultiLabelMetric::deserialize(de), Ok(m));
        }
        assert_eq!(" MGE ".parse(), Ok(MultiLabelMetric::Mge));
        let de: StrDeserializer<'_, Error> = "Tpd".into_deserializer();
        assert!(MultiLabelMetric::deserialize(de).is_err());
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let msg = "entropy"
            .parse::<MultiLabelMetric>()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"entropy\""), "{msg}");
        assert!(msg.contains("ll, tpd, mge"), "{msg}");
    }

    #[test]
    fn only_tpd_needs_the_previous_round() {
        let needs: Vec<bool> = MultiLabelMetric::ALL
            .iter()
            .map(MultiLabelMetric::needs_previous_round)
            .collect();
        assert_eq!(needs, [false, true, false]);
    }
}
