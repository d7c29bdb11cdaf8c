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
