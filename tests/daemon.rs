//! The real daemon binary on a free loopback port, over the real sample scene: the full
//! labelling round trip, security refusals, and crash safety of acknowledged labels.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `nexttile serve`, killed on drop.
struct Daemon {
    child: Child,
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Daemon {
    fn start(data: &Path, extra: &[&str], token: Option<&str>) -> Daemon {
        Daemon::start_env(data, extra, token, &[])
    }

    fn start_env(data: &Path, extra: &[&str], token: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let samples = common::root().join("samples");
        common::sample_scene();
        let mut cmd = Command::new(common::bin());
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--root"])
            .arg(&samples)
            .arg("--data-dir")
            .arg(data)
            // The test fixtures' models, besides the shipped onnx/ folder.
            .arg("--model-root")
            .arg(common::root().join("tests/fixtures"))
            .args(extra)
            .env_remove("NEXTTILE_TOKEN")
            .env_remove("NEXTTILE_ROOTS")
            .env_remove("NEXTTILE_MODEL_ROOTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.envs(env.iter().copied());
        Daemon::spawn(cmd, token)
    }

    /// The daemon with its data folder `data` on a tmpfs of `size` (e.g. `1m`) mounted
    /// in a user + mount namespace of its own (`unshare -Urm`), so it can fill up.
    fn start_on_tmpfs(data: &Path, size: &str) -> Daemon {
        let samples = common::root().join("samples");
        let mut cmd = Command::new("unshare");
        cmd.args(["-Urm", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size} tmpfs \"$1\" && exec \"$2\" serve --bind 127.0.0.1:0 --root \"$3\" --data-dir \"$1\""
            ))
            .arg("sh")
            .arg(data)
            .arg(common::bin())
            .arg(&samples)
            .env_remove("NEXTTILE_TOKEN")
            .env_remove("NEXTTILE_ROOTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Daemon::spawn(cmd, None)
    }

    /// Spawns `cmd` (a `nexttile serve` that prints `listening on URL` first).
    fn spawn(mut cmd: Command, token: Option<&str>) -> Daemon {
        let mut child = cmd.spawn().expect("daemon starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Daemon {
            child,
            base,
            token: token.map(str::to_string),
            agent,
        }
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .auth(self.agent.get(&format!("{}{path}", self.base)))
            .call()
            .expect("GET");
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut r = self
            .auth(self.agent.post(&format!("{}{path}", self.base)))
            .send_json(body)
            .expect("POST");
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .auth(self.agent.delete(&format!("{}{path}", self.base)))
            .call()
            .expect("DELETE");
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    /// Every label of a project, following the pages' `next` links.
    fn all_labels(&self, pid: i64) -> Value {
        let mut path = format!("/projects/{pid}/labels");
        let mut features = Vec::new();
        loop {
            let (code, page) = self.get(&path);
            assert_eq!(code, 200, "{page}");
            features.extend(page["features"].as_array().expect("features").clone());
            match page["next"].as_str() {
                Some(next) => path = next.to_string(),
                None => return json!({"type": "FeatureCollection", "features": features}),
            }
        }
    }

    /// Waits for `job` to end, however it ends; returns its record.
    fn wait_end(&self, job: i64) -> Value {
        let start = Instant::now();
        loop {
            let (code, v) = self.get(&format!("/jobs/{job}"));
            assert_eq!(code, 200, "{v}");
            if !matches!(v["status"].as_str(), Some("queued") | Some("running")) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "job {job} too slow: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `job` runs (panics if it ends first), then stops the daemon with
    /// SIGTERM and waits for it to exit.
    fn sigterm_while_running(mut self, job: i64) {
        let start = Instant::now();
        loop {
            let (_, v) = self.get(&format!("/jobs/{job}"));
            match v["status"].as_str() {
                Some("running") => break,
                Some("queued") => {}
                _ => panic!("job ended before SIGTERM could be sent: {v}"),
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{v}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let start = Instant::now();
        while self.child.try_wait().expect("wait").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "daemon still up 60 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_job(&self, job: i64) -> Value {
        let v = self.wait_job_end(job);
        assert_eq!(v["status"], "done", "job {job}: {v}");
        v
    }

    /// Polls job `job` until it has ended, whatever its end (done, failed, …).
    fn wait_job_end(&self, job: i64) -> Value {
        let start = Instant::now();
        loop {
            let (code, v) = self.get(&format!("/jobs/{job}"));
            assert_eq!(code, 200, "{v}");
            if let Some("done" | "failed" | "cancelled" | "interrupted") = v["status"].as_str() {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "job {job} too slow: {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ids of a labels FeatureCollection.
fn label_ids(fc: &Value) -> Vec<i64> {
    fc["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["properties"]["id"].as_i64().expect("id"))
        .collect()
}

fn tile_ids(fc: &Value) -> Vec<String> {
    fc["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| {
            f["properties"]["tile_id"]
                .as_str()
                .expect("tile_id")
                .to_string()
        })
        .collect()
}

/// A point label at the centroid of a suggestion polygon (lon/lat).
fn centre(feature: &Value) -> (f64, f64) {
    let ring = feature["geometry"]["coordinates"][0]
        .as_array()
        .expect("ring");
    let n = (ring.len() - 1) as f64;
    let (mut x, mut y) = (0.0, 0.0);
    for p in &ring[..ring.len() - 1] {
        x += p[0].as_f64().unwrap();
        y += p[1].as_f64().unwrap();
    }
    (x / n, y / n)
}

/// `/openapi.json` lists every route, and `/health` names the provider.
fn check_openapi_and_health(d: &Daemon) {
    let (code, doc) = d.get("/openapi.json");
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/health",
        "/projects",
        "/projects/{id}/scenes",
        "/projects/{id}/suggestions",
        "/projects/{id}/labels",
        "/projects/{id}/labels/{label}",
        "/projects/{id}/rounds",
        "/projects/{id}/export",
        "/jobs/{id}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    let (code, health) = d.get("/health");
    assert_eq!(code, 200);
    assert!(health["provider"].as_str().is_some(), "{health}");
    // One set of defaults: what /health reports (and the plugin shows) is what the CLI's
    // flags and the daemon's request bodies use.
    let defaults = &health["defaults"];
    assert_eq!(
        defaults["budget"],
        nexttile::engine::DEFAULT_BUDGET,
        "{health}"
    );
    assert_eq!(defaults["mc_passes"], nexttile::engine::DEFAULT_MC_PASSES);
    assert_eq!(defaults["max_budget"], nexttile::engine::MAX_BUDGET);
    assert_eq!(defaults["strategy"], health["default_strategy"]);
    assert_eq!(defaults["metric"], "margin");
    let help = std::process::Command::new(common::bin())
        .args(["score", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for (flag, key) in [
        ("--budget", "budget"),
        ("--mc-passes", "mc_passes"),
        ("--seed", "seed"),
    ] {
        // The flag's entry: from its name to the next option's.
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} not in --help"));
        let line = help[at..]
            .lines()
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('-'))
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains(&format!("[default: {}]", defaults[key])),
            "{flag}: {line}"
        );
    }
}

/// Corrects one stored label's class, deletes another (kept in the database, gone from
/// the API), then puts it back: six labels again.
fn correct_delete_and_restore(
    d: &Daemon,
    pid: i64,
    stored: &Value,
    classes: &[String],
    labelled: &[Value],
) {
    // Correct one label's class, delete another (kept in the database, gone from the API),
    // then put it back.
    let ids: Vec<i64> = stored["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let url = |id: i64| format!("{}/projects/{pid}/labels/{id}", d.base);
    let r = d
        .agent
        .patch(&url(ids[0]))
        .send_json(json!({"class": classes[9]}))
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let mut r = d
        .agent
        .patch(&url(ids[0]))
        .send_json(json!({"class": "Glacier"}))
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let v: Value = r.body_mut().read_json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("SeaLake"), "{v}");
    let r = d.agent.delete(&url(ids[5])).call().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = d.agent.delete(&url(ids[5])).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, all) = d.get(&format!("/projects/{pid}/labels"));
    let feats = all["features"].as_array().unwrap();
    assert_eq!(feats.len(), 5);
    assert_eq!(feats[0]["properties"]["class"], classes[9].as_str());
    let (code, _) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": [labelled[5].clone()]}),
    );
    assert_eq!(code, 201);
}

/// Exports for the survey team: GeoPackage (suggestions + labels), GPX, CSV; shp refused.
fn check_survey_exports(d: &Daemon, tmp: &Path, pid: i64) {
    // Exports for the survey team: GeoPackage (suggestions + labels), GPX, CSV.
    let fetch = |format: &str| -> Vec<u8> {
        let mut r = d
            .agent
            .get(&format!("{}/projects/{pid}/export?format={format}", d.base))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{format}");
        r.body_mut()
            .with_config()
            .limit(100 << 20)
            .read_to_vec()
            .unwrap()
    };
    use gdal::vector::LayerAccess;
    let gpkg = tmp.join("survey.gpkg");
    std::fs::write(&gpkg, fetch("gpkg")).unwrap();
    let ds = gdal::Dataset::open(&gpkg).unwrap();
    let mut sugg = ds.layer_by_name("suggestions").unwrap();
    assert_eq!(sugg.feature_count(), 10);
    let mut visits: Vec<i64> = sugg
        .features()
        .map(|f| {
            f.field_as_integer64(f.field_index("visit").unwrap())
                .unwrap()
                .unwrap()
        })
        .collect();
    visits.sort_unstable();
    assert_eq!(visits, (1..=10).collect::<Vec<_>>());
    assert_eq!(ds.layer_by_name("labels").unwrap().feature_count(), 6);
    let gpx = tmp.join("survey.gpx");
    std::fs::write(&gpx, fetch("gpx")).unwrap();
    let ds = gdal::Dataset::open(&gpx).unwrap();
    assert_eq!(ds.layer_by_name("waypoints").unwrap().feature_count(), 10);
    let csv = String::from_utf8(fetch("csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "visit,rank,tile_id,lon,lat,score,predicted_class");
    assert_eq!(lines.len(), 11);
    assert!(
        lines[1].starts_with("1,1,"),
        "the route starts at rank 1: {}",
        lines[1]
    );
    let (code, v) = d.get(&format!("/projects/{pid}/export?format=shp"));
    assert_eq!(code, 400, "{v}");
}

/// The heatmap is a GeoTIFF that GDAL opens with the scene's CRS.
fn check_heatmap_crs(d: &Daemon, tmp: &Path, pid: i64, scene_id: i64) {
    let mut r = d
        .agent
        .get(&format!(
            "{}/projects/{pid}/scenes/{scene_id}/heatmap",
            d.base
        ))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r
        .body_mut()
        .with_config()
        .limit(100 << 20)
        .read_to_vec()
        .unwrap();
    let path = tmp.join("heatmap.tif");
    std::fs::write(&path, bytes).unwrap();
    let ds = gdal::Dataset::open(&path).unwrap();
    assert!(
        ds.spatial_ref()
            .unwrap()
            .to_wkt()
            .unwrap()
            .contains("32618")
            || ds.spatial_ref().unwrap().auth_code().ok() == Some(32618)
    );
}

#[test]
fn full_round_trip_on_the_sample() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &[], None);
    check_openapi_and_health(&d);

    let (code, project) = d.post("/projects", &json!({"name": "chincoteague"}));
    assert_eq!(code, 201, "{project}");
    let pid = project["id"].as_i64().unwrap();
    let classes: Vec<String> = serde_json::from_value(project["classes"].clone()).unwrap();
    assert_eq!(classes.len(), 10);
    let (code, dup) = d.post("/projects", &json!({"name": "chincoteague"}));
    assert_eq!(code, 409, "{dup}");

    let (code, added) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif"}),
    );
    assert_eq!(code, 202, "{added}");
    let job = d.wait_job(added["job"].as_i64().unwrap());
    assert!(
        job["result"]["scored_tiles"].as_u64().unwrap() > 800,
        "{job}"
    );
    // The job result is summary.json: band matching, scaling and the input
    // check (issue 14) come with it, and the check is silent on the sample.
    let result = &job["result"];
    assert_eq!(
        result["scene"]["band_matching"][0]["matched_by"], "description",
        "{job}"
    );
    assert_eq!(result["input"]["check"].as_array().map(Vec::len), Some(3));
    assert_eq!(result["input"]["sensor"]["name"], "s2-l1c", "{job}");
    assert!(
        !result["warnings"].to_string().contains("training data"),
        "{job}"
    );

    let ask = json!({"strategy": "top_k", "budget": 10, "mc_passes": 5});
    let (code, first) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 200, "{first}");
    let first_ids = tile_ids(&first);
    assert_eq!(first_ids.len(), 10);

    // The analyst labels the first six suggestions.
    let labelled: Vec<Value> = first["features"].as_array().unwrap()[..6]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (lon, lat) = centre(f);
            json!({"type": "Feature", "properties": {"class": classes[i % 3], "author": "test"},
                   "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        })
        .collect();
    let (code, stored) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": labelled}),
    );
    assert_eq!(code, 201, "{stored}");
    assert_eq!(stored["ids"].as_array().unwrap().len(), 6);
    let (_, all) = d.get(&format!("/projects/{pid}/labels"));
    assert_eq!(all["features"].as_array().unwrap().len(), 6);
    correct_delete_and_restore(&d, pid, &stored, &classes, &labelled);

    let (code, started) = d.post(&format!("/projects/{pid}/rounds"), &ask);
    assert_eq!(code, 202, "{started}");
    let round = d.wait_job(started["job"].as_i64().unwrap());
    assert_eq!(round["result"]["round"], 1, "{round}");
    assert_eq!(round["result"]["retrained"]["labelled_tiles"], 6, "{round}");

    let (code, second) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 200, "{second}");
    let second_ids = tile_ids(&second);
    assert_eq!(second_ids.len(), 10);
    assert_ne!(first_ids, second_ids, "new suggestions differ");
    for id in &first_ids[..6] {
        assert!(
            !second_ids.contains(id),
            "labelled tile {id} suggested again"
        );
    }

    check_survey_exports(&d, tmp.path(), pid);

    let scene_id = added["scene"]["id"].as_i64().unwrap();
    check_heatmap_crs(&d, tmp.path(), pid, scene_id);
}

/// The reserved class `unusable` (a cloud, nodata): accepted by POST labels, keeps its
/// tile out of every later suggestion like any label, and is never trained on; the
/// round's `agreement` compares the previous head's predictions with the analyst's
/// classes on the newly labelled tiles, leaving `unusable` ones out.
#[test]
fn unusable_labels_are_excluded_but_never_trained_on() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &[], None);
    let (code, project) = d.post("/projects", &json!({"name": "unusable"}));
    assert_eq!(code, 201, "{project}");
    let pid = project["id"].as_i64().unwrap();
    let classes: Vec<String> = serde_json::from_value(project["classes"].clone()).unwrap();
    let (code, added) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif"}),
    );
    assert_eq!(code, 202, "{added}");
    d.wait_job(added["job"].as_i64().unwrap());
    let ask = json!({"strategy": "top_k", "budget": 10, "mc_passes": 3});
    let (code, first) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 200, "{first}");
    let feats = first["features"].as_array().unwrap();
    let point = |f: &Value, class: &str| {
        let (lon, lat) = centre(f);
        json!({"type": "Feature", "properties": {"class": class},
               "geometry": {"type": "Point", "coordinates": [lon, lat]}})
    };
    let predicted = |i: usize| {
        feats[i]["properties"]["predicted_class"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let other = |i: usize| {
        classes
            .iter()
            .find(|c| **c != predicted(i))
            .unwrap()
            .clone()
    };
    // Unusable alone cannot start a round: nothing to train on.
    let (code, v) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": [point(&feats[3], "unusable")]}),
    );
    assert_eq!(code, 201, "{v}");
    let (code, started) = d.post(&format!("/projects/{pid}/rounds"), &ask);
    assert_eq!(code, 202, "{started}");
    let job = d.wait_job_end(started["job"].as_i64().unwrap());
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["message"].as_str().unwrap().contains("\"unusable\""),
        "{job}"
    );
    // Two tiles as the head predicted them, one otherwise, one more unusable.
    let labels = vec![
        point(&feats[0], &predicted(0)),
        point(&feats[1], &predicted(1)),
        point(&feats[2], &other(2)),
        point(&feats[4], "unusable"),
    ];
    let (code, v) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": labels}),
    );
    assert_eq!(code, 201, "{v}");
    // An unknown class still is refused, and the message offers `unusable`.
    let (code, v) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": [point(&feats[5], "Cloud")]}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"unusable\""), "{v}");

    let (code, started) = d.post(&format!("/projects/{pid}/rounds"), &ask);
    assert_eq!(code, 202, "{started}");
    let round = d.wait_job(started["job"].as_i64().unwrap());
    let result = &round["result"];
    // Trained on the three classed tiles only; `unusable` is no class of the head.
    assert_eq!(result["retrained"]["labelled_tiles"], 3, "{round}");
    let per_class = result["retrained"]["per_class"].to_string();
    assert!(!per_class.contains("unusable"), "{per_class}");
    let agreement = &result["agreement"];
    assert_eq!(agreement["new_labels"], 5, "{agreement}");
    assert_eq!(agreement["added"]["unusable"], 2, "{agreement}");
    assert_eq!(agreement["compared"], 3, "{agreement}");
    assert_eq!(agreement["agreed"], 2, "{agreement}");
    // Every labelled tile, unusable ones included, is out of the new suggestions.
    let new_ids = tile_ids(&result["suggestions"]);
    let (code, again) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 200, "{again}");
    let first_ids = tile_ids(&first);
    for id in &first_ids[..5] {
        assert!(
            !new_ids.contains(id),
            "labelled tile {id} suggested by the round"
        );
        assert!(
            !tile_ids(&again).contains(id),
            "labelled tile {id} suggested again"
        );
    }
    // The round history carries the agreement; a round with no new labels has nothing
    // to compare.
    let (code, rounds) = d.get(&format!("/projects/{pid}/rounds"));
    assert_eq!(code, 200, "{rounds}");
    assert_eq!(rounds[0]["summary"]["agreement"]["agreed"], 2, "{rounds}");
    let (code, started) = d.post(&format!("/projects/{pid}/rounds"), &ask);
    assert_eq!(code, 202, "{started}");
    let round = d.wait_job(started["job"].as_i64().unwrap());
    assert_eq!(round["result"]["agreement"]["new_labels"], 0, "{round}");
    assert_eq!(round["result"]["agreement"]["rate"], Value::Null, "{round}");
}

#[test]
fn security_refusals() {
    let tmp = common::tempdir();
    let token = "correct-horse-battery-staple";
    let d = Daemon::start(
        tmp.path(),
        &["--max-body-bytes", "4096", "--queue-capacity", "1"],
        Some(token),
    );
    // Missing and wrong token.
    let anon = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build();
    let anon: ureq::Agent = anon.into();
    let mut r = anon.get(&format!("{}/projects", d.base)).call().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let msg: Value = r.body_mut().read_json().unwrap();
    assert!(msg["error"].as_str().unwrap().contains("Bearer"), "{msg}");
    let r = anon
        .get(&format!("{}/projects", d.base))
        .header("Authorization", "Bearer nope-nope-nope-nope")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let (code, project) = d.post("/projects", &json!({"name": "p"}));
    assert_eq!(code, 201);
    let pid = project["id"].as_i64().unwrap();
    let outside = tmp.path().join("outside.tif");
    std::fs::copy(common::sample_scene(), &outside).unwrap();
    let cases = [
        (
            outside.display().to_string(),
            403,
            "not under the raster roots",
        ),
        (
            format!(
                "{}/../samples/chincoteague_s2.tif",
                common::root().join("samples").display()
            ),
            400,
            "..",
        ),
        (
            "/vsicurl/http://example.com/x.tif".to_string(),
            403,
            "virtual file system",
        ),
        ("/etc/passwd".to_string(), 403, "not under the raster roots"),
    ];
    for (path, status, needle) in cases {
        let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &json!({"path": path}));
        assert_eq!(code, status, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    // Oversized body.
    let big = json!({"type": "FeatureCollection", "features": [], "pad": "x".repeat(10_000)});
    let (code, v) = d.post(&format!("/projects/{pid}/labels"), &big);
    assert_eq!(code, 413);
    // in the JSON error shape, saying which limit and how to get under it
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not JSON: {v}"));
    assert!(msg.contains("4096 bytes (max_body_bytes)"), "{v}");
    // A label with an unknown class lists the valid ones.
    let (code, v) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"class": "Glacier"}, "geometry": {"type": "Point", "coordinates": [-75.6, 37.8]}}]}),
    );
    assert_eq!(code, 422);
    assert!(v["error"].as_str().unwrap().contains("SeaLake"), "{v}");
    // A file under a root that GDAL cannot read as a raster.
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "README.md"}),
    );
    assert_eq!(code, 422, "{v}");
    // Order of operations: suggestions before any scene, a round without labels.
    let (code, v) = d.post(&format!("/projects/{pid}/suggestions"), &json!({}));
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no scene"), "{v}");
    let (code, v) = d.post(
        &format!("/projects/{pid}/suggestions"),
        &json!({"strategy": "badge"}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("mcfps"), "{v}");
    for bad in [
        json!({"budget": 0}),
        json!({"mc_passes": 0}),
        json!({"min_spacing_m": -1.0}),
        json!({"aoi_crs": "/etc/passwd"}),
        json!({"aoi": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}),
    ] {
        let (code, v) = d.post(&format!("/projects/{pid}/suggestions"), &bad);
        assert_eq!(code, 422, "{bad}: {v}");
    }
    // A scene's CRS is checked before a job is queued: no job, no scene row.
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif", "aoi_crs": "/etc/passwd"}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not a CRS definition"),
        "{v}"
    );
    let (_, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    assert_eq!(scenes.as_array().map(Vec::len), Some(0), "{scenes}");
    let (code, v) = d.get("/no/such/route");
    assert_eq!(code, 404, "{v}");
    // A bounded queue: with capacity 1, quick scene additions get 429 instead of piling up.
    // A 429 says when to come back (Retry-After) and is a JSON error.
    let mut codes = Vec::new();
    for _ in 0..4 {
        let mut r = d
            .auth(d.agent.post(&format!("{}/projects/{pid}/scenes", d.base)))
            .send_json(json!({"path": "chincoteague_s2.tif"}))
            .unwrap();
        let code = r.status().as_u16();
        if code == 429 {
            let after = r.headers().get("retry-after").map(|v| v.to_str().unwrap());
            assert_eq!(after, Some("5"), "429 without Retry-After");
            let v: Value = r.body_mut().read_json().unwrap();
            assert!(v["error"].as_str().unwrap().contains("Retry-After"), "{v}");
        }
        codes.push(code);
    }
    assert!(codes.contains(&202) && codes.contains(&429), "{codes:?}");
    let (code, v) = d.post(&format!("/projects/{pid}/rounds"), &json!({}));
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no labels"), "{v}");
}

#[test]
fn oversized_scene_is_refused() {
    let tmp = common::tempdir();
    let config = tmp.path().join("nexttile.toml");
    std::fs::write(&config, "max_tiles = 10\n").unwrap();
    let d = Daemon::start(tmp.path(), &["--config", config.to_str().unwrap()], None);
    let (_, project) = d.post("/projects", &json!({"name": "p"}));
    let pid = project["id"].as_i64().unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif"}),
    );
    assert_eq!(code, 413, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("900 tiles of 64 px") && msg.contains("max_tiles"),
        "{v}"
    );
    // The CLI's rule: the tiles of the AOI count (3 x 3 here), not the scene's.
    let aoi = json!({"type": "Polygon", "coordinates":
        [[[437700, 4177900], [439500, 4177900], [439500, 4176300], [437700, 4176300], [437700, 4177900]]]});
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif", "aoi": aoi, "aoi_crs": "EPSG:32618"}),
    );
    assert_eq!(code, 202, "{v}");
    let job = d.wait_job(v["job"].as_i64().unwrap());
    assert_eq!(job["result"]["scored_tiles"], 9, "{job}");
}

/// One raw HTTP/1.1 request to `base` (`http://127.0.0.1:PORT`): (status, the head in
/// lower case, the body). Raw, so the test chooses every header, `Host` included.
fn raw_http(base: &str, request: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").expect("http base");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// What a web page can make a browser send to a token-less daemon on loopback:
/// label posts as `text/plain` or a form (no CORS preflight for those) are refused
/// with 415, and a foreign `Host` (DNS rebinding) with 421, both as JSON errors and
/// without storing anything; the plugin's and curl's requests (JSON, loopback host)
/// still pass, and axum's own refusals (bad JSON, wrong method) are JSON too.
#[test]
fn browser_requests_are_refused() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &[], None);
    let port = d.base.rsplit(':').next().unwrap().to_string();
    let (code, project) = d.post("/projects", &json!({"name": "p"}));
    assert_eq!(code, 201, "{project}");
    let pid = project["id"].as_i64().unwrap();
    let labels = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"class":"Forest"},"geometry":{"type":"Point","coordinates":[-75.6,37.8]}}]}"#;
    let post = |host: &str, content_type: Option<&str>, path: &str, body: &str| {
        let ct = content_type
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        raw_http(
            &d.base,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let local = format!("127.0.0.1:{port}");
    let labels_path = format!("/projects/{pid}/labels");
    for ct in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (code, head, body) = post(&local, ct, &labels_path, labels);
        assert_eq!(code, 415, "{ct:?}: {body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("application/json"),
            "{v}"
        );
    }
    // an empty POST without a type cannot start a round either
    let (code, _, body) = post(&local, None, &format!("/projects/{pid}/rounds"), "");
    assert_eq!(code, 415, "{body}");
    // A foreign Host, even with the right port, for GET and POST.
    for host in [
        "attacker.example".to_string(),
        format!("attacker.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        "localhost:1".to_string(),
    ] {
        let (code, head, body) = raw_http(
            &d.base,
            &format!("GET /projects HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(code, 421, "{host}: {body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(body.contains("DNS rebinding"), "{body}");
        let (code, _, body) = post(&host, Some("application/json"), &labels_path, labels);
        assert_eq!(code, 421, "{host}: {body}");
    }
    // No CORS header invites a page to read the answers.
    let (_, head, _) = raw_http(
        &d.base,
        &format!(
            "GET /health HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://attacker.example\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(!head.contains("access-control-allow"), "{head}");
    // Nothing of the above was stored.
    let (_, all) = d.get(&labels_path);
    assert_eq!(all["features"].as_array().unwrap().len(), 0, "{all}");
    // The loopback names pass, with JSON and geo+json bodies.
    for (host, ct) in [
        (format!("localhost:{port}"), "application/json"),
        (format!("[::1]:{port}"), "application/geo+json"),
        (local.clone(), "application/json; charset=utf-8"),
    ] {
        let (code, _, body) = post(&host, Some(ct), &labels_path, labels);
        assert_eq!(code, 201, "{host} {ct}: {body}");
    }
    // axum's own refusals come in the JSON error shape too.
    let (code, _, body) = post(&local, Some("application/json"), "/projects", "{");
    assert_eq!(code, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    let (code, head, body) = raw_http(
        &d.base,
        &format!("DELETE /health HTTP/1.1\r\nHost: {local}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 405, "{body}");
    assert!(head.contains("allow:"), "{head}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    // A method a route does not take is 405 before the content-type check (not 415),
    // and an unknown route 404.
    for (method, path, want) in [
        ("PUT", "/jobs/1", 405),
        ("POST", "/health", 405),
        ("PUT", &labels_path, 405),
        ("POST", "/no/such/route", 404),
    ] {
        let (code, _, body) = raw_http(
            &d.base,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {local}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(code, want, "{method} {path}: {body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    }
    // The API description lists these answers, and the 429's Retry-After.
    let (_, doc) = d.get("/openapi.json");
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let codes = op["responses"].as_object().unwrap();
            let mut want = vec!["401", "421"];
            if method == "post" || method == "patch" {
                want.extend(["400", "413", "415", "422", "507"]);
            }
            if method == "delete" || path.ends_with("/export") {
                want.push("507");
            }
            if path.contains('{') {
                want.extend(["400", "404"]);
            }
            for code in want {
                assert!(codes.contains_key(code), "{method} {path} lacks {code}");
            }
        }
    }
    let scenes_429 = &doc["paths"]["/projects/{id}/scenes"]["post"]["responses"]["429"];
    assert!(
        scenes_429["headers"]["Retry-After"].is_object(),
        "{scenes_429}"
    );
}

/// `/dev/zero`, a FIFO and a model over `max_model_bytes` are refused as a project's
/// models before they are read, with JSON errors; the daemon stays responsive.
#[test]
fn model_files_that_are_devices_fifos_or_too_large_are_refused() {
    let tmp = common::tempdir();
    let fifo = tmp.path().join("head.onnx");
    common::run_tool("mkfifo", &[fifo.to_str().unwrap()]);
    let head_bytes = std::fs::metadata(common::head()).unwrap().len();
    let encoder_bytes = std::fs::metadata(common::encoder()).unwrap().len();
    assert!(head_bytes < 1_000_000 && encoder_bytes > 1_000_000);
    let models = tmp.path().to_str().unwrap();
    let d = Daemon::start(
        tmp.path(),
        &["--max-model-bytes", "1000000", "--model-root", models],
        None,
    );
    // A small real encoder beside the refused heads, so only the head is at fault.
    let small = common::fixture("channel_mean_s1s2.onnx");
    let cases = [
        // A device is outside every model root: refused before it is looked at.
        (
            json!({"name": "a", "encoder": small, "head": "/dev/zero"}),
            403,
            "not under the model roots",
        ),
        (
            json!({"name": "b", "encoder": "/dev/zero"}),
            403,
            "not under the model roots",
        ),
        // A FIFO inside a model root: refused by the loader, naming what it is.
        (
            json!({"name": "c", "encoder": small, "head": fifo}),
            422,
            "is a FIFO",
        ),
        // The SimSiam pair (a small head, an encoder over the cap), named explicitly.
        (
            json!({"name": "d", "encoder": common::encoder(), "head": common::head()}),
            413,
            "bytes, more than the limit of 1000000 bytes",
        ),
    ];
    for (body, status, needle) in cases {
        let start = Instant::now();
        let (code, v) = d.post("/projects", &body);
        assert_eq!(code, status, "{body}: {v}");
        let msg = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(msg.contains(needle), "{body}: {v}");
        assert!(start.elapsed() < Duration::from_secs(30), "{body}: slow");
    }
    let (code, v) = d.post(
        "/projects",
        &json!({"name": "d", "encoder": common::encoder(), "head": common::head()}),
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("is {encoder_bytes} bytes")),
        "{code}: {v}"
    );
    let (code, _) = d.get("/health");
    assert_eq!(code, 200);
    let (_, projects) = d.get("/projects");
    assert_eq!(projects.as_array().map(Vec::len), Some(0), "{projects}");
}

/// Project models come only from the model roots (the shipped onnx/ folder first, then
/// each --model-root), under the raster roots' rules: outside, `..`, a symlink out and
/// /vsi are refused with the roots named; and a stored project whose model is no longer
/// under the roots is refused when a scene is added, and fails a rescore job, instead
/// of opening the file.
#[test]
fn model_paths_outside_the_model_roots_are_refused() {
    let tmp = common::tempdir();
    let extra_root = tmp.path().join("models");
    std::fs::create_dir(&extra_root).unwrap();
    let head = common::fixture("sum_head_15.onnx");
    std::fs::copy(&head, extra_root.join("head.onnx")).unwrap();
    let outside = tmp.path().join("outside.onnx");
    std::fs::copy(&head, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, extra_root.join("link.onnx")).unwrap();
    let data = tmp.path().join("data");
    let extra = ["--model-root", extra_root.to_str().unwrap()];
    let d = Daemon::start(&data, &extra, None);
    let shipped = common::root().join("onnx").canonicalize().unwrap();
    let fixtures = common::root()
        .join("tests/fixtures")
        .canonicalize()
        .unwrap();
    let encoder = common::fixture("channel_mean_s1s2.onnx");
    let up = format!("{}/../fixtures/sum_head_15.onnx", fixtures.display());
    let cases = [
        (json!(outside), 403, "not under the model roots"),
        (
            json!(extra_root.join("link.onnx")),
            403,
            "not under the model roots",
        ),
        (json!("/etc/passwd"), 403, "not under the model roots"),
        (json!(up), 400, "contains `..`"),
        (
            json!("/vsicurl/http://example.com/h.onnx"),
            403,
            "virtual file system",
        ),
    ];
    for (path, status, needle) in cases {
        let (code, v) = d.post(
            "/projects",
            &json!({"name": "p", "encoder": encoder, "head": path}),
        );
        assert_eq!(code, status, "{path}: {v}");
        let msg = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(
            msg.contains(needle) && msg.contains("model path"),
            "{path}: {v}"
        );
        if status == 403 && needle.contains("roots") {
            for root in [&shipped, &fixtures] {
                assert!(msg.contains(&root.display().to_string()), "{msg}");
            }
            assert!(msg.contains("--model-root"), "{msg}");
        }
    }
    // The encoder is checked too.
    let (code, v) = d.post("/projects", &json!({"name": "p", "encoder": outside}));
    assert_eq!(code, 403, "{v}");
    let (_, projects) = d.get("/projects");
    assert_eq!(projects.as_array().map(Vec::len), Some(0), "{projects}");
    // Relative paths are relative to the first root, the shipped folder; stored canonical.
    let (code, p) = d.post(
        "/projects",
        &json!({"name": "rel", "encoder": "s2_simsiam/encoder.onnx", "head": "s2_simsiam/head.onnx"}),
    );
    assert_eq!(code, 201, "{p}");
    let want = shipped.join("s2_simsiam/encoder.onnx");
    assert_eq!(p["encoder"].as_str(), want.to_str(), "{p}");
    // Every root's models are listed.
    let (code, models) = d.get("/models");
    assert_eq!(code, 200, "{models}");
    assert_eq!(
        models["folders"].as_array().map(Vec::len),
        Some(3),
        "{models}"
    );
    let listed: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["path"].as_str())
        .collect();
    assert!(
        listed
            .iter()
            .any(|p| p.ends_with("tests/fixtures/sum_head_15.onnx")),
        "{listed:?}"
    );
    // A project whose head lies under a root the next run does not have.
    let (code, p) = d.post(
        "/projects",
        &json!({"name": "extra", "encoder": encoder, "head": extra_root.join("head.onnx")}),
    );
    assert_eq!(code, 201, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let scene = json!({"path": "chincoteague_s2.tif"});
    let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &scene);
    assert_eq!(code, 202, "{v}");
    let sid = v["scene"]["id"].as_i64().unwrap();
    // (it fails: the S2 sample lacks the encoder's S1 bands)
    d.wait_end(v["job"].as_i64().unwrap());
    drop(d);
    let d = Daemon::start(&data, &[], None);
    let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &scene);
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not under the model roots"),
        "{v}"
    );
    let (code, v) = d.post(&format!("/projects/{pid}/scenes/{sid}/rescore"), &json!({}));
    assert_eq!(code, 202, "{v}");
    let job = d.wait_end(v["job"].as_i64().unwrap());
    assert_eq!(job["status"], "failed", "{job}");
    let msg = job["message"].as_str().unwrap_or_default();
    assert!(msg.contains("not under the model roots"), "{job}");
}

/// `max_tiles` counts tiles at the size the job uses, the encoder's: the sample is 900
/// tiles of 64 px (the demo encoder) but 3,600 of 32 px (s2_simsiam), so a limit of
/// 1,000 admits it for the first and refuses it for the second.
#[test]
fn max_tiles_counts_at_the_encoders_tile_size() {
    let tmp = common::tempdir();
    let config = tmp.path().join("nexttile.toml");
    std::fs::write(&config, "max_tiles = 1000\n").unwrap();
    let d = Daemon::start(tmp.path(), &["--config", config.to_str().unwrap()], None);
    let (code, small) = d.post(
        "/projects",
        &json!({"name": "32px", "encoder": "s2_simsiam/encoder.onnx", "head": "s2_simsiam/head.onnx"}),
    );
    assert_eq!(code, 201, "{small}");
    let scene = json!({"path": "chincoteague_s2.tif"});
    let (code, v) = d.post(&format!("/projects/{}/scenes", small["id"]), &scene);
    assert_eq!(code, 413, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("3600 tiles of 32 px") && msg.contains("limit of 1000"),
        "{v}"
    );
    let (_, scenes) = d.get(&format!("/projects/{}/scenes", small["id"]));
    assert_eq!(scenes.as_array().map(Vec::len), Some(0), "{scenes}");
    // The demo encoder's 64 px tiles: 900, under the limit.
    let (_, demo) = d.post("/projects", &json!({"name": "64px"}));
    let (code, v) = d.post(&format!("/projects/{}/scenes", demo["id"]), &scene);
    assert_eq!(code, 202, "{v}");
    let (code, _) = d.delete(&format!("/jobs/{}", v["job"]));
    assert!(code == 202 || code == 409, "cancel: {code}");
}

#[test]
fn non_loopback_bind_without_token_is_refused() {
    let out = Command::new(common::bin())
        .args(["serve", "--bind", "0.0.0.0:0"])
        .env_remove("NEXTTILE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));
}

/// Start-up failures that are the environment's, not the command's, exit 6 (not 3,
/// "bad input") with a message naming what failed: a port already in use, a database
/// that cannot be opened.
#[test]
fn start_up_failures_exit_6() {
    let tmp = common::tempdir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let serve = |args: &[&str]| {
        Command::new(common::bin())
            .arg("serve")
            .args(args)
            .env_remove("NEXTTILE_TOKEN")
            .env_remove("NEXTTILE_ROOTS")
            .env_remove("NEXTTILE_MODEL_ROOTS")
            .output()
            .unwrap()
    };
    let data = tmp.path().join("data");
    let out = serve(&["--bind", &addr, "--data-dir", data.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains(&format!("cannot start the daemon: cannot listen on {addr}"))
            && err.contains("--bind"),
        "{err}"
    );
    // The database path is a folder.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(broken.join("nexttile.sqlite")).unwrap();
    let out = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        broken.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("cannot start the daemon: database"), "{err}");
    drop(taken);
}

/// SIGKILL while labels are being posted, many times: every label that got a 2xx is
/// there after a restart, and the database opens cleanly.
#[test]
fn acknowledged_labels_survive_sigkill() {
    let tmp = common::tempdir();
    let mut acked: Vec<i64> = Vec::new();
    let mut pid = None;
    for round in 0..8 {
        let d = Daemon::start(tmp.path(), &[], None);
        let project = match pid {
            None => {
                let (code, p) = d.post("/projects", &json!({"name": "crash"}));
                assert_eq!(code, 201, "{p}");
                p["id"].as_i64().unwrap()
            }
            Some(p) => p,
        };
        pid = Some(project);
        // Every label stored so far is still there.
        let present = label_ids(&d.all_labels(project));
        for id in &acked {
            assert!(
                present.contains(id),
                "round {round}: acknowledged label {id} lost"
            );
        }
        // Post labels from a thread; kill the daemon while it runs.
        let base = d.base.clone();
        let poster = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let mut got = Vec::new();
            for i in 0..1000 {
                let body = json!({"type": "FeatureCollection", "features": [
                    {"type": "Feature", "properties": {"class": "Forest"}, "geometry": {"type": "Point", "coordinates": [-75.6 + i as f64 * 1e-5, 37.8]}}]});
                match agent
                    .post(&format!("{base}/projects/{project}/labels"))
                    .send_json(&body)
                {
                    Ok(mut r) if r.status().as_u16() == 201 => {
                        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
                        if let Some(ids) = v["ids"].as_array() {
                            got.extend(ids.iter().filter_map(Value::as_i64));
                        }
                    }
                    _ => break,
                }
            }
            got
        });
        std::thread::sleep(Duration::from_millis(150 + 37 * round as u64));
        let mut d = d;
        let _ = d.child.kill(); // SIGKILL
        let _ = d.child.wait();
        acked.extend(poster.join().unwrap());
    }
    assert!(
        acked.len() > 20,
        "too few labels posted to test anything: {}",
        acked.len()
    );
    let d = Daemon::start(tmp.path(), &[], None);
    let present = label_ids(&d.all_labels(pid.unwrap()));
    for id in &acked {
        assert!(present.contains(id), "acknowledged label {id} lost");
    }
    let db = nexttile::store::Db::open(&tmp.path().join("nexttile.sqlite")).unwrap();
    assert!(db.schema_version().unwrap() >= 1);
}

/// A multi-modal project: the scene is the Sen1Floods11 S2 chip and its
/// `pair` the S1 chip, both under a root; the pair is checked when added.
#[test]
fn scenes_with_a_second_raster() {
    let tmp = common::tempdir();
    let chip = common::sen1floods_s2()
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    let d = Daemon::start(tmp.path(), &["--root", chip.to_str().unwrap()], None);
    // every shipped model is listed with its contract, the multi-modal one with its sensors
    let (code, models) = d.get("/models");
    assert_eq!(code, 200, "{models}");
    let listed = models["models"].as_array().unwrap();
    let dsimclr = listed
        .iter()
        .find(|m| {
            m["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("s1s2_dsimclr/encoder.onnx")
        })
        .unwrap_or_else(|| panic!("D-SimCLR encoder not listed: {models}"));
    assert_eq!(dsimclr["modalities"][0]["name"], "s1", "{dsimclr}");
    assert!(listed.len() >= 10, "{} models listed", listed.len());
    let (code, project) = d.post(
        "/projects",
        &json!({
            "name": "murcia",
            "encoder": common::fixture("channel_mean_s1s2.onnx"),
            "head": common::fixture("sum_head_15.onnx"),
        }),
    );
    assert_eq!(code, 201, "{project}");
    let pid = project["id"].as_i64().unwrap();
    let s2 = chip.join("Spain_7370579_S2Hand.tif").display().to_string();
    let s1 = chip.join("Spain_7370579_S1Hand.tif").display().to_string();

    // without the S1 raster the job fails, naming the missing sensor
    let (code, added) = d.post(&format!("/projects/{pid}/scenes"), &json!({"path": s2}));
    assert_eq!(code, 202, "{added}");
    let job = added["job"].as_i64().unwrap();
    let start = Instant::now();
    let failed = loop {
        let (_, v) = d.get(&format!("/jobs/{job}"));
        if v["status"] == "failed" {
            break v;
        }
        assert_ne!(v["status"], "done", "{v}");
        assert!(start.elapsed() < Duration::from_secs(120), "{v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or("")
            .contains("none of the s1 bands"),
        "{failed}"
    );

    // a pair outside the roots, and one that does not overlap, are refused up front
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": s2, "pair": "/etc/passwd"}),
    );
    assert_eq!(code, 403, "{v}");
    let elsewhere = common::sample_scene().canonicalize().unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": s2, "pair": elsewhere}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("does not overlap"),
        "{v}"
    );

    let (code, added) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": s2, "pair": s1}),
    );
    assert_eq!(code, 202, "{added}");
    assert_eq!(added["scene"]["pair"].as_str().unwrap(), s1);
    let job = d.wait_job(added["job"].as_i64().unwrap());
    assert_eq!(job["result"]["scored_tiles"], 256, "{job}");
    assert_eq!(job["result"]["scene"]["bands_used"][0], 14, "{job}");
    let (code, sugg) = d.post(
        &format!("/projects/{pid}/suggestions"),
        &json!({"strategy": "top_k", "budget": 5, "mc_passes": 1}),
    );
    assert_eq!(code, 200, "{sugg}");
    assert_eq!(tile_ids(&sugg).len(), 5);
}

/// A loopback TCP listener that counts every connection made to it: the test's proof
/// that the daemon sent no request.
struct Canary {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Canary {
    fn start() -> Canary {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("canary binds");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("addr").port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok(_) => {
                        h.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Canary {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A one-band VRT of `size` px over `source` (written as given).
fn vrt_xml(size: usize, band: &str, source: &str, relative: bool) -> String {
    format!(
        "<VRTDataset rasterXSize=\"{size}\" rasterYSize=\"{size}\">\n  <SRS>EPSG:32618</SRS>\n  <GeoTransform>437000, 10, 0, 4180000, 0, -10</GeoTransform>\n  <VRTRasterBand dataType=\"UInt16\" band=\"1\"{band}>\n    <SimpleSource>\n      <SourceFilename relativeToVRT=\"{}\">{source}</SourceFilename>\n      <SourceBand>1</SourceBand>\n    </SimpleSource>\n  </VRTRasterBand>\n</VRTDataset>\n",
        u8::from(relative)
    )
}

fn gdal_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (gdal-bin, scripts/setup.sh): {e}"));
    assert!(out.status.success(), "{tool} {args:?}: {out:?}");
}

#[test]
fn vrts_reading_outside_the_roots_are_refused_with_no_request_sent() {
    let tmp = common::tempdir();
    let root = tmp.path().join("root");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (root, elsewhere) = (
        root.canonicalize().unwrap(),
        elsewhere.canonicalize().unwrap(),
    );
    let sample = common::sample_scene();
    let small = root.join("small.tif");
    let outside = elsewhere.join("x.tif");
    for dest in [&small, &outside] {
        gdal_tool(
            "gdal_translate",
            &[
                "-q",
                "-srcwin",
                "0",
                "0",
                "256",
                "256",
                sample.to_str().unwrap(),
                dest.to_str().unwrap(),
            ],
        );
    }
    let canary = Canary::start();
    let url = format!("/vsicurl/http://127.0.0.1:{}/x.tif", canary.port);
    // (a) gdalbuildvrt in the root over a GeoTIFF outside it
    let escaping = root.join("o.vrt");
    gdal_tool(
        "gdalbuildvrt",
        &["-q", escaping.to_str().unwrap(), outside.to_str().unwrap()],
    );
    // (b) a VRT in the root over a VRT outside it whose source is the canary, and the
    // same /vsicurl/ VRT placed inside the root
    let remote_out = elsewhere.join("remote.vrt");
    std::fs::write(&remote_out, vrt_xml(256, "", &url, false)).unwrap();
    let nested = root.join("nested.vrt");
    std::fs::write(
        &nested,
        vrt_xml(256, "", remote_out.to_str().unwrap(), false),
    )
    .unwrap();
    let remote_in = root.join("remote.vrt");
    std::fs::write(&remote_in, vrt_xml(256, "", &url, false)).unwrap();
    let via_inside = root.join("via_inside.vrt");
    std::fs::write(&via_inside, vrt_xml(256, "", "remote.vrt", true)).unwrap();
    // (c) VRT XML in a file named .tif, over the outside GeoTIFF
    let disguised = root.join("disguised.tif");
    std::fs::write(
        &disguised,
        vrt_xml(256, "", outside.to_str().unwrap(), false),
    )
    .unwrap();
    // a raw VRT band over a file outside the roots (a certificate bundle in the report)
    let secret = elsewhere.join("secret.pem");
    std::fs::write(&secret, "-----BEGIN CERTIFICATE-----\n".repeat(100)).unwrap();
    let raw = root.join("raw.vrt");
    std::fs::write(
        &raw,
        format!(
            "<VRTDataset rasterXSize=\"64\" rasterYSize=\"40\">\n  <SRS>EPSG:32618</SRS>\n  <GeoTransform>437000, 10, 0, 4180000, 0, -10</GeoTransform>\n  <VRTRasterBand dataType=\"Byte\" band=\"1\" subClass=\"VRTRawRasterBand\">\n    <SourceFilename relativeToVRT=\"0\">{}</SourceFilename>\n    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>64</LineOffset>\n  </VRTRasterBand>\n</VRTDataset>\n",
            secret.display()
        ),
    )
    .unwrap();
    // (d) a VRT whose sources are all inside the roots (relative, as gdalbuildvrt writes)
    let inside = root.join("inside.vrt");
    gdal_tool(
        "gdalbuildvrt",
        &["-q", inside.to_str().unwrap(), small.to_str().unwrap()],
    );

    let d = Daemon::start(tmp.path(), &["--root", root.to_str().unwrap()], None);
    let (_, project) = d.post("/projects", &json!({"name": "vrt"}));
    let pid = project["id"].as_i64().unwrap();
    let outside_text = outside.display().to_string();
    let remote_text = remote_out.display().to_string();
    let secret_text = secret.display().to_string();
    let cases: [(&Path, &str, &str); 6] = [
        (&escaping, &outside_text, "not under the raster roots"),
        (&nested, &remote_text, "not under the raster roots"),
        (&via_inside, &url, "virtual file system"),
        (&remote_in, &url, "virtual file system"),
        (&disguised, &outside_text, "not under the raster roots"),
        (&raw, &secret_text, "not under the raster roots"),
    ];
    for (path, source, needle) in cases {
        for body in [json!({"path": path}), json!({"path": small, "pair": path})] {
            let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &body);
            assert_eq!(code, 403, "{body}: {v}");
            let msg = v["error"].as_str().unwrap_or_default();
            assert!(msg.contains(source) && msg.contains(needle), "{body}: {v}");
        }
    }
    // nothing was queued or stored for the refused rasters
    let (_, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    assert_eq!(scenes.as_array().map(Vec::len), Some(0), "{scenes}");
    // the canary saw no connection, right after the answers and a while later
    assert_eq!(canary.hits(), 0, "the daemon connected to the canary");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(canary.hits(), 0, "the daemon connected to the canary");

    // a VRT whose sources are inside the roots still scores
    let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &json!({"path": inside}));
    assert_eq!(code, 202, "{v}");
    let job = d.wait_job(v["job"].as_i64().unwrap());
    assert_eq!(job["result"]["scored_tiles"], 16, "{job}");
    assert_eq!(canary.hits(), 0, "the daemon connected to the canary");
    // and the canary does see a connection when one is made
    drop(std::net::TcpStream::connect(("127.0.0.1", canary.port)).expect("canary answers"));
    let start = Instant::now();
    while canary.hits() == 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(canary.hits(), 1, "the canary counts connections");
}

/// The engine checks again at open time (the daemon's job thread), not only the route.
#[test]
fn the_engine_refuses_a_confined_scene_whose_vrt_escapes() {
    let tmp = common::tempdir();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let vrt = root.join("o.vrt");
    let sample = common::sample_scene().canonicalize().unwrap();
    std::fs::write(&vrt, vrt_xml(256, "", sample.to_str().unwrap(), false)).unwrap();
    let mut req = nexttile::engine::ScoreRequest::new(&vrt, common::encoder(), common::head());
    req.confine = Some(nexttile::raster::Confinement {
        roots: vec![root.clone()],
        allow_vsi: false,
    });
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let err = match nexttile::engine::score(&req, &|_| {}, &cancel) {
        Ok(_) => panic!("scored a VRT that reads outside the roots"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(sample.to_str().unwrap()) && err.contains("not under the raster roots"),
        "{err}"
    );
    // the CLI (no confinement) reads its user's VRT as before
    assert!(nexttile::raster::Scene::open(&vrt).is_ok());
}

/// Issue 19 item 9: a scene whose job the full queue refused (429) is not kept, so
/// suggestions do not answer 409 "still being scored" for it.
#[test]
fn a_scene_refused_with_429_leaves_no_scene_row() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &["--queue-capacity", "1"], None);
    let (_, project) = d.post("/projects", &json!({"name": "p"}));
    let pid = project["id"].as_i64().unwrap();
    let (mut jobs, mut refused) = (Vec::new(), 0);
    for _ in 0..6 {
        let (code, v) = d.post(
            &format!("/projects/{pid}/scenes"),
            &json!({"path": "chincoteague_s2.tif"}),
        );
        match code {
            202 => jobs.push(v["job"].as_i64().unwrap()),
            429 => refused += 1,
            _ => panic!("{code}: {v}"),
        }
    }
    assert!(
        refused > 0 && !jobs.is_empty(),
        "{} accepted, {refused} refused",
        jobs.len()
    );
    let (_, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    assert_eq!(
        scenes.as_array().map(Vec::len),
        Some(jobs.len()),
        "{scenes}"
    );
    for job in &jobs {
        d.wait_job(*job);
    }
    let (code, v) = d.post(
        &format!("/projects/{pid}/suggestions"),
        &json!({"strategy": "top_k", "budget": 3, "mc_passes": 1}),
    );
    assert_eq!(code, 200, "{v}");
}

/// Issue 19 item 9: SIGTERM while a job runs ends it `interrupted` (as the README says),
/// not `cancelled` (which is what DELETE /jobs/{id} does).
#[test]
fn sigterm_marks_a_running_job_interrupted() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &[], None);
    let (_, project) = d.post("/projects", &json!({"name": "p"}));
    let pid = project["id"].as_i64().unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif"}),
    );
    assert_eq!(code, 202, "{v}");
    let job = v["job"].as_i64().unwrap();
    d.sigterm_while_running(job);
    let d = Daemon::start(tmp.path(), &[], None);
    let (code, v) = d.get(&format!("/jobs/{job}"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "interrupted", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("stopped"),
        "{v}"
    );
}

/// The status a project's scene reports in `GET /projects/{id}/scenes`.
fn scene_status(d: &Daemon, pid: i64, scene: i64) -> Value {
    let (code, scenes) = d.get(&format!("/projects/{pid}/scenes"));
    assert_eq!(code, 200, "{scenes}");
    scenes
        .as_array()
        .expect("scenes")
        .iter()
        .find(|s| s["id"] == scene)
        .unwrap_or_else(|| panic!("scene {scene} not listed: {scenes}"))
        .clone()
}

/// Issue 19 item 5: a scene whose scoring was interrupted (SIGTERM) or failed (its
/// raster vanished) is not "still being scored" forever: its status says what
/// happened, suggestions and the heatmap answer 409 naming the rescore route, the
/// rescore re-queues the same scene (409 while it runs), and after it suggestions
/// work. DELETE on an ended job is a 409 naming its state.
#[test]
fn interrupted_and_failed_scenes_are_rescored() {
    let tmp = common::tempdir();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let copy = root.join("copy.tif");
    let data = tmp.path().join("data");
    let extra = ["--root", root.to_str().unwrap()];
    let d = Daemon::start(&data, &extra, None);
    let (_, project) = d.post("/projects", &json!({"name": "p"}));
    let pid = project["id"].as_i64().unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif"}),
    );
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["scene"]["status"], "scoring", "{v}");
    let (sid, first_job) = (
        v["scene"]["id"].as_i64().unwrap(),
        v["job"].as_i64().unwrap(),
    );
    assert_eq!(v["scene"]["job"], first_job, "{v}");
    d.sigterm_while_running(first_job);

    let d = Daemon::start(&data, &extra, None);
    let scene = scene_status(&d, pid, sid);
    assert_eq!(scene["status"], "interrupted", "{scene}");
    let ask = json!({"scene_id": sid, "strategy": "top_k", "budget": 3, "mc_passes": 1});
    let (code, v) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 409, "{v}");
    let msg = v["error"].as_str().unwrap();
    let rescore = format!("/projects/{pid}/scenes/{sid}/rescore");
    assert!(
        msg.contains("interrupted") && msg.contains(&rescore) && !msg.contains("still being"),
        "{msg}"
    );
    let (code, v) = d.get(&format!("/projects/{pid}/scenes/{sid}/heatmap"));
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains(&rescore), "{v}");
    let (code, v) = d.delete(&format!("/jobs/{first_job}"));
    assert_eq!(code, 409, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("interrupted") && msg.contains(&rescore),
        "{msg}"
    );

    // Rescore: a new job for the same scene; a second rescore while it runs is refused.
    let (code, v) = d.post(&rescore, &json!({}));
    assert_eq!(code, 202, "{v}");
    let job = v["job"].as_i64().unwrap();
    assert_ne!(job, first_job);
    assert_eq!(v["scene"]["id"], sid, "{v}");
    assert_eq!(scene_status(&d, pid, sid)["status"], "scoring");
    let (code, again) = d.post(&rescore, &json!({}));
    assert_eq!(code, 409, "{again}");
    assert!(
        again["error"].as_str().unwrap().contains("being scored"),
        "{again}"
    );
    let (code, v) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("still being scored"),
        "{v}"
    );

    // Meanwhile a second scene, queued behind it, loses its raster: its job fails.
    std::fs::copy(common::sample_scene(), &copy).unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": copy.to_str().unwrap()}),
    );
    assert_eq!(code, 202, "{v}");
    let (copy_id, copy_job) = (
        v["scene"]["id"].as_i64().unwrap(),
        v["job"].as_i64().unwrap(),
    );
    std::fs::remove_file(&copy).unwrap();

    let done = d.wait_job(job);
    assert!(
        done["result"]["scored_tiles"].as_u64().unwrap() > 800,
        "{done}"
    );
    let scene = scene_status(&d, pid, sid);
    assert_eq!(
        (&scene["status"], &scene["job"]),
        (&json!("scored"), &json!(job)),
        "{scene}"
    );
    let (code, v) = d.post(&format!("/projects/{pid}/suggestions"), &ask);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["features"].as_array().unwrap().len(), 3, "{v}");
    let (code, _) = d.get(&format!("/projects/{pid}/scenes/{sid}/heatmap"));
    assert_eq!(code, 200);
    let (code, v) = d.delete(&format!("/jobs/{job}"));
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("it is done"), "{v}");
    let (code, v) = d.delete("/jobs/999999");
    assert_eq!(code, 404, "{v}");

    let failed = d.wait_end(copy_job);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(scene_status(&d, pid, copy_id)["status"], "failed");
    let copy_ask = json!({"scene_id": copy_id, "strategy": "top_k", "budget": 3, "mc_passes": 1});
    let (code, v) = d.post(&format!("/projects/{pid}/suggestions"), &copy_ask);
    assert_eq!(code, 409, "{v}");
    let copy_rescore = format!("/projects/{pid}/scenes/{copy_id}/rescore");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("failed") && msg.contains(&copy_rescore),
        "{msg}"
    );
    // Rescoring while the raster is still missing says so; once it is back, it scores.
    let (code, v) = d.post(&copy_rescore, &json!({}));
    assert_eq!(code, 404, "{v}");
    assert_eq!(scene_status(&d, pid, copy_id)["status"], "failed");
    std::fs::copy(common::sample_scene(), &copy).unwrap();
    let (code, v) = d.post(&copy_rescore, &json!({}));
    assert_eq!(code, 202, "{v}");
    d.wait_job(v["job"].as_i64().unwrap());
    let (code, v) = d.post(&format!("/projects/{pid}/suggestions"), &copy_ask);
    assert_eq!(code, 200, "{v}");
    // The API description lists the route and the scene statuses.
    let (_, doc) = d.get("/openapi.json");
    assert!(
        doc["paths"]["/projects/{id}/scenes/{scene}/rescore"]["post"]["responses"]["409"]
            .is_object(),
        "rescore missing from /openapi.json"
    );
    assert_eq!(
        doc["components"]["schemas"]["SceneStatus"]["enum"],
        json!(["scoring", "scored", "failed", "interrupted"]),
        "{}",
        doc["components"]["schemas"]["SceneStatus"]
    );
}

/// Walks the pages of `first` (a labels path with its query), checking each holds at
/// most `limit` features; returns the label ids in order.
fn walk_label_pages(d: &Daemon, first: &str, limit: usize) -> Vec<i64> {
    let (mut path, mut ids) = (first.to_string(), Vec::new());
    loop {
        let mut r = d
            .agent
            .get(&format!("{}{path}", d.base))
            .call()
            .expect("GET");
        assert_eq!(r.status().as_u16(), 200);
        let text = r.body_mut().read_to_string().expect("body");
        // A page's size is bounded by its limit (a point label is ~200 bytes).
        assert!(text.len() <= 400 * limit + 1024, "{} bytes", text.len());
        let page: Value = serde_json::from_str(&text).expect("JSON");
        let n = page["features"].as_array().expect("features").len();
        assert!(n <= limit, "{n} features on a page of {limit}");
        assert_eq!(page["limit"], limit);
        ids.extend(label_ids(&page));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(n, limit, "a page short of its limit says there is more");
                path = next.to_string();
            }
            None => return ids,
        }
    }
}

/// Issue 19 item 2: `GET /projects/{id}/labels` answers pages of at most `limit`
/// labels (default 1000, at most 10000) with a `next` link while more remain;
/// following it returns every label exactly once, with or without a `bbox` filter.
#[test]
fn labels_come_in_bounded_pages() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &[], None);
    let (_, project) = d.post("/projects", &json!({"name": "many"}));
    let pid = project["id"].as_i64().unwrap();
    let lon = |i: usize| -76.0 + i as f64 * 1e-4;
    let features: Vec<Value> = (0..5000)
        .map(|i| {
            json!({"type": "Feature", "properties": {"class": "Forest"},
                   "geometry": {"type": "Point", "coordinates": [lon(i), 37.5 + (i % 100) as f64 * 1e-3]}})
        })
        .collect();
    let (code, stored) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": features}),
    );
    assert_eq!(code, 201);
    let ids: Vec<i64> = stored["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5000);
    let (_, p) = d.get(&format!("/projects/{pid}"));
    assert_eq!(p["labels"], 5000, "{p}");

    // The default page: 1000 labels and a link to the next.
    let (code, first) = d.get(&format!("/projects/{pid}/labels"));
    assert_eq!(code, 200);
    assert_eq!(first["features"].as_array().unwrap().len(), 1000);
    assert_eq!(first["limit"], 1000);
    let next = first["next"].as_str().expect("next while more remain");
    assert!(next.contains(&format!("cursor={}", ids[999])), "{next}");
    assert_eq!(
        walk_label_pages(&d, &format!("/projects/{pid}/labels"), 1000),
        ids
    );
    // Any limit: every label once, in id order.
    assert_eq!(
        walk_label_pages(&d, &format!("/projects/{pid}/labels?limit=700"), 700),
        ids
    );
    // The largest page holds them all, and says there is no more.
    let (code, all) = d.get(&format!("/projects/{pid}/labels?limit=10000"));
    assert_eq!(code, 200);
    assert_eq!(label_ids(&all), ids);
    assert!(all["next"].is_null(), "{}", all["next"]);
    // A bbox keeps the labels inside it, paged the same way.
    let inside: Vec<i64> = (0..5000)
        .filter(|&i| (-75.9..=-75.8).contains(&lon(i)))
        .map(|i| ids[i])
        .collect();
    assert!(inside.len() > 900, "{}", inside.len());
    let boxed = format!("/projects/{pid}/labels?limit=300&bbox=-75.9,37,-75.8,38");
    assert_eq!(walk_label_pages(&d, &boxed, 300), inside);
    let (_, none) = d.get(&format!("/projects/{pid}/labels?bbox=10,10,11,11"));
    assert_eq!(none["features"], json!([]));
    assert!(none["next"].is_null());
    // Out-of-range limits and malformed boxes are refused, as JSON.
    for (query, code, needle) in [
        ("limit=0", 422, "10000"),
        ("limit=10001", 422, "10000"),
        ("bbox=1,2,3", 422, "min_lon"),
        ("bbox=3,0,1,1", 422, "min_lon"),
        ("limit=-1", 400, ""),
        ("cursor=x", 400, ""),
    ] {
        let (got, v) = d.get(&format!("/projects/{pid}/labels?{query}"));
        assert_eq!(got, code, "{query}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{query}: {v}"
        );
    }
    // The API description names the parameters.
    let (_, doc) = d.get("/openapi.json");
    let params: Vec<&str> = doc["paths"]["/projects/{id}/labels"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["limit", "cursor", "bbox"] {
        assert!(params.contains(&name), "{params:?}");
    }
}

/// Issue 17: a panic in a job (a bug) fails that job with a clear 500-class message and
/// the engine thread keeps serving: the next job is done. The panic is injected through
/// the debug-build-only NEXTTILE_TEST_PANIC_ONCE, since no input panics on purpose any
/// more (the non-ASCII `encoder_sha256` that did is a unit test of engine::short_hash).
///
/// Before that, a project whose head declares a non-ASCII `encoder_sha256` is refused
/// with the key named (the value once panicked the engine thread), and the daemon
/// goes on to serve the next project.
#[test]
fn a_panic_in_a_job_fails_that_job_and_the_daemon_keeps_serving() {
    let tmp = common::tempdir();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let odd_head = models.join("odd_head.onnx");
    let odd = "é".repeat(40);
    common::with_metadata(
        &common::head(),
        &odd_head,
        &[("encoder_sha256", odd.as_str())],
    );
    let data = tmp.path().join("data");
    let extra = ["--model-root", models.to_str().unwrap()];
    let d = Daemon::start_env(&data, &extra, None, &[("NEXTTILE_TEST_PANIC_ONCE", "1")]);
    let (code, v) = d.post(
        "/projects",
        &json!({"name": "odd", "encoder": common::encoder(), "head": odd_head}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("encoder_sha256"),
        "{v}"
    );
    let (_, project) = d.post("/projects", &json!({"name": "p"}));
    let pid = project["id"].as_i64().unwrap();
    let scene = json!({"path": "chincoteague_s2.tif"});
    let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &scene);
    assert_eq!(code, 202, "{v}");
    let failed = d.wait_job_end(v["job"].as_i64().unwrap());
    assert_eq!(failed["status"], "failed", "{failed}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("internal error") && message.contains("keeps serving"),
        "{failed}"
    );
    let (code, v) = d.post(&format!("/projects/{pid}/scenes"), &scene);
    assert_eq!(code, 202, "{v}");
    let done = d.wait_job(v["job"].as_i64().unwrap());
    assert_eq!(done["status"], "done", "{done}");
    let (code, _) = d.get("/health");
    assert_eq!(code, 200);
}

/// Half-open clients that send part of a request line and nothing more are closed by
/// the daemon once its header-read timeout (here `--header-read-timeout-s 1`) has
/// passed, not before and not 30 s later, while `/health` still answers; a slow client
/// that finishes its headers in time is served.
#[test]
fn half_open_connections_are_closed_after_the_header_read_timeout() {
    use std::io::{Read, Write};
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &["--header-read-timeout-s", "1"], None);
    let addr = d
        .base
        .strip_prefix("http://")
        .expect("http base")
        .to_string();
    let opened = Instant::now();
    let mut conns: Vec<std::net::TcpStream> = (0..500)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            s.write_all(b"GET /health HT")
                .expect("partial request line");
            s
        })
        .collect();
    // While they hang, the daemon answers.
    let (code, v) = d.get("/health");
    assert_eq!(code, 200, "{v}");
    // A slow client that completes its headers within the timeout is served.
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /health HT").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    slow.write_all(format!("TP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // Every half-open one is closed by the server: EOF or a reset, not a read timeout;
    // the first no sooner than the timeout after it was opened.
    let mut first_closed = None;
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "connection {i} still open after {:?}: {e}",
                    opened.elapsed()
                ),
            }
        }
        // Nothing, or an HTTP error status: never a 200 for half a request line.
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 4"),
            "connection {i}: {text:?}"
        );
        first_closed.get_or_insert(opened.elapsed());
    }
    let first = first_closed.expect("connections");
    assert!(
        first >= Duration::from_millis(900),
        "closed after {first:?}"
    );
    let elapsed = opened.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "all closed after {elapsed:?}"
    );
    // Still answering, on a new connection: the test agent's pooled keep-alive
    // connection from the first `/health` has been idle past the timeout too, so the
    // daemon has closed it, and reusing it could meet that close (a reset, seen once
    // in a CI run).
    let fresh: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = fresh
        .get(&format!("{}/health", d.base))
        .call()
        .expect("GET /health on a new connection");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{:?}",
        r.body_mut().read_to_string()
    );
}

/// A full disk under the data folder (a 1 MiB tmpfs): label posts are answered 507 with
/// advice once it fills, as JSON; every label acknowledged before (201) is still
/// there, and the daemon goes on answering. Where user namespaces are not allowed
/// (`unshare -Urm` fails, e.g. in some containers) the same test runs with the
/// database capped at 250 pages instead (the debug-build-only
/// NEXTTILE_TEST_MAX_PAGE_COUNT): SQLite answers the same SQLITE_FULL either way.
#[test]
fn a_full_data_disk_answers_507_and_keeps_every_acknowledged_label() {
    let tmp = common::tempdir();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let namespaces = Command::new("unshare")
        .args(["-Urm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let d = if namespaces {
        Daemon::start_on_tmpfs(&data, "1m")
    } else {
        eprintln!(
            "unshare -Urm is not allowed here: filling a 250-page database instead of a 1 MiB tmpfs"
        );
        Daemon::start_env(&data, &[], None, &[("NEXTTILE_TEST_MAX_PAGE_COUNT", "250")])
    };
    let (code, project) = d.post("/projects", &json!({"name": "p"}));
    assert_eq!(code, 201, "{project}");
    let pid = project["id"].as_i64().unwrap();
    let feature = |i: usize| {
        json!({"type": "Feature", "properties": {"class": "Forest", "author": "a".repeat(100)},
            "geometry": {"type": "Point", "coordinates": [-75.6 + i as f64 * 1e-5, 37.8]}})
    };
    let mut acknowledged = 0;
    let refused = loop {
        let features: Vec<Value> = (acknowledged..acknowledged + 200).map(feature).collect();
        let (code, v) = d.post(
            &format!("/projects/{pid}/labels"),
            &json!({"type": "FeatureCollection", "features": features}),
        );
        match code {
            201 => acknowledged += v["ids"].as_array().expect("ids").len(),
            507 => break v,
            _ => panic!("after {acknowledged} labels: {code} {v}"),
        }
        assert!(acknowledged < 200_000, "the 1 MiB disk never filled");
    };
    let msg = refused["error"].as_str().expect("JSON error");
    assert!(
        msg.contains("database or disk is full") && msg.contains("free space on that disk"),
        "{msg}"
    );
    assert!(acknowledged > 0);
    let (code, _) = d.get("/health");
    assert_eq!(code, 200);
    let all = d.all_labels(pid);
    assert_eq!(label_ids(&all).len(), acknowledged);
}

/// Files under `dir`, recursively (none when it does not exist).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { files_under(&p) } else { 1 }
        })
        .sum()
}

/// A scene's latest suggestions file is written once per change, not per request: the
/// same request again leaves it alone (its modification time, set far back here,
/// stays), another budget rewrites it with what was answered.
fn latest_written_once_per_change(d: &Daemon, url: &str, latest: &Path, first_ids: &[String]) {
    let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(latest)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let (code, again) = d.post(url, &json!({"budget": 8}));
    assert_eq!(code, 200, "{again}");
    assert_eq!(tile_ids(&again), first_ids);
    assert_eq!(
        mtime(latest),
        long_ago,
        "the same suggestions were written again"
    );
    let (code, nine) = d.post(url, &json!({"budget": 9}));
    assert_eq!(code, 200, "{nine}");
    assert_ne!(mtime(latest), long_ago, "new suggestions were not written");
    let on_disk: Value = serde_json::from_slice(&std::fs::read(latest).unwrap()).unwrap();
    assert_eq!(tile_ids(&on_disk), tile_ids(&nine));
}

/// A scored scene stays warm on the engine thread (issue 17): suggestions, with new
/// labels, another strategy or budget, run only the selection — the embedding cache,
/// emptied after scoring, is not touched again — and answer from memory what the
/// scene's latest suggestions file then holds. A round keeps its result warm for the
/// head it saved; with `--warm-scene-bytes 0` nothing is kept and the cache is read.
#[test]
fn suggestions_on_a_warm_scene_run_only_the_selection() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &[], None);
    let (_, project) = d.post("/projects", &json!({"name": "warm"}));
    let pid = project["id"].as_i64().unwrap();
    let (code, added) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif"}),
    );
    assert_eq!(code, 202, "{added}");
    let scene = added["scene"]["id"].as_i64().unwrap();
    d.wait_job(added["job"].as_i64().unwrap());
    let cache = tmp.path().join("cache");
    assert!(files_under(&cache) > 0, "scoring fills the embedding cache");
    std::fs::remove_dir_all(&cache).unwrap();

    let url = format!("/projects/{pid}/suggestions");
    let (code, first) = d.post(&url, &json!({"budget": 8}));
    assert_eq!(code, 200, "{first}");
    let first_ids = tile_ids(&first);
    assert_eq!(first_ids.len(), 8);
    assert_eq!(files_under(&cache), 0, "a warm suggestion read the cache");
    // What it answered is what the scene's latest suggestions file holds.
    let latest = tmp
        .path()
        .join(format!("suggestions/{scene}/suggestions.geojson"));
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    assert_eq!(tile_ids(&on_disk), first_ids);
    latest_written_once_per_change(&d, &url, &latest, &first_ids);

    // Another seed changes the selection only (the ONNX head draws its own dropout
    // masks): still warm.
    let (code, seeded) = d.post(&url, &json!({"budget": 8, "strategy": "random", "seed": 7}));
    assert_eq!(code, 200, "{seeded}");
    assert_eq!(
        files_under(&cache),
        0,
        "a suggestion with another seed read the cache"
    );

    // top_k before any label, to compare with once the labels are deleted.
    let topk = json!({"budget": 8, "strategy": "top_k"});
    let (code, unlabelled_topk) = d.post(&url, &topk);
    assert_eq!(code, 200, "{unlabelled_topk}");

    // New labels on two suggested tiles: excluded, still without the cache.
    let labelled: Vec<Value> = first["features"].as_array().unwrap()[..2]
        .iter()
        .map(|f| {
            let (lon, lat) = centre(f);
            json!({"type": "Feature", "properties": {"class": "Forest"},
                   "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        })
        .collect();
    let (code, v) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": labelled.clone()}),
    );
    assert_eq!(code, 201, "{v}");
    let (code, second) = d.post(&url, &json!({"budget": 8, "strategy": "top_k"}));
    assert_eq!(code, 200, "{second}");
    let second_ids = tile_ids(&second);
    assert_eq!(second_ids.len(), 8);
    for t in &first_ids[..2] {
        assert!(!second_ids.contains(t), "labelled tile {t} suggested again");
    }
    assert!(
        second["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["properties"]["strategy"] == "top_k"),
        "{second}"
    );
    assert_eq!(files_under(&cache), 0, "a warm suggestion read the cache");

    // The daemon keeps the labels it mapped onto the warm scene until they change:
    // deleting them gives back the suggestions of before any label; labelling again
    // excludes the tiles again.
    let ids = v["ids"].as_array().unwrap().clone();
    for id in &ids {
        let (code, body) = d.delete(&format!("/projects/{pid}/labels/{id}"));
        assert_eq!(code, 204, "{body}");
    }
    let (code, unlabelled) = d.post(&url, &topk);
    assert_eq!(code, 200, "{unlabelled}");
    assert_eq!(tile_ids(&unlabelled), tile_ids(&unlabelled_topk));
    let (code, v) = d.post(
        &format!("/projects/{pid}/labels"),
        &json!({"type": "FeatureCollection", "features": labelled}),
    );
    assert_eq!(code, 201, "{v}");
    let (code, relabelled) = d.post(&url, &topk);
    assert_eq!(code, 200, "{relabelled}");
    assert_eq!(tile_ids(&relabelled), second_ids);
    assert_eq!(files_under(&cache), 0, "a warm suggestion read the cache");

    // A round retrains on the warm scene's embeddings (issue 17: train → predict →
    // select, no cache read) and keeps its result warm for the head it saved.
    let (code, round) = d.post(&format!("/projects/{pid}/rounds"), &json!({"budget": 8}));
    assert_eq!(code, 202, "{round}");
    let done = d.wait_job(round["job"].as_i64().unwrap());
    assert_eq!(done["result"]["round"], 1, "{done}");
    assert!(
        done["result"]["retrained"]["labelled_tiles"].as_u64() > Some(0),
        "{done}"
    );
    assert_eq!(
        files_under(&cache),
        0,
        "a round on a warm scene read the cache"
    );
    let (code, after) = d.post(&url, &json!({"budget": 8}));
    assert_eq!(code, 200, "{after}");
    assert_eq!(tile_ids(&after).len(), 8);
    assert_eq!(
        files_under(&cache),
        0,
        "suggestions after a round read the cache"
    );

    // Another MC-pass count scores again (from the cache, which it refills).
    let (code, cold) = d.post(&url, &json!({"budget": 8, "mc_passes": 3}));
    assert_eq!(code, 200, "{cold}");
    assert!(
        files_under(&cache) > 0,
        "a new MC-pass count must score again"
    );
    drop(d);
    nothing_kept_warm_reads_the_cache();
}

/// With `--warm-scene-bytes 0` nothing is kept warm: every suggestion scores from the
/// embedding cache.
fn nothing_kept_warm_reads_the_cache() {
    let tmp = common::tempdir();
    let d = Daemon::start(tmp.path(), &["--warm-scene-bytes", "0"], None);
    let (_, project) = d.post("/projects", &json!({"name": "cold"}));
    let pid = project["id"].as_i64().unwrap();
    let (_, added) = d.post(
        &format!("/projects/{pid}/scenes"),
        &json!({"path": "chincoteague_s2.tif"}),
    );
    d.wait_job(added["job"].as_i64().unwrap());
    let cache = tmp.path().join("cache");
    std::fs::remove_dir_all(&cache).unwrap();
    let (code, v) = d.post(
        &format!("/projects/{pid}/suggestions"),
        &json!({"budget": 8}),
    );
    assert_eq!(code, 200, "{v}");
    assert!(
        files_under(&cache) > 0,
        "with no warm scenes the cache is read"
    );
}
