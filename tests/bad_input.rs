//! Bad input: every case exits with code 3 and a message naming the problem
//! and the fix. Runs the real binary.

mod common;

use std::path::Path;
use std::process::Command;

/// Run `nexttile score <scene> ...` and return (exit code, stderr).
fn score(scene: &Path, extra: &[&str]) -> (i32, String) {
    score_with(scene, &common::encoder(), &common::head(), extra)
}

/// [`score`] with another encoder/head pair.
fn score_with(scene: &Path, encoder: &Path, head: &Path, extra: &[&str]) -> (i32, String) {
    let out = common::tempdir();
    let o = Command::new(common::bin())
        .arg("score")
        .arg(scene)
        .arg("--out")
        .arg(out.path())
        .args(["--encoder", encoder.to_str().unwrap()])
        .args(["--head", head.to_str().unwrap()])
        .args(["--mc-passes", "2", "--quiet"])
        .args(extra)
        .output()
        .expect("run nexttile");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_bad(res: (i32, String), needles: &[&str]) {
    let (code, err) = res;
    assert_eq!(code, 3, "exit code for: {err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

const UTM: Option<[f64; 6]> = Some([435_730.0, 10.0, 0.0, 4_179_460.0, 0.0, -10.0]);

#[test]
fn missing_file() {
    assert_bad(
        score(Path::new("/nonexistent/scene.tif"), &[]),
        &["no such file", "/nonexistent/scene.tif"],
    );
}

#[test]
fn not_a_raster() {
    let d = common::tempdir();
    let p = d.path().join("notes.tif");
    std::fs::write(&p, "this is not a GeoTIFF").unwrap();
    assert_bad(score(&p, &[]), &["not a raster GDAL can read"]);
}

#[test]
fn raster_without_crs() {
    let d = common::tempdir();
    let p = d.path().join("nocrs.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B03", "B02"],
        1000,
        None,
        UTM,
        None,
    );
    assert_bad(
        score(&p, &[]),
        &["no coordinate reference system", "gdal_edit.py -a_srs"],
    );
}

#[test]
fn raster_without_geotransform() {
    let d = common::tempdir();
    let p = d.path().join("nogt.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B03", "B02"],
        1000,
        Some(32618),
        None,
        None,
    );
    assert_bad(score(&p, &[]), &["no geotransform"]);
}

#[test]
fn fewer_bands_than_the_model_needs() {
    let d = common::tempdir();
    let p = d.path().join("two_bands.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B08"],
        1000,
        Some(32618),
        UTM,
        None,
    );
    assert_bad(
        score(&p, &[]),
        &["B03", "B02", "#1 B04", "#2 B08", "--bands"],
    );
}

#[test]
fn tile_size_the_model_cannot_take() {
    assert_bad(
        score(&common::sample_scene(), &["--tile-size", "40"]),
        &["tile size 40", "multiple of 16", "--tile-size 64"],
    );
}

#[test]
fn aoi_outside_the_scene() {
    let d = common::tempdir();
    let aoi = d.path().join("aoi.geojson");
    // a square in the Alps, far from Virginia
    std::fs::write(
        &aoi,
        r#"{"type":"Polygon","coordinates":[[[10,46],[10.1,46],[10.1,46.1],[10,46.1],[10,46]]]}"#,
    )
    .unwrap();
    assert_bad(
        score(&common::sample_scene(), &["--aoi", aoi.to_str().unwrap()]),
        &["does not overlap any whole tile", "check the AOI's CRS"],
    );
}

#[test]
fn all_nodata_scene() {
    let d = common::tempdir();
    let p = d.path().join("empty.tif");
    common::write_tif(
        &p,
        (128, 128),
        &["B04", "B03", "B02"],
        0,
        Some(32618),
        UTM,
        Some(0.0),
    );
    assert_bad(score(&p, &[]), &["all 4 candidate tiles are nodata"]);
}

#[test]
fn onnx_without_metadata() {
    let (code, err) = {
        let out = common::tempdir();
        let o = Command::new(common::bin())
            .args(["score", common::sample_scene().to_str().unwrap(), "--out"])
            .arg(out.path())
            .args([
                "--encoder",
                common::fixture("no_metadata.onnx").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_bad(
        (code, err),
        &["does not fit the NextTile model contract", "input_bands"],
    );
}

#[test]
fn unknown_strategy_lists_the_valid_ones() {
    let (code, err) = score(&common::sample_scene(), &["--strategy", "magic"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("mcfps") && err.contains("top_k"), "{err}");
}

#[test]
fn auto_options_with_another_strategy_are_refused() {
    for opt in [["--balance", "false"], ["--switch-per-class", "10"]] {
        let mut args = vec!["--strategy", "mcfps"];
        args.extend_from_slice(&opt);
        let (code, err) = score(&common::sample_scene(), &args);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("only apply to --strategy auto"), "{err}");
    }
    let (code, err) = score(&common::sample_scene(), &["--balance", "maybe"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--balance"), "{err}");
}

/// A sparse 100,000 × 100,000 px GeoTIFF (a few MB on disk, 2.4 million tiles of
/// 64 px): refused by the tile limit in well under a second, before any pixel is
/// read, naming the count and both ways out; `--max-tiles` is the knob.
#[test]
fn too_many_tiles_are_refused_before_reading() {
    let d = common::tempdir();
    let p = d.path().join("huge.tif");
    common::run_tool(
        "gdal_create",
        &[
            "-of",
            "GTiff",
            "-outsize",
            "100000",
            "100000",
            "-bands",
            "3",
            "-ot",
            "UInt16",
            "-a_srs",
            "EPSG:32618",
            "-a_ullr",
            "400000",
            "5000000",
            "1400000",
            "4000000",
            "-co",
            "TILED=YES",
            "-co",
            "SPARSE_OK=TRUE",
            "-co",
            "BIGTIFF=YES",
            p.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::metadata(&p).unwrap().len() < 50 << 20,
        "not sparse"
    );
    let start = std::time::Instant::now();
    let res = score(&p, &["--bands", "1,2,3"]);
    let took = start.elapsed();
    assert_bad(
        res,
        &[
            "2439844 tiles of 64 px",
            "limit of 100000",
            "--aoi",
            "--max-tiles 2439844",
        ],
    );
    assert!(took.as_secs() < 20, "took {took:?}: pixels were read");
    // The limit is the option's; the sample's 900 tiles pass the default.
    assert_bad(
        score(&common::sample_scene(), &["--max-tiles", "899"]),
        &["900 tiles of 64 px", "limit of 899"],
    );
    assert_bad(
        score(&common::sample_scene(), &["--max-tiles", "0"]),
        &["--max-tiles must be at least 1"],
    );
}

#[test]
fn threads_and_workers_beyond_the_machine_are_refused() {
    let max = 4 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = max.clamp(4, 256);
    for flag in ["--threads", "--workers"] {
        assert_bad(
            score(&common::sample_scene(), &[flag, "100000"]),
            &[
                &format!("{flag} 100000 is more than this machine can use"),
                &format!("at most {max}"),
            ],
        );
    }
}

/// A labels file that is not GeoJSON is named as the labels file, not "the AOI";
/// a device is refused before it is read.
#[test]
fn labels_file_errors_name_the_labels_file() {
    let (code, err) = score(&common::sample_scene(), &["--labelled", "/etc/passwd"]);
    assert_bad(
        (code, err.clone()),
        &[
            "--labelled /etc/passwd is not valid GeoJSON",
            "Point/Polygon",
        ],
    );
    assert!(!err.contains("AOI"), "{err}");
    assert_bad(
        score(&common::sample_scene(), &["--labelled", "/dev/zero"]),
        &["/dev/zero is not a regular file"],
    );
    assert_bad(
        score(&common::sample_scene(), &["--aoi", "/etc/passwd"]),
        &["--aoi /etc/passwd is not valid GeoJSON"],
    );
}

/// The daemon's rule: 1 to 1000 passes; 0 is not silently one pass.
#[test]
fn zero_mc_passes_are_refused() {
    let out = common::tempdir();
    let (code, _, err) = common::run_nexttile(&[
        "score",
        common::sample_scene().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--mc-passes",
        "0",
    ]);
    assert_bad(
        (code, err),
        &["--mc-passes must be between 1 and 1000, got 0"],
    );
}

/// Runs `nexttile score` on the sample with `extra`, killing it (and failing) if it
/// is not done within `secs`: a model read that blocks must not hang the test.
fn score_within(secs: u64, extra: &[&str]) -> (i32, String) {
    use std::io::Read;
    let out = common::tempdir();
    let mut child = Command::new(common::bin())
        .arg("score")
        .arg(common::sample_scene())
        .arg("--out")
        .arg(out.path())
        .args(["--mc-passes", "2", "--quiet"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nexttile");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed().as_secs() > secs {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nexttile score {extra:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.code().unwrap_or(-1), err)
}

/// A device, a FIFO and a folder are refused as models before they are read (a
/// read of /dev/zero would grow without end, a FIFO would block); a real model
/// over `--max-model-bytes` is refused with its size and the knob.
#[test]
fn models_that_are_not_regular_files_or_too_large_are_refused() {
    let d = common::tempdir();
    let fifo = d.path().join("model.onnx");
    common::run_tool("mkfifo", &[fifo.to_str().unwrap()]);
    let fifo = fifo.to_str().unwrap();
    let dir = d.path().to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--encoder", "/dev/zero"],
            "/dev/zero is a character device",
        ),
        (&["--head", "/dev/zero"], "/dev/zero is a character device"),
        (&["--head", fifo], "is a FIFO"),
        (&["--encoder", dir], "is a folder"),
    ];
    for (args, needle) in cases {
        assert_bad(
            score_within(60, args),
            &[
                needle,
                "not a regular file",
                "give the path of an .onnx file",
            ],
        );
    }
    let encoder = common::encoder();
    let encoder_bytes = std::fs::metadata(&encoder).unwrap().len();
    let encoder = encoder.to_string_lossy();
    assert_bad(
        score_within(60, &["--encoder", &encoder, "--max-model-bytes", "1000"]),
        &[
            &format!("is {encoder_bytes} bytes, more than the limit of 1000 bytes"),
            "--max-model-bytes",
        ],
    );
}

/// The sample's B04, B03, B02 as an 8-bit copy with no band names at all (no
/// descriptions, no colour interpretation), cut to 320 × 320 px.
fn unnamed_rgb8(dir: &Path) -> std::path::PathBuf {
    let vrt = dir.join("rgb8.vrt");
    let scene = common::sample_scene();
    let mut args = vec!["-q", "-of", "VRT", "-srcwin", "0", "0", "320", "320"];
    args.extend(common::TRUE_COLOUR_BANDS);
    args.extend(common::TO_8_BIT);
    args.extend([scene.to_str().unwrap(), vrt.to_str().unwrap()]);
    common::run_tool("gdal_translate", &args);
    let text = std::fs::read_to_string(&vrt).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("<Description>") && !l.contains("key=\"PRODUCT\""))
        .collect();
    std::fs::write(&vrt, kept.join("\n")).unwrap();
    let tif = dir.join("rgb8.tif");
    common::run_tool(
        "gdal_translate",
        &["-q", vrt.to_str().unwrap(), tif.to_str().unwrap()],
    );
    tif
}

#[test]
fn unknown_sensor_lists_the_valid_ones() {
    assert_bad(
        score(&common::sample_scene(), &["--sensor", "sentinel-3"]),
        &[
            "unknown --sensor 'sentinel-3'; give one of: s2-l1c, s2-l2a, landsat8, landsat9, landsat7, reflectance, rgb",
        ],
    );
}

#[test]
fn sensor_whose_bands_the_raster_lacks_names_them() {
    let d = common::tempdir();
    let rgb = unnamed_rgb8(d.path());
    // A 3-band stack cannot be placed by a 6-band preset's positions.
    assert_bad(
        score(&rgb, &["--sensor", "landsat7"]),
        &[
            "--sensor landsat7 places bands by position in a 6-band stack (SR_B1=B02, SR_B2=B03, SR_B3=B04, SR_B4=B08, SR_B5=B11, SR_B7=B12)",
            "has 3 band(s) and no band names for B04, B03, B02",
            "give --bands",
        ],
    );
    // The rgb preset has no NIR or SWIR bands for a 13-band encoder.
    let s2 = common::root().join("onnx/s2_simsiam/encoder.onnx");
    let s2_head = common::root().join("onnx/s2_simsiam/head.onnx");
    assert_bad(
        score_with(&rgb, &s2, &s2_head, &["--sensor", "rgb"]),
        &[
            "the encoder needs the band(s) B01, B05, B06, B07, B08, B8A, B09, B10, B11, B12 which --sensor rgb does not have (it has red=B04, green=B03, blue=B02)",
        ],
    );
}

#[test]
fn sensor_for_a_sar_encoder_and_bad_input_scale() {
    let enc = common::root().join("onnx/s1s2_dsimclr/encoder.onnx");
    let head = common::root().join("onnx/s1s2_dsimclr/head.onnx");
    assert_bad(
        score_with(
            &common::sample_scene(),
            &enc,
            &head,
            &["--sensor", "s2-l1c"],
        ),
        &["--sensor s2-l1c scales optical reflectance, but this encoder also takes [VV, VH,"],
    );
    assert_bad(
        score(&common::sample_scene(), &["--input-scale", "0"]),
        &["--input-scale must be a finite, non-zero number, got 0"],
    );
    assert_bad(
        score(&common::sample_scene(), &["--input-offset", "NaN"]),
        &["--input-offset must be a finite number, got NaN"],
    );
}

/// Issue 17: a head whose `encoder_sha256` metadata is not a SHA-256 (here non-ASCII
/// text, which once panicked on a byte slice) is refused with the key, the value and
/// the fix named — before any tile is read.
#[test]
fn head_with_a_non_ascii_encoder_sha256() {
    let tmp = common::tempdir();
    let head = tmp.path().join("head.onnx");
    let odd = "é".repeat(40);
    common::with_metadata(&common::head(), &head, &[("encoder_sha256", odd.as_str())]);
    assert_bad(
        score_with(&common::sample_scene(), &common::encoder(), &head, &[]),
        &[
            "encoder_sha256",
            &"é".repeat(24),
            "64 hexadecimal digits",
            "set_metadata.py",
        ],
    );
}
