//! Every shipped model (`onnx/*/*.onnx`, plus the encoder `scripts/setup.sh`
//! derives from ukis-csmask) fulfils the model contract and runs one batch
//! through the real onnxruntime with outputs of the declared shape and range.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ndarray::{Array2, Array4};
use nexttile::model::{Encoder, Head, ModelRole, SessionConfig, inspect};

fn shipped_models() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(common::root().join("onnx")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "onnx") {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// A deterministic pseudo-random fill in [-2, 2).
fn fill(n: usize) -> impl Iterator<Item = f32> {
    (0..n).map(|i| ((i as u64 * 2_654_435_761) % 4000) as f32 / 1000.0 - 2.0)
}

#[test]
fn every_shipped_model_fulfils_the_contract_and_runs() {
    let ukis = common::root().join("onnx/ukis_csmask/encoder.onnx");
    assert!(
        ukis.is_file(),
        "{} is missing: scripts/setup.sh builds it (onnx/ukis_csmask/build.sh)",
        ukis.display()
    );
    let models = shipped_models();
    let encoders: BTreeMap<String, PathBuf> = models
        .iter()
        .filter_map(|p| {
            let s = inspect(p).ok()?;
            (s.role == ModelRole::Encoder).then(|| (s.sha256, p.clone()))
        })
        .collect();
    let expect = [
        "eurosat_simsiam/encoder.onnx",
        "eurosat_simsiam/head.onnx",
        "eurosat_multilabel/head.onnx",
        "rcf_eurosat/encoder.onnx",
        "rcf_eurosat/head.onnx",
        "rcf_chroma/encoder.onnx",
        "rcf_chroma/head.onnx",
        "rcf_fast/encoder.onnx",
        "rcf_fast/head.onnx",
        "ukis_csmask/encoder.onnx",
        "ukis_csmask/head.onnx",
    ];
    for e in expect {
        assert!(
            models.iter().any(|m| m.ends_with(e)),
            "{e} not among {models:?}"
        );
    }
    let cfg = SessionConfig {
        intra_threads: 1,
        ..SessionConfig::default()
    };
    for path in &models {
        let spec = inspect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for key in ["model_name", "description"] {
            assert!(
                spec.metadata.contains_key(key),
                "{}: metadata lacks {key}",
                path.display()
            );
        }
        match spec.role {
            ModelRole::Encoder => {
                let pre = spec.preprocess.as_ref().unwrap();
                assert!(spec.resolution_m.is_some(), "{}", path.display());
                let tile = spec.tile_size.unwrap_or(64);
                spec.check_tile_size(tile).unwrap();
                let channels = if spec.per_band { 1 } else { pre.bands.len() };
                let n = 2;
                let x = Array4::from_shape_vec(
                    (n, channels, tile, tile),
                    fill(n * channels * tile * tile).collect(),
                )
                .unwrap();
                let mut enc = Encoder::load(path, cfg).unwrap();
                let e = enc.embed(x.view()).unwrap();
                assert_eq!(e.nrows(), n);
                if let Some(d) = spec.embedding_dim {
                    assert_eq!(e.ncols(), d, "{}", path.display());
                }
                assert!(e.iter().all(|v| v.is_finite()), "{}", path.display());
                if !spec.modalities.is_empty() {
                    let joined: Vec<String> = spec
                        .modalities
                        .iter()
                        .flat_map(|m| m.bands.clone())
                        .collect();
                    assert_eq!(joined, pre.bands);
                }
            }
            ModelRole::Head => {
                let trained_on = spec
                    .encoder_sha256
                    .as_ref()
                    .unwrap_or_else(|| panic!("{}: no encoder_sha256", path.display()));
                let enc_path = encoders.get(trained_on).unwrap_or_else(|| {
                    panic!(
                        "{} was trained on encoder {trained_on}, which no shipped encoder is: retrain or re-export it",
                        path.display()
                    )
                });
                let enc = inspect(enc_path).unwrap();
                let d = enc.embedding_dim.unwrap();
                let n = 3;
                // Small inputs, like standardised embeddings, so no class saturates.
                let x = Array2::from_shape_vec((n, d), fill(n * d).map(|v| v * 0.05).collect())
                    .unwrap();
                let mut head = Head::load(path, cfg).unwrap();
                let (p, loss) = head.predict_mc_with_loss(x.view(), 4).unwrap();
                assert_eq!(p.dim(), (4, n, spec.class_names.len()));
                assert!(
                    p.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{}",
                    path.display()
                );
                for pass in p.outer_iter() {
                    for row in pass.outer_iter() {
                        let s: f32 = row.sum();
                        if !spec.multi_label {
                            assert!((s - 1.0).abs() < 1e-3, "{}: sum {s}", path.display());
                        }
                    }
                }
                assert!(spec.mc_dropout_input.is_some(), "{}", path.display());
                assert_ne!(
                    p.index_axis(ndarray::Axis(0), 0),
                    p.index_axis(ndarray::Axis(0), 1),
                    "{}: MC passes identical",
                    path.display()
                );
                assert_eq!(loss.is_some(), spec.loss_output.is_some());
                if let Some(l) = loss {
                    assert_eq!(l.len(), n);
                    assert!(l.iter().all(|v| v.is_finite()));
                }
            }
        }
    }
}

fn score_cli(args: &[&str]) -> serde_json::Value {
    score_cli_in(&common::tempdir(), args)
}

fn score_cli_in(out: &tempfile::TempDir, args: &[&str]) -> serde_json::Value {
    let o = std::process::Command::new(common::bin())
        .arg("score")
        .args(args)
        .args(["--out", out.path().to_str().unwrap()])
        .args(["--json", "--no-cache", "--mc-passes", "5", "--budget", "5"])
        .output()
        .expect("run nexttile");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "score {args:?}: {stderr}");
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON summary");
    assert_eq!(s["suggestions"].as_array().unwrap().len(), 5, "{s}");
    assert!(out.path().join("heatmap.tif").is_file());
    s
}

fn model(p: &str) -> String {
    common::root().join("onnx").join(p).display().to_string()
}

/// `nexttile score` runs unchanged with every shipped encoder/head pair on
/// real rasters: the ukis-csmask-derived encoder on the sample scene, the
/// S1+S2 encoders on the Sen1Floods11 pair, the per-band encoder on a chosen
/// band list, the 13-band encoder on the chip it never saw.
#[test]
fn score_runs_with_every_shipped_encoder() {
    let sample = common::sample_scene().display().to_string();
    let s2 = common::sen1floods_s2().display().to_string();
    let s1 = common::sen1floods_s1().display().to_string();
    let s = score_cli(&[
        &sample,
        "--encoder",
        &model("ukis_csmask/encoder.onnx"),
        "--head",
        &model("ukis_csmask/head.onnx"),
    ]);
    assert_eq!(s["scored_tiles"], 900, "{s}");
    assert_eq!(
        s["scene"]["bands_used"],
        serde_json::json!([2, 3, 4, 8, 12, 13])
    );
    assert!(s["warnings"].as_array().unwrap().is_empty(), "{s}");

    let s = score_cli(&[
        &s2,
        "--pair",
        &s1,
        "--encoder",
        &model("s1s2_dsimclr/encoder.onnx"),
        "--head",
        &model("s1s2_dsimclr/head.onnx"),
    ]);
    assert_eq!(s["scored_tiles"], 256, "{s}");
    assert_eq!(s["scene"]["bands_used"][0], 14);
    assert_eq!(s["classes"], serde_json::json!(["land", "water"]));

    let s = score_cli(&[
        &s2,
        "--pair",
        &s1,
        "--encoder",
        &model("s1s2_perband/encoder.onnx"),
        "--head",
        &model("s1s2_perband/head.onnx"),
        "--band-names",
        "VH,B08,B03",
    ]);
    assert_eq!(s["scene"]["bands_used"], serde_json::json!([15, 8, 3]));

    // The heads were trained (in Python, onnxruntime) on the chip's 32-px tiles
    // labelled water when > 50 % of their labelled pixels are: nexttile's
    // reading and preprocessing must reproduce that, so its predictions agree
    // with the hand-made label on nearly every tile.
    for (name, pair) in [("s2_simsiam", None), ("s1s2_dsimclr", Some(&s1))] {
        let out = common::tempdir();
        let mut args = vec![
            s2.clone(),
            "--encoder".into(),
            model(&format!("{name}/encoder.onnx")),
            "--head".into(),
            model(&format!("{name}/head.onnx")),
        ];
        if let Some(p) = pair {
            args.extend(["--pair".to_string(), p.clone()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = score_cli_in(&out, &refs);
        assert_eq!(s["scored_tiles"], 256, "{s}");
        let agree = agreement_with_label(&out.path().join("tiles.geojson"));
        assert!(
            agree > 0.9,
            "{name}: {agree} of tiles agree with the water label"
        );
    }
}

/// Share of scored tiles whose predicted class matches the Sen1Floods11 hand
/// label (water when > 50 % of the tile's labelled pixels are water).
fn agreement_with_label(tiles: &std::path::Path) -> f64 {
    let label = common::sen1floods_s2().with_file_name("Spain_7370579_LabelHand.tif");
    let ds = gdal::Dataset::open(&label).unwrap();
    let px = ds
        .rasterband(1)
        .unwrap()
        .read_as::<i16>((0, 0), (512, 512), (512, 512), None)
        .unwrap()
        .data()
        .to_vec();
    let fc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiles).unwrap()).unwrap();
    let (mut agree, mut n) = (0usize, 0usize);
    for f in fc["features"].as_array().unwrap() {
        let p = &f["properties"];
        let (r, c) = (
            p["row"].as_u64().unwrap() as usize,
            p["col"].as_u64().unwrap() as usize,
        );
        let (mut water, mut valid) = (0usize, 0usize);
        for y in r * 32..r * 32 + 32 {
            for x in c * 32..c * 32 + 32 {
                match px[y * 512 + x] {
                    1 => {
                        water += 1;
                        valid += 1
                    }
                    0 => valid += 1,
                    _ => {}
                }
            }
        }
        if valid * 2 < 32 * 32 {
            continue;
        }
        let want = if water * 2 > valid { "water" } else { "land" };
        n += 1;
        if p["predicted_class"] == want {
            agree += 1;
        }
    }
    agree as f64 / n.max(1) as f64
}
