//! `select` over a store of ≥ 1,000,000 tiles in ≥ 30 GeoParquet files (issue 15):
//! the streaming selection (`engine::select_store`, what the CLI runs) against the
//! in-memory one (`engine::select_store_in_memory`: the whole store as one f32 matrix)
//! over the same rows, wall time and peak RSS of each in its own process; and `embed`
//! throughput against `score`'s on the same scenes.
//!
//! The store (built once, kept in `target/bench-select-store/`): the full-granule
//! GeoTIFF of the pipeline bench (10980 × 10980 px, 29,241 tiles) embedded by the
//! release `nexttile embed` with the default pair, then `COPIES` files written through
//! the crate's store writer from its rows: copy `k` shifts every footprint and centre by
//! `(1.5° × (k mod 6), 1.0° × (k div 6))` so that scenes do not coincide, adds a seeded
//! perturbation (uniform, ±1 % of the value) to each embedding so that rows are
//! distinct, and has its own scene id. Real embeddings of a million tiles take hours
//! here, so they are copies of one granule's.
//!
//! Cases, each run once by the stream, once by the stream with `two_pass` (no embedding
//! kept; the needed rows read from the files again) and once in memory, each a child process of this
//! bench (peak RSS = its `VmHWM`): `auto` without labels (its TypiClust stage), `auto`
//! with 200 labelled points (centres of 200 seeded tiles of the first file: the
//! class-balanced uncertainty stage), `top_k`, and `coreset` (which reads every row: the
//! stream widens them all to f32 on top of the f16 copy, the losing case). Budget 20, seed 0, `--mc-passes 1` (T = 1:
//! the in-memory path's T × tiles × classes probabilities at T = 20 would add 0.8 GB
//! and a million-row head pass per MC pass; and T = 1 is deterministic, so the two paths'
//! picks are compared). The page cache is warmed by reading every file first.
//!
//! `embed` vs `score`: the sample (900 tiles) and the granule, each from a cold
//! embedding cache (a new `--cache-dir`), `nexttile embed SCENE --out STORE` against
//! `nexttile score SCENE -o OUT --budget 20`: tiles per second per task.
//!
//! ```sh
//! cargo bench --bench select_store
//! ```
//!
//! Results: a table on stdout and `target/bench-select-store.json`; the README's
//! "Regions and clusters" section has them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nexttile::aoi::Labelled;
use nexttile::engine::{self, StoreSelect};
use nexttile::model::SessionConfig;
use nexttile::sampling::Strategy;
use nexttile::store::{StoreMeta, StoreRows, read_rows, write_scene_file};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

mod common;
use common::{granule_tif, root, sample};

/// Shifted copies of the granule's file (35 × 29,241 = 1,023,435 tiles).
const COPIES: usize = 35;
/// Labelled points of the "with labels" case.
const LABELS: usize = 200;
/// The environment variable that makes this binary a measured child.
const CHILD: &str = "NEXTTILE_SELECT_BENCH_CHILD";

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed().as_secs_f64(), v)
}

fn nexttile(args: &[&str]) -> f64 {
    let (secs, o) = timed(|| {
        Command::new(env!("CARGO_BIN_EXE_nexttile"))
            .args(args)
            .output()
            .expect("run nexttile")
    });
    assert!(
        o.status.success(),
        "nexttile {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    secs
}

/// The granule's store file (embedded once) and the copies' folder, filled once.
fn build_store(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("base");
    let granule = granule_tif(10980);
    if !base.exists() {
        let cache = tempfile::tempdir().expect("tmp");
        println!("embedding the granule once…");
        nexttile(&[
            "embed",
            granule.to_str().unwrap(),
            "--out",
            base.to_str().unwrap(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ]);
    }
    let base_file = std::fs::read_dir(&base)
        .expect("base")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("the granule's store file");
    let store = dir.join("store");
    let done = store.join(format!("copy-{:02}.parquet", COPIES - 1));
    if done.exists() {
        return (base_file, store);
    }
    std::fs::create_dir_all(&store).expect("mkdir");
    let mut rows = StoreRows {
        tiles: Vec::new(),
        footprints: Vec::new(),
        centres: Vec::new(),
        valid_fraction: Vec::new(),
        embeddings: ndarray::Array2::zeros((0, 0)),
    };
    let mut values: Vec<f32> = Vec::new();
    let meta = read_rows(&base_file, |_, b| {
        rows.valid_fraction
            .extend(std::iter::repeat_n(1.0, b.tiles.len()));
        rows.tiles.extend(b.tiles);
        rows.footprints.extend(b.footprints);
        rows.centres.extend(b.centres);
        values.extend(b.embeddings);
    })
    .expect("read the granule's file");
    let grid = nexttile::store::read_meta(&base_file).expect("meta");
    let grid_json = grid_json(&base_file);
    for k in 0..COPIES {
        let (dx, dy) = (1.5 * (k % 6) as f64, 1.0 * (k / 6) as f64);
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        let emb: Vec<f32> = values
            .iter()
            .map(|v| v * (1.0 + rng.random_range(-0.01f32..0.01)))
            .collect();
        let copy = StoreRows {
            tiles: rows.tiles.clone(),
            footprints: rows
                .footprints
                .iter()
                .map(|p| {
                    use geo::MapCoords;
                    p.map_coords(|c| geo::coord! {x: c.x + dx, y: c.y + dy})
                })
                .collect(),
            centres: rows.centres.iter().map(|c| (c.0 + dx, c.1 + dy)).collect(),
            valid_fraction: rows.valid_fraction.clone(),
            embeddings: ndarray::Array2::from_shape_vec((rows.tiles.len(), meta.dim), emb)
                .expect("shape"),
        };
        let name = format!("copy-{k:02}");
        let m = StoreMeta {
            scene_id: name.clone(),
            scene_path: format!("{}#copy{k}", grid.scene_path),
            ..grid.clone()
        };
        let (secs, ()) = timed(|| {
            write_scene_file(
                &store.join(format!("{name}.parquet")),
                &m,
                &grid_json,
                &copy,
            )
            .expect("write a copy")
        });
        println!("wrote {name} ({} tiles) in {secs:.1} s", copy.tiles.len());
    }
    (base_file, store)
}

/// The `nexttile:grid` key of a store file.
fn grid_json(file: &Path) -> String {
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(file).expect("open"),
    )
    .expect("parquet");
    use parquet::file::reader::FileReader;
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == nexttile::store::GRID_KEY))
        .and_then(|k| k.value.clone())
        .expect("grid key")
}

/// Points at the centres of `LABELS` seeded tiles of `file`, as GeoJSON.
fn labels(file: &Path, out: &Path) {
    let mut centres = Vec::new();
    read_rows(file, |_, b| centres.extend(b.centres)).expect("read");
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let picked = rand::seq::index::sample(&mut rng, centres.len(), LABELS);
    let features: Vec<Value> = picked
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"type": "Feature", "properties": {"class": format!("c{}", i % 10)},
                "geometry": {"type": "Point", "coordinates": [centres[t].0, centres[t].1]}})
        })
        .collect();
    std::fs::write(
        out,
        json!({"type": "FeatureCollection", "features": features}).to_string(),
    )
    .expect("write labels");
}

/// The child: one selection, then its wall time, peak RSS and picks as JSON on stdout.
fn child(spec: &str) {
    let c: Value = serde_json::from_str(spec).expect("child spec");
    let labelled = c["labels"].as_str().map(|p| {
        Labelled::from_geojson(&std::fs::read_to_string(p).expect("labels"), None).expect("labels")
    });
    let strategy: Strategy = c["strategy"].as_str().expect("strategy").parse().unwrap();
    let sel = StoreSelect {
        head: nexttile::model::default_model("head.onnx"),
        session: SessionConfig::default(),
        mc_passes: 1,
        strategy,
        metric: engine::default_metric(&strategy),
        budget: 20,
        seed: 0,
        min_spacing_m: 0.0,
        labelled,
        two_pass: c["path"] == "two_pass",
    };
    let store = PathBuf::from(c["store"].as_str().expect("store"));
    let (secs, chosen) = timed(|| match c["path"].as_str() {
        Some("stream" | "two_pass") => engine::select_store(&store, &sel),
        _ => engine::select_store_in_memory(&store, &sel),
    });
    let chosen = chosen.expect("select");
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0);
    let picks: Vec<String> = chosen
        .picks
        .iter()
        .map(|p| format!("{}/{}", p.scene_id, p.tile))
        .collect();
    println!(
        "{}",
        json!({"wall_s": secs, "peak_rss_mib": hwm, "tiles": chosen.tiles, "files": chosen.files,
            "dim": chosen.dim, "labelled_tiles": chosen.labelled_tiles, "widened_rows": chosen.widened_rows,
            "strategy": chosen.strategy.name(), "picks": picks})
    );
}

/// One measured selection in a child process.
fn measure(store: &Path, path: &str, strategy: &str, labels: Option<&Path>) -> Value {
    let spec = json!({"store": store, "path": path, "strategy": strategy, "labels": labels});
    let o = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD, spec.to_string())
        .output()
        .expect("child");
    assert!(
        o.status.success(),
        "{path} {strategy}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("child JSON")
}

/// `embed` against `score` on `scene`, each from a cold cache: tiles per second.
fn embed_vs_score(scene: &Path, tiles: usize) -> Value {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = |p: &str| tmp.path().join(p).to_str().unwrap().to_string();
    let embed = nexttile(&[
        "embed",
        scene.to_str().unwrap(),
        "--out",
        &s("store"),
        "--cache-dir",
        &s("cache-embed"),
    ]);
    let score = nexttile(&[
        "score",
        scene.to_str().unwrap(),
        "-o",
        &s("out"),
        "--cache-dir",
        &s("cache-score"),
        "--budget",
        "20",
    ]);
    json!({"tiles": tiles, "embed_s": embed, "score_s": score,
        "embed_tiles_per_s": tiles as f64 / embed, "score_tiles_per_s": tiles as f64 / score})
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let dir = root().join("target/bench-select-store");
    let (base_file, store) = build_store(&dir);
    let label_file = dir.join("labels.geojson");
    labels(&store.join("copy-00.parquet"), &label_file);
    // Warm the page cache: every file read once.
    let bytes: u64 = std::fs::read_dir(&store)
        .expect("store")
        .map(|e| std::fs::read(e.expect("entry").path()).map_or(0, |b| b.len() as u64))
        .sum();
    println!("store: {bytes} bytes in {}", store.display());
    let cases = [
        ("auto, no labels", "auto", None),
        ("auto, 200 labels", "auto", Some(label_file.as_path())),
        ("top_k", "top_k", None),
        ("coreset", "coreset", None),
    ];
    let mut rows = Vec::new();
    for (name, strategy, labels) in cases {
        let stream = measure(&store, "stream", strategy, labels);
        let two_pass = measure(&store, "two_pass", strategy, labels);
        let memory = measure(&store, "memory", strategy, labels);
        let f16_mib =
            stream["tiles"].as_f64().unwrap_or(0.0) * stream["dim"].as_f64().unwrap_or(0.0) * 2.0
                / (1024.0 * 1024.0);
        let secs = |v: &Value| v["wall_s"].as_f64().unwrap_or(f64::NAN);
        let rss = |v: &Value| v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
        let same = stream["picks"] == memory["picks"] && two_pass["picks"] == memory["picks"];
        println!(
            "{name:18} stream {:6.1} s {:6.0} MiB | two-pass {:6.1} s {:6.0} MiB | memory {:6.1} s {:6.0} MiB | time {:.2}x / {:.2}x, RSS / f16 {:.2} / {:.2} ({f16_mib:.0} MiB) | widened {} rows | same picks: {same}",
            secs(&stream),
            rss(&stream),
            secs(&two_pass),
            rss(&two_pass),
            secs(&memory),
            rss(&memory),
            secs(&stream) / secs(&memory),
            secs(&two_pass) / secs(&memory),
            rss(&stream) / f16_mib,
            rss(&two_pass) / f16_mib,
            stream["widened_rows"],
        );
        rows.push(
            json!({"case": name, "stream": stream, "two_pass": two_pass, "memory": memory,
            "f16_mib": f16_mib, "time_ratio": secs(&stream) / secs(&memory),
            "two_pass_time_ratio": secs(&two_pass) / secs(&memory),
            "stream_rss_over_f16": rss(&stream) / f16_mib,
            "two_pass_rss_over_f16": rss(&two_pass) / f16_mib, "same_picks": same}),
        );
    }
    let granule_tiles = nexttile::store::read_meta(&base_file).expect("meta").tiles;
    let throughput = json!({
        "sample": embed_vs_score(&sample(), 900),
        "granule": embed_vs_score(&granule_tif(10980), granule_tiles),
    });
    println!("embed vs score (cold cache): {throughput}");
    let path = root().join("target/bench-select-store.json");
    let report = json!({"copies": COPIES, "store_bytes": bytes, "mc_passes": 1, "budget": 20,
        "selection": rows, "embed_vs_score": throughput});
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write");
    println!("wrote {}", path.display());
}
