//! `nexttile embed` into a GeoParquet store in shards, and `nexttile select` over it
//! (issue 15): real crops of the sample, the real encoder and head, and the files read
//! back with pyarrow (PyPI, in `target/test-venv`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

use serde_json::Value;

/// Three 320 × 320 px crops of the sample (25 tiles of 64 px each) in `dir`.
fn crops(dir: &Path) -> Vec<PathBuf> {
    let sample = common::sample_scene();
    [
        ("north_west", "640", "640"),
        ("north_east", "960", "640"),
        ("south_west", "640", "960"),
    ]
    .iter()
    .map(|(name, x, y)| {
        let out = dir.join(format!("{name}.tif"));
        common::run_tool(
            "gdal_translate",
            &[
                "-q",
                "-srcwin",
                x,
                y,
                "320",
                "320",
                sample.to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
        out
    })
    .collect()
}

fn nexttile(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(common::bin());
    c.args(args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("SLURM_ARRAY_TASK_MIN")
        .env_remove("JOB_COMPLETION_INDEX");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run nexttile")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "nexttile failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn parquet_files(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

/// The Python of `target/test-venv` with pyarrow, made here when missing. Fails loudly
/// when pip cannot install it: the files must be read by a reader that is not NextTile.
fn pyarrow_python() -> PathBuf {
    let venv = common::root().join("target/test-venv");
    let py = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import pyarrow"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            made,
            "cannot make {} with python3 -m venv (apt-get install python3-venv)",
            venv.display()
        );
        let pip = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "pyarrow",
            ])
            .output()
            .expect("run pip");
        assert!(
            pip.status.success() && has(&py),
            "pip cannot install pyarrow into {}: this test needs it to read the store as others do: {}",
            venv.display(),
            String::from_utf8_lossy(&pip.stderr)
        );
    }
    py
}

const READ_BACK: &str = r#"
import json, struct, sys
import pyarrow.parquet as pq
path = sys.argv[1]
t = pq.read_table(path)
# GeoPandas reads `geo` from the Arrow schema's metadata, GDAL and DuckDB from the file's.
md = pq.read_schema(path).metadata or {}
kv = pq.ParquetFile(path).metadata.metadata or {}
for where, keys in (("schema", md), ("file", kv)):
    if b"geo" not in keys:
        sys.exit("no geo key in the %s metadata: %r" % (where, list(keys)))
g = t.column("geometry")[0].as_py()
print(json.dumps({
    "geo": json.loads(md[b"geo"]),
    "encoder": md[b"nexttile:encoder_sha256"].decode(),
    "columns": t.column_names,
    "rows": t.num_rows,
    "embedding_type": str(t.schema.field("embedding").type),
    "tile_ids": t.column("tile_id").to_pylist(),
    "scene_ids": sorted(set(t.column("scene_id").to_pylist())),
    "wkb_header": list(g[:9]),
    "wkb_points": struct.unpack("<I", g[9:13])[0],
    "wkb_first": list(struct.unpack("<dd", g[13:29])),
    "centre": [t.column("centre_lon")[0].as_py(), t.column("centre_lat")[0].as_py()],
    "embedding": [float(x) for x in t.column("embedding")[0].as_py()],
}))
"#;

#[test]
fn shards_fill_the_store_once_and_select_picks_across_scenes() {
    let dir = common::tempdir();
    let scenes = crops(dir.path());
    let list = dir.path().join("scenes.txt");
    let mut text = String::from("# three crops of the sample\n");
    for s in &scenes {
        text.push_str(&format!("{}\n", s.file_name().unwrap().to_str().unwrap()));
    }
    std::fs::write(&list, text).unwrap();
    let store = dir.path().join("store");
    let cache = dir.path().join("cache");
    let (enc, head) = (common::encoder(), common::head());
    let base = |shard: Option<&str>| -> Vec<String> {
        let mut a: Vec<String> = [
            "embed",
            "--scenes",
            list.to_str().unwrap(),
            "--out",
            store.to_str().unwrap(),
            "--encoder",
            enc.to_str().unwrap(),
            "--head",
            head.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(s) = shard {
            a.extend(["--shard".to_string(), s.to_string()]);
        }
        a
    };
    let run = |shard: Option<&str>, envs: &[(&str, &str)]| {
        let args = base(shard);
        ok(&nexttile(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            envs,
        ))
    };

    // Shard 0 of 2 takes scenes 0 and 2, shard 1 takes scene 1.
    let first = run(Some("0/2"), &[]);
    assert_eq!(parquet_files(&store).len(), 2, "{first}");
    let second = run(Some("1/2"), &[]);
    assert!(second.contains("shard 1/2: 1 of 3"), "{second}");
    let files = parquet_files(&store);
    assert_eq!(files.len(), 3, "every scene once");
    for s in &scenes {
        let stem = s.file_stem().unwrap().to_str().unwrap();
        let n = files
            .iter()
            .filter(|f| {
                f.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{stem}-"))
            })
            .count();
        assert_eq!(n, 1, "{stem} in exactly one file: {files:?}");
    }

    // Through the job array: shard 1 of 2 again finds its file complete and keeps it.
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before: Vec<_> = files.iter().map(|f| mtime(f)).collect();
    let again = run(
        None,
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ],
    );
    assert!(
        again.contains("kept (complete)") && again.contains("shard 1/2"),
        "{again}"
    );
    assert_eq!(files.iter().map(|f| mtime(f)).collect::<Vec<_>>(), before);

    // A killed writer's leftover: the scene is written again and the .tmp replaced; a
    // stray .tmp is never read as part of the store.
    let victim = files
        .iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("north_west-")
        })
        .unwrap()
        .clone();
    std::fs::remove_file(&victim).unwrap();
    let leftover = PathBuf::from(format!("{}.tmp", victim.display()));
    std::fs::write(&leftover, b"half a file").unwrap();
    std::fs::write(store.join("stray.parquet.tmp"), b"junk").unwrap();
    let redo = run(Some("0/2"), &[]);
    assert!(
        redo.contains("wrote") && redo.contains("kept (complete)"),
        "{redo}"
    );
    assert!(victim.is_file() && !leftover.exists());
    assert_eq!(parquet_files(&store).len(), 3);

    read_back_with_pyarrow(&victim, &scenes, &cache);
    select_over_the_store(&store, dir.path());

    // One scene embedded again with another encoder (the default pair's): its file is
    // rewritten, and one selection over two encoders is refused.
    let other = ok(&nexttile(
        &[
            "embed",
            scenes[1].to_str().unwrap(),
            "--out",
            store.to_str().unwrap(),
            "--no-cache",
        ],
        &[],
    ));
    assert!(other.contains("wrote"), "{other}");
    let out = dir.path().join("mixed");
    let refused = nexttile(
        &[
            "select",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--mc-passes",
            "1",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{err}");
    assert!(err.contains("the store mixes encoders"), "{err}");
}

/// The file as pyarrow reads it: GeoParquet metadata, WKB polygons, f16 embeddings equal
/// to those `score` computes for the same scene.
fn read_back_with_pyarrow(file: &Path, scenes: &[PathBuf], cache: &Path) {
    let py = pyarrow_python();
    let out = Command::new(&py)
        .args(["-c", READ_BACK, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["geo"]["version"], "1.1.0");
    assert_eq!(v["geo"]["primary_column"], "geometry");
    assert_eq!(v["geo"]["columns"]["geometry"]["encoding"], "WKB");
    assert_eq!(
        v["geo"]["columns"]["geometry"]["geometry_types"][0],
        "Polygon"
    );
    assert_eq!(v["rows"], 25);
    assert_eq!(
        v["wkb_header"],
        serde_json::json!([1, 3, 0, 0, 0, 1, 0, 0, 0])
    );
    assert!(v["wkb_points"].as_u64().unwrap() >= 5);
    let (x, y) = (
        v["wkb_first"][0].as_f64().unwrap(),
        v["wkb_first"][1].as_f64().unwrap(),
    );
    // Chincoteague, Virginia: lon/lat order.
    assert!(
        (-76.0..-75.0).contains(&x) && (37.0..38.5).contains(&y),
        "{x}, {y}"
    );
    assert!(
        v["embedding_type"].as_str().unwrap().contains("halffloat"),
        "{}",
        v["embedding_type"]
    );

    // The same scene through `score` (the same cache, so the same f16 values).
    let stem = file
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .rsplit_once('-')
        .unwrap()
        .0
        .to_string();
    let scene = scenes
        .iter()
        .find(|s| s.file_stem().unwrap().to_str().unwrap() == stem)
        .unwrap();
    let mut req = nexttile::engine::ScoreRequest::new(scene, common::encoder(), common::head());
    req.mc_passes = 1;
    req.cache = Some(cache.to_path_buf());
    let scored = nexttile::engine::score(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(v["tile_ids"][0], scored.tiles[0].to_string());
    let theirs: Vec<f64> = v["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let ours = scored.embeddings.row(0);
    assert_eq!(theirs.len(), ours.len());
    for (a, b) in theirs.iter().zip(ours.iter()) {
        let b = f64::from(*b);
        assert!(
            (a - b).abs() <= 1e-3 * b.abs().max(1.0),
            "pyarrow {a} vs score {b}"
        );
    }
}

fn picks(path: &Path) -> Vec<(String, String, u64)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = &f["properties"];
            (
                p["scene_id"].as_str().unwrap().to_string(),
                p["tile_id"].as_str().unwrap().to_string(),
                p["rank"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// One selection over the three scenes, then again with the first pick labelled.
fn select_over_the_store(store: &Path, dir: &Path) {
    let out = dir.join("picked");
    let head = common::head();
    let args = |labels: Option<&Path>| -> Vec<String> {
        let mut a: Vec<String> = [
            "select",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--budget",
            "6",
            "--strategy",
            "typiclust",
            "--mc-passes",
            "1",
            "--head",
            head.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(l) = labels {
            a.extend(["--labelled".to_string(), l.to_str().unwrap().to_string()]);
        }
        a
    };
    let call = |a: Vec<String>| {
        ok(&nexttile(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        ))
    };
    let text = call(args(None));
    let suggestions = out.join("suggestions.geojson");
    let first = picks(&suggestions);
    assert_eq!(first.len(), 6, "{text}");
    let scenes: std::collections::BTreeSet<_> = first.iter().map(|p| p.0.clone()).collect();
    assert!(scenes.len() > 1, "picks from one scene only: {first:?}");
    assert_eq!(
        first.iter().map(|p| p.2).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );

    // Label the first pick (a point at its footprint's centre, lon/lat).
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&suggestions).unwrap()).unwrap();
    let ring = v["features"][0]["geometry"]["coordinates"][0]
        .as_array()
        .unwrap()
        .clone();
    let n = (ring.len() - 1) as f64;
    let (lon, lat) = ring[..ring.len() - 1].iter().fold((0.0, 0.0), |(x, y), c| {
        (
            x + c[0].as_f64().unwrap() / n,
            y + c[1].as_f64().unwrap() / n,
        )
    });
    let labels = dir.join("labels.geojson");
    std::fs::write(
        &labels,
        serde_json::json!({"type": "FeatureCollection", "features": [{"type": "Feature",
            "properties": {"class": "Forest"},
            "geometry": {"type": "Point", "coordinates": [lon, lat]}}]})
        .to_string(),
    )
    .unwrap();
    let text = call(args(Some(&labels)));
    assert!(text.contains("(1 labelled)"), "{text}");
    let second = picks(&suggestions);
    assert_eq!(second.len(), 6);
    assert!(
        !second
            .iter()
            .any(|p| p.0 == first[0].0 && p.1 == first[0].1),
        "the labelled tile {:?} was suggested again: {second:?}",
        first[0]
    );
}
