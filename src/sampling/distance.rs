//! Squared Euclidean distances between embedding rows.

use ndarray::ArrayView2;

/// Fills `out[i]` with the squared Euclidean distance (accumulated in `f64`) between row `i`
/// and row `query` of `embeddings` for every eligible `i`, and with `+∞` for the others.
/// Squared distances order points exactly as distances do, without the square root.
pub(crate) fn squared_distances_into(
    embeddings: &ArrayView2<'_, f32>,
    query: usize,
    eligible: &[bool],
    out: &mut [f64],
) {
    let q = embeddings.row(query);
    for ((slot, row), &ok) in out.iter_mut().zip(embeddings.outer_iter()).zip(eligible) {
        *slot = if ok {
            squared_distance(row.iter().zip(q.iter()))
        } else {
            f64::INFINITY
        };
    }
}

/// Sum of squared differences of coordinate pairs, in `f64`.
fn squared_distance<'a>(pairs: impl Iterator<Item = (&'a f32, &'a f32)>) -> f64 {
    pairs
        .map(|(&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            d * d
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn squared_distances() {
        // From (0, 0): (3, 4) is at 3² + 4² = 25; (1, 1) at 2; row 2 is not eligible.
        let emb = array![[0.0_f32, 0.0], [3.0, 4.0], [1.0, 1.0]];
        let mut out = vec![0.0; 3];
        squared_distances_into(&emb.view(), 0, &[true, true, false], &mut out);
        assert_eq!(out, vec![0.0, 25.0, f64::INFINITY]);
    }
}
