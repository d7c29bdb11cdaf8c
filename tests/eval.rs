//! `nexttile eval` end to end on real EuroSAT-RGB images (a small subset extracted from
//! the shared archive), the real demo encoder and onnxruntime.

mod common;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .args(args)
        .output()
        .expect("nexttile runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn csv_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .expect("csv exists")
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn single_label_curves_for_every_query_and_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::eurosat_subset(tmp.path(), &["Forest", "Industrial", "SeaLake"], 45);
    let out = tmp.path().join("out");
    let encoder = common::encoder();
    let (code, stdout, stderr) = run(&[
        "eval",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--encoder",
        encoder.to_str().unwrap(),
        "--queries",
        "random,bald,entropy,mcfps,coreset",
        "--pools",
        "balanced,unbalanced",
        "--seeds",
        "2",
        "--initial",
        "6",
        "--budget",
        "6",
        "--rounds",
        "3",
        "--passes",
        "5",
        "--imbalance-ratio",
        "4",
        "--no-cache",
        "-q",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let rows = csv_rows(&out.join("rounds.csv"));
    // 2 pools × 5 queries × 2 seeds × (3 rounds + initial).
    assert_eq!(rows.len(), 2 * 5 * 2 * 4);
    for r in &rows {
        let round: usize = r[3].parse().unwrap();
        let labelled: usize = r[4].parse().unwrap();
        assert_eq!(labelled, 6 + 6 * round, "{r:?}");
        let score: f64 = r[5].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{r:?}");
    }
    // Balanced pool: the 90 train images (30 per class); unbalanced: a long tail
    // 30 + 15 + 8 = 53 (ratio 4 over three classes keeps ⌈30⌉, ⌈30/2⌉ and ⌈30/4⌉).
    assert!(
        rows.iter()
            .filter(|r| r[0] == "balanced")
            .all(|r| r[7] == "90")
    );
    assert!(
        rows.iter()
            .filter(|r| r[0] == "unbalanced")
            .all(|r| r[7] == "53")
    );
    // Three visually distinct classes: after 24 labels every query is far above chance.
    let summary = csv_rows(&out.join("summary.csv"));
    for s in summary.iter().filter(|s| s[0] == "balanced" && s[2] == "3") {
        let mean: f64 = s[4].parse().unwrap();
        assert!(mean > 0.7, "{s:?}");
    }
    let png = std::fs::read(out.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["labels_to_reach_target"].as_array().unwrap().len(), 10);
    assert_eq!(json["run"]["protocol"]["budget"], 6);
    assert!(
        stdout.contains("random") && stdout.contains("mcfps"),
        "{stdout}"
    );
}

#[test]
fn multi_label_mosaics_with_ll_tpd_mge() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::eurosat_subset(tmp.path(), &["Forest", "Highway", "River", "SeaLake"], 30);
    let out = tmp.path().join("out");
    let encoder = common::encoder();
    let (code, stdout, stderr) = run(&[
        "eval",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--encoder",
        encoder.to_str().unwrap(),
        "--multi-label",
        "--mosaic-pool",
        "80",
        "--mosaic-test",
        "30",
        "--queries",
        "random,ll,tpd,mge",
        "--seeds",
        "2",
        "--initial",
        "10",
        "--budget",
        "10",
        "--rounds",
        "2",
        "--no-cache",
        "-q",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let rows = csv_rows(&out.join("rounds.csv"));
    assert_eq!(rows.len(), 4 * 2 * 3);
    for r in &rows {
        let micro: f64 = r[5].parse().unwrap();
        let macro_: f64 = r[6].parse().expect("multi-label rows carry macro F1");
        assert!(
            (0.0..=1.0).contains(&micro) && (0.0..=1.0).contains(&macro_),
            "{r:?}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["score"], "micro F1");
}

#[test]
fn bad_input_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let missing = tmp.path().join("nope");
    let (code, _, stderr) = run(&[
        "eval",
        missing.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("not a folder"), "{stderr}");
    let (code, _, stderr) = run(&[
        "eval",
        tmp.path().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--queries",
        "badge",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("unknown query") && stderr.contains("mcfps"),
        "{stderr}"
    );
    // A multi-label query on single-label data.
    let data = common::eurosat_subset(tmp.path(), &["Forest", "SeaLake"], 9);
    let encoder = common::encoder();
    let (code, _, stderr) = run(&[
        "eval",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--encoder",
        encoder.to_str().unwrap(),
        "--queries",
        "ll",
        "--no-cache",
        "-q",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("multi-label"), "{stderr}");
    // A splits.csv naming a file that is not there.
    std::fs::write(
        data.join("splits.csv"),
        "path,class,split\nForest/missing.jpg,Forest,train\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["eval", data.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("missing.jpg"), "{stderr}");
}
