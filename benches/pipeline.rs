//! NextTile benchmarks: every figure is a ratio measured in one run on one
//! machine (absolute times on a shared machine are noise), repeated, median
//! reported.
//!
//! ```sh
//! benches/run.sh                                  # set-up + all sections
//! cargo bench --bench pipeline -- --only e2e,floor,mc --repeat 5
//! ```
//!
//! Sections:
//! - `e2e`: `nexttile score` of the sample vs the Python reference pipeline
//!   (`benches/reference_pipeline.py`), both as processes, same models, grid,
//!   T, metric, outputs; outputs are compared (T = 1) before anything is timed;
//! - `floor`: in-process `engine::score` + outputs vs onnxruntime alone on
//!   tiles already in memory (encoder once per tile + head T times);
//! - `mc`: T = 20 vs T = 1 (the encoder must not be repeated);
//! - `granule`: a full Sentinel-2 granule footprint (10980 × 10980 px, 13
//!   bands, a VRT mosaic of the sample; nothing big is written) and a quarter
//!   of it: wall time, time per tile, peak RSS of the process;
//! - `selection`: top-k, MCFPS, core-set, uncertainty + clustering, TypiClust and ProbCover, b = 1000, from 38,531 and 1,000,000
//!   synthetic 256-d embeddings (time, peak RSS), each in its own process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use nexttile::engine::{self, ScoreRequest};
use nexttile::model::{Encoder, Head, SessionConfig};
use nexttile::raster::{ReadPlan, Scene, read_tiles};
use nexttile::sampling::{
    AutoParams, ClusteringParams, McfpsParams, ProbcoverParams, SelectionInput, Strategy,
    TypiclustParams, select,
};
use nexttile::tiling::TileGrid;

mod common;
use common::{granule_tif, root, sample};

const MC: usize = 20;

struct Opts {
    repeat: usize,
    only: Vec<String>,
    threads: usize,
    /// Reader–encoder workers of ours (0 = automatic).
    workers: usize,
}

fn model(f: &str) -> PathBuf {
    root().join("onnx/eurosat_simsiam").join(f)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn time_cmd(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let out = cmd.output().expect("spawn");
    if !out.status.success() {
        panic!(
            "{:?} failed: {}{}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    t.elapsed().as_secs_f64()
}

/// Peak RSS (MiB) of the largest child waited for so far (getrusage).
fn children_max_rss_mib() -> f64 {
    // SAFETY: getrusage fills a plain C struct we own.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as f64 / 1024.0
    }
}

fn ours_cmd(scene: &Path, out: &Path, t: usize, o: &Opts) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nexttile"));
    c.arg("score")
        .arg(scene)
        .arg("--out")
        .arg(out)
        // no embedding cache: every run reads and encodes, like the reference
        .args(["--strategy", "top_k", "--quiet", "--json", "--no-cache"])
        .args([
            "--mc-passes",
            &t.to_string(),
            "--threads",
            &o.threads.to_string(),
            "--workers",
            &o.workers.to_string(),
        ]);
    c
}

fn reference_cmd(scene: &Path, out: &Path, t: usize, threads: usize) -> Command {
    let py = root().join(".cache/benchenv/bin/python");
    let mut c = Command::new(py);
    c.arg(root().join("benches/reference_pipeline.py"))
        .arg(scene)
        .arg("--out")
        .arg(out)
        .args(["--strategy", "top_k"])
        .args([
            "--mc-passes",
            &t.to_string(),
            "--threads",
            &threads.to_string(),
        ]);
    c
}

fn e2e(o: &Opts, report: &mut serde_json::Map<String, serde_json::Value>) {
    let dir = tempfile::tempdir().expect("tmp");
    let (ours, reference) = (dir.path().join("ours"), dir.path().join("ref"));
    // 1. agreement first (T = 1: deterministic, so metrics must match)
    time_cmd(&mut ours_cmd(&sample(), &ours, 1, o));
    time_cmd(&mut reference_cmd(&sample(), &reference, 1, o.threads));
    let cmp = Command::new(root().join(".cache/benchenv/bin/python"))
        .arg(root().join("benches/compare_outputs.py"))
        .arg(&ours)
        .arg(&reference)
        .output()
        .expect("compare");
    let cmp_text = String::from_utf8_lossy(&cmp.stdout).into_owned();
    println!("agreement (T=1): {}", cmp_text.trim());
    assert!(
        cmp.status.success(),
        "outputs disagree; not timing: {}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    // 2. timing, alternating to share the machine's noise
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..o.repeat {
        a.push(time_cmd(&mut ours_cmd(&sample(), &ours, MC, o)));
        b.push(time_cmd(&mut reference_cmd(
            &sample(),
            &reference,
            MC,
            o.threads,
        )));
    }
    let (ma, mb) = (median(a.clone()), median(b.clone()));
    println!(
        "e2e score, sample (900 tiles, T={MC}): ours {ma:.2} s, reference {mb:.2} s → reference/ours = {:.2}x (runs: {a:.2?} vs {b:.2?})",
        mb / ma
    );
    report.insert(
        "e2e".into(),
        serde_json::json!({"ours_s": ma, "reference_s": mb, "speedup": mb / ma, "ours_runs": a, "reference_runs": b, "agreement": cmp_text.trim()}),
    );
}

fn request(t: usize, o: &Opts) -> ScoreRequest {
    let mut r = ScoreRequest::new(sample(), model("encoder.onnx"), model("head.onnx"));
    r.mc_passes = t;
    r.strategy = Strategy::TopK;
    r.session = SessionConfig {
        intra_threads: o.threads,
        ..SessionConfig::default()
    };
    r.workers = o.workers;
    r
}

fn ours_in_process(t: usize, o: &Opts, out: &Path) -> f64 {
    let start = Instant::now();
    let res = engine::score(&request(t, o), &|_| {}, &AtomicBool::new(false)).expect("score");
    engine::write_outputs(&res, out).expect("write");
    start.elapsed().as_secs_f64()
}

fn floor(o: &Opts, report: &mut serde_json::Map<String, serde_json::Value>) {
    let cfg = SessionConfig {
        intra_threads: o.threads,
        ..SessionConfig::default()
    };
    let scene = Scene::open(&sample()).expect("scene");
    let mut enc = Encoder::load(&model("encoder.onnx"), cfg).expect("encoder");
    let mut head = Head::load(&model("head.onnx"), cfg).expect("head");
    let pre = enc.spec.preprocess.clone().expect("pre");
    let bands = scene.resolve_bands(&pre.bands, None).expect("bands");
    let grid = TileGrid::new(scene.width, scene.height, 64, 0, scene.geo_transform).expect("grid");
    let plan = ReadPlan {
        bands,
        preprocess: pre,
        tiles: grid.tiles().collect(),
        grid,
        min_valid_fraction: 0.5,
        batch_size: engine::DEFAULT_BATCH_SIZE,
    };
    let mut batches = Vec::new();
    read_tiles(&scene, &plan, |b| {
        batches.push(b.data);
        Ok(true)
    })
    .expect("read");
    // The floor's other form: one single-threaded encoder session per core,
    // side by side over halves of the batches (what our workers do), head as
    // above. The floor is the faster of the two.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one_thread = SessionConfig {
        intra_threads: 1,
        ..SessionConfig::default()
    };
    let mut encs: Vec<Encoder> = (0..cores)
        .map(|_| Encoder::load(&model("encoder.onnx"), one_thread).expect("encoder"))
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let (mut fl, mut fl_par, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.repeat {
        let t = Instant::now();
        let mut embs = Vec::new();
        for b in &batches {
            embs.push(enc.embed(b.view()).expect("embed"));
        }
        let views: Vec<_> = embs.iter().map(|e| e.view()).collect();
        let e = ndarray::concatenate(ndarray::Axis(0), &views).expect("concat");
        head.predict_mc(e.view(), MC).expect("head");
        fl.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let per = batches.len().div_ceil(cores);
        let parts: Vec<Vec<ndarray::Array2<f32>>> = std::thread::scope(|s| {
            let hs: Vec<_> = encs
                .iter_mut()
                .zip(batches.chunks(per))
                .map(|(en, bs)| {
                    s.spawn(move || {
                        bs.iter()
                            .map(|b| en.embed(b.view()).expect("embed"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("join")).collect()
        });
        let views: Vec<_> = parts.iter().flatten().map(|e| e.view()).collect();
        let e = ndarray::concatenate(ndarray::Axis(0), &views).expect("concat");
        head.predict_mc(e.view(), MC).expect("head");
        fl_par.push(t.elapsed().as_secs_f64());

        ours.push(ours_in_process(MC, o, dir.path()));
    }
    let (mf1, mfp, mo) = (
        median(fl.clone()),
        median(fl_par.clone()),
        median(ours.clone()),
    );
    let mf = mf1.min(mfp);
    println!(
        "compute floor (onnxruntime only, tiles in memory): {mf:.2} s (one session: {mf1:.2} s; {cores} single-thread sessions side by side: {mfp:.2} s); ours end-to-end in-process {mo:.2} s → ours/floor = {:.3}x",
        mo / mf
    );
    report.insert(
        "floor".into(),
        serde_json::json!({"floor_s": mf, "floor_one_session_s": mf1, "floor_sessions_per_core_s": mfp, "ours_s": mo, "ratio": mo / mf, "floor_runs": fl, "floor_sessions_per_core_runs": fl_par, "ours_runs": ours}),
    );
}

fn mc(o: &Opts, report: &mut serde_json::Map<String, serde_json::Value>) {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for _ in 0..o.repeat {
        one.push(ours_in_process(1, o, dir.path()));
        many.push(ours_in_process(MC, o, dir.path()));
    }
    let (m1, m20) = (median(one.clone()), median(many.clone()));
    println!(
        "MC dropout: T={MC} {m20:.2} s vs T=1 {m1:.2} s → {:.3}x",
        m20 / m1
    );
    report.insert(
        "mc".into(),
        serde_json::json!({"t1_s": m1, "t20_s": m20, "ratio": m20 / m1}),
    );
}

fn granule(o: &Opts, report: &mut serde_json::Map<String, serde_json::Value>) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut rows = Vec::new();
    for size in [5490usize, 10980] {
        let tif = granule_tif(size);
        let out = dir.path().join(format!("out_{size}"));
        let t = Instant::now();
        let o2 = ours_cmd(&tif, &out, MC, o).output().expect("run");
        let secs = t.elapsed().as_secs_f64();
        assert!(
            o2.status.success(),
            "{}",
            String::from_utf8_lossy(&o2.stderr)
        );
        let s: serde_json::Value = serde_json::from_slice(&o2.stdout).expect("json");
        let tiles = s["scored_tiles"].as_u64().unwrap_or(0) as f64;
        // The whole process, outputs included (the largest child so far).
        let rss = children_max_rss_mib();
        println!(
            "granule {size} x {size} px, 13 bands (GeoTIFF like the sample): {tiles} tiles in {secs:.1} s ({:.2} ms/tile), peak RSS of any child so far {rss:.0} MiB (stages {})",
            1000.0 * secs / tiles,
            s["timings"]
        );
        rows.push(serde_json::json!({"size_px": size, "tiles": tiles, "seconds": secs, "ms_per_tile": 1000.0 * secs / tiles, "peak_rss_mib": rss, "timings": s["timings"]}));
    }
    report.insert("granule".into(), serde_json::Value::Array(rows));
}

fn selection_worker(n: usize, strategy: &str) {
    use rand::{Rng, SeedableRng};
    let d = 256;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    // Embeddings as `score` selects on them: through the embedding cache, which
    // stores f16 (runs with a cache use the f16 values even on a miss). Pass
    // `--f32-embeddings` for full-precision values.
    let f32_values = std::env::args().any(|a| a == "--f32-embeddings");
    let emb = ndarray::Array2::from_shape_simple_fn((n, d), || {
        let v = rng.random::<f32>() * 2.0 - 1.0;
        if f32_values {
            v
        } else {
            half::f16::from_f32(v).to_f32()
        }
    });
    let unc = ndarray::Array1::from_shape_simple_fn(n, || rng.random::<f32>());
    let s = match strategy {
        "mcfps" => Strategy::Mcfps(McfpsParams::default()),
        "coreset" => Strategy::Coreset,
        "clustering" => Strategy::Clustering(ClusteringParams::default()),
        "typiclust" => Strategy::Typiclust(TypiclustParams::default()),
        "probcover" => Strategy::Probcover(ProbcoverParams::default()),
        // auto's uncertainty stage, class-balanced over 10 classes (switch at 0 labels).
        "auto_balanced" => Strategy::Auto(AutoParams {
            switch_per_class: Some(0),
            ..AutoParams::default()
        }),
        _ => Strategy::TopK,
    };
    // Predicted classes with a long tail (class c about twice as frequent as c + 1).
    let classes: Vec<usize> = (0..n)
        .map(|_| (rng.random::<f32>().max(1e-9).log2().abs() as usize).min(9))
        .collect();
    let mut input = SelectionInput::new(emb.view(), unc.view());
    if strategy == "auto_balanced" {
        input = input.with_classes(&classes);
    }
    let t = Instant::now();
    let picks = select(&s, &input, 1000, 7).expect("select");
    let secs = t.elapsed().as_secs_f64();
    // FNV-1a over every pick's index, score and anchor, so two runs can be compared.
    let digest = picks.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, p| {
        let anchor = p.anchor.map_or(u64::MAX, |a| a as u64);
        [p.index as u64, u64::from(p.score.to_bits()), anchor]
            .iter()
            .fold(h, |h, v| (h ^ v).wrapping_mul(0x0100_0000_01b3))
    });
    println!(
        "{}",
        serde_json::json!({"n": n, "strategy": strategy, "picks": picks.len(), "seconds": secs, "peak_rss_mib": engine::peak_rss_mib(), "picks_digest": format!("{digest:016x}")})
    );
}

fn selection(report: &mut serde_json::Map<String, serde_json::Value>) {
    let exe = std::env::current_exe().expect("exe");
    let mut rows = Vec::new();
    for n in [38_531usize, 1_000_000] {
        // auto runs one of typiclust (while labels are few) and clustering (m = 3) per call.
        for s in [
            "top_k",
            "mcfps",
            "coreset",
            "clustering",
            "typiclust",
            "probcover",
            "auto_balanced",
        ] {
            let run = |textbook: bool| {
                let mut cmd = Command::new(&exe);
                cmd.args(["--selection-worker", &n.to_string(), s]);
                if textbook {
                    cmd.env("NEXTTILE_SELECTION_PLAIN", "1");
                }
                let out = cmd.output().expect("worker");
                serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .unwrap_or(serde_json::Value::Null)
            };
            let mut v = run(false);
            println!("selection b=1000 from {n} tiles, {s}: {v}");
            if matches!(s, "mcfps" | "coreset") {
                // The same traversal measuring every row on every pass, in the same run.
                let u = run(true);
                assert_eq!(
                    v["picks_digest"], u["picks_digest"],
                    "the shortcuts changed the picks"
                );
                let ratio =
                    u["seconds"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(1.0);
                println!(
                    "  textbook traversal (NEXTTILE_SELECTION_PLAIN=1): {} s, {} MiB, same picks -> ours {ratio:.2}x faster",
                    u["seconds"], u["peak_rss_mib"]
                );
                v["textbook"] = u;
                v["speedup_vs_textbook"] = ratio.into();
            }
            rows.push(v);
        }
    }
    report.insert("selection".into(), serde_json::Value::Array(rows));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--selection-worker") {
        let n = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1000);
        selection_worker(n, args.get(i + 2).map(String::as_str).unwrap_or("mcfps"));
        return;
    }
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let o = Opts {
        repeat: get("--repeat").and_then(|v| v.parse().ok()).unwrap_or(3),
        only: get("--only")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_else(|| {
                ["e2e", "floor", "mc", "granule", "selection"]
                    .map(String::from)
                    .to_vec()
            }),
        threads: get("--threads").and_then(|v| v.parse().ok()).unwrap_or(0),
        workers: get("--workers").and_then(|v| v.parse().ok()).unwrap_or(0),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "NextTile benchmarks: {cpus} cores, repeat {} (median), onnxruntime threads {}, workers {}",
        o.repeat,
        if o.threads == 0 {
            "default".to_string()
        } else {
            o.threads.to_string()
        },
        if o.workers == 0 {
            "automatic".to_string()
        } else {
            o.workers.to_string()
        }
    );
    let mut report = serde_json::Map::new();
    report.insert("cores".into(), cpus.into());
    for section in &o.only {
        match section.as_str() {
            "e2e" => e2e(&o, &mut report),
            "floor" => floor(&o, &mut report),
            "mc" => mc(&o, &mut report),
            "granule" => granule(&o, &mut report),
            "selection" => selection(&mut report),
            other => eprintln!("unknown section {other}"),
        }
    }
    let out = root().join("target/bench-pipeline.json");
    let _ = std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    println!("results: {}", out.display());
}
