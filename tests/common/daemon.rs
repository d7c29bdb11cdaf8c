//! The real daemon binary on a free loopback port, for the integration tests that
//! drive it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `nexttile serve` with the sample's folder and `rasters` as raster
/// roots, killed on drop.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// An HTTP agent that answers every status.
    pub agent: ureq::Agent,
}

impl Daemon {
    /// Starts the daemon (see the type's doc); `config` is a `nexttile.toml` text.
    pub fn start(data: &Path, rasters: &Path, config: Option<&str>) -> Daemon {
        let mut cmd = Command::new(super::bin());
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--root"])
            .arg(super::root().join("samples"))
            .arg("--root")
            .arg(rasters)
            .arg("--data-dir")
            .arg(data)
            .env_remove("NEXTTILE_TOKEN")
            .env_remove("NEXTTILE_ROOTS")
            .env_remove("NEXTTILE_MODEL_ROOTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(text) = config {
            let file = data.join("nexttile.toml");
            std::fs::create_dir_all(data).unwrap();
            std::fs::write(&file, text).unwrap();
            cmd.arg("--config").arg(file);
        }
        let mut child = cmd.spawn().expect("daemon starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Daemon { child, base, agent }
    }

    /// GET `path`: status and JSON body (null when not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .expect("GET");
        let code = r.status().as_u16();
        (code, r.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// POST `body` to `path`: status and JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .send_json(body)
            .expect("POST");
        let code = r.status().as_u16();
        (code, r.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// DELETE `path`: status and JSON body (null when there is none).
    pub fn delete(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .delete(&format!("{}{path}", self.base))
            .call()
            .expect("DELETE");
        let code = r.status().as_u16();
        (code, r.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// A project with the demo models; its id.
    pub fn project(&self) -> i64 {
        let (code, p) = self.post("/projects", &json!({"name": "p"}));
        assert_eq!(code, 201, "{p}");
        p["id"].as_i64().unwrap()
    }

    /// Adds `scene` to project `pid` and waits for its scoring job to end well.
    pub fn score(&self, pid: i64, scene: &Value) -> Value {
        let (code, added) = self.post(&format!("/projects/{pid}/scenes"), scene);
        assert_eq!(code, 202, "{added}");
        self.wait(added["job"].as_i64().unwrap())
    }

    /// Waits for job `job` to end well; its result.
    pub fn wait(&self, job: i64) -> Value {
        let start = Instant::now();
        loop {
            let (_, v) = self.get(&format!("/jobs/{job}"));
            match v["status"].as_str() {
                Some("done") => return v["result"].clone(),
                Some("queued" | "running") => {}
                _ => panic!("job {job} ended badly: {v}"),
            }
            assert!(start.elapsed() < Duration::from_secs(300), "{v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
