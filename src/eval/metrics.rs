//! Test-set scores: accuracy for single-label, micro and macro F1 for multi-label.

use ndarray::{ArrayView1, ArrayView2};

/// Share of rows whose arg-max class is `truth` (0 for no rows).
pub fn accuracy(probs: ArrayView2<'_, f32>, truth: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let correct = probs
        .outer_iter()
        .zip(truth)
        .filter(|(row, t)| argmax(*row) == **t)
        .count();
    correct as f64 / truth.len() as f64
}

fn argmax(row: ArrayView1<'_, f32>) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Micro- and macro-averaged F1 of sigmoid `probs` thresholded at `threshold` against
/// 0/1 `truth` (both `[N, C]`). Micro pools every (sample, class) decision; macro
/// averages the per-class F1 over the classes, a class with no positives and no
/// predicted positives counting as F1 = 1 (nothing to find, nothing wrongly found).
pub fn f1_scores(
    probs: ArrayView2<'_, f32>,
    truth: ArrayView2<'_, f32>,
    threshold: f32,
) -> (f64, f64) {
    let classes = truth.ncols();
    let mut tp = vec![0usize; classes];
    let mut fp = vec![0usize; classes];
    let mut fne = vec![0usize; classes];
    for (p_row, t_row) in probs.outer_iter().zip(truth.outer_iter()) {
        for c in 0..classes {
            let pred = p_row[c] >= threshold;
            let real = t_row[c] >= 0.5;
            match (pred, real) {
                (true, true) => tp[c] += 1,
                (true, false) => fp[c] += 1,
                (false, true) => fne[c] += 1,
                (false, false) => {}
            }
        }
    }
    let f1 = |tp: usize, fp: usize, fne: usize| {
        if tp + fp + fne == 0 {
            1.0
        } else {
            2.0 * tp as f64 / (2 * tp + fp + fne) as f64
        }
    };
    let micro = f1(tp.iter().sum(), fp.iter().sum(), fne.iter().sum());
    let macro_ = if classes == 0 {
        0.0
    } else {
        (0..classes).map(|c| f1(tp[c], fp[c], fne[c])).sum::<f64>() / classes as f64
    };
    (micro, macro_)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn accuracy_counts_argmax_hits() {
        let p = array![[0.7_f32, 0.3], [0.4, 0.6], [0.9, 0.1]];
        assert!((accuracy(p.view(), &[0, 1, 1]) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(accuracy(p.view(), &[]), 0.0);
    }

    #[test]
    fn f1_by_hand() {
        // Class 0: tp 1, fp 1, fn 0 -> F1 2/3. Class 1: tp 1, fp 0, fn 1 -> F1 2/3.
        // Micro: tp 2, fp 1, fn 1 -> 4/6.
        let p = array![[0.9_f32, 0.8], [0.6, 0.1]];
        let t = array![[1.0_f32, 1.0], [0.0, 1.0]];
        let (micro, macro_) = f1_scores(p.view(), t.view(), 0.5);
        assert!((micro - 2.0 / 3.0).abs() < 1e-12);
        assert!((macro_ - 2.0 / 3.0).abs() < 1e-12);
        // Perfect predictions.
        let (micro, macro_) = f1_scores(t.view(), t.view(), 0.5);
        assert_eq!((micro, macro_), (1.0, 1.0));
    }
}
