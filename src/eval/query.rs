//! The query functions `nexttile eval` compares, by name: a selection [`Strategy`] plus
//! the uncertainty it ranks by.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::EvalError;
use crate::sampling::{
    AutoParams, ClusteringParams, LowBudget, McfpsParams, ProbcoverParams, Strategy,
    TypiclustParams,
};
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
    /// TypiClust (Hacohen et al. 2022): the most typical tile of each of the largest
    /// clusters without labels; needs no head.
    Typiclust,
    /// ProbCover (Yehuda et al. 2022): greedy maximum coverage of δ-balls; needs no head.
    Probcover,
    /// The `auto` schedule: a low-budget strategy while labels are few, then a
    /// single-label metric + clustering (`auto` = margin, `auto+<metric>`).
    Auto(Metric),
    /// The `auto` schedule with a multi-label uncertainty stage (`auto+ll`, `auto+tpd`,
    /// `auto+mge`).
    AutoMulti(MultiLabelMetric),
}

/// The selection parameters an evaluation runs its queries with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueryParams {
    /// Candidate factor `m` of the clustering queries.
    pub clustering_m: usize,
    /// MCFPS parameters (`anchors: None` = one per queried sample).
    pub mcfps: McfpsParams,
    /// TypiClust parameters (also the low-budget stage of `auto` when it is TypiClust).
    pub typiclust: TypiclustParams,
    /// ProbCover parameters (`classes` is replaced by the data's).
    pub probcover: ProbcoverParams,
    /// The `auto` schedule (`classes` is replaced by the data's).
    pub auto: AutoParams,
}

impl Default for QueryParams {
    /// Seed 004's `m = 4`, the strategies' own defaults.
    fn default() -> Self {
        Self {
            clustering_m: 4,
            mcfps: McfpsParams::default(),
            typiclust: TypiclustParams::default(),
            probcover: ProbcoverParams::default(),
            auto: AutoParams::default(),
        }
    }
}

impl Query {
    /// Whether the query needs MC-dropout passes of the head (for `auto`: in its
    /// uncertainty stage).
    pub fn needs_mc(&self) -> bool {
        matches!(
            self,
            Query::TopK(_) | Query::Mcfps(_) | Query::Clustering(_) | Query::Auto(_)
        )
    }

    /// Whether it is meant for multi-label heads.
    pub fn is_multi_label(&self) -> bool {
        matches!(self, Query::MultiLabel(_) | Query::AutoMulti(_))
    }

    /// Whether it runs on single- and multi-label data alike (it reads no head output).
    pub fn is_label_free(&self) -> bool {
        matches!(
            self,
            Query::Random | Query::Coreset | Query::Typiclust | Query::Probcover
        )
    }

    /// The selection strategy it runs with `params`, on data with `classes` classes.
    pub fn strategy(&self, params: &QueryParams, classes: usize) -> Strategy {
        let clustering = Strategy::Clustering(ClusteringParams {
            m: params.clustering_m,
            ..ClusteringParams::default()
        });
        let probcover = ProbcoverParams {
            classes,
            ..params.probcover
        };
        match self {
            Query::Random => Strategy::Random,
            Query::TopK(_) => Strategy::TopK,
            Query::Mcfps(_) => Strategy::Mcfps(params.mcfps),
            Query::Coreset => Strategy::Coreset,
            Query::Clustering(_) | Query::MultiLabel(_) => clustering,
            Query::Typiclust => Strategy::Typiclust(params.typiclust),
            Query::Probcover => Strategy::Probcover(probcover),
            Query::Auto(_) | Query::AutoMulti(_) => {
                let low_budget = match params.auto.low_budget {
                    LowBudget::Typiclust(_) => LowBudget::Typiclust(params.typiclust),
                    LowBudget::Probcover(_) => LowBudget::Probcover(probcover),
                };
                Strategy::Auto(AutoParams {
                    classes,
                    low_budget,
                    ..params.auto
                })
            }
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
            Query::Typiclust => f.write_str("typiclust"),
            Query::Probcover => f.write_str("probcover"),
            Query::Auto(Metric::Margin) => f.write_str("auto"),
            Query::Auto(m) => write!(f, "auto+{}", m.name()),
            Query::AutoMulti(m) => write!(f, "auto+{}", m.name()),
        }
    }
}

impl FromStr for Query {
    type Err = EvalError;

    /// Parses `random`, a metric name (top-k), `mcfps`, `mcfps+<metric>`, `coreset`,
    /// `<metric>+clustering`, `typiclust`, `probcover`, `auto`, `auto+<metric>`, `ll`,
    /// `tpd`, `mge` or `auto+ll|tpd|mge`; case and `-`/`_` are ignored.
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
            "typiclust" => Some(Query::Typiclust),
            "probcover" => Some(Query::Probcover),
            "auto" => Some(Query::Auto(Metric::Margin)),
            other => {
                if let Some(m) = other.strip_prefix("auto+") {
                    match m.parse::<MultiLabelMetric>() {
                        Ok(ml) => Some(Query::AutoMulti(ml)),
                        Err(_) => metric(m).map(Query::Auto),
                    }
                } else if let Some(m) = other.strip_prefix("mcfps+") {
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
                "unknown query {s:?}; use random, typiclust, probcover, auto, auto+<metric>, coreset, mcfps, mcfps+<metric>, <metric>, <metric>+clustering (metrics: {}) or, for multi-label, ll, tpd, mge, auto+ll, auto+tpd, auto+mge",
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
            "typiclust",
            "probcover",
            "auto",
            "auto+bald",
            "auto+mge",
            "auto+tpd",
        ] {
            let q: Query = name.parse().unwrap();
            assert_eq!(q.to_string(), name);
        }
        assert_eq!("BALD".parse::<Query>().unwrap(), Query::TopK(Metric::Bald));
        assert_eq!(
            "auto".parse::<Query>().unwrap(),
            Query::Auto(Metric::Margin)
        );
        assert_eq!(
            "Auto+LL".parse::<Query>().unwrap(),
            Query::AutoMulti(MultiLabelMetric::Ll)
        );
        let msg = "badge".parse::<Query>().unwrap_err().to_string();
        assert!(msg.contains("badge") && msg.contains("mcfps"), "{msg}");
    }

    #[test]
    fn auto_takes_the_data_classes_and_the_shared_typiclust_params() {
        let params = QueryParams {
            typiclust: TypiclustParams {
                neighbours: 7,
                ..TypiclustParams::default()
            },
            ..QueryParams::default()
        };
        let Strategy::Auto(a) = Query::Auto(Metric::Margin).strategy(&params, 4) else {
            panic!("auto runs the auto schedule");
        };
        assert_eq!(a.classes, 4);
        assert_eq!(a.low_budget, LowBudget::Typiclust(params.typiclust));
        let Strategy::Probcover(p) = Query::Probcover.strategy(&params, 3) else {
            panic!("probcover");
        };
        assert_eq!(p.classes, 3);
        assert!(Query::Typiclust.is_label_free() && !Query::Auto(Metric::Bald).is_label_free());
    }
}
