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

#[test]
fn validation_fold_new_queries_and_val_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::eurosat_subset(tmp.path(), &["Forest", "Industrial", "SeaLake"], 45);
    // Every fifth image becomes `val` and is overwritten with bytes no image reader
    // accepts: if eval read the val split at all, it would fail on them.
    let csv = std::fs::read_to_string(data.join("splits.csv")).unwrap();
    let mut rewritten = String::new();
    let (mut train, mut test, mut val) = (0, 0, 0);
    for (i, line) in csv.lines().enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let n: usize = f[0]
            .rsplit('_')
            .next()
            .and_then(|s| s.strip_suffix(".jpg"))
            .map_or(0, |s| s.parse().unwrap());
        if i > 0 && n.is_multiple_of(5) {
            std::fs::write(data.join(f[0]), b"not an image").unwrap();
            rewritten.push_str(&format!("{},{},val\n", f[0], f[1]));
            val += 1;
        } else {
            match f[2] {
                "train" => train += 1,
                "test" => test += 1,
                _ => {}
            }
            rewritten.push_str(line);
            rewritten.push('\n');
        }
    }
    std::fs::write(data.join("splits.csv"), rewritten).unwrap();
    assert_eq!((train, test, val), (72, 36, 27));
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
        "random,typiclust,probcover,auto",
        "--pools",
        "balanced",
        "--validation-fold",
        "--switch-per-class",
        "4",
        "--seeds",
        "2",
        "--initial",
        "6",
        "--budget",
        "6",
        "--rounds",
        "3",
        "--passes",
        "4",
        "--no-cache",
        "-q",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    // Only train (pool + fold) and test images were embedded: 72 + 36, none of the 27 val.
    assert_eq!(json["run"]["embedded_images"]["train"], 72);
    assert_eq!(json["run"]["embedded_images"]["test"], 36);
    // 24 train images per class, 20 % (5) of each into the fold: a pool of 57.
    assert_eq!(json["run"]["validation_fold"]["fold_images"], 15);
    assert_eq!(json["run"]["validation_fold"]["pool_images"], 57);
    let rows = csv_rows(&out.join("rounds.csv"));
    assert_eq!(rows.len(), 4 * 2 * 4);
    for r in &rows {
        assert_eq!(r[7], "57", "{r:?}");
        let v: f64 = r[11].parse().expect("every round is scored on the fold");
        assert!((0.0..=1.0).contains(&v), "{r:?}");
        // auto: 3 classes × 4 labels per class = 12 labels switch it to uncertainty; its
        // last round makes no query.
        if r[1] == "auto" {
            let expect = match r[3].as_str() {
                "0" => "low_budget",
                "3" => "",
                _ => "uncertainty",
            };
            assert_eq!(r[12], expect, "{r:?}");
        } else {
            assert_eq!(r[12], "", "{r:?}");
        }
    }
    let summary = csv_rows(&out.join("summary.csv"));
    assert!(summary.iter().all(|s| !s[8].is_empty() && !s[9].is_empty()));
    let savings = csv_rows(&out.join("savings.csv"));
    assert_eq!(
        savings.len(),
        3 * 4,
        "three queries against random, four rounds each"
    );
}

#[test]
fn merge_from_reruns_one_query_and_keeps_the_others_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::eurosat_subset(tmp.path(), &["Forest", "Industrial", "SeaLake"], 30);
    let encoder = common::encoder();
    let eval = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "eval",
            data.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--encoder",
            encoder.to_str().unwrap(),
            "--pools",
            "balanced,unbalanced",
            "--switch-per-class",
            "2",
            "--seeds",
            "2",
            "--initial",
            "6",
            "--budget",
            "6",
            "--rounds",
            "2",
            "--passes",
            "3",
            "--no-cache",
            "-q",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let first = tmp.path().join("first");
    let (code, _, stderr) = eval(
        &first,
        &["--queries", "random,margin,auto", "--auto-balance", "false"],
    );
    assert_eq!(code, 0, "{stderr}");
    // Re-run auto with the class balance on; random and margin come from `first`.
    let merged = tmp.path().join("merged");
    let first_arg = first.to_str().unwrap();
    let (code, _, stderr) = eval(&merged, &["--queries", "auto", "--merge-from", first_arg]);
    assert_eq!(code, 0, "{stderr}");
    let old = csv_rows(&first.join("rounds.csv"));
    let new = csv_rows(&merged.join("rounds.csv"));
    assert_eq!(new.len(), old.len(), "every query's rows are there");
    let keep = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter().filter(|r| r[1] != "auto").cloned().collect()
    };
    assert_eq!(
        keep(&new),
        keep(&old),
        "kept rows are the earlier run's, unchanged"
    );
    assert_eq!(new.iter().filter(|r| r[1] == "auto").count(), 2 * 2 * 3);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(merged.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        json["run"]["merged_from"]["kept_queries"],
        serde_json::json!(["margin", "random"])
    );
    assert_eq!(
        json["run"]["protocol"]["selection"]["auto"]["balance"],
        true
    );
    // A run of another protocol is refused, naming what differs, and writes nothing.
    let refused = tmp.path().join("refused");
    let (code, _, stderr) = eval(
        &refused,
        &[
            "--queries",
            "auto",
            "--merge-from",
            first_arg,
            "--passes",
            "4",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("passes"), "{stderr}");
    assert!(!refused.join("rounds.csv").exists());
    let (code, _, stderr) = eval(
        &refused,
        &[
            "--queries",
            "auto",
            "--merge-from",
            tmp.path().join("nothing").to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("summary.json"), "{stderr}");
}
