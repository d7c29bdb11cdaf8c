//! Load benchmark of the real daemon (issue 19): `C` concurrent clients for `S` seconds
//! against the release binary on loopback, in three scenarios:
//!
//! 1. `health`: every client polls `GET /health`;
//! 2. `labels`: half the clients walk `GET /projects/1/labels` pages (default page size,
//!    following `next`, starting over at the end) over `N` stored labels, while the
//!    other half poll `/health` — the health latency under heavy reads is the figure;
//! 3. `suggestions`: half the clients `POST /projects/1/suggestions` (auto, 20 tiles)
//!    on the scored sample, half poll `/health`.
//!
//! Before them, one client alone sends 30 suggestions requests on the scene that was
//! just scored (warm: each runs only the selection); `first_ms` is the first of them.
//!
//! For each: requests per second, p50/p99/max latency per route, statuses (429/503
//! count as refusals, not errors), client errors/timeouts, and the daemon's peak RSS
//! (`VmHWM`, cumulative over the run). Results go to `target/bench-load.json`.
//!
//! ```sh
//! cargo bench --bench load -- [--clients 50] [--seconds 30] [--labels 100000]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{agent, peak_rss_mib, post_json, quantile, start_daemon};

/// What one client saw: latencies (seconds) by route, and status counts.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<f64>>,
    statuses: BTreeMap<String, usize>,
}

/// Creates project 1 and scores the sample (waits for the job); the labels come later
/// ([`store_labels`]), after the lone client has measured suggestions without them.
fn prepare(base: &str) {
    let a = agent();
    let post = |path: &str, body: &Value| post_json(&a, base, path, body);
    post("/projects", &json!({"name": "load"}));
    let job = post(
        "/projects/1/scenes",
        &json!({"path": "chincoteague_s2.tif"}),
    )["job"]
        .as_i64()
        .expect("scoring job");
    loop {
        let mut r = a.get(&format!("{base}/jobs/{job}")).call().expect("job");
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        match v["status"].as_str() {
            Some("done") => break,
            Some("queued" | "running") => std::thread::sleep(Duration::from_millis(200)),
            _ => panic!("scoring failed: {v}"),
        }
    }
}

/// Stores `labels` labels in project 1 (points spread over the sample, class Forest).
fn store_labels(base: &str, labels: usize) {
    let a = agent();
    let post = |path: &str, body: &Value| post_json(&a, base, path, body);
    let mut stored = 0;
    while stored < labels {
        let n = (labels - stored).min(5000);
        let features: Vec<Value> = (stored..stored + n)
            .map(|i| {
                json!({"type": "Feature", "properties": {"class": "Forest"},
                "geometry": {"type": "Point",
                    "coordinates": [-75.73 + (i % 1000) as f64 * 1e-4, 37.67 + (i / 1000) as f64 * 1e-4]}})
            })
            .collect();
        let v = post(
            "/projects/1/labels",
            &json!({"type": "FeatureCollection", "features": features}),
        );
        stored += v["ids"].as_array().map_or(0, Vec::len);
        assert!(v["ids"].is_array(), "label post refused: {v}");
    }
}

/// 30 `POST suggestions` (auto, 20 tiles) one after another: latency of the first, p50, max.
fn suggestions_alone(base: &str) -> Value {
    let a = agent();
    let mut alone = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let mut r = a
            .post(&format!("{base}/projects/1/suggestions"))
            .send_json(json!({"strategy": "auto", "budget": 20}))
            .expect("POST suggestions");
        let _ = r.body_mut().read_to_vec();
        assert_eq!(r.status().as_u16(), 200, "suggestions alone");
        alone.push(started.elapsed().as_secs_f64());
    }
    let first = alone.first().copied().unwrap_or(f64::NAN);
    alone.sort_by(f64::total_cmp);
    json!({"requests": alone.len(), "first_ms": 1e3 * first,
        "p50_ms": 1e3 * quantile(&alone, 0.5), "max_ms": 1e3 * quantile(&alone, 1.0)})
}

/// One client's loop until `stop`: `role` is `health`, `labels` or `suggestions`.
fn client(base: String, role: &'static str, stop: Arc<AtomicBool>) -> Tally {
    let a = agent();
    let mut t = Tally::default();
    let mut page = "/projects/1/labels".to_string();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = match role {
            "labels" => a.get(&format!("{base}{page}")).call(),
            "suggestions" => a
                .post(&format!("{base}/projects/1/suggestions"))
                .send_json(json!({"strategy": "auto", "budget": 20})),
            _ => a.get(&format!("{base}/health")).call(),
        };
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(mut r) => {
                let status = r.status().as_u16();
                if role == "labels" {
                    // The `next` link without parsing the page (the client shares the
                    // daemon's cores; parsing 1000 features per page would load them).
                    let body = r
                        .body_mut()
                        .with_config()
                        .limit(64 * 1024 * 1024)
                        .read_to_string()
                        .unwrap_or_default();
                    page = next_link(&body).unwrap_or_else(|| "/projects/1/labels".to_string());
                } else {
                    let _ = r.body_mut().read_to_vec();
                }
                t.latencies.entry(role).or_default().push(secs);
                *t.statuses.entry(format!("{role} {status}")).or_default() += 1;
                if status == 429 || status == 503 {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            Err(e) => *t.statuses.entry(format!("{role} error: {e}")).or_default() += 1,
        }
    }
    t
}

/// The string value of the last `"next"` member of a labels page, if it is a string.
fn next_link(body: &str) -> Option<String> {
    let at = body.rfind("\"next\"")?;
    let rest = body
        .get(at + 6..)?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest.get(..rest.find('"')?)?.to_string())
}

/// Runs `roles` (one per client) for `seconds`; returns the scenario's report.
fn scenario(base: &str, pid: u32, roles: Vec<&'static str>, seconds: u64) -> Value {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = roles
        .into_iter()
        .map(|role| {
            let (b, s) = (base.to_string(), stop.clone());
            std::thread::spawn(move || client(b, role, s))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let all = Arc::new(Mutex::new(Tally::default()));
    for h in handles {
        let t = h.join().expect("client");
        let mut all = all.lock().expect("tally");
        for (k, v) in t.latencies {
            all.latencies.entry(k).or_default().extend(v);
        }
        for (k, v) in t.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
    }
    let all = all.lock().expect("tally");
    let mut routes = serde_json::Map::new();
    for (role, v) in &all.latencies {
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        routes.insert(
            role.to_string(),
            json!({"requests": s.len(), "per_second": s.len() as f64 / seconds as f64,
                "p50_ms": 1e3 * quantile(&s, 0.5), "p99_ms": 1e3 * quantile(&s, 0.99),
                "max_ms": 1e3 * s.last().copied().unwrap_or(f64::NAN)}),
        );
    }
    json!({"routes": routes, "statuses": all.statuses, "peak_rss_mib": peak_rss_mib(pid)})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str, d: usize| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (clients, seconds, labels) = (
        get("--clients", 50),
        get("--seconds", 30) as u64,
        get("--labels", 100_000),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut child, base) = start_daemon(
        tmp.path(),
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples"),
        &[],
    );
    let pid = child.id();
    let t = Instant::now();
    prepare(&base);
    println!(
        "daemon {base}: sample scored in {:.1} s; {clients} clients × {seconds} s per scenario",
        t.elapsed().as_secs_f64()
    );
    // One client alone: POST suggestions on the scene just scored (warm), before and
    // after the labels are stored.
    let single = suggestions_alone(&base);
    println!("suggestions, one client, no labels: {single}");
    let t = Instant::now();
    store_labels(&base, labels);
    println!(
        "{labels} labels stored in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let single_labelled = suggestions_alone(&base);
    println!("suggestions, one client, {labels} labels: {single_labelled}");
    let half = clients / 2;
    let mut report = serde_json::Map::new();
    let scenarios: [(&str, Vec<&'static str>); 3] = [
        ("health", vec!["health"; clients]),
        (
            "labels",
            [vec!["labels"; half], vec!["health"; clients - half]].concat(),
        ),
        (
            "suggestions",
            [vec!["suggestions"; half], vec!["health"; clients - half]].concat(),
        ),
    ];
    for (name, roles) in scenarios {
        let r = scenario(&base, pid, roles, seconds);
        println!("{name}: {}", serde_json::to_string(&r).unwrap_or_default());
        report.insert(name.to_string(), r);
    }
    report.insert("suggestions_alone".into(), single);
    report.insert("suggestions_alone_labelled".into(), single_labelled);
    report.insert(
        "setup".into(),
        json!({"clients": clients, "seconds": seconds, "labels": labels}),
    );
    let _ = child.kill();
    let _ = child.wait();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-load.json");
    let _ = std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    println!("wrote {}", out.display());
}
