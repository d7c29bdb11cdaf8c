//! The embedding cache: a second run loads embeddings instead of encoding and
//! gives the same result; f16 storage costs (almost) nothing in predictions.

mod common;

use std::sync::atomic::AtomicBool;

use nexttile::engine::{ScoreRequest, score};
use nexttile::uncertainty::Metric;

fn request(cache: Option<&std::path::Path>) -> ScoreRequest {
    let mut r = ScoreRequest::new(common::sample_scene(), common::encoder(), common::head());
    r.mc_passes = 1; // deterministic: differences come from the cache alone
    r.cache = cache.map(|p| p.to_path_buf());
    r
}

#[test]
fn second_run_hits_the_cache_and_matches() {
    let dir = common::tempdir();
    let first = score(&request(Some(dir.path())), &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(!first.cache_hit);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one cache file");
    let second = score(&request(Some(dir.path())), &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(second.cache_hit);
    assert_eq!(first.tiles, second.tiles);
    assert_eq!(first.embeddings, second.embeddings);
    assert_eq!(first.uncertainties.mean, second.uncertainties.mean);
    let picks =
        |r: &nexttile::engine::ScoreResult| r.picks.iter().map(|p| p.index).collect::<Vec<_>>();
    assert_eq!(picks(&first), picks(&second));

    // Against f32 embeddings (no cache): what f16 storage costs.
    let plain = score(&request(None), &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(!plain.cache_hit);
    let dp = (&plain.uncertainties.mean - &second.uncertainties.mean)
        .mapv(f32::abs)
        .fold(0.0f32, |m, v| m.max(*v));
    let agree = plain
        .predicted
        .iter()
        .zip(&second.predicted)
        .filter(|(a, b)| a == b)
        .count() as f64
        / plain.predicted.len() as f64;
    let dl = (&plain.uncertainties.get(Metric::LeastConfidence)
        - &second.uncertainties.get(Metric::LeastConfidence))
        .mapv(f32::abs)
        .fold(0.0f32, |m, v| m.max(*v));
    println!(
        "f16 cache vs f32: max |Δp| = {dp:.2e}, max |Δ least_confidence| = {dl:.2e}, class agreement {agree:.4}"
    );
    assert!(dp < 5e-3, "max |Δp| {dp}");
    assert!(agree >= 0.99, "class agreement {agree}");
}

#[test]
fn a_damaged_cache_file_is_recomputed_with_a_warning() {
    let dir = common::tempdir();
    score(&request(Some(dir.path())), &|_| {}, &AtomicBool::new(false)).unwrap();
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, b"NTEMB1\nnot a header").unwrap();
    let r = score(&request(Some(dir.path())), &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(!r.cache_hit);
    assert!(
        r.warnings.iter().any(|w| w.contains("damaged")),
        "{:?}",
        r.warnings
    );
    // and it was rewritten: the next run hits again
    let again = score(&request(Some(dir.path())), &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(again.cache_hit);
}
