//! Writing an evaluation's results: per-round CSV, mean ± std summary, labels needed to
//! reach a target score, a JSON summary and the learning-curve PNG.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::EvalError;
use super::plot::{Curve, Panel, plot_learning_curves};
use super::run::RoundRecord;

/// Mean and standard deviation over seeds of one (pool, query, round).
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    /// Pool name.
    pub pool: String,
    /// Query name.
    pub query: String,
    /// Round (0 = initial set).
    pub round: usize,
    /// Mean labelled samples (equal across seeds unless a pool ran out).
    pub labelled: f64,
    /// Mean score over seeds.
    pub mean: f64,
    /// Population standard deviation over seeds.
    pub std: f64,
    /// Seeds averaged.
    pub seeds: usize,
    /// Mean macro F1 (multi-label).
    pub macro_f1: Option<f64>,
    /// Mean score on the validation fold, when the evaluation has one.
    pub validation_mean: Option<f64>,
    /// Population standard deviation over seeds of the validation score.
    pub validation_std: Option<f64>,
}

/// Mean and population standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Labels a query needed to reach the target, from its mean curve.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReached {
    /// Pool name.
    pub pool: String,
    /// Query name.
    pub query: String,
    /// The smallest labelled count whose mean score is at least the target, if any.
    pub labels: Option<f64>,
    /// The best mean score of the curve and where it was reached.
    pub best_mean: f64,
    /// Labelled samples at the best mean.
    pub best_at: f64,
}

/// Averages `records` over seeds.
pub fn summarise(records: &[RoundRecord]) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<(String, String, usize), Vec<&RoundRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.pool.clone(), r.query.clone(), r.round))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((pool, query, round), rs)| {
            let n = rs.len() as f64;
            let scores: Vec<f64> = rs.iter().map(|r| r.score).collect();
            let (mean, std) = mean_std(&scores);
            let validation = rs
                .iter()
                .map(|r| r.validation_score)
                .collect::<Option<Vec<f64>>>()
                .map(|v| mean_std(&v));
            let macro_f1 = rs
                .iter()
                .map(|r| r.macro_f1)
                .collect::<Option<Vec<f64>>>()
                .map(|v| v.iter().sum::<f64>() / n);
            SummaryRow {
                pool,
                query,
                round,
                labelled: rs.iter().map(|r| r.labelled as f64).sum::<f64>() / n,
                mean,
                std,
                seeds: rs.len(),
                macro_f1,
                validation_mean: validation.map(|v| v.0),
                validation_std: validation.map(|v| v.1),
            }
        })
        .collect()
}

/// For every (pool, query): the first labelled count whose mean score reaches `target`.
pub fn labels_to_reach(summary: &[SummaryRow], target: f64) -> Vec<TargetReached> {
    let mut out: Vec<TargetReached> = Vec::new();
    for row in summary {
        let entry = match out
            .iter_mut()
            .find(|t| t.pool == row.pool && t.query == row.query)
        {
            Some(e) => e,
            None => {
                out.push(TargetReached {
                    pool: row.pool.clone(),
                    query: row.query.clone(),
                    labels: None,
                    best_mean: f64::NEG_INFINITY,
                    best_at: 0.0,
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        if row.mean >= target && entry.labels.is_none() {
            entry.labels = Some(row.labelled);
        }
        if row.mean > entry.best_mean {
            entry.best_mean = row.mean;
            entry.best_at = row.labelled;
        }
    }
    out
}

/// How many labels the baseline (random sampling) needs to reach what a query reaches.
#[derive(Debug, Clone, Serialize)]
pub struct LabelSavings {
    /// Pool name.
    pub pool: String,
    /// Query name.
    pub query: String,
    /// Labels the query had.
    pub labelled: f64,
    /// Its mean score there.
    pub mean: f64,
    /// Labels the baseline's mean curve needs for the same score, linearly interpolated
    /// between its rounds; the baseline's first point when it starts at or above it;
    /// `None` when the baseline never gets there within its curve.
    pub random_labels: Option<f64>,
    /// `random_labels / labelled`: above 1 the query saves labels (2 = half the labels).
    pub saving: Option<f64>,
}

/// For every (pool, query ≠ `baseline`, round): the labels the baseline's mean curve
/// needs to reach the query's mean score (first crossing, linear between rounds).
pub fn label_savings(summary: &[SummaryRow], baseline: &str) -> Vec<LabelSavings> {
    let mut out = Vec::new();
    for row in summary.iter().filter(|r| r.query != baseline) {
        let base: Vec<&SummaryRow> = summary
            .iter()
            .filter(|r| r.pool == row.pool && r.query == baseline)
            .collect();
        if base.is_empty() {
            continue;
        }
        let random_labels = if base[0].mean >= row.mean {
            Some(base[0].labelled)
        } else {
            base.windows(2).find_map(|w| {
                let (a, b) = (w[0], w[1]);
                (b.mean >= row.mean).then(|| {
                    let t = (row.mean - a.mean) / (b.mean - a.mean).max(f64::EPSILON);
                    a.labelled + t.clamp(0.0, 1.0) * (b.labelled - a.labelled)
                })
            })
        };
        out.push(LabelSavings {
            pool: row.pool.clone(),
            query: row.query.clone(),
            labelled: row.labelled,
            mean: row.mean,
            random_labels,
            saving: random_labels.map(|l| l / row.labelled.max(f64::EPSILON)),
        });
    }
    out
}

/// One panel per pool with a curve per query: test means, or validation-fold means.
fn curve_panels(summary: &[SummaryRow], validation: bool) -> Vec<Panel> {
    let mut panels: Vec<Panel> = Vec::new();
    for s in summary {
        let (mean, std) = if validation {
            match (s.validation_mean, s.validation_std) {
                (Some(m), Some(d)) => (m, d),
                _ => continue,
            }
        } else {
            (s.mean, s.std)
        };
        let title = if validation {
            format!("{} pool, validation fold", s.pool)
        } else {
            format!("{} pool, test", s.pool)
        };
        let panel = match panels.iter_mut().find(|p| p.title == title) {
            Some(p) => p,
            None => {
                panels.push(Panel {
                    title,
                    curves: Vec::new(),
                });
                let last = panels.len() - 1;
                &mut panels[last]
            }
        };
        let curve = match panel.curves.iter_mut().find(|c| c.label == s.query) {
            Some(c) => c,
            None => {
                panel.curves.push(Curve {
                    label: s.query.clone(),
                    x: Vec::new(),
                    mean: Vec::new(),
                    std: Vec::new(),
                });
                let last = panel.curves.len() - 1;
                &mut panel.curves[last]
            }
        };
        curve.x.push(s.labelled);
        curve.mean.push(mean);
        curve.std.push(std);
    }
    panels
}

/// Files written by [`write_report`].
#[derive(Debug, Clone, Serialize)]
pub struct ReportPaths {
    /// Every record, one line per (pool, query, seed, round).
    pub rounds_csv: PathBuf,
    /// Mean ± std per (pool, query, round).
    pub summary_csv: PathBuf,
    /// Learning curves.
    pub plot_png: PathBuf,
    /// Protocol, timings and labels-to-target.
    pub summary_json: PathBuf,
    /// Labels random sampling needs to match each query's mean score.
    pub savings_csv: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), EvalError> {
    std::fs::write(path, text).map_err(|e| EvalError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.6}")).unwrap_or_default()
}

/// Writes `rounds.csv`, `summary.csv`, `curves.png` and `summary.json` into `dir`.
/// `score_name` labels the y axis ("accuracy", "micro F1"; panel titles say test or validation fold); `extra` is merged into
/// the JSON (protocol, dataset, timings).
///
/// # Errors
///
/// [`EvalError::Output`] when a file cannot be written or the plot cannot be drawn.
pub fn write_report(
    dir: &Path,
    records: &[RoundRecord],
    score_name: &str,
    target: f64,
    extra: serde_json::Value,
) -> Result<(ReportPaths, Vec<SummaryRow>, Vec<TargetReached>), EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::Output {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let paths = ReportPaths {
        rounds_csv: dir.join("rounds.csv"),
        summary_csv: dir.join("summary.csv"),
        plot_png: dir.join("curves.png"),
        summary_json: dir.join("summary.json"),
        savings_csv: dir.join("savings.csv"),
    };
    let mut csv = String::from(
        "pool,query,seed,round,labelled,score,macro_f1,pool_size,classes_seen,fit_seconds,query_seconds,validation_score,stage\n",
    );
    for r in records {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.6},{},{},{},{:.4},{:.4},{},{}",
            r.pool,
            r.query,
            r.seed,
            r.round,
            r.labelled,
            r.score,
            opt(r.macro_f1),
            r.pool_size,
            r.classes_seen,
            r.fit_seconds,
            r.query_seconds,
            opt(r.validation_score),
            r.stage.as_deref().unwrap_or("")
        );
    }
    write(&paths.rounds_csv, &csv)?;
    let summary = summarise(records);
    let mut csv = String::from(
        "pool,query,round,labelled,mean,std,seeds,macro_f1,validation_mean,validation_std\n",
    );
    for s in &summary {
        let _ = writeln!(
            csv,
            "{},{},{},{:.1},{:.6},{:.6},{},{},{},{}",
            s.pool,
            s.query,
            s.round,
            s.labelled,
            s.mean,
            s.std,
            s.seeds,
            opt(s.macro_f1),
            opt(s.validation_mean),
            opt(s.validation_std)
        );
    }
    write(&paths.summary_csv, &csv)?;
    let reached = labels_to_reach(&summary, target);
    let mut panels = curve_panels(&summary, false);
    if summary.iter().any(|r| r.validation_mean.is_some()) {
        panels.extend(curve_panels(&summary, true));
    }
    let savings = label_savings(&summary, "random");
    let mut csv = String::from("pool,query,labelled,mean,random_labels,saving\n");
    for v in &savings {
        let _ = writeln!(
            csv,
            "{},{},{:.1},{:.6},{},{}",
            v.pool,
            v.query,
            v.labelled,
            v.mean,
            v.random_labels
                .map(|l| format!("{l:.1}"))
                .unwrap_or_default(),
            v.saving.map(|l| format!("{l:.3}")).unwrap_or_default()
        );
    }
    write(&paths.savings_csv, &csv)?;
    plot_learning_curves(&paths.plot_png, &panels, score_name, Some(target)).map_err(|e| {
        EvalError::Output {
            path: paths.plot_png.clone(),
            message: e.to_string(),
        }
    })?;
    let json = serde_json::json!({
        "score": score_name,
        "target": target,
        "labels_to_reach_target": reached,
        "label_savings": savings,
        "summary": summary,
        "run": extra,
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| EvalError::Output {
        path: paths.summary_json.clone(),
        message: e.to_string(),
    })?;
    write(&paths.summary_json, &text)?;
    Ok((paths, summary, reached))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(query: &str, seed: u64, round: usize, labelled: usize, score: f64) -> RoundRecord {
        RoundRecord {
            pool: "balanced".into(),
            query: query.into(),
            seed,
            round,
            labelled,
            score,
            macro_f1: None,
            validation_score: None,
            stage: None,
            pool_size: 100,
            classes_seen: 2,
            fit_seconds: 0.0,
            query_seconds: 0.0,
        }
    }

    #[test]
    fn mean_std_and_target() {
        let records = vec![
            rec("random", 0, 0, 10, 0.5),
            rec("random", 1, 0, 10, 0.7),
            rec("random", 0, 1, 20, 0.9),
            rec("random", 1, 1, 20, 0.95),
            rec("bald", 0, 0, 10, 0.6),
            rec("bald", 0, 1, 20, 0.8),
        ];
        let s = summarise(&records);
        let r0 = s
            .iter()
            .find(|r| r.query == "random" && r.round == 0)
            .unwrap();
        assert!((r0.mean - 0.6).abs() < 1e-12 && (r0.std - 0.1).abs() < 1e-12);
        let reached = labels_to_reach(&s, 0.9);
        let random = reached.iter().find(|t| t.query == "random").unwrap();
        assert_eq!(random.labels, Some(20.0));
        let bald = reached.iter().find(|t| t.query == "bald").unwrap();
        assert_eq!(bald.labels, None);
        assert!((bald.best_mean - 0.8).abs() < 1e-12 && bald.best_at == 20.0);
    }

    #[test]
    fn savings_interpolate_the_random_curve() {
        // random: 0.6 at 10, 0.925 at 20; bald: 0.6 at 10, 0.8 at 20.
        let records = vec![
            rec("random", 0, 0, 10, 0.5),
            rec("random", 1, 0, 10, 0.7),
            rec("random", 0, 1, 20, 0.9),
            rec("random", 1, 1, 20, 0.95),
            rec("bald", 0, 0, 10, 0.6),
            rec("bald", 0, 1, 20, 0.8),
            rec("typiclust", 0, 0, 10, 0.95),
        ];
        let v = label_savings(&summarise(&records), "random");
        let at = |q: &str, l: f64| {
            v.iter()
                .find(|s| s.query == q && s.labelled == l)
                .unwrap()
                .clone()
        };
        // 0.6 is random's first point: 10 labels, saving 1.
        assert_eq!(at("bald", 10.0).random_labels, Some(10.0));
        // 0.8 lies 0.2 / 0.325 of the way from 10 to 20 labels.
        let mid = at("bald", 20.0);
        let expect = 10.0 + 10.0 * 0.2 / 0.325;
        assert!(
            (mid.random_labels.unwrap() - expect).abs() < 1e-9,
            "{mid:?}"
        );
        assert!((mid.saving.unwrap() - expect / 20.0).abs() < 1e-9);
        // Above random's whole curve: no count.
        assert_eq!(at("typiclust", 10.0).random_labels, None);
        assert!(v.iter().all(|s| s.query != "random"));
    }
}
