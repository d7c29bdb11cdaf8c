//! The ranking order shared by all strategies.

use std::cmp::Ordering;

/// Ranking order of two scored tiles: higher score first, then lower index. Scores are
/// validated finite, so the partial comparison never fails (an incomparable pair would
/// fall back to the index order).
pub(crate) fn rank_order(score_a: f32, a: usize, score_b: f32, b: usize) -> Ordering {
    score_b
        .partial_cmp(&score_a)
        .unwrap_or(Ordering::Equal)
        .then(a.cmp(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_score_then_lower_index() {
        assert_eq!(rank_order(0.9, 5, 0.1, 0), Ordering::Less);
        assert_eq!(rank_order(0.5, 1, 0.5, 2), Ordering::Less);
        assert_eq!(rank_order(0.5, 2, 0.5, 1), Ordering::Greater);
        // -0.0 and 0.0 are the same score.
        assert_eq!(rank_order(-0.0, 1, 0.0, 2), Ordering::Less);
    }
}
