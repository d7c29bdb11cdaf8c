//! Balanced and unbalanced unlabelled pools drawn from the train split.
//!
//! The MCFPS paper (seed 000, Sec. IV-A) compares strategies on EuroSAT "class-balanced"
//! and on training data modified so that it "becomes unbalanced", without saying how.
//! NextTile's unbalanced scheme is an explicit **exponential long tail**: the classes are
//! put in a random order (ChaCha8, seeded by the trial's seed, so every seed has
//! different rare classes) and the class of rank `r` (0-based, of `C`) keeps
//! `⌈n_c · ρ^(−r/(C−1))⌉` of its `n_c` train images (a uniform sample), for an imbalance
//! ratio `ρ` (default 20: the commonest class has about 20 times as many images as the
//! rarest). The test split is never touched: scores are always measured on all of it.

use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::EvalError;

/// Default imbalance ratio `ρ` of [`PoolKind::Unbalanced`].
pub const DEFAULT_IMBALANCE_RATIO: f64 = 20.0;

/// Which pool an evaluation draws its labels from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// The whole train split.
    Balanced,
    /// The exponential long tail of the module docs.
    Unbalanced,
}

impl PoolKind {
    /// The snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            PoolKind::Balanced => "balanced",
            PoolKind::Unbalanced => "unbalanced",
        }
    }
}

impl FromStr for PoolKind {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "balanced" => Ok(PoolKind::Balanced),
            "unbalanced" | "imbalanced" | "long_tail" | "long-tail" => Ok(PoolKind::Unbalanced),
            _ => Err(EvalError::Config(format!(
                "unknown pool {s:?}; use balanced or unbalanced"
            ))),
        }
    }
}

/// The pool (indices into `classes`, ascending) for `kind`: every index for
/// [`PoolKind::Balanced`], the long-tail subsample for [`PoolKind::Unbalanced`].
///
/// # Errors
///
/// [`EvalError::Config`] when `ratio < 1` or not finite.
pub fn make_pool(
    classes: &[usize],
    n_classes: usize,
    kind: PoolKind,
    ratio: f64,
    seed: u64,
) -> Result<Vec<usize>, EvalError> {
    if !(ratio.is_finite() && ratio >= 1.0) {
        return Err(EvalError::Config(format!(
            "imbalance ratio {ratio} must be a number >= 1"
        )));
    }
    if kind == PoolKind::Balanced || n_classes < 2 {
        return Ok((0..classes.len()).collect());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB1A5);
    let mut rank: Vec<usize> = (0..n_classes).collect();
    rank.shuffle(&mut rng);
    let mut keep = Vec::new();
    for (r, &class) in rank.iter().enumerate() {
        let mut members: Vec<usize> = (0..classes.len())
            .filter(|&i| classes[i] == class)
            .collect();
        let fraction = ratio.powf(-(r as f64) / (n_classes - 1) as f64);
        let n = ((members.len() as f64) * fraction).ceil() as usize;
        members.shuffle(&mut rng);
        keep.extend_from_slice(&members[..n.min(members.len())]);
    }
    keep.sort_unstable();
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_pool_is_everything() {
        let classes = [0, 1, 2, 0, 1, 2];
        assert_eq!(
            make_pool(&classes, 3, PoolKind::Balanced, 20.0, 0).unwrap(),
            vec![0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn unbalanced_pool_is_an_exponential_long_tail() {
        // 100 images of each of 3 classes, ratio 4: the ranks keep 100, 50 and 25.
        let classes: Vec<usize> = (0..300).map(|i| i % 3).collect();
        for seed in 0..5 {
            let pool = make_pool(&classes, 3, PoolKind::Unbalanced, 4.0, seed).unwrap();
            let mut counts = [0usize; 3];
            for &i in &pool {
                counts[classes[i]] += 1;
            }
            let mut sorted = counts;
            sorted.sort_unstable();
            assert_eq!(sorted, [25, 50, 100], "seed {seed}: {counts:?}");
            assert!(pool.windows(2).all(|w| w[0] < w[1]));
        }
        // Different seeds make different classes rare.
        let rare = |seed| {
            let pool = make_pool(&classes, 3, PoolKind::Unbalanced, 4.0, seed).unwrap();
            (0..3)
                .min_by_key(|&c| pool.iter().filter(|&&i| classes[i] == c).count())
                .unwrap()
        };
        assert!(
            (0..10)
                .map(rare)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        );
        assert!(make_pool(&classes, 3, PoolKind::Unbalanced, 0.5, 0).is_err());
        assert_eq!(
            "Unbalanced".parse::<PoolKind>().unwrap(),
            PoolKind::Unbalanced
        );
        assert!("skewed".parse::<PoolKind>().is_err());
    }
}
