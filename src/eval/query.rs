//! The query functions `nexttile eval` compares, by name: a selection [`Strategy`] plus
//! the uncertainty it ranks by.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::EvalError;
use crate::sampling::{ClusteringParams, McfpsParams, Strategy};
use crate::uncertainty::{Metric, MultiLabelMetric};

/// One query function of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Query {
    /// Uniform random sampling, the baseline.
    Random,
    /// The `b` most uncertain tiles by a single-label metric (`entropy`, `bald`, `margin`,
    /// `least_confidence`, `variation_ratio`).
    TopK(Metric),
    /// MCFPS (seed 000, Algorithm 1): the most uncertain tile of each farthest-point
    /// neighbourhood; uncertainty `1 − max` of the mean MC probabilities (`mcfps`), or
    /// another metric (`mcfps+bald`, ...).
    Mcfps(Metric),
    /// k-center greedy core set (Sener & Savarese 2018) from the labelled tiles.
    Coreset,
    /// Uncertainty + k-means++ clustering (seed 004, Sec. II-B) with a single-label
    /// metric (`entropy+clustering`, ...).
    Clustering(Metric),
    /// Seed 004's multi-label query functions: `ll` (LL+Clustering), `tpd`
    /// (TPD+Clustering, random in the first round) and `mge` (MGE+Clustering).
    MultiLabel(MultiLabelMetric),
}

impl Query {
    /// Whether the query needs MC-dropout passes of the head.
    pub fn needs_mc(&self) -> bool {
        matches!(
            self,
            Query::TopK(_) | Query::Mcfps(_) | Query::Clustering(_)
        )
    }

    /// Whether it is meant for multi-label heads.
    pub fn is_multi_label(&self) -> bool {
        matches!(self, Query::MultiLabel(_))
    }

    /// The selection strategy it runs, given the parameters of the evaluation.
    pub fn strategy(&self, clustering_m: usize, mcfps: McfpsParams) -> Strategy {
        let clustering = Strategy::Clustering(ClusteringParams {
            m: clustering_m,
            ..ClusteringParams::default()
        });
        match self {
            Query::Random => Strategy::Random,
            Query::TopK(_) => Strategy::TopK,
            Query::Mcfps(_) => Strategy::Mcfps(mcfps),
            Query::Coreset => Strategy::Coreset,
            Query::Clustering(_) | Query::MultiLabel(_) => clustering,
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Random => f.write_str("random"),
            Query::TopK(m) => f.write_str(m.name()),
            Query::Mcfps(Metric::LeastConfidence) => f.write_str("mcfps"),
            Query::Mcfps(m) => write!(f, "mcfps+{}", m.name()),
            Query::Coreset => f.write_str("coreset"),
            Query::Clustering(m) => write!(f, "{}+clustering", m.name()),
            Query::MultiLabel(m) => f.write_str(m.name()),
        }
    }
}

impl FromStr for Query {
    type Err = EvalError;

    /// Parses `random`, a metric name (top-k), `mcfps`, `mcfps+<metric>`, `coreset`,
    /// `<metric>+clustering`, `ll`, `tpd` or `mge`; case and `-`/`_` are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        let metric = |m: &str| m.parse::<Metric>().ok();
        let parsed = match norm.as_str() {
            "random" => Some(Query::Random),
            "mcfps" => Some(Query::Mcfps(Metric::LeastConfidence)),
            "coreset" | "core_set" => Some(Query::Coreset),
            "ll" | "ll+clustering" => Some(Query::MultiLabel(MultiLabelMetric::Ll)),
            "tpd" | "tpd+clustering" => Some(Query::MultiLabel(MultiLabelMetric::Tpd)),
            "mge" | "mge+clustering" => Some(Query::MultiLabel(MultiLabelMetric::Mge)),
            other => {
                if let Some(m) = other.strip_prefix("mcfps+") {
                    metric(m).map(Query::Mcfps)
                } else if let Some(m) = other.strip_suffix("+clustering") {
                    metric(m).map(Query::Clustering)
                } else {
                    metric(other).map(Query::TopK)
                }
            }
        };
        parsed.ok_or_else(|| {
            EvalError::Config(format!(
                "unknown query {s:?}; use random, coreset, mcfps, mcfps+<metric>, <metric>, <metric>+clustering (metrics: {}) or, for multi-label, ll, tpd, mge",
                Metric::names_list()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "random",
            "entropy",
            "bald",
            "margin",
            "least_confidence",
            "variation_ratio",
            "mcfps",
            "mcfps+bald",
            "coreset",
            "entropy+clustering",
            "ll",
            "tpd",
            "mge",
        ] {
            let q: Query = name.parse().unwrap();
            assert_eq!(q.to_string(), name);
        }
        assert_eq!("BALD".parse::<Query>().unwrap(), Query::TopK(Metric::Bald));
        let msg = "badge".parse::<Query>().unwrap_err().to_string();
        assert!(msg.contains("badge") && msg.contains("mcfps"), "{msg}");
    }
}
