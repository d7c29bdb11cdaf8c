//! Helpers shared by the benches: paths, the full-granule GeoTIFF, and a release
//! daemon on loopback with a small HTTP client.
// Each bench uses a part of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled sample scene.
pub fn sample() -> PathBuf {
    root().join("samples/chincoteague_s2.tif")
}

/// A VRT that mosaics the sample `reps × reps` times and crops to `size` px.
fn mosaic_vrt(path: &Path, size: usize) {
    let ds = gdal::Dataset::open(sample()).expect("sample");
    let (w, h) = ds.raster_size();
    let gt = ds.geo_transform().expect("gt");
    let wkt = ds.projection();
    let src = sample();
    let mut bands = String::new();
    use gdal::Metadata;
    for b in 1..=ds.raster_count() {
        let desc = ds
            .rasterband(b)
            .expect("band")
            .description()
            .unwrap_or_default();
        bands.push_str(&format!(
            "  <VRTRasterBand dataType=\"UInt16\" band=\"{b}\">\n    <Description>{desc}</Description>\n    <NoDataValue>0</NoDataValue>\n"
        ));
        let mut y = 0;
        while y < size {
            let mut x = 0;
            while x < size {
                let (cw, ch) = (w.min(size - x), h.min(size - y));
                bands.push_str(&format!(
                    "    <SimpleSource><SourceFilename relativeToVRT=\"0\">{}</SourceFilename><SourceBand>{b}</SourceBand>\
<SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{cw}\" ySize=\"{ch}\"/><DstRect xOff=\"{x}\" yOff=\"{y}\" xSize=\"{cw}\" ySize=\"{ch}\"/></SimpleSource>\n",
                    src.display()
                ));
                x += w;
            }
            y += h;
        }
        bands.push_str("  </VRTRasterBand>\n");
    }
    let xml = format!(
        "<VRTDataset rasterXSize=\"{size}\" rasterYSize=\"{size}\">\n  <SRS>{}</SRS>\n  <GeoTransform>{}, {}, {}, {}, {}, {}</GeoTransform>\n{bands}</VRTDataset>\n",
        wkt.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;"),
        gt[0],
        gt[1],
        gt[2],
        gt[3],
        gt[4],
        gt[5]
    );
    std::fs::write(path, xml).expect("write vrt");
}

/// A real GeoTIFF of the granule footprint, laid out like the sample
/// (13-band pixel-interleaved, 256-px tiles, DEFLATE + predictor 2), written
/// once from the mosaic VRT into `target/bench-granule/` (git-ignored; about
/// 1.5 GB for the full granule). Reading the VRT itself would decompress each
/// of the sample's blocks once and then serve every mosaic copy from GDAL's
/// block cache, which a real granule never allows.
pub fn granule_tif(size: usize) -> PathBuf {
    let dir = root().join("target/bench-granule");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let tif = dir.join(format!("granule_{size}.tif"));
    if tif.exists() {
        return tif;
    }
    let vrt = dir.join(format!("granule_{size}.vrt"));
    mosaic_vrt(&vrt, size);
    let tmp = dir.join(format!("granule_{size}.tmp.tif"));
    println!("writing {} once (a few minutes)…", tif.display());
    let status = Command::new("gdal_translate")
        .args([
            "-q",
            "-of",
            "GTiff",
            "-co",
            "COMPRESS=DEFLATE",
            "-co",
            "PREDICTOR=2",
        ])
        .args([
            "-co",
            "TILED=YES",
            "-co",
            "INTERLEAVE=PIXEL",
            "-co",
            "NUM_THREADS=ALL_CPUS",
        ])
        .args(["-co", "BIGTIFF=IF_SAFER"])
        .arg(&vrt)
        .arg(&tmp)
        .status()
        .expect("gdal_translate (Debian gdal-bin)");
    assert!(status.success(), "gdal_translate failed");
    std::fs::rename(&tmp, &tif).expect("rename");
    tif
}

/// A blocking HTTP client that reports every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Starts the release daemon on a free loopback port, serving rasters under `scenes`,
/// with its data in `data` and `extra` arguments; the child and its base URL.
pub fn start_daemon(data: &Path, scenes: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexttile"))
        .args(["serve", "--bind", "127.0.0.1:0", "--root"])
        .arg(scenes)
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .env_remove("NEXTTILE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, base)
}

/// A process's peak resident memory (`VmHWM`), MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// `POST base+path` with a JSON body; the JSON answer (`null` when there is none).
pub fn post_json(a: &ureq::Agent, base: &str, path: &str, body: &Value) -> Value {
    let mut r = a
        .post(&format!("{base}{path}"))
        .send_json(body)
        .expect("POST");
    r.body_mut().read_json().unwrap_or(Value::Null)
}

/// The `q` quantile of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Waits for job `job` to end; its final JSON. Panics unless it is `done`.
pub fn wait_job(a: &ureq::Agent, base: &str, job: i64) -> Value {
    loop {
        let mut r = a.get(&format!("{base}/jobs/{job}")).call().expect("job");
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        match v["status"].as_str() {
            Some("done") => return v,
            Some("queued" | "running") => std::thread::sleep(Duration::from_millis(50)),
            _ => panic!("job {job} failed: {v}"),
        }
    }
}
