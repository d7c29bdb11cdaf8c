//! Reader–encoder workers side by side (`--workers`): the same tiles,
//! embeddings and skipped tiles as one reader feeding one encoder, on the real
//! sample with real GDAL and onnxruntime; cancelling and a broken raster stop
//! every worker with the error, not a panic or a partial result.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use nexttile::aoi::Aoi;
use nexttile::engine::{Progress, ScoreRequest, ScoreResult, score};
use nexttile::error::Error;

fn request(scene: &std::path::Path, workers: usize) -> ScoreRequest {
    let mut r = ScoreRequest::new(scene, common::encoder(), common::head());
    r.mc_passes = 1; // deterministic
    r.workers = workers;
    r
}

fn run(r: &ScoreRequest) -> ScoreResult {
    score(r, &|_| {}, &AtomicBool::new(false)).expect("score")
}

fn assert_same(a: &ScoreResult, b: &ScoreResult, what: &str) {
    assert_eq!(a.tiles, b.tiles, "{what}: tiles");
    assert_eq!(a.skipped_nodata, b.skipped_nodata, "{what}: skipped tiles");
    assert_eq!(
        a.valid_fraction, b.valid_fraction,
        "{what}: valid fractions"
    );
    let d = (&a.embeddings - &b.embeddings)
        .mapv(f32::abs)
        .fold(0.0f32, |m, v| m.max(*v));
    assert!(d <= 1e-5, "{what}: embeddings differ by {d}");
    assert_eq!(a.predicted, b.predicted, "{what}: predicted classes");
}

/// A 768 × 832 px cut of the sample, laid out like it (13-band
/// pixel-interleaved, 256-px DEFLATE blocks), with a band of rows and a
/// rectangle set to 0 (nodata) so that some tiles are skipped.
fn scene_with_nodata(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("cut.tif");
    let sample = common::sample_scene();
    common::run_tool(
        "gdal_translate",
        &[
            "-q",
            "-srcwin",
            "300",
            "200",
            "768",
            "832",
            "-co",
            "TILED=YES",
            "-co",
            "COMPRESS=DEFLATE",
            "-co",
            "INTERLEAVE=PIXEL",
            sample.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let ds = gdal::Dataset::open_ex(
        &out,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE | gdal::GdalOpenFlags::GDAL_OF_RASTER,
            ..Default::default()
        },
    )
    .unwrap();
    for b in 1..=ds.raster_count() {
        let mut band = ds.rasterband(b).unwrap();
        for (x, y, w, h) in [(0usize, 130usize, 768usize, 90usize), (400, 500, 200, 250)] {
            let mut zeros = gdal::raster::Buffer::new((w, h), vec![0u16; w * h]);
            band.write((x as isize, y as isize), (w, h), &mut zeros)
                .unwrap();
        }
    }
    drop(ds);
    out
}

#[test]
fn workers_give_what_one_reader_gives() {
    let one = run(&request(&common::sample_scene(), 1));
    assert_eq!(one.tiles.len(), 900);
    for w in [2, 3] {
        assert_same(
            &one,
            &run(&request(&common::sample_scene(), w)),
            &format!("{w} workers"),
        );
    }
}

#[test]
fn workers_agree_with_nodata_and_an_aoi() {
    let dir = common::tempdir();
    let scene = scene_with_nodata(dir.path());
    let one = run(&request(&scene, 1));
    assert!(
        !one.skipped_nodata.is_empty() && !one.tiles.is_empty(),
        "the cut has both scored and skipped tiles"
    );
    let many = run(&request(&scene, 3));
    assert!(many.timings.workers > 1, "{} workers", many.timings.workers);
    assert_same(&one, &many, "nodata, 3 workers");

    // An L-shaped AOI (EPSG:32618) over part of the sample: a sparse plan.
    let aoi = Aoi::from_geojson(
        r#"{"type":"Polygon","coordinates":[[[437000,4176000],[446000,4176000],[446000,4172000],[440000,4172000],[440000,4165000],[437000,4165000],[437000,4176000]]]}"#,
        Some("EPSG:32618"),
    )
    .unwrap();
    let mut a = request(&common::sample_scene(), 1);
    a.aoi = Some(aoi);
    let one = run(&a);
    assert!(
        one.tiles.len() > 50 && one.tiles.len() < 600,
        "{}",
        one.tiles.len()
    );
    a.workers = 2;
    let many = run(&a);
    assert_eq!(many.timings.workers, 2);
    assert_same(&one, &many, "AOI, 2 workers");

    // Overlapping tiles share pixels, so no split keeps blocks apart: one
    // reader feeds one encoder, whatever was asked.
    let mut o = request(&common::sample_scene(), 2);
    o.overlap = 16;
    let overlapped = run(&o);
    assert_eq!(overlapped.timings.workers, 1);
    o.workers = 1;
    assert_same(&run(&o), &overlapped, "overlap");
}

#[test]
fn cancelling_stops_every_worker() {
    let cancel = AtomicBool::new(false);
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let on_progress = |p: Progress| {
        if let Progress::Embedding { done, .. } = p {
            seen.store(done, Ordering::SeqCst);
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let err = score(&request(&common::sample_scene(), 2), &on_progress, &cancel)
        .err()
        .expect("a cancelled run gives no result");
    assert!(matches!(err, Error::Cancelled), "{err}");
    let done = seen.load(Ordering::SeqCst);
    assert!(done > 0 && done < 900, "stopped after {done} of 900 tiles");
}

#[test]
fn a_raster_broken_on_disk_fails_cleanly_with_workers() {
    let dir = common::tempdir();
    let broken = dir.path().join("truncated.tif");
    let bytes = std::fs::read(common::sample_scene()).unwrap();
    // GDAL writes the directory first: the header opens, later blocks are gone.
    std::fs::write(&broken, &bytes[..bytes.len() * 2 / 5]).unwrap();
    let err = score(&request(&broken, 2), &|_| {}, &AtomicBool::new(false))
        .err()
        .expect("a truncated raster cannot be scored");
    let text = err.to_string();
    assert!(matches!(err, Error::Raster(_)), "{text}");
    assert!(text.contains("truncated.tif"), "names the file: {text}");
}
