//! Multi-modal pairs (a second raster warped onto the scene grid) and
//! per-band encoders, on the real Sen1Floods11 S1 + S2 chip with the tiny
//! fixtures of `onnx/make_test_fixtures.py`, whose exact behaviour is known:
//! `channel_mean_*` embed a tile as the mean of each standardised channel.

mod common;

use std::sync::atomic::AtomicBool;

use gdal::Dataset;
use nexttile::engine::{self, ScoreRequest};
use nexttile::raster::{Scene, stack_pair};

fn read_band(ds: &Dataset, band: usize) -> Vec<f32> {
    let b = ds.rasterband(band).unwrap();
    let (w, h) = ds.raster_size();
    b.read_as::<f32>((0, 0), (w, h), (w, h), None)
        .unwrap()
        .data()
        .to_vec()
}

fn score(req: &ScoreRequest) -> nexttile::Result<engine::ScoreResult> {
    engine::score(req, &|_| {}, &AtomicBool::new(false))
}

/// The stack's warped bands equal what the `gdalwarp` command makes of the
/// same second raster on the scene's grid (bilinear for Float32 dB, NaN
/// where the second raster has no data): exactly its lazy warped VRT
/// (`-of VRT`, the same warper and options), and within GDAL's own
/// VRT-versus-GeoTIFF difference of its chunked GeoTIFF warp (measured with
/// the gdalwarp CLI alone: 12 of 262,144 pixels differ in coverage, 99.9 % of
/// the rest within 0.09 dB).
#[test]
fn pair_is_warped_onto_the_scene_grid_like_gdalwarp() {
    let dir = common::tempdir();
    let s1 = common::s1_utm_crop(dir.path());
    let s2 = Scene::open(&common::sen1floods_s2()).unwrap();
    let stacked = stack_pair(&s2, &s1, None).unwrap();
    let stack = Scene::open(&stacked).unwrap();
    assert_eq!((stack.width, stack.height), (s2.width, s2.height));
    assert_eq!(stack.geo_transform.0, s2.geo_transform.0);
    let names: Vec<_> = stack.bands.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names.len(), 15);
    assert_eq!(&names[13..], ["VV", "VH"]);
    assert_eq!(names[0], "B01");

    let (x0, y1) = s2.geo_transform.apply(0.0, 0.0);
    let (x1, y0) = s2.geo_transform.apply(s2.width as f64, s2.height as f64);
    let warp = |format: &str, name: &str| {
        let out = dir.path().join(name);
        common::run_tool(
            "gdalwarp",
            &[
                "-q",
                "-of",
                format,
                "-t_srs",
                "EPSG:4326",
                "-te",
                &format!("{x0:.12}"),
                &format!("{y0:.12}"),
                &format!("{x1:.12}"),
                &format!("{y1:.12}"),
                "-ts",
                "512",
                "512",
                "-r",
                "bilinear",
                "-dstnodata",
                "nan",
                s1.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
        Dataset::open(&out).unwrap()
    };
    let same_warper = warp("VRT", "reference.vrt");
    let chunked = warp("GTiff", "reference.tif");
    for (band, ref_band) in [(14, 1), (15, 2)] {
        let got = read_band(&stack.dataset, band);
        let exact = read_band(&same_warper, ref_band);
        for (g, e) in got.iter().zip(&exact) {
            assert!(
                g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                "{g} vs {e}"
            );
        }
        let exp = read_band(&chunked, ref_band);
        let (mut nan, mut nodata_differs, mut off, mut worst) = (0usize, 0usize, 0usize, 0.0f32);
        for (g, e) in got.iter().zip(&exp) {
            if g.is_nan() != e.is_nan() {
                nodata_differs += 1;
            } else if g.is_nan() {
                nan += 1;
            } else {
                let d = (g - e).abs();
                worst = worst.max(d);
                if d > 0.1 {
                    off += 1;
                }
            }
        }
        assert!(
            nodata_differs <= 50,
            "band {band}: {nodata_differs} pixels differ in nodata"
        );
        let covered = got.len() - nan;
        assert!(
            off * 1000 <= covered,
            "band {band}: {off} of {covered} pixels differ by > 0.1 dB"
        );
        assert!(worst < 2.0, "band {band}: max |diff| {worst} dB");
        // the crop covers part of the chip: both covered and uncovered pixels
        assert!(nan > 10_000 && nan < 512 * 512 - 10_000, "{nan} NaN pixels");
    }
    // the scene's own bands pass through untouched
    assert_eq!(read_band(&stack.dataset, 4), read_band(&s2.dataset, 4));
}

/// Scoring the pair: tiles the second raster does not cover are skipped as
/// nodata; the others carry both sensors' channels, equal to the tile means of
/// the standardised rasters.
#[test]
fn scoring_a_pair_uses_both_rasters() {
    let dir = common::tempdir();
    let s1 = common::s1_utm_crop(dir.path());
    let mut req = ScoreRequest::new(
        common::sen1floods_s2(),
        common::fixture("channel_mean_s1s2.onnx"),
        common::fixture("sum_head_15.onnx"),
    );
    req.pair = Some(s1.clone());
    req.mc_passes = 1;
    let r = score(&req).unwrap();
    assert_eq!(r.candidate_tiles, 256);
    assert!(
        !r.skipped_nodata.is_empty(),
        "the crop leaves tiles without S1"
    );
    assert!(r.tiles.len() > 20, "{} tiles scored", r.tiles.len());
    assert_eq!(r.scene.bands_used[..2], [14, 15]);

    // Recompute VV's standardised tile mean from the stack for a few tiles.
    let s2 = Scene::open(&common::sen1floods_s2()).unwrap();
    let stack = Scene::open(&stack_pair(&s2, &s1, None).unwrap()).unwrap();
    let vv = read_band(&stack.dataset, 14);
    for (i, id) in r.tiles.iter().enumerate().step_by(7) {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for y in 0..32 {
            for x in 0..32 {
                let v = vv[(id.row as usize * 32 + y) * 512 + id.col as usize * 32 + x];
                // invalid pixels are fed as 0 (the training mean)
                if !v.is_nan() {
                    sum += (f64::from(v) + 12.0) / 4.0;
                }
                n += 1;
            }
        }
        let want = sum / n as f64;
        let got = f64::from(r.embeddings[[i, 0]]);
        assert!((got - want).abs() < 1e-4, "tile {id}: {got} vs {want}");
    }
}

#[test]
fn a_modality_missing_is_named() {
    let req = ScoreRequest::new(
        common::sen1floods_s2(),
        common::fixture("channel_mean_s1s2.onnx"),
        common::fixture("sum_head_15.onnx"),
    );
    let err = score(&req).err().expect("must fail").to_string();
    for needle in ["s1 [VV, VH]", "none of the s1 bands", "--pair"] {
        assert!(err.contains(needle), "expected '{needle}' in: {err}");
    }
}

#[test]
fn rasters_that_do_not_overlap_are_refused() {
    let mut req = ScoreRequest::new(
        common::sen1floods_s2(),
        common::fixture("channel_mean_s1s2.onnx"),
        common::fixture("sum_head_15.onnx"),
    );
    req.pair = Some(common::sample_scene());
    let err = score(&req).err().expect("must fail").to_string();
    assert!(err.contains("does not overlap"), "{err}");
    assert!(err.contains("chincoteague_s2.tif"), "{err}");
}

#[test]
fn band_names_the_raster_lacks_are_named() {
    // A per-band model asked for VV on a raster without S1 bands.
    let mut req = ScoreRequest::new(
        common::sen1floods_s2(),
        common::fixture("channel_mean_perband.onnx"),
        common::fixture("sum_head_1.onnx"),
    );
    req.band_names = Some(vec!["VV".into(), "B08".into()]);
    let err = score(&req).err().expect("must fail").to_string();
    assert!(err.contains("[\"VV\"]") && err.contains("--pair"), "{err}");
    // A band the model has no statistics for.
    req.band_names = Some(vec!["B99".into()]);
    let err = score(&req).err().expect("must fail").to_string();
    assert!(err.contains("B99") && err.contains("accepts"), "{err}");
    // --band-names on an encoder with fixed bands.
    let mut req = ScoreRequest::new(common::sample_scene(), common::encoder(), common::head());
    req.band_names = Some(vec!["B04".into()]);
    let err = score(&req).err().expect("must fail").to_string();
    assert!(err.contains("per-band encoders"), "{err}");
}

/// A per-band encoder embeds each chosen band on its own: with concat fusion
/// the embedding is one column per band (in the order asked), with mean fusion
/// their average, on the same tiles.
#[test]
fn per_band_encoders_embed_each_band_and_fuse() {
    let bands = vec!["B04".to_string(), "VV".to_string(), "B08".to_string()];
    let mut concat = ScoreRequest::new(
        common::sen1floods_s2(),
        common::fixture("channel_mean_perband_concat.onnx"),
        common::fixture("sum_head_15.onnx"),
    );
    concat.pair = Some(common::sen1floods_s1());
    concat.band_names = Some(bands.clone());
    concat.mc_passes = 1;
    // 3 bands x 1-d concatenated = 3-d, but the head takes 15: refused, naming the band list.
    let err = score(&concat).err().expect("must fail").to_string();
    assert!(err.contains("3 bands") && err.contains("15-d"), "{err}");

    concat.band_names = Some(bands[..2].to_vec());
    concat.head = common::fixture("sum_head_2.onnx");
    let c = score(&concat).unwrap();
    assert_eq!(c.embeddings.ncols(), 2);
    assert_eq!(c.scene.bands_used, [4, 14]);

    let mut mean = concat.clone();
    mean.encoder = common::fixture("channel_mean_perband.onnx");
    mean.head = common::fixture("sum_head_1.onnx");
    let m = score(&mean).unwrap();
    assert_eq!(m.tiles, c.tiles);
    assert_eq!(m.embeddings.ncols(), 1);
    for i in 0..m.tiles.len() {
        let want = (c.embeddings[[i, 0]] + c.embeddings[[i, 1]]) / 2.0;
        assert!((m.embeddings[[i, 0]] - want).abs() < 1e-5);
    }
    // the two columns are two different bands (B04 reflectance vs VV backscatter)
    let differ = (0..c.tiles.len())
        .filter(|&i| (c.embeddings[[i, 0]] - c.embeddings[[i, 1]]).abs() > 1e-3)
        .count();
    assert!(differ > c.tiles.len() / 2);

    // default_bands (VV, B04) are used when none are named
    mean.band_names = None;
    let d = score(&mean).unwrap();
    assert_eq!(d.scene.bands_used, [14, 4]);
}

/// The embedding cache keys a pair by both files: a second run with the same
/// pair is served from the cache; another second raster is not.
#[test]
fn pairs_are_cached_by_both_rasters() {
    let dir = common::tempdir();
    let cache = dir.path().join("cache");
    let mut req = ScoreRequest::new(
        common::sen1floods_s2(),
        common::fixture("channel_mean_s1s2.onnx"),
        common::fixture("sum_head_15.onnx"),
    );
    req.pair = Some(common::sen1floods_s1());
    req.mc_passes = 1;
    req.cache = Some(cache);
    let first = score(&req).unwrap();
    assert!(!first.cache_hit);
    let again = score(&req).unwrap();
    assert!(again.cache_hit);
    assert_eq!(again.embeddings, first.embeddings);
    req.pair = Some(common::s1_utm_crop(dir.path()));
    let other = score(&req).unwrap();
    assert!(
        !other.cache_hit,
        "another second raster must not reuse the cache"
    );
    assert!(other.tiles.len() < first.tiles.len());
}

/// Stacking the same pair on several threads at once leaves every caller a stack it can
/// open and read: the pair's VRTs are written once per process, never unlinked and
/// rewritten under another thread's reader (a parallel test run once failed with "No
/// such file or directory" on the stack's `/vsimem/` path).
#[test]
fn the_same_pair_stacked_on_threads_at_once_stays_readable() {
    let s1 = common::sen1floods_s1();
    let s2 = common::sen1floods_s2();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let first = Scene::open(&s2).unwrap();
                for _ in 0..10 {
                    let stacked = stack_pair(&first, &s1, None).unwrap();
                    let ds = Dataset::open(&stacked).unwrap();
                    assert_eq!(ds.raster_count(), 15);
                    assert_eq!(read_band(&ds, 14).len(), first.width * first.height);
                }
            });
        }
    });
}
