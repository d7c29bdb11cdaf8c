//! Multi-label uncertainties: LL, TPD and MGE.
//!
//! Möllenbrok, Sumbul & Demir 2023, *Deep Active Learning for Multi-Label Classification
//! of Remote Sensing Images* (IEEE GRSL), Sec. II-A. A multi-label model outputs one
//! independent sigmoid probability per class (`[N, C]`, rows need not sum to 1) and is
//! trained with binary cross-entropy (Eq. 1). Each function returns one `f32` per tile,
//! higher = more uncertain, to be combined with
//! [`Strategy::Clustering`](crate::sampling::Strategy::Clustering) into the paper's
//! LL+Clustering, TPD+Clustering and MGE+Clustering query functions (Sec. II-B).
//!
//! | uncertainty | function | paper |
//! |---|---|---|
//! | LL, learned loss | [`predicted_loss`] | `Unc^LL(X) = l̂`, Eq. 4 (after Yoo & Kweon 2019) |
//! | TPD, temporal discrepancy | [`tpd`] | `‖F^τ(X) − F^{τ−1}(X)‖₂`, Eq. 5 (after Huang et al. 2021) |
//! | MGE, gradient-embedding magnitude | [`mge`] | `‖∇_W L_BCE(F(X), ŷ)‖₂`, Eqs. 6–7 (after Ash et al. 2020) |
//!
//! Sums are taken in `f64`. With MC dropout, average the passes first with
//! [`mean_sigmoid_probs`].

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayView3, Axis};

use crate::uncertainty::error::{PROBABILITY_TOLERANCE, UncertaintyError};

/// MGE uncertainty of every tile (Möllenbrok et al. 2023, Sec. II-A-3, Eqs. 6–7): the
/// norm of the gradient of the BCE loss (Eq. 1) with respect to the last layer's weights,
/// taking the thresholded predictions as pseudo-labels `ŷ_c = [p_c ≥ threshold]`
/// (`threshold` 0.5 in the paper).
///
/// For a linear last layer `z = W h + b` followed by a sigmoid, `∂L/∂z = p − ŷ`, so
/// `∇_W L = (p − ŷ) hᵀ`, a rank-one matrix whose Frobenius norm is
/// `‖p − ŷ‖₂ · ‖h‖₂`: that is what is returned, from the `[N, C]` sigmoid `probs` and the
/// `[N]` norms `hidden_norm = ‖h‖₂` of the last layer's input. The bias is left out, as
/// `W` in Eq. 6; to include it, pass `sqrt(‖h‖₂² + 1)` as the norm.
///
/// # Errors
///
/// [`UncertaintyError::NoLabelClasses`] for `C == 0`,
/// [`UncertaintyError::OutputShapeMismatch`] when `hidden_norm` does not have `N` values,
/// [`UncertaintyError::NonFiniteOutput`] / [`UncertaintyError::NotSigmoidProbability`] for
/// a probability that is not finite / outside `[0, 1]` (within [`PROBABILITY_TOLERANCE`]),
/// [`UncertaintyError::NonFiniteScore`] / [`UncertaintyError::NegativeNorm`] for a bad norm,
/// and [`UncertaintyError::InvalidThreshold`] unless `0 <= threshold <= 1`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::mge;
///
/// // p = [0.9, 0.2, 0.6] -> ŷ = [1, 0, 1], p − ŷ = [−0.1, 0.2, −0.4], ‖p − ŷ‖ = √0.21.
/// let probs = array![[0.9_f32, 0.2, 0.6]];
/// let hidden_norm = array![2.0_f32];
/// let u = mge(probs.view(), hidden_norm.view(), 0.5)?;
/// assert!((u[0] - 2.0 * 0.21_f32.sqrt()).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn mge(
    probs: ArrayView2<'_, f32>,
    hidden_norm: ArrayView1<'_, f32>,
    threshold: f32,
) -> Result<Array1<f32>, UncertaintyError> {
    validate_sigmoid(&probs, "sigmoid probability")?;
    let tiles = probs.nrows();
    if hidden_norm.len() != tiles {
        return Err(UncertaintyError::OutputShapeMismatch {
            what: "hidden_norm",
            expected: vec![tiles],
            found: vec![hidden_norm.len()],
        });
    }
    for (tile, &value) in hidden_norm.iter().enumerate() {
        if !value.is_finite() {
            return Err(UncertaintyError::NonFiniteScore {
                what: "hidden-feature norm",
                tile,
                value,
            });
        }
        if value < 0.0 {
            return Err(UncertaintyError::NegativeNorm { tile, value });
        }
    }
    if !(0.0..=1.0).contains(&threshold) {
        return Err(UncertaintyError::InvalidThreshold { threshold });
    }
    Ok(probs
        .outer_iter()
        .zip(hidden_norm.iter())
        .map(|(row, &h)| {
            let squared: f64 = row
                .iter()
                .map(|&p| {
                    let pseudo = if p >= threshold { 1.0 } else { 0.0 };
                    let d = f64::from(p) - pseudo;
                    d * d
                })
                .sum();
            (squared.sqrt() * f64::from(h)) as f32
        })
        .collect())
}

/// TPD uncertainty of every tile (Möllenbrok et al. 2023, Sec. II-A-2, Eq. 5): the
/// Euclidean distance `‖F^τ(X) − F^{τ−1}(X)‖₂` between this round's `current` and the
/// previous round's `previous` outputs, both `[N, C]` (the paper uses the models'
/// outputs, i.e. the sigmoid probabilities; any finite outputs are accepted). Tiles whose
/// prediction moved most between rounds are the most uncertain.
///
/// In the first round there is no previous model; the paper then samples at random
/// (Sec. II-A-2), see [`tpd_round_strategy`](crate::sampling::tpd_round_strategy).
///
/// # Errors
///
/// [`UncertaintyError::NoLabelClasses`] for `C == 0`,
/// [`UncertaintyError::OutputShapeMismatch`] when the shapes differ, and
/// [`UncertaintyError::NonFiniteOutput`] for a NaN or infinite output.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::tpd;
///
/// let current = array![[0.9_f32, 0.1], [0.5, 0.5]];
/// let previous = array![[0.6_f32, 0.5], [0.5, 0.5]];
/// let u = tpd(current.view(), previous.view())?;
/// // Tile 0 moved by (0.3, −0.4): distance 0.5. Tile 1 did not move.
/// assert!((u[0] - 0.5).abs() < 1e-6);
/// assert_eq!(u[1], 0.0);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn tpd(
    current: ArrayView2<'_, f32>,
    previous: ArrayView2<'_, f32>,
) -> Result<Array1<f32>, UncertaintyError> {
    if current.dim() != previous.dim() {
        return Err(UncertaintyError::OutputShapeMismatch {
            what: "previous outputs",
            expected: current.shape().to_vec(),
            found: previous.shape().to_vec(),
        });
    }
    check_finite(&current, "current output")?;
    check_finite(&previous, "previous output")?;
    Ok(current
        .outer_iter()
        .zip(previous.outer_iter())
        .map(|(a, b)| {
            let squared: f64 = a
                .iter()
                .zip(b.iter())
                .map(|(&x, &y)| {
                    let d = f64::from(x) - f64::from(y);
                    d * d
                })
                .sum();
            squared.sqrt() as f32
        })
        .collect())
}

/// LL uncertainty of every tile (Möllenbrok et al. 2023, Sec. II-A-1, Eq. 4): the output
/// `l̂` of the loss-prediction module trained jointly with the classifier (Eqs. 2–3, after
/// Yoo & Kweon 2019), returned unchanged after checking it. A higher predicted loss means
/// more uncertain; the values are a ranking score and may be negative.
///
/// # Errors
///
/// [`UncertaintyError::NonFiniteScore`] for a NaN or infinite prediction.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::predicted_loss;
///
/// let loss = array![0.3_f32, 1.2, -0.1];
/// assert_eq!(predicted_loss(loss.view())?, loss);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn predicted_loss(loss: ArrayView1<'_, f32>) -> Result<Array1<f32>, UncertaintyError> {
    if let Some((tile, &value)) = loss.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(UncertaintyError::NonFiniteScore {
            what: "predicted loss",
            tile,
            value,
        });
    }
    Ok(loss.to_owned())
}

/// Mean sigmoid probabilities over `T` MC-dropout passes: `[T, N, C]` to `[N, C]`, summed
/// in `f64`. Unlike [`mean_probs`](crate::uncertainty::mean_probs) the class
/// probabilities are independent, so rows need not sum to 1.
///
/// # Errors
///
/// [`UncertaintyError::NoPasses`] for `T == 0`, [`UncertaintyError::NoLabelClasses`] for
/// `C == 0`, [`UncertaintyError::NonFinite`] for a NaN or infinite value and
/// [`UncertaintyError::NotSigmoidProbability`] for one outside `[0, 1]` (within
/// [`PROBABILITY_TOLERANCE`]).
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use nexttile::uncertainty::mean_sigmoid_probs;
///
/// // Two passes over one tile with two labels: (0.2 + 0.4) / 2 and (0.9 + 0.7) / 2.
/// let probs = array![[[0.2_f32, 0.9]], [[0.4, 0.7]]];
/// let mean = mean_sigmoid_probs(probs.view())?;
/// assert!((mean[[0, 0]] - 0.3).abs() < 1e-6);
/// assert!((mean[[0, 1]] - 0.8).abs() < 1e-6);
/// # Ok::<(), nexttile::uncertainty::UncertaintyError>(())
/// ```
pub fn mean_sigmoid_probs(probs: ArrayView3<'_, f32>) -> Result<Array2<f32>, UncertaintyError> {
    let (passes, tiles, classes) = probs.dim();
    if passes == 0 {
        return Err(UncertaintyError::NoPasses { tiles, classes });
    }
    if classes == 0 {
        return Err(UncertaintyError::NoLabelClasses);
    }
    for (pass, per_pass) in probs.outer_iter().enumerate() {
        for ((tile, class), &value) in per_pass.indexed_iter() {
            if !value.is_finite() {
                return Err(UncertaintyError::NonFinite {
                    pass,
                    tile,
                    class,
                    value,
                });
            }
        }
        validate_sigmoid(&per_pass, "MC-dropout sigmoid probability")?;
    }
    let mut acc = Array2::<f64>::zeros((tiles, classes));
    for pass in probs.axis_iter(Axis(0)) {
        acc.zip_mut_with(&pass, |a, &p| *a += f64::from(p));
    }
    Ok(acc.mapv(|a| (a / passes as f64) as f32))
}

/// Checks `[N, C]` sigmoid probabilities: `C >= 1`, finite, within `[0, 1]` up to
/// [`PROBABILITY_TOLERANCE`].
fn validate_sigmoid(
    probs: &ArrayView2<'_, f32>,
    what: &'static str,
) -> Result<(), UncertaintyError> {
    check_finite(probs, what)?;
    let tol = PROBABILITY_TOLERANCE;
    match probs
        .indexed_iter()
        .find(|(_, v)| **v < -tol || **v > 1.0 + tol)
    {
        Some(((tile, class), &value)) => Err(UncertaintyError::NotSigmoidProbability {
            what,
            tile,
            class,
            value,
        }),
        None => Ok(()),
    }
}

/// Checks that an `[N, C]` output has `C >= 1` and only finite values.
fn check_finite(values: &ArrayView2<'_, f32>, what: &'static str) -> Result<(), UncertaintyError> {
    if values.ncols() == 0 {
        return Err(UncertaintyError::NoLabelClasses);
    }
    match values.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((tile, class), &value)) => Err(UncertaintyError::NonFiniteOutput {
            what,
            tile,
            class,
            value,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::{Array2, Array3, array};

    use super::*;

    #[test]
    fn mge_hand_computed() {
        // Threshold 0.5:
        //   tile 0: p = [0.9, 0.2, 0.6] -> ŷ = [1, 0, 1], p − ŷ = [−0.1, 0.2, −0.4],
        //           ‖p − ŷ‖² = 0.01 + 0.04 + 0.16 = 0.21, × ‖h‖ = 2 -> 2 √0.21 = 0.916515
        //   tile 1: p = 0.5 everywhere -> ŷ = 1 (p ≥ t), p − ŷ = −0.5 ×3,
        //           ‖p − ŷ‖ = √0.75 = 0.866025, × 1
        //   tile 2: p = [1, 0, 0] = ŷ -> 0, whatever ‖h‖ = 10
        //   tile 3: p = [0.3, 0.3, 0.3] but ‖h‖ = 0 -> 0
        let probs = array![
            [0.9_f32, 0.2, 0.6],
            [0.5, 0.5, 0.5],
            [1.0, 0.0, 0.0],
            [0.3, 0.3, 0.3]
        ];
        let norms = array![2.0_f32, 1.0, 10.0, 0.0];
        let u = mge(probs.view(), norms.view(), 0.5).unwrap();
        assert_abs_diff_eq!(u[0], 0.916_515, epsilon = 1e-6);
        assert_abs_diff_eq!(u[1], 0.866_025, epsilon = 1e-6);
        assert_eq!(u[2], 0.0);
        assert_eq!(u[3], 0.0);
        // Threshold 0.95 makes every pseudo-label of tile 0 zero: ‖p‖ = √(0.81 + 0.04
        // + 0.36) = √1.21 = 1.1, × 2 = 2.2.
        let u = mge(probs.view(), norms.view(), 0.95).unwrap();
        assert_abs_diff_eq!(u[0], 2.2, epsilon = 1e-6);
    }

    #[test]
    fn mge_equals_the_explicit_weight_gradient_norm() {
        // Build ∇_W L = (p − ŷ) hᵀ for h = [1.2, 1.6] (‖h‖ = 2) and take its Frobenius
        // norm entry by entry: it must equal ‖p − ŷ‖ · ‖h‖ (tile 0 above).
        let p = [0.9_f64, 0.2, 0.6];
        let y = [1.0_f64, 0.0, 1.0];
        let h = [1.2_f64, 1.6];
        let frobenius: f64 = p
            .iter()
            .zip(&y)
            .flat_map(|(pc, yc)| h.iter().map(move |hk| ((pc - yc) * hk).powi(2)))
            .sum::<f64>()
            .sqrt();
        let probs = array![[0.9_f32, 0.2, 0.6]];
        let norms = array![2.0_f32];
        let u = mge(probs.view(), norms.view(), 0.5).unwrap();
        assert_abs_diff_eq!(f64::from(u[0]), frobenius, epsilon = 1e-6);
    }

    #[test]
    fn mge_rejects_bad_input() {
        let probs = array![[0.9_f32, 0.2]];
        let one = array![1.0_f32];
        assert_eq!(
            mge(probs.view(), array![1.0_f32, 2.0].view(), 0.5),
            Err(UncertaintyError::OutputShapeMismatch {
                what: "hidden_norm",
                expected: vec![1],
                found: vec![2]
            })
        );
        assert_eq!(
            mge(probs.view(), array![-1.0_f32].view(), 0.5),
            Err(UncertaintyError::NegativeNorm {
                tile: 0,
                value: -1.0
            })
        );
        assert!(matches!(
            mge(probs.view(), array![f32::NAN].view(), 0.5),
            Err(UncertaintyError::NonFiniteScore { tile: 0, .. })
        ));
        assert!(matches!(
            mge(probs.view(), one.view(), f32::NAN),
            Err(UncertaintyError::InvalidThreshold { .. })
        ));
        assert_eq!(
            mge(probs.view(), one.view(), 1.5),
            Err(UncertaintyError::InvalidThreshold { threshold: 1.5 })
        );
        let logits = array![[2.5_f32, 0.2]];
        let err = mge(logits.view(), one.view(), 0.5).unwrap_err();
        assert_eq!(
            err,
            UncertaintyError::NotSigmoidProbability {
                what: "sigmoid probability",
                tile: 0,
                class: 0,
                value: 2.5
            }
        );
        assert!(err.to_string().contains("not logits"), "{err}");
        let nan = array![[0.5_f32, f32::NAN]];
        assert!(matches!(
            mge(nan.view(), one.view(), 0.5),
            Err(UncertaintyError::NonFiniteOutput {
                tile: 0,
                class: 1,
                ..
            })
        ));
        let no_classes = Array2::<f32>::zeros((1, 0));
        assert_eq!(
            mge(no_classes.view(), one.view(), 0.5),
            Err(UncertaintyError::NoLabelClasses)
        );
        // Rows need not sum to 1 (independent labels), and no tiles is fine.
        assert!(mge(array![[0.9_f32, 0.9]].view(), one.view(), 0.5).is_ok());
        let empty = Array2::<f32>::zeros((0, 3));
        assert_eq!(
            mge(empty.view(), Array1::<f32>::zeros(0).view(), 0.5).map(|u| u.len()),
            Ok(0)
        );
    }

    #[test]
    fn tpd_hand_computed() {
        // Tile 0: (0.9, 0.1) − (0.6, 0.5) = (0.3, −0.4) -> 0.5.
        // Tile 1: identical -> 0.
        // Tile 2: (1, 0, ...) vs (0, 1): √2 = 1.414214.
        let current = array![[0.9_f32, 0.1], [0.5, 0.5], [1.0, 0.0]];
        let previous = array![[0.6_f32, 0.5], [0.5, 0.5], [0.0, 1.0]];
        let u = tpd(current.view(), previous.view()).unwrap();
        assert_abs_diff_eq!(u[0], 0.5, epsilon = 1e-6);
        assert_eq!(u[1], 0.0);
        assert_abs_diff_eq!(u[2], std::f32::consts::SQRT_2, epsilon = 1e-6);
    }

    #[test]
    fn tpd_rejects_bad_input() {
        let current = array![[0.9_f32, 0.1], [0.5, 0.5]];
        let previous = array![[0.6_f32, 0.5]];
        let err = tpd(current.view(), previous.view()).unwrap_err();
        assert_eq!(
            err,
            UncertaintyError::OutputShapeMismatch {
                what: "previous outputs",
                expected: vec![2, 2],
                found: vec![1, 2]
            }
        );
        assert!(err.to_string().contains("[1, 2]"), "{err}");
        let nan = array![[0.6_f32, 0.5], [f32::INFINITY, 0.5]];
        assert!(matches!(
            tpd(current.view(), nan.view()),
            Err(UncertaintyError::NonFiniteOutput {
                what: "previous output",
                tile: 1,
                class: 0,
                ..
            })
        ));
        let none = Array2::<f32>::zeros((2, 0));
        assert_eq!(
            tpd(none.view(), none.view()),
            Err(UncertaintyError::NoLabelClasses)
        );
    }

    #[test]
    fn predicted_loss_passes_finite_values_through() {
        let loss = array![0.3_f32, 1.2, -0.1];
        assert_eq!(predicted_loss(loss.view()), Ok(loss.clone()));
        let bad = array![0.3_f32, f32::NAN];
        let err = predicted_loss(bad.view()).unwrap_err();
        assert!(matches!(
            err,
            UncertaintyError::NonFiniteScore {
                what: "predicted loss",
                tile: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("tile 1"), "{err}");
    }

    #[test]
    fn mean_sigmoid_probs_hand_computed() {
        // Tile 0: (0.2 + 0.4 + 0.9) / 3 = 0.5 and (0.9 + 0.7 + 0.8) / 3 = 0.8.
        // Tile 1: (1 + 1 + 0.7) / 3 = 0.9 and 0 throughout.
        let probs = array![
            [[0.2_f32, 0.9], [1.0, 0.0]],
            [[0.4, 0.7], [1.0, 0.0]],
            [[0.9, 0.8], [0.7, 0.0]]
        ];
        let mean = mean_sigmoid_probs(probs.view()).unwrap();
        assert_abs_diff_eq!(mean[[0, 0]], 0.5, epsilon = 1e-6);
        assert_abs_diff_eq!(mean[[0, 1]], 0.8, epsilon = 1e-6);
        assert_abs_diff_eq!(mean[[1, 0]], 0.9, epsilon = 1e-6);
        assert_eq!(mean[[1, 1]], 0.0);
    }

    #[test]
    fn mean_sigmoid_probs_rejects_bad_input() {
        assert_eq!(
            mean_sigmoid_probs(Array3::<f32>::zeros((0, 2, 3)).view()),
            Err(UncertaintyError::NoPasses {
                tiles: 2,
                classes: 3
            })
        );
        assert_eq!(
            mean_sigmoid_probs(Array3::<f32>::zeros((2, 2, 0)).view()),
            Err(UncertaintyError::NoLabelClasses)
        );
        let nan = array![[[0.5_f32, 0.5]], [[0.5, f32::NAN]]];
        assert!(matches!(
            mean_sigmoid_probs(nan.view()),
            Err(UncertaintyError::NonFinite {
                pass: 1,
                tile: 0,
                class: 1,
                ..
            })
        ));
        let negative = array![[[0.5_f32, -0.2]]];
        assert!(matches!(
            mean_sigmoid_probs(negative.view()),
            Err(UncertaintyError::NotSigmoidProbability {
                tile: 0,
                class: 1,
                ..
            })
        ));
    }
}
