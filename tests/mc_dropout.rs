//! MC dropout is real: the shipped head's dropout gives different passes and
//! BALD > 0; a deterministic head gives BALD = 0 everywhere.

mod common;

use std::sync::atomic::AtomicBool;

use nexttile::engine::{ScoreRequest, score};
use nexttile::model::{Head, SessionConfig};
use nexttile::uncertainty::Metric;

fn request() -> ScoreRequest {
    let mut req = ScoreRequest::new(common::sen1floods_s2(), common::encoder(), common::head());
    req.budget = 4;
    req
}

#[test]
fn dropout_head_passes_differ_and_bald_is_positive() {
    let mut req = request();
    req.mc_passes = 20;
    let r = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    let bald = r.uncertainties.get(Metric::Bald);
    assert!(
        bald.iter().any(|b| *b > 1e-4),
        "max BALD {:?}",
        bald.iter().cloned().fold(0.0f32, f32::max)
    );
    assert!(bald.iter().all(|b| *b >= 0.0));

    // The same embeddings through the head twice with dropout on differ;
    // with dropout off they are identical.
    let mut head = Head::load(&common::head(), SessionConfig::default()).unwrap();
    assert!(head.has_mc_dropout());
    let e = r.embeddings.view();
    let a = head.predict(e, true).unwrap();
    let b = head.predict(e, true).unwrap();
    let diff = (&a - &b).mapv(f32::abs).fold(0.0f32, |m, v| m.max(*v));
    assert!(
        diff > 1e-4,
        "two MC passes were identical (max diff {diff})"
    );
    let c = head.predict(e, false).unwrap();
    let d = head.predict(e, false).unwrap();
    assert_eq!(c, d, "deterministic passes must match exactly");
}

#[test]
fn single_pass_means_zero_bald() {
    let mut req = request();
    req.mc_passes = 1;
    let r = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(r.uncertainties.get(Metric::Bald).iter().all(|b| *b == 0.0));
    assert!(
        r.uncertainties
            .get(Metric::VariationRatio)
            .iter()
            .all(|b| *b == 0.0)
    );
}

#[test]
fn deterministic_head_gives_zero_bald_with_many_passes() {
    // tests/fixtures/deterministic_head.onnx has no dropout (see onnx/make_test_fixtures.py):
    // probabilities are (0.5, 0.3, 0.2, 0.001 × 7) renormalised for every tile.
    let mut req = request();
    req.head = common::fixture("deterministic_head.onnx");
    req.mc_passes = 20;
    let r = score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(r.uncertainties.get(Metric::Bald).iter().all(|b| *b == 0.0));
    assert!(
        r.warnings.iter().any(|w| w.contains("no mc_dropout_input")),
        "{:?}",
        r.warnings
    );
    let p0 = r.uncertainties.mean[[0, 0]];
    assert!((p0 - 0.5 / 1.007).abs() < 1e-5, "{p0}");
}
