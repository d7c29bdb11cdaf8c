//! The [`Strategy`] enum: names, parsing and parameters of the selection strategies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sampling::clustering::ClusteringParams;
use crate::sampling::error::SamplingError;
use crate::sampling::mcfps::McfpsParams;
use crate::sampling::probcover::ProbcoverParams;
use crate::sampling::schedule::{AutoParams, LowBudget};
use crate::sampling::typiclust::TypiclustParams;

/// A selection strategy, run by [`select`](crate::sampling::select).
///
/// Serde uses the snake_case names, externally tagged: `"top_k"`, `"random"`, `"coreset"`,
/// `{"mcfps": {"anchors": null, "neighbours": 16}}` and
/// `{"clustering": {"m": 10, "iterations": 20}}` (missing parameter fields take their
/// defaults, so `{"mcfps": {}}` works). [`FromStr`] parses the bare name, giving MCFPS and
/// clustering their default parameters.
///
/// The multi-label query functions of Möllenbrok, Sumbul & Demir 2023 (LL+Clustering,
/// TPD+Clustering, MGE+Clustering) are all [`Strategy::Clustering`]; the uncertainty
/// passed in decides which. TPD has no previous model in the first round, where the paper
/// samples at random: callers pass [`Strategy::Random`] then (see
/// [`tpd_round_strategy`](crate::sampling::tpd_round_strategy)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The most uncertain tiles first ([`top_k`](crate::sampling::top_k)).
    TopK,
    /// A seeded uniform sample ([`random_sample`](crate::sampling::random_sample)).
    Random,
    /// Uncertainty within farthest-point neighbourhoods ([`mcfps`](crate::sampling::mcfps)).
    Mcfps(McfpsParams),
    /// k-center greedy core set from the labelled tiles, ignoring uncertainty
    /// ([`coreset`](crate::sampling::coreset); Sener & Savarese 2018).
    Coreset,
    /// The most uncertain tile of each k-means++ cluster of the `m·b` most uncertain
    /// tiles ([`clustering`](crate::sampling::clustering); Möllenbrok et al. 2023,
    /// Sec. II-B).
    Clustering(ClusteringParams),
    /// The most typical tile of each of the largest clusters without labels
    /// ([`typiclust`](crate::sampling::typiclust); Hacohen, Dekel & Weinshall 2022).
    Typiclust(TypiclustParams),
    /// Greedy maximum coverage of δ-balls ([`probcover`](crate::sampling::probcover);
    /// Yehuda et al. 2022).
    Probcover(ProbcoverParams),
    /// TypiClust (or ProbCover) while labels are few, then uncertainty + clustering
    /// ([`auto`](crate::sampling::auto)).
    Auto(AutoParams),
}

impl Strategy {
    /// The names of all strategies, in declaration order.
    pub const NAMES: [&'static str; 8] = [
        "top_k",
        "random",
        "mcfps",
        "coreset",
        "clustering",
        "typiclust",
        "probcover",
        "auto",
    ];

    /// The snake_case name used on the command line, in configuration files and by serde.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::TopK => "top_k",
            Strategy::Random => "random",
            Strategy::Mcfps(_) => "mcfps",
            Strategy::Coreset => "coreset",
            Strategy::Clustering(_) => "clustering",
            Strategy::Typiclust(_) => "typiclust",
            Strategy::Probcover(_) => "probcover",
            Strategy::Auto(_) => "auto",
        }
    }

    /// The valid names joined by `", "`, for error messages and help texts.
    pub fn names_list() -> String {
        Strategy::NAMES.join(", ")
    }

    /// The strategy the shells run by default: [`Strategy::Auto`] with its defaults.
    pub fn product_default() -> Strategy {
        Strategy::Auto(AutoParams::default())
    }

    /// Fills in what only the run knows: the head's `classes` (ProbCover's purity rule,
    /// `auto`'s switch), the labels given so far anywhere (`auto`'s
    /// [`known_labels`](AutoParams::known_labels)) and the head's declared switch
    /// (`model_switch`, used when the request sets none). Other strategies are returned
    /// as they are.
    pub fn with_run_facts(
        self,
        classes: usize,
        known_labels: usize,
        model_switch: Option<usize>,
    ) -> Strategy {
        let classes = classes.max(1);
        match self {
            Strategy::Probcover(p) => Strategy::Probcover(ProbcoverParams { classes, ..p }),
            Strategy::Auto(a) => {
                let low_budget = match a.low_budget {
                    LowBudget::Probcover(p) => {
                        LowBudget::Probcover(ProbcoverParams { classes, ..p })
                    }
                    other => other,
                };
                Strategy::Auto(AutoParams {
                    classes,
                    known_labels,
                    low_budget,
                    switch_per_class: Some(
                        a.switch_per_class
                            .or(model_switch)
                            .unwrap_or(AutoParams::DEFAULT_SWITCH_PER_CLASS),
                    ),
                    ..a
                })
            }
            other => other,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = SamplingError;

    /// Parses a strategy name; case, surrounding whitespace and `-` versus `_` are ignored.
    /// `"mcfps"` gets [`McfpsParams::default`], `"clustering"` [`ClusteringParams::default`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "top_k" => Ok(Strategy::TopK),
            "random" => Ok(Strategy::Random),
            "mcfps" => Ok(Strategy::Mcfps(McfpsParams::default())),
            "coreset" => Ok(Strategy::Coreset),
            "clustering" => Ok(Strategy::Clustering(ClusteringParams::default())),
            "typiclust" => Ok(Strategy::Typiclust(TypiclustParams::default())),
            "probcover" => Ok(Strategy::Probcover(ProbcoverParams::default())),
            "auto" => Ok(Strategy::Auto(AutoParams::default())),
            _ => Err(SamplingError::UnknownStrategy {
                name: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, MapDeserializer, StrDeserializer};

    use super::*;

    #[test]
    fn auto_switch_comes_from_the_request_then_the_head_then_the_default() {
        let switch = |requested: Option<usize>, model: Option<usize>| {
            let s = Strategy::Auto(AutoParams {
                switch_per_class: requested,
                ..AutoParams::default()
            });
            match s.with_run_facts(10, 0, model) {
                Strategy::Auto(a) => a.switch_per_class,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(switch(Some(5), Some(10)), Some(5));
        assert_eq!(switch(None, Some(10)), Some(10));
        assert_eq!(
            switch(None, None),
            Some(AutoParams::DEFAULT_SWITCH_PER_CLASS)
        );
    }

    #[test]
    fn names_round_trip() {
        let all = [
            Strategy::TopK,
            Strategy::Random,
            Strategy::Mcfps(McfpsParams::default()),
            Strategy::Coreset,
            Strategy::Clustering(ClusteringParams::default()),
            Strategy::Typiclust(TypiclustParams::default()),
            Strategy::Probcover(ProbcoverParams::default()),
            Strategy::Auto(AutoParams::default()),
        ];
        for (s, name) in all.iter().zip(Strategy::NAMES) {
            assert_eq!(s.name(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(name.parse::<Strategy>().as_ref(), Ok(s));
        }
        assert_eq!("Top-K".parse(), Ok(Strategy::TopK));
        assert_eq!(" CoreSet ".parse(), Ok(Strategy::Coreset));
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let msg = "badge".parse::<Strategy>().unwrap_err().to_string();
        assert!(msg.contains("\"badge\""), "{msg}");
        assert!(
            msg.contains("top_k, random, mcfps, coreset, clustering, typiclust, probcover, auto"),
            "{msg}"
        );
    }

    #[test]
    fn serde_names_and_param_defaults() {
        for name in ["top_k", "random", "coreset"] {
            let de: StrDeserializer<'_, Error> = name.into_deserializer();
            assert_eq!(Strategy::deserialize(de).map(|s| s.name()), Ok(name));
        }
        // Missing fields take their defaults.
        let de: MapDeserializer<'_, _, Error> =
            MapDeserializer::new([("neighbours", 8_usize)].into_iter());
        assert_eq!(
            McfpsParams::deserialize(de),
            Ok(McfpsParams {
                anchors: None,
                neighbours: 8
            })
        );
        // Unknown fields (typos) are rejected.
        let de: MapDeserializer<'_, _, Error> =
            MapDeserializer::new([("neighbors", 8_usize)].into_iter());
        assert!(McfpsParams::deserialize(de).is_err());
        let de: MapDeserializer<'_, _, Error> = MapDeserializer::new([("m", 4_usize)].into_iter());
        assert_eq!(
            ClusteringParams::deserialize(de),
            Ok(ClusteringParams {
                m: 4,
                iterations: 20
            })
        );
        let de: MapDeserializer<'_, _, Error> =
            MapDeserializer::new([("iterations", 3_usize), ("k", 2)].into_iter());
        assert!(ClusteringParams::deserialize(de).is_err());
    }

    #[test]
    fn serde_json_shapes() {
        // The externally tagged forms that configuration files and the run summary use.
        let s = Strategy::Clustering(ClusteringParams {
            m: 3,
            iterations: 7,
        });
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"clustering":{"m":3,"iterations":7}}"#);
        assert_eq!(serde_json::from_str::<Strategy>(&json).unwrap(), s);
        assert_eq!(
            serde_json::to_string(&Strategy::Coreset).unwrap(),
            r#""coreset""#
        );
        assert_eq!(
            serde_json::from_str::<Strategy>(r#"{"clustering":{}}"#).unwrap(),
            Strategy::Clustering(ClusteringParams::default())
        );
    }
}
