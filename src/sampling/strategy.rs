//! The [`Strategy`] enum: names, parsing and parameters of the selection strategies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sampling::error::SamplingError;
use crate::sampling::mcfps::McfpsParams;

/// A selection strategy, run by [`select`](crate::sampling::select).
///
/// Serde uses the snake_case names, externally tagged: `"top_k"`, `"random"`, and
/// `{"mcfps": {"anchors": null, "neighbours": 16}}` (missing MCFPS fields take their
/// defaults, so `{"mcfps": {}}` works). [`FromStr`] parses the bare name, giving MCFPS its
/// default parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The most uncertain tiles first ([`top_k`](crate::sampling::top_k)).
    TopK,
    /// A seeded uniform sample ([`random_sample`](crate::sampling::random_sample)).
    Random,
    /// Uncertainty within farthest-point neighbourhoods ([`mcfps`](crate::sampling::mcfps)).
    Mcfps(McfpsParams),
}

impl Strategy {
    /// The names of all strategies, in declaration order.
    pub const NAMES: [&'static str; 3] = ["top_k", "random", "mcfps"];

    /// The snake_case name used on the command line, in configuration files and by serde.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::TopK => "top_k",
            Strategy::Random => "random",
            Strategy::Mcfps(_) => "mcfps",
        }
    }

    /// The valid names joined by `", "`, for error messages and help texts.
    pub fn names_list() -> String {
        Strategy::NAMES.join(", ")
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
    /// `"mcfps"` gets [`McfpsParams::default`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "top_k" => Ok(Strategy::TopK),
            "random" => Ok(Strategy::Random),
            "mcfps" => Ok(Strategy::Mcfps(McfpsParams::default())),
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
    fn names_round_trip() {
        let all = [
            Strategy::TopK,
            Strategy::Random,
            Strategy::Mcfps(McfpsParams::default()),
        ];
        for (s, name) in all.iter().zip(Strategy::NAMES) {
            assert_eq!(s.name(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(name.parse::<Strategy>().as_ref(), Ok(s));
        }
        assert_eq!("Top-K".parse(), Ok(Strategy::TopK));
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let msg = "coreset".parse::<Strategy>().unwrap_err().to_string();
        assert!(msg.contains("\"coreset\""), "{msg}");
        assert!(msg.contains("top_k, random, mcfps"), "{msg}");
    }

    #[test]
    fn serde_names_and_param_defaults() {
        for name in ["top_k", "random"] {
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
    }
}
