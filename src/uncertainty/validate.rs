//! Validation of `[T, N, C]` MC-dropout probability arrays.

use ndarray::{ArrayView3, Axis};

use crate::uncertainty::error::{PROBABILITY_TOLERANCE, UncertaintyError};

/// Checks that `probs` is a `[T, N, C]` array of probability vectors: `T >= 1`, `C >= 2`,
/// every value finite and in `[0, 1]`, every vector summing to 1 (within
/// [`PROBABILITY_TOLERANCE`]). `N == 0` is valid. Errors name the first bad tile.
pub(crate) fn validate_probs(probs: &ArrayView3<'_, f32>) -> Result<(), UncertaintyError> {
    let (passes, tiles, classes) = probs.dim();
    if passes == 0 {
        return Err(UncertaintyError::NoPasses { tiles, classes });
    }
    if classes < 2 {
        return Err(UncertaintyError::TooFewClasses { classes, needed: 2 });
    }
    let tol = f64::from(PROBABILITY_TOLERANCE);
    for tile in 0..tiles {
        let per_tile = probs.index_axis(Axis(1), tile);
        for (pass, row) in per_tile.outer_iter().enumerate() {
            let mut sum = 0.0_f64;
            for (class, &value) in row.iter().enumerate() {
                if !value.is_finite() {
                    return Err(UncertaintyError::NonFinite {
                        pass,
                        tile,
                        class,
                        value,
                    });
                }
                let v = f64::from(value);
                if v < -tol || v > 1.0 + tol {
                    return Err(UncertaintyError::OutOfRange {
                        pass,
                        tile,
                        class,
                        value,
                    });
                }
                sum += v;
            }
            if (sum - 1.0).abs() > tol {
                return Err(UncertaintyError::NotNormalised { pass, tile, sum });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn accepts_valid_and_empty_tile_axis() {
        let probs = array![[[0.25_f32, 0.75]], [[1.0, 0.0]]];
        assert_eq!(validate_probs(&probs.view()), Ok(()));
        let empty = Array3::<f32>::zeros((3, 0, 4));
        assert_eq!(validate_probs(&empty.view()), Ok(()));
    }

    #[test]
    fn rejects_degenerate_shapes() {
        let no_passes = Array3::<f32>::zeros((0, 2, 3));
        assert_eq!(
            validate_probs(&no_passes.view()),
            Err(UncertaintyError::NoPasses {
                tiles: 2,
                classes: 3
            })
        );
        let one_class = Array3::<f32>::ones((2, 2, 1));
        assert_eq!(
            validate_probs(&one_class.view()),
            Err(UncertaintyError::TooFewClasses {
                classes: 1,
                needed: 2
            })
        );
        // Shape checks come before value checks, even with no tiles.
        let empty_one_class = Array3::<f32>::zeros((1, 0, 1));
        assert!(matches!(
            validate_probs(&empty_one_class.view()),
            Err(UncertaintyError::TooFewClasses { .. })
        ));
    }

    #[test]
    fn names_the_first_bad_tile() {
        // Tile 0 is fine; tile 1 has a NaN in pass 1, class 0; tile 2 is also bad but later.
        let probs = array![
            [[0.5_f32, 0.5], [0.5, 0.5], [f32::NAN, 1.0]],
            [[0.5, 0.5], [f32::NAN, 1.0], [0.5, 0.5]]
        ];
        let err = validate_probs(&probs.view()).unwrap_err();
        assert!(matches!(
            err,
            UncertaintyError::NonFinite {
                pass: 1,
                tile: 1,
                class: 0,
                ..
            }
        ));
        assert!(err.to_string().contains("tile 1"), "{err}");
    }

    #[test]
    fn rejects_infinity_logits_and_unnormalised_rows() {
        let inf = array![[[f32::INFINITY, 0.0]]];
        assert!(matches!(
            validate_probs(&inf.view()),
            Err(UncertaintyError::NonFinite { tile: 0, .. })
        ));
        let logits = array![[[2.5_f32, -1.5]]];
        assert!(matches!(
            validate_probs(&logits.view()),
            Err(UncertaintyError::OutOfRange {
                tile: 0,
                class: 0,
                ..
            })
        ));
        let unnormalised = array![[[0.5_f32, 0.4]], [[0.5, 0.5]]];
        let err = validate_probs(&unnormalised.view()).unwrap_err();
        assert!(matches!(
            err,
            UncertaintyError::NotNormalised {
                pass: 0,
                tile: 0,
                ..
            }
        ));
        assert!(err.to_string().contains("softmax"), "{err}");
        // f32 rounding well inside the tolerance is accepted.
        let rounded = array![[[0.333_333_34_f32, 0.333_333_34, 0.333_333_34]]];
        assert_eq!(validate_probs(&rounded.view()), Ok(()));
    }
}
