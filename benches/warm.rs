//! Warm-daemon latency (issue 17): how long an analyst waits for suggestions and for a
//! labelling round on a scene the daemon has scored, against the same work through the
//! CLI, on the sample (900 tiles) and on the full-granule GeoTIFF the pipeline bench
//! writes (10980 × 10980 px, 29,241 tiles; written once into `target/bench-granule/`).
//!
//! For each scene, with the release binary and the default pair:
//! 1. daemon (`nexttile serve` on loopback, fresh data folder): `POST scenes` (scoring,
//!    timed to the job's end), then `N` `POST suggestions` (`auto`, 20 tiles) one after
//!    another — the first and the median;
//! 2. 200 labels (points at the centres of 200 tiles a `random` suggestion spread over
//!    the scene, classes in turn over the head's classes) in one `POST labels`, then `N`
//!    suggestions again (the first maps the labels onto the warm tiles);
//! 3. `R` rounds (`POST rounds`, 20 tiles; timed from the POST to the job's end: train on
//!    the 200 labels → predict → select → outputs), each split by its summary's timings
//!    into training, MC passes, scores + distance + selection and the rest (outputs,
//!    database, job hand-offs), and `N` suggestions after them;
//! 4. the CLI, for comparison, with the embedding cache the daemon filled (a warm-up run
//!    first, not counted): `nexttile score SCENE --budget 20` (what a suggestion costs
//!    without a daemon) and `… --labelled labels.geojson --retrain` (a round), `R` runs
//!    each, median.
//!
//! ```sh
//! cargo bench --bench warm -- [--requests 20] [--rounds 3] [--only sample,granule]
//! ```
//!
//! Results go to `target/bench-warm.json` (a scene run alone replaces only its entry); the README's Performance section has them.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

mod common;
use common::{agent, granule_tif, peak_rss_mib, post_json, quantile, root, sample, start_daemon};

/// Labels posted before the rounds (the issue's figure).
const LABELS: usize = 200;
/// Suggestions per request.
const BUDGET: usize = 20;

struct Opts {
    requests: usize,
    rounds: usize,
    only: Vec<String>,
}

/// Seconds of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed().as_secs_f64(), v)
}

/// `n` suggestions one after another: first, median and max in milliseconds.
fn suggestions(a: &ureq::Agent, base: &str, n: usize) -> Value {
    let mut ms = Vec::new();
    for _ in 0..n {
        let (s, v) = timed(|| {
            post_json(
                a,
                base,
                "/projects/1/suggestions",
                &json!({"strategy": "auto", "budget": BUDGET}),
            )
        });
        assert_eq!(
            v["features"].as_array().map(Vec::len),
            Some(BUDGET),
            "suggestions: {v}"
        );
        ms.push(1e3 * s);
    }
    let first = ms.first().copied().unwrap_or(f64::NAN);
    ms.sort_by(f64::total_cmp);
    json!({"requests": n, "first_ms": first, "p50_ms": quantile(&ms, 0.5), "max_ms": quantile(&ms, 1.0)})
}

/// The centre of a tile feature (mean of its ring's corners, closing point left out).
fn centre(f: &Value) -> (f64, f64) {
    let ring = f["geometry"]["coordinates"][0]
        .as_array()
        .expect("polygon ring");
    let corners = &ring[..ring.len().saturating_sub(1).max(1)];
    let n = corners.len() as f64;
    let sum = corners.iter().fold((0.0, 0.0), |(x, y), p| {
        (
            x + p[0].as_f64().unwrap_or(0.0),
            y + p[1].as_f64().unwrap_or(0.0),
        )
    });
    (sum.0 / n, sum.1 / n)
}

/// 200 point labels on tiles spread over the scene, classes in turn.
fn labels(a: &ureq::Agent, base: &str, classes: &[String]) -> Value {
    let picked = post_json(
        a,
        base,
        "/projects/1/suggestions",
        &json!({"strategy": "random", "budget": LABELS, "seed": 7}),
    );
    let features: Vec<Value> = picked["features"]
        .as_array()
        .expect("random tiles")
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (lon, lat) = centre(f);
            json!({"type": "Feature", "properties": {"class": classes[i % classes.len()]},
                   "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        })
        .collect();
    assert_eq!(features.len(), LABELS);
    json!({"type": "FeatureCollection", "features": features})
}

/// Runs `nexttile score` `runs + 1` times (the first fills the cache, not counted);
/// the median seconds of the others.
fn cli(scene: &Path, cache: &Path, out: &Path, extra: &[&str], runs: usize) -> f64 {
    let mut s = Vec::new();
    for i in 0..=runs {
        let (secs, o) = timed(|| {
            Command::new(env!("CARGO_BIN_EXE_nexttile"))
                .arg("score")
                .arg(scene)
                .arg("-o")
                .arg(out)
                .arg("--cache-dir")
                .arg(cache)
                .args(["--budget", &BUDGET.to_string()])
                .args(extra)
                .output()
                .expect("nexttile score")
        });
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if i > 0 {
            s.push(secs);
        }
    }
    s.sort_by(f64::total_cmp);
    quantile(&s, 0.5)
}

/// Every step above on one scene; its report.
fn scene_report(name: &str, scene: &Path, o: &Opts) -> Value {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("daemon");
    let folder = scene.parent().expect("scene folder");
    let (mut child, base) = start_daemon(&data, folder, &[]);
    let a = agent();
    let project = post_json(&a, &base, "/projects", &json!({"name": name}));
    let classes: Vec<String> = serde_json::from_value(project["classes"].clone()).expect("classes");
    let file = scene.file_name().and_then(|f| f.to_str()).expect("name");
    let (score_s, done) = timed(|| {
        let added = post_json(&a, &base, "/projects/1/scenes", &json!({"path": file}));
        common::wait_job(&a, &base, added["job"].as_i64().expect("job"))
    });
    let tiles = done["result"]["scored_tiles"].as_u64().unwrap_or(0);
    println!("{name}: {tiles} tiles scored by the daemon in {score_s:.1} s");
    let cold = suggestions(&a, &base, o.requests);
    println!("{name}: suggestions on the scored scene {cold}");

    let fc = labels(&a, &base, &classes);
    let stored = post_json(&a, &base, "/projects/1/labels", &fc);
    assert_eq!(
        stored["ids"].as_array().map(Vec::len),
        Some(LABELS),
        "{stored}"
    );
    let labelled = suggestions(&a, &base, o.requests);
    println!("{name}: suggestions with {LABELS} labels {labelled}");

    let mut rounds = Vec::new();
    let mut parts: [Vec<f64>; 4] = Default::default();
    for number in 1..=o.rounds {
        let (s, v) = timed(|| {
            let r = post_json(&a, &base, "/projects/1/rounds", &json!({"budget": BUDGET}));
            common::wait_job(&a, &base, r["job"].as_i64().expect("round job"))
        });
        assert!(v["result"]["retrained"].is_object(), "{v}");
        rounds.push(s);
        // Where the round's time went, from its summary: training, the MC passes (the
        // rest of the head stage; the distance to the labelled tiles is measured beside
        // the training), scores + selection, and everything else (outputs written, the
        // database, the job's hand-offs).
        let summary = round_summary(&a, &base, number);
        let train = summary["retrained"]["report"]["seconds"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let head = summary["timings"]["head_s"].as_f64().unwrap_or(f64::NAN);
        let select = summary["timings"]["select_s"].as_f64().unwrap_or(f64::NAN);
        for (k, x) in [train, head - train, select, s - head - select]
            .into_iter()
            .enumerate()
        {
            parts[k].push(x);
        }
    }
    let round_first = rounds.first().copied().unwrap_or(f64::NAN);
    rounds.sort_by(f64::total_cmp);
    for p in parts.iter_mut() {
        p.sort_by(f64::total_cmp);
    }
    let breakdown = json!({
        "train_s": quantile(&parts[0], 0.5),
        "predict_s": quantile(&parts[1], 0.5),
        "scores_select_s": quantile(&parts[2], 0.5),
        "outputs_and_rest_s": quantile(&parts[3], 0.5),
    });
    let after = suggestions(&a, &base, o.requests);
    println!(
        "{name}: rounds with {LABELS} labels {:.2} s median (first {round_first:.2} s), medians of its parts {breakdown}; suggestions after a round {after}",
        quantile(&rounds, 0.5)
    );
    let rss = peak_rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();

    let label_file = tmp.path().join("labels.geojson");
    std::fs::write(&label_file, fc.to_string()).expect("labels file");
    let cache = tmp.path().join("cli-cache");
    let out = tmp.path().join("cli-out");
    let cli_suggest = cli(scene, &cache, &out, &[], o.rounds);
    let labelled_arg = label_file.display().to_string();
    let cli_round = cli(
        scene,
        &cache,
        &out,
        &["--labelled", &labelled_arg, "--retrain"],
        o.rounds,
    );
    println!(
        "{name}: CLI from the embedding cache: score {cli_suggest:.2} s, score --labelled --retrain {cli_round:.2} s"
    );
    json!({
        "tiles": tiles,
        "daemon_score_s": score_s,
        "daemon_peak_rss_mib": rss,
        "suggestions_ms": cold,
        "suggestions_with_labels_ms": labelled,
        "round_s": {"p50": quantile(&rounds, 0.5), "first": round_first, "runs": rounds.len(), "parts_p50": breakdown},
        "suggestions_after_round_ms": after,
        "cli_score_from_cache_s": cli_suggest,
        "cli_retrain_from_cache_s": cli_round,
        "labels": LABELS,
    })
}

/// Round `number`'s summary, as `GET /projects/1/rounds` lists it.
fn round_summary(a: &ureq::Agent, base: &str, number: usize) -> Value {
    let mut r = a
        .get(&format!("{base}/projects/1/rounds"))
        .call()
        .expect("GET rounds");
    let rounds: Value = r.body_mut().read_json().unwrap_or(Value::Null);
    rounds
        .as_array()
        .and_then(|all| all.iter().find(|x| x["number"] == number))
        .map(|x| x["summary"].clone())
        .unwrap_or(Value::Null)
}

fn main() {
    let mut o = Opts {
        requests: 20,
        rounds: 3,
        only: vec!["sample".into(), "granule".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--requests" => o.requests = value.parse().expect("--requests N"),
            "--rounds" => o.rounds = value.parse().expect("--rounds N"),
            "--only" => o.only = value.split(',').map(str::to_string).collect(),
            // cargo bench passes --bench; anything else is refused.
            "--bench" => {
                i += 1;
                continue;
            }
            other => {
                panic!("unknown argument {other}: --requests N, --rounds N, --only sample,granule")
            }
        }
        i += 2;
    }
    // Scenes run on their own (`--only granule`) keep the other scenes' figures.
    let path = root().join("target/bench-warm.json");
    let mut report: serde_json::Map<String, Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    report.insert(
        "setup".into(),
        json!({"requests": o.requests, "rounds": o.rounds, "labels": LABELS, "budget": BUDGET}),
    );
    for name in o.only.clone() {
        let scene = match name.as_str() {
            "sample" => sample(),
            "granule" => granule_tif(10980),
            other => panic!("unknown scene {other}: sample or granule"),
        };
        report.insert(name.clone(), scene_report(&name, &scene, &o));
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json"))
        .expect("write report");
    println!("wrote {}", path.display());
}
