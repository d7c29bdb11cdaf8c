//! `score`'s outputs on the real sample are byte-identical to those of the binary
//! before issue 17 split the engine into named stages (T = 1): the SHA-256 of every
//! output file was taken from that binary (main at d1decdb) and is written here as a
//! fact. `summary.json` is compared without what differs between any two runs (the
//! `timings`, the `outputs` paths, the onnxruntime `runtime` found on the machine and
//! the training seconds of a retrained head).
//!
//! Paths are given relative to the repository root (the binary runs there), so no
//! output names the checkout's folder. `NEXTTILE_GOLDEN_BIN` runs another binary (how
//! the facts were taken); a mismatch prints every file's actual digest.

mod common;

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

/// The files `score` writes, in the order of the digests below.
const FILES: [&str; 6] = [
    "heatmap.tif",
    "heatmap.qml",
    "suggestions.geojson",
    "tiles.geojson",
    "tiles.csv",
    "summary.json",
];

/// Point and polygon labels on the sample (UTM 18N) with classes of the head, one of
/// them the reserved `unusable` class.
const LABELS: &str = r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"EPSG:32618"}},"features":[
{"type":"Feature","properties":{"class":"SeaLake"},"geometry":{"type":"Point","coordinates":[452000,4165000]}},
{"type":"Feature","properties":{"class":"SeaLake"},"geometry":{"type":"Point","coordinates":[453000,4170000]}},
{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":[437000,4176000]}},
{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":[438500,4172000]}},
{"type":"Feature","properties":{"class":"HerbaceousVegetation"},"geometry":{"type":"Point","coordinates":[441000,4177000]}},
{"type":"Feature","properties":{"class":"River"},"geometry":{"type":"Point","coordinates":[446000,4168000]}},
{"type":"Feature","properties":{"class":"Residential"},"geometry":{"type":"Point","coordinates":[443000,4174000]}},
{"type":"Feature","properties":{"class":"unusable"},"geometry":{"type":"Point","coordinates":[449000,4162000]}},
{"type":"Feature","properties":{"class":"Pasture"},"geometry":{"type":"Polygon","coordinates":[[[439000,4164000],[440000,4164000],[440000,4163000],[439000,4163000],[439000,4164000]]]}}
]}"#;

fn binary() -> String {
    std::env::var("NEXTTILE_GOLDEN_BIN").unwrap_or_else(|_| common::bin().to_string())
}

/// Runs `score` on the sample from the repository root with the shipped SimSiam pair,
/// one MC pass and `extra` arguments, writing into `out`.
fn score(out: &Path, extra: &[&str]) {
    let mut args = vec![
        "score",
        "samples/chincoteague_s2.tif",
        "--encoder",
        "onnx/eurosat_simsiam/encoder.onnx",
        "--head",
        "onnx/eurosat_simsiam/head.onnx",
        "--mc-passes",
        "1",
        "--quiet",
        "--out",
        out.to_str().expect("a UTF-8 temp path"),
    ];
    args.extend_from_slice(extra);
    common::sample_scene();
    let run = Command::new(binary())
        .current_dir(common::root())
        .args(&args)
        .output()
        .expect("run nexttile");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The SHA-256 (hex) of each of [`FILES`] in `dir`; `summary.json` without the fields
/// that change from run to run, re-serialised with sorted keys.
fn digests(dir: &Path) -> Vec<String> {
    FILES
        .iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            let bytes = if *f == "summary.json" {
                let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let o = v.as_object_mut().unwrap();
                for k in ["timings", "outputs", "runtime"] {
                    o.remove(k);
                }
                if let Some(r) = o.get_mut("retrained").and_then(|r| r.get_mut("report")) {
                    r.as_object_mut().unwrap().remove("seconds");
                }
                serde_json::to_vec(&v).unwrap()
            } else {
                bytes
            };
            format!("{:x}", Sha256::digest(&bytes))
        })
        .collect()
}

fn assert_digests(dir: &Path, want: [&str; 6], what: &str) {
    let got = digests(dir);
    let report: Vec<String> = FILES
        .iter()
        .zip(&got)
        .map(|(f, d)| format!("{f}: {d}"))
        .collect();
    assert_eq!(
        got,
        want,
        "{what}: outputs differ from the pre-refactor binary's; actual:\n{}",
        report.join("\n")
    );
}

/// The default run: no labels, no cache, `auto` on margin, 20 suggestions.
#[test]
fn score_outputs_on_the_sample_are_byte_identical_to_before_the_stages() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("plain");
    score(&dir, &["--no-cache"]);
    assert_digests(&dir, PLAIN, "plain run");
}

/// Labels with classes, a retrained head, ground spacing and the embedding cache: the
/// run that writes the cache and the one that reads it give the pre-refactor files.
#[test]
fn retrained_cached_spaced_outputs_are_byte_identical_to_before_the_stages() {
    let tmp = common::tempdir();
    let labels = tmp.path().join("labels.geojson");
    std::fs::write(&labels, LABELS).unwrap();
    let cache = tmp.path().join("cache");
    for (run, what) in [("first", "cache written"), ("second", "cache read")] {
        let dir = tmp.path().join(run);
        score(
            &dir,
            &[
                "--labelled",
                labels.to_str().unwrap(),
                "--retrain",
                "--cache-dir",
                cache.to_str().unwrap(),
                "--seed",
                "3",
                "--min-spacing",
                "500",
                "--budget",
                "12",
            ],
        );
        let mut want = RETRAINED;
        if run == "second" {
            want[5] = RETRAINED_SUMMARY_FROM_CACHE;
        }
        assert_digests(&dir, want, what);
    }
}

/// Digests of [`FILES`] for the plain run, from the pre-refactor binary.
const PLAIN: [&str; 6] = [
    "24e15462e2d95eec0ceed6fbcf54f4e4faaf9b77d9698d7a63262163389de76b",
    "4c0f7863126f2cfede8f0c3072419a14d1526d46bfd5f5d04a186c54726c4568",
    "0419aa7c138d4699569879f4950499d5b7f48f63ab78ceb31d9b0581eb73e943",
    "5fc02e04ef903c22d2134511ffb8b6771178f72f6b8189e3aef86cf04d21d41f",
    "2f6c84a16489cb9f4510c45ff0582965377336dfaab8b654476eea00921f8cdb",
    "30e3e0591506be476cdef37615ae15c818a4e2a65fac7468071e2679ed7d872e",
];
/// Digests of [`FILES`] for the retrained run, from the pre-refactor binary.
const RETRAINED: [&str; 6] = [
    "3067b6d53a3506a72dac4505f5a8a562e16f574e7746a2ee8e0b3b340ffe0fd2",
    "5ff58bd359a7ec9aa01f451ee599b3fbc8f966255016107d9d9b805020acc99e",
    "1c7e68e1ef77d4dbccf6931937e784de7afcf13d6d77d9fb268ac8791ae1947e",
    "30f85191477d2f51cade9182d85059921d54aa3a7f31b2a3f0a66bb090a07768",
    "0c57cfd063b778db4e40367686e1adf881963afc7152d54faf519ca54311bf05",
    "f72eeb7ffd204ec0ba97a9ff57e0ae54464bdd27b96d1b97bc598b2bb05c1db8",
];
/// The retrained run's `summary.json` digest when its embeddings come from the cache
/// (`embeddings_from_cache: true`).
const RETRAINED_SUMMARY_FROM_CACHE: &str =
    "30fdbfd2463d4d048987dc57e026c97fa6f0a2e1246c810476e2d458d84624b0";

/// The daemon maps a project's labels onto a warm scene's tiles once per label revision
/// (`engine::label_tiles`) and selects with them (`engine::reselect_with`): the picks are
/// those of mapping the labels afresh (`engine::reselect`), for every strategy that
/// reads labels or classes, with ground spacing too.
#[test]
fn label_tiles_mapped_once_select_what_mapping_afresh_selects() {
    use nexttile::engine::{ScoreRequest, label_tiles, reselect, reselect_with, score};
    use nexttile::sampling::Strategy;
    let mut req = ScoreRequest::new(common::sample_scene(), common::encoder(), common::head());
    req.mc_passes = 1;
    req.labelled = Some(nexttile::aoi::Labelled::from_geojson(LABELS, None).unwrap());
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut result = score(&req, &|_| {}, &never).unwrap();
    let tiles = label_tiles(req.labelled.as_ref().unwrap(), &result).unwrap();
    assert!(tiles.mask.iter().filter(|m| **m).count() >= 8);
    assert!(tiles.classes.is_some());
    assert_eq!(
        tiles.usable_labels, 8,
        "the `unusable` label is not counted"
    );
    for (strategy, spacing) in [
        ("auto", 0.0),
        ("auto", 800.0),
        ("coreset", 0.0),
        ("probcover", 0.0),
        ("typiclust", 0.0),
        ("top_k", 0.0),
    ] {
        req.strategy = strategy.parse::<Strategy>().unwrap();
        req.min_spacing_m = spacing;
        reselect(&mut result, &req).unwrap();
        let afresh = (
            result.picks.clone(),
            result.labelled_tiles,
            result.strategy_params.clone(),
        );
        let mut unlabelled = req.clone();
        unlabelled.labelled = None;
        reselect_with(&mut result, &unlabelled, Some(&tiles)).unwrap();
        let cached = (
            result.picks.clone(),
            result.labelled_tiles,
            result.strategy_params.clone(),
        );
        assert_eq!(
            format!("{afresh:?}"),
            format!("{cached:?}"),
            "{strategy} with {spacing} m spacing"
        );
    }
}
