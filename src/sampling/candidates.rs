//! The rows a density-based strategy works on when the pool is large: every labelled row
//! plus a seeded uniform sample of the eligible ones.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Indices (ascending) of every labelled row and of at most `max_eligible` eligible rows:
/// all of them when there are no more, else a uniform sample without replacement drawn
/// with ChaCha8 seeded by `seed`. A uniform sample keeps the pool's density, which is what
/// TypiClust's typicality and ProbCover's coverage measure, so the picks it allows stay
/// representative of the whole pool (the approximation is documented on each strategy).
pub(crate) fn candidate_rows(
    eligible: &[bool],
    labelled: &[bool],
    max_eligible: usize,
    seed: u64,
) -> Vec<usize> {
    let pool: Vec<usize> = (0..eligible.len()).filter(|&i| eligible[i]).collect();
    let mut rows: Vec<usize> = (0..labelled.len()).filter(|&i| labelled[i]).collect();
    if pool.len() <= max_eligible {
        rows.extend(pool);
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7C0F_FEE5);
        rows.extend(
            rand::seq::index::sample(&mut rng, pool.len(), max_eligible)
                .into_iter()
                .filter_map(|j| pool.get(j).copied()),
        );
    }
    rows.sort_unstable();
    rows.dedup();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_labelled_and_caps_eligible() {
        let eligible: Vec<bool> = (0..100).map(|i| i % 10 != 0).collect();
        let labelled: Vec<bool> = (0..100).map(|i| i % 10 == 0).collect();
        let all = candidate_rows(&eligible, &labelled, 1000, 1);
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let some = candidate_rows(&eligible, &labelled, 20, 1);
        assert_eq!(some.len(), 30);
        assert!((0..100).step_by(10).all(|i| some.contains(&i)));
        assert_eq!(some, candidate_rows(&eligible, &labelled, 20, 1));
        assert_ne!(some, candidate_rows(&eligible, &labelled, 20, 2));
    }
}
