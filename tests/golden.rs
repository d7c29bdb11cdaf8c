//! `score`'s outputs on the real sample are byte-identical to those of the binary
//! before issue 17 split the engine into named stages (T = 1): the SHA-256 of every
//! output file was taken from that binary (main at d1decdb) and is written here as a
//! fact. Issue 14's `distance_to_training` changed them once, deliberately: the
//! heatmap's new last band, the new last `tiles.csv` column, the new GeoJSON property
//! and `summary.json` key; with those removed, the outputs of main at 3dfffd1 and of the
//! new binary were compared equal (band checksums and descriptions, CSV, GeoJSON,
//! summary, for both runs below) before the digests here were retaken. `summary.json` is compared without what differs between any two runs (the
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
    assert_digests(&dir, expected().plain, "plain run");
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
        let mut want = expected().retrained;
        if run == "second" {
            want[5] = expected().retrained_summary_from_cache;
        }
        assert_digests(&dir, want, what);
    }
}

/// The outputs' digests on one class of CPU. onnxruntime's MLAS and the `gemm` crate
/// under candle choose their matrix kernels by the widest vector unit the CPU has, and
/// kernels of different widths add their products in different orders, so the same
/// binary writes other bits on an AVX-512 machine than on an AVX2 one (found
/// 2026-12-07: on a 2-core AMD EPYC without AVX-512 every digest below differed, for
/// stop 28's binary, 1fbd826, and the next one alike).
struct Digests {
    /// [`FILES`] of the plain run.
    plain: [&'static str; 6],
    /// [`FILES`] of the retrained run.
    retrained: [&'static str; 6],
    /// The retrained run's `summary.json` when its embeddings come from the cache
    /// (`embeddings_from_cache: true`).
    retrained_summary_from_cache: &'static str,
}

/// The digests on CPUs with AVX-512F (the Intel Xeon VMs the facts were first taken
/// on, and CI). The plain run: the pre-refactor binary's outputs plus the distance
/// band; since 2026-12-07 with the shipped models' new digests in `heatmap.tif`'s tags,
/// `suggestions.geojson` and `summary.json`: their metadata was re-encoded as JSON, and
/// every output is otherwise what it was, checked by replacing the old digests with
/// the new in the old outputs; and since TypiClust's `points_per_cluster` was added
/// the same day, with that key in the `strategy_params` of `suggestions.geojson` and
/// `summary.json`: the new outputs with the key removed have the old digests. The
/// retrained run: the pre-refactor binary's plus the distance band.
const AVX512: Digests = Digests {
    plain: [
        "c707580c179c367d01197f109a203b220af1cc904a11ece66a05c5058875f874",
        "4c0f7863126f2cfede8f0c3072419a14d1526d46bfd5f5d04a186c54726c4568",
        "bd9ec4a9232829353487e4a4b2b361162c62d762e63f7a213b2ed3370fdf3b31",
        "4cf2a69461be2c052012909530fdb168f62e84615055f651b5d99a67e65350a2",
        "3609588ce0e924fc47a19d1c36a0d1d6c0c5a76b0022b3c9ecc824be9856b074",
        "60ec5d8f41fc52a5037705bc08f29d950b09d43614f2cb9dea7d74da042c55aa",
    ],
    retrained: [
        "771efd65de7abac99be403b1691a8f1124d7937ff1ec0908152d9de4e2c018b8",
        "5ff58bd359a7ec9aa01f451ee599b3fbc8f966255016107d9d9b805020acc99e",
        "4a981783078ec66a5a648da40ee46577d3d99612d1d3391a0d6a038100bdb964",
        "d75503bffdd92361bb13d34eed074351045ad711db6332a3bf6174d750441f8e",
        "b1fbbb961f63ba64c9a1752a39add6bb2e195753c91ff95e9154d8ccb8178115",
        "f1cb86e2c8deaa905d120f3f7e4a0e0f706c8a28bdc1bd672a50405c9af1f8a3",
    ],
    retrained_summary_from_cache: "4b6f0795ae38d721d5a3fabd62ce4fd99fd229902dd7f0b76118a555bdd6d50a",
};

/// The digests on CPUs with AVX2 and FMA but no AVX-512F, taken 2026-12-07 on a 2-core
/// AMD EPYC with stop 28's binary (main at 1fbd826, whose digests on AVX-512 are
/// [`AVX512`]'s) and checked equal for the binary of that day's next commits.
const AVX2_FMA: Digests = Digests {
    plain: [
        "653dd03c328fa1e4a801fc06dc9ffa9682079850b879108ce219bd09f2577f6b",
        "8d3886032ff46a5818aee97b7a5e03e3b6ace97d688b4f3dfdfc492d98c7cc3e",
        "e61251d3efc87b218e483fa00ca40cf665b107a2811e52abd491c2654c02d16e",
        "d13ea30d71dc2c3db5dc5176bf32c4af86155d8d81fc4814242967f022cd7d12",
        "62da294fdbca1840c78bb7b70cc6864f592d9104a193a6151f8953757594c876",
        "95e0c99a88d0cc16d85ab8d61df665d4711a521b4ee6adf31c1ab8e38ce6a72e",
    ],
    retrained: [
        "aab44a68240fad808af0aa77958c80c0e5cea4d4da40b67701185248ec32f015",
        "cd4526b70cefe1ec6c8ee8d07da208a7c21b322311d90462bb6374833da4d0df",
        "718e8f02694bce374fb9faa0e305074a65f76f29b91fdae50d98089ee4d302f6",
        "c348cf56b6124ca4bb40ce7dd5d40e758448cb352a7880b79687180918d9e22c",
        "d7749fa7d261800f6b0df8a62f800da8c907a4e043cbb4269f44915a4bf9dd36",
        "39c76892b767fad8f94610280c73bb0680fe75e3b1a1e5d8dfda33b18fbc17c4",
    ],
    retrained_summary_from_cache: "64688def025526e1e23c433d3d1056e57840a79489f683955913665ec575eeae",
};

/// The digests for this machine's CPU class; none are known for a CPU without AVX2 and
/// FMA, and the test says so rather than pass.
fn expected() -> &'static Digests {
    if nexttile::simd::avx512f() {
        &AVX512
    } else if nexttile::simd::avx2_fma() {
        &AVX2_FMA
    } else {
        panic!(
            "no golden digests are recorded for a CPU without AVX2 and FMA (onnxruntime's \
             kernels, and so the outputs' bits, depend on it): take them with a binary \
             whose outputs are known good (NEXTTILE_GOLDEN_BIN) and add a `Digests` here"
        )
    }
}

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

/// Every tile's lon/lat footprint and centre is reprojected once per scene grid and
/// kept for the next outputs (`output::project_tiles`; the daemon writes a round's
/// outputs on the same scene again and again): writing a scored sample's outputs a
/// second time, and a third after another grid's were written in between, gives the
/// bytes of the first, reprojecting, write.
#[test]
fn kept_footprints_write_the_bytes_of_fresh_ones() {
    use std::sync::atomic::AtomicBool;
    let mut req = nexttile::engine::ScoreRequest::new(
        common::sample_scene(),
        common::encoder(),
        common::head(),
    );
    req.mc_passes = 1;
    let scored = nexttile::engine::score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    let mut other = req.clone();
    other.tile_size = Some(128);
    let coarse = nexttile::engine::score(&other, &|_| {}, &AtomicBool::new(false)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let write = |result: &nexttile::engine::ScoreResult, name: &str| {
        let dir = tmp.path().join(name);
        nexttile::engine::write_outputs(result, &dir).unwrap();
        ["tiles.geojson", "tiles.csv"].map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    let first = write(&scored, "first");
    let again = write(&scored, "again");
    let coarse_files = write(&coarse, "coarse");
    let after = write(&scored, "after");
    assert!(first == again, "a second write of the same scene differs");
    assert!(first == after, "a write after another grid's differs");
    assert!(
        coarse_files != first,
        "another grid wrote the first grid's tiles"
    );
}
