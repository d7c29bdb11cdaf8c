//! Re-running some queries of an earlier evaluation and keeping the others' rows.
//!
//! Every trial is deterministic for its (pool, query, seed) and independent of the
//! other queries, so when one query changes (a new `auto` rule, say) only its trials
//! need to run again: `nexttile eval … --queries auto --merge-from DIR` runs `auto` and
//! writes a report with DIR's rows of every other query. That is honest only if DIR was
//! measured with the same protocol, data and encoder, so [`check_compatible`] refuses
//! anything else; the merged `summary.json` names the folder and the queries it kept.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::EvalError;
use super::run::RoundRecord;

/// The rows and facts kept from an earlier evaluation folder.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// The folder.
    pub dir: PathBuf,
    /// Its rows of queries this run does not compute, in file order.
    pub records: Vec<RoundRecord>,
    /// Those queries' names, in order of first appearance.
    pub queries: Vec<String>,
    /// Every query of the earlier run, in order of first appearance.
    pub all_queries: Vec<String>,
    /// The earlier run's `summary.json` `run` object.
    pub run: Value,
}

fn bad(dir: &Path, message: String) -> EvalError {
    EvalError::Config(format!("--merge-from {}: {message}", dir.display()))
}

/// Reads `dir/summary.json` and `dir/rounds.csv`, keeping the rows of queries not in
/// `rerun` (names as in `rounds.csv`).
///
/// # Errors
///
/// [`EvalError::Config`] naming the file when either is missing or malformed.
pub fn read_earlier(dir: &Path, rerun: &[String]) -> Result<Earlier, EvalError> {
    let summary_path = dir.join("summary.json");
    let text = std::fs::read_to_string(&summary_path)
        .map_err(|e| bad(dir, format!("cannot read summary.json: {e}")))?;
    let summary: Value = serde_json::from_str(&text)
        .map_err(|e| bad(dir, format!("summary.json is not JSON: {e}")))?;
    let run = summary
        .get("run")
        .cloned()
        .ok_or_else(|| bad(dir, "summary.json has no `run` object".into()))?;
    let csv = std::fs::read_to_string(dir.join("rounds.csv"))
        .map_err(|e| bad(dir, format!("cannot read rounds.csv: {e}")))?;
    let mut records = Vec::new();
    let mut queries: Vec<String> = Vec::new();
    let mut all_queries: Vec<String> = Vec::new();
    for (n, line) in csv.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let r = parse_row(line)
            .ok_or_else(|| bad(dir, format!("rounds.csv line {} is malformed", n + 1)))?;
        if !all_queries.contains(&r.query) {
            all_queries.push(r.query.clone());
        }
        if rerun.contains(&r.query) {
            continue;
        }
        if !queries.contains(&r.query) {
            queries.push(r.query.clone());
        }
        records.push(r);
    }
    Ok(Earlier {
        dir: dir.to_path_buf(),
        records,
        queries,
        all_queries,
        run,
    })
}

/// One `rounds.csv` row (`pool,query,seed,round,labelled,score,macro_f1,pool_size,
/// classes_seen,fit_seconds,query_seconds,validation_score,stage`).
fn parse_row(line: &str) -> Option<RoundRecord> {
    let f: Vec<&str> = line.split(',').collect();
    if f.len() != 13 {
        return None;
    }
    let opt = |s: &str| -> Option<Option<f64>> {
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    Some(RoundRecord {
        pool: f[0].to_string(),
        query: f[1].to_string(),
        seed: f[2].parse().ok()?,
        round: f[3].parse().ok()?,
        labelled: f[4].parse().ok()?,
        score: f[5].parse().ok()?,
        macro_f1: opt(f[6])?,
        pool_size: f[7].parse().ok()?,
        classes_seen: f[8].parse().ok()?,
        fit_seconds: f[9].parse().ok()?,
        query_seconds: f[10].parse().ok()?,
        validation_score: opt(f[11])?,
        stage: (!f[12].is_empty()).then(|| f[12].to_string()),
    })
}

/// Refuses to merge unless the earlier run (`earlier`, its `summary.json` `run`) and this
/// one (`now`, the same shape) agree on the data (split, classes, images embedded,
/// validation fold, mosaics, pixel scale), the encoder's SHA-256 and the protocol
/// (initial set, budget, rounds, seeds, passes, pools, imbalance, head, warm start); the
/// selection parameters must agree too, except those of `auto` when this run re-runs an
/// `auto` query (`rerun_auto`).
///
/// # Errors
///
/// [`EvalError::Config`] naming the first field that differs.
pub fn check_compatible(earlier: &Earlier, now: &Value, rerun_auto: bool) -> Result<(), EvalError> {
    let run_fields = [
        "split",
        "classes",
        "embedded_images",
        "validation_fold",
        "mosaics",
        "pixel_scale",
        "encoder_sha256",
    ];
    for key in run_fields {
        if earlier.run.get(key) != now.get(key) {
            return Err(bad(
                &earlier.dir,
                format!(
                    "its `{key}` differs from this run's; merge only runs of the same data and encoder"
                ),
            ));
        }
    }
    let protocol_fields = [
        "initial",
        "budget",
        "rounds",
        "seeds",
        "passes",
        "pools",
        "imbalance_ratio",
        "head",
        "warm_start",
    ];
    let (Some(ep), Some(np)) = (earlier.run.get("protocol"), now.get("protocol")) else {
        return Err(bad(&earlier.dir, "summary.json has no protocol".into()));
    };
    for key in protocol_fields {
        if ep.get(key) != np.get(key) {
            return Err(bad(
                &earlier.dir,
                format!(
                    "its protocol's `{key}` differs from this run's; use the same --initial, --budget, --rounds, --seeds, --passes, --pools and head options"
                ),
            ));
        }
    }
    let selection = |p: &Value| {
        let mut s = p.get("selection").cloned().unwrap_or(Value::Null);
        if let (true, Some(o)) = (rerun_auto, s.as_object_mut()) {
            o.remove("auto");
        }
        s
    };
    if selection(ep) != selection(np) {
        return Err(bad(
            &earlier.dir,
            "its selection parameters (k, δ, m, …) differ from this run's for the queries it would keep".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_malformed_rows_are_refused() {
        let r =
            parse_row("unbalanced,auto,3,2,192,0.628889,,5007,10,1.5,0.25,0.635450,uncertainty")
                .unwrap();
        assert_eq!(
            (r.pool.as_str(), r.query.as_str(), r.seed, r.round),
            ("unbalanced", "auto", 3, 2)
        );
        assert_eq!((r.labelled, r.pool_size, r.classes_seen), (192, 5007, 10));
        assert_eq!(
            (r.score, r.macro_f1, r.validation_score),
            (0.628889, None, Some(0.63545))
        );
        assert_eq!(r.stage.as_deref(), Some("uncertainty"));
        let last = parse_row("balanced,random,0,8,576,0.79,,15120,10,2.0,0,,").unwrap();
        assert_eq!((last.stage, last.validation_score), (None, None));
        assert!(parse_row("balanced,random,0,8").is_none());
        assert!(parse_row("balanced,random,x,8,576,0.79,,15120,10,2.0,0,,").is_none());
    }

    #[test]
    fn only_runs_of_the_same_protocol_merge() {
        let run = serde_json::json!({
            "split": "splits.csv", "classes": ["a", "b"], "embedded_images": {"train": 10},
            "validation_fold": null, "mosaics": null, "pixel_scale": 0.5, "encoder_sha256": "ab",
            "protocol": {"initial": 4, "budget": 2, "rounds": 1, "seeds": [0], "passes": 3,
                "pools": ["balanced"], "imbalance_ratio": 20.0, "head": {"steps": 5},
                "warm_start": false, "selection": {"auto": {"m": 3}, "typiclust": {"k": 20}}},
        });
        let earlier = Earlier {
            dir: PathBuf::from("old"),
            records: Vec::new(),
            queries: vec!["random".into()],
            all_queries: vec!["random".into(), "auto".into()],
            run: run.clone(),
        };
        assert!(check_compatible(&earlier, &run, false).is_ok());
        let mut other_auto = run.clone();
        other_auto["protocol"]["selection"]["auto"]["m"] = 1.into();
        assert!(check_compatible(&earlier, &other_auto, true).is_ok());
        assert!(check_compatible(&earlier, &other_auto, false).is_err());
        let mut other_seeds = run.clone();
        other_seeds["protocol"]["seeds"] = serde_json::json!([0, 1]);
        let e = check_compatible(&earlier, &other_seeds, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("seeds"), "{e}");
        let mut other_encoder = run;
        other_encoder["encoder_sha256"] = "cd".into();
        let e = check_compatible(&earlier, &other_encoder, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("encoder_sha256"), "{e}");
    }
}
