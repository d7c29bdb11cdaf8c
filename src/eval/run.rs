//! The simulated labelling loop: train the head on the labelled set, score the test set,
//! query `b` more pool samples with each strategy, reveal their labels, repeat.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::EvalError;
use super::metrics::{accuracy, f1_scores};
use super::pool::{PoolKind, make_pool};
use super::query::{Query, QueryParams};
use crate::head::{HeadConfig, HeadSpec, McOutput, Targets, TrainableHead};
use crate::sampling::{SelectionInput, Stage, Strategy, select};
use crate::uncertainty::{Metric, MultiLabelMetric, mge, predicted_class, predicted_loss, tpd};

/// Labels of a single- or multi-label evaluation set.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    /// One class index per sample.
    Single(&'a [usize]),
    /// `[N, C]` 0/1 rows.
    Multi(ArrayView2<'a, f32>),
}

impl Labels<'_> {
    fn len(&self) -> usize {
        match self {
            Labels::Single(v) => v.len(),
            Labels::Multi(a) => a.nrows(),
        }
    }
}

/// Embeddings and labels of the train split (the pool is drawn from it), the test split
/// and, optionally, a validation fold carved out of train (never the `val` split).
#[derive(Debug, Clone, Copy)]
pub struct EvalData<'a> {
    /// Class names.
    pub classes: &'a [String],
    /// `[N_train, D]` (without the validation fold when there is one).
    pub train_x: ArrayView2<'a, f32>,
    /// Train labels.
    pub train_y: Labels<'a>,
    /// `[N_test, D]`.
    pub test_x: ArrayView2<'a, f32>,
    /// Test labels.
    pub test_y: Labels<'a>,
    /// `[N_fold, D]` embeddings and labels of the validation fold, scored every round
    /// beside the test set; choices are made on these scores.
    pub validation: Option<(ArrayView2<'a, f32>, Labels<'a>)>,
}

/// Protocol of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalProtocol {
    /// Labelled samples before the first round (a uniform sample of the pool, the same
    /// for every query of one pool and seed).
    pub initial: usize,
    /// Samples queried per round (`b`).
    pub budget: usize,
    /// Query rounds; scores are reported after training on the initial set and after
    /// each round (`rounds + 1` points).
    pub rounds: usize,
    /// Trial seeds (initial set, head initialisation, dropout, strategies).
    pub seeds: Vec<u64>,
    /// MC-dropout passes `T`.
    pub passes: usize,
    /// Query functions compared.
    pub queries: Vec<Query>,
    /// Pools.
    pub pools: Vec<PoolKind>,
    /// Imbalance ratio of the unbalanced pool.
    pub imbalance_ratio: f64,
    /// Head hyper-parameters (its seed is replaced by each trial's).
    pub head: HeadConfig,
    /// Continue training from the previous round's weights instead of re-initialising.
    pub warm_start: bool,
    /// Parameters of the selection strategies.
    pub selection: QueryParams,
    /// Worker threads running trials in parallel.
    pub threads: usize,
}

/// One score of one trial: what the head reached after training on `labelled` samples.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRecord {
    /// Pool name.
    pub pool: String,
    /// Query name.
    pub query: String,
    /// Trial seed.
    pub seed: u64,
    /// 0 = initial set.
    pub round: usize,
    /// Labelled samples the head was trained on.
    pub labelled: usize,
    /// Test accuracy (single-label) or micro F1 (multi-label).
    pub score: f64,
    /// Macro F1 (multi-label only).
    pub macro_f1: Option<f64>,
    /// The same score on the validation fold, when the evaluation has one.
    pub validation_score: Option<f64>,
    /// For `auto`: the stage of the schedule that chose the next query (`low_budget`,
    /// `uncertainty`); empty otherwise and in the last round.
    pub stage: Option<String>,
    /// Pool size.
    pub pool_size: usize,
    /// Distinct classes among the labelled samples.
    pub classes_seen: usize,
    /// Seconds training the head this round.
    pub fit_seconds: f64,
    /// Seconds for MC passes + uncertainty + selection of the next query (0 in the last round).
    pub query_seconds: f64,
}

/// Runs every (pool, query, seed) trial of `protocol` on `data`, `protocol.threads` at a
/// time, and returns the records sorted by pool, query, seed and round. `progress` is
/// called after each finished trial with (done, total).
///
/// # Errors
///
/// [`EvalError::Config`] for an inconsistent protocol (zero budget, a multi-label query on
/// single-label data, ...), and any error of the head or the selection.
pub fn run_eval(
    data: &EvalData<'_>,
    protocol: &EvalProtocol,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<RoundRecord>, EvalError> {
    let multi = matches!(data.train_y, Labels::Multi(_));
    if protocol.budget == 0 || protocol.seeds.is_empty() || protocol.queries.is_empty() {
        return Err(EvalError::Config(
            "budget, seeds and queries must not be empty".into(),
        ));
    }
    let fold_ok = data
        .validation
        .is_none_or(|(x, y)| y.len() == x.nrows() && y.len() > 0);
    if data.train_y.len() != data.train_x.nrows()
        || data.test_y.len() != data.test_x.nrows()
        || !fold_ok
    {
        return Err(EvalError::Config(
            "labels and embeddings differ in length".into(),
        ));
    }
    for q in &protocol.queries {
        if q.is_multi_label() != multi && !q.is_label_free() {
            return Err(EvalError::Config(format!(
                "query {q} is for {} data but this set is {}",
                if q.is_multi_label() {
                    "multi-label"
                } else {
                    "single-label"
                },
                if multi { "multi-label" } else { "single-label" }
            )));
        }
    }
    let mut trials = Vec::new();
    for &pool in &protocol.pools {
        for &query in &protocol.queries {
            for &seed in &protocol.seeds {
                trials.push((pool, query, seed));
            }
        }
    }
    let total = trials.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<Vec<RoundRecord>, EvalError>>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..protocol.threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(pool, query, seed)) = trials.get(i) else {
                        break;
                    };
                    let r = run_trial(data, protocol, pool, query, seed);
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all.push(r);
                    }
                    progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
                    if failed {
                        next.store(total, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let mut records = Vec::new();
    for r in results
        .into_inner()
        .map_err(|_| EvalError::Config("a trial thread panicked".into()))?
    {
        records.extend(r?);
    }
    records.sort_by(|a, b| {
        (a.pool.as_str(), a.query.as_str(), a.seed, a.round).cmp(&(
            b.pool.as_str(),
            b.query.as_str(),
            b.seed,
            b.round,
        ))
    });
    Ok(records)
}

fn rows(x: ArrayView2<'_, f32>, idx: &[usize]) -> Array2<f32> {
    x.select(Axis(0), idx)
}

/// Scores `head` on a held-out set: accuracy (single-label) or micro and macro F1 at 0.5.
fn score_on(
    head: &TrainableHead,
    x: ArrayView2<'_, f32>,
    y: Labels<'_>,
) -> Result<(f64, Option<f64>), EvalError> {
    let p = head.predict(x)?;
    Ok(match y {
        Labels::Single(t) => (accuracy(p.view(), t), None),
        Labels::Multi(t) => {
            let (micro, macro_) = f1_scores(p.view(), t, 0.5);
            (micro, Some(macro_))
        }
    })
}

/// Trains `head` on the labelled pool rows (`global` = their train indices) and returns
/// the number of distinct classes among their labels.
fn fit_labelled(
    head: &mut TrainableHead,
    x: ArrayView2<'_, f32>,
    train_y: Labels<'_>,
    global: &[usize],
    warm: bool,
) -> Result<usize, EvalError> {
    match train_y {
        Labels::Single(y) => {
            let ys: Vec<usize> = global.iter().map(|&i| y[i]).collect();
            head.fit(x, Targets::Single(&ys), warm)?;
            let mut seen = ys;
            seen.sort_unstable();
            seen.dedup();
            Ok(seen.len())
        }
        Labels::Multi(y) => {
            let ys = y.select(Axis(0), global);
            head.fit(x, Targets::Multi(ys.view()), warm)?;
            Ok(ys.sum_axis(Axis(0)).iter().filter(|&&v| v > 0.0).count())
        }
    }
}

/// What one query round ranks by: the uncertainty per pool tile, the strategy to run
/// (TPD's first round and `auto`'s stages change it) and `auto`'s stage.
struct RoundQuery {
    uncertainty: Array1<f32>,
    strategy: Strategy,
    stage: Option<Stage>,
}

/// The uncertainty a query ranks by this round, from the head's MC output `out`;
/// `previous` is the last round's deterministic output (TPD), `labelled` the labelled
/// count (`auto`'s switch).
fn round_query(
    query: Query,
    strategy: Strategy,
    out: &McOutput,
    previous: Option<&Array2<f32>>,
    labelled: usize,
) -> Result<RoundQuery, EvalError> {
    let zeros = || Array1::zeros(out.deterministic.nrows());
    let stage = match &strategy {
        Strategy::Auto(a) => Some(a.stage_for(labelled)),
        _ => None,
    };
    let multi = |m: MultiLabelMetric| -> Result<Option<Array1<f32>>, EvalError> {
        Ok(match m {
            MultiLabelMetric::Ll => {
                let loss = out.predicted_loss.as_ref().ok_or_else(|| {
                    EvalError::Config("the LL head has no loss-prediction output".into())
                })?;
                Some(predicted_loss(loss.view())?)
            }
            MultiLabelMetric::Mge => {
                Some(mge(out.deterministic.view(), out.hidden_norm.view(), 0.5)?)
            }
            // Seed 004, Sec. II-A-2: no previous model in the first round: random.
            MultiLabelMetric::Tpd => match previous {
                None => None,
                Some(prev) => Some(tpd(out.deterministic.view(), prev.view())?),
            },
        })
    };
    let single = |m: Metric| m.compute(out.probs.view());
    let (uncertainty, strategy) = match (query, stage) {
        (Query::Auto(_) | Query::AutoMulti(_), Some(Stage::LowBudget)) => (zeros(), strategy),
        (Query::TopK(m) | Query::Mcfps(m) | Query::Clustering(m) | Query::Auto(m), _) => {
            (single(m)?, strategy)
        }
        (Query::MultiLabel(m) | Query::AutoMulti(m), _) => match multi(m)? {
            Some(u) => (u, strategy),
            None => (zeros(), Strategy::Random),
        },
        (Query::Random | Query::Coreset | Query::Typiclust | Query::Probcover, _) => {
            (zeros(), strategy)
        }
    };
    Ok(RoundQuery {
        uncertainty,
        strategy,
        stage,
    })
}

/// Per pool tile: `label(i)` for labelled tiles, the head's predicted class (argmax of
/// its deterministic probabilities `probs`, `[N, C]`) for the others.
fn known_classes(
    probs: &Array2<f32>,
    labelled: &[bool],
    label: impl Fn(usize) -> usize,
) -> Vec<usize> {
    predicted_class(probs.view())
        .iter()
        .enumerate()
        .map(|(i, &p)| if labelled[i] { label(i) } else { p })
        .collect()
}

/// One trial: a pool, a query function and a seed through all rounds.
fn run_trial(
    data: &EvalData<'_>,
    protocol: &EvalProtocol,
    pool_kind: PoolKind,
    query: Query,
    seed: u64,
) -> Result<Vec<RoundRecord>, EvalError> {
    let n_classes = data.classes.len();
    let train_classes: Vec<usize> = match data.train_y {
        Labels::Single(v) => v.to_vec(),
        Labels::Multi(_) => vec![0; data.train_x.nrows()],
    };
    let pool = make_pool(
        &train_classes,
        n_classes,
        pool_kind,
        protocol.imbalance_ratio,
        seed,
    )?;
    let pool_x = rows(data.train_x, &pool);
    let multi = matches!(data.train_y, Labels::Multi(_));
    let uses_ll = matches!(
        query,
        Query::MultiLabel(MultiLabelMetric::Ll) | Query::AutoMulti(MultiLabelMetric::Ll)
    );
    let spec = HeadSpec {
        input_dim: pool_x.ncols(),
        classes: data.classes.to_vec(),
        multi_label: multi,
        loss_prediction: uses_ll,
    };
    let config = HeadConfig {
        seed,
        ..protocol.head.clone()
    };
    let mut head = TrainableHead::new(spec, config, pool_x.view())?;
    // The initial labelled set: the same for every query of this pool and seed.
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x1A1A));
    let mut labelled_idx: Vec<usize> = order[..protocol.initial.min(pool.len())].to_vec();
    let mut labelled = vec![false; pool.len()];
    for &i in &labelled_idx {
        labelled[i] = true;
    }
    let strategy = query.strategy(&protocol.selection, n_classes);
    let mut previous: Option<Array2<f32>> = None;
    let mut records = Vec::with_capacity(protocol.rounds + 1);
    for round in 0..=protocol.rounds {
        let fit_started = Instant::now();
        let x = rows(pool_x.view(), &labelled_idx);
        let global: Vec<usize> = labelled_idx.iter().map(|&i| pool[i]).collect();
        let warm = protocol.warm_start && round > 0;
        let classes_seen = fit_labelled(&mut head, x.view(), data.train_y, &global, warm)?;
        let (score, macro_f1) = score_on(&head, data.test_x, data.test_y)?;
        let validation_score = match data.validation {
            Some((vx, vy)) => Some(score_on(&head, vx, vy)?.0),
            None => None,
        };
        let fit_seconds = fit_started.elapsed().as_secs_f64();
        let mut record = RoundRecord {
            pool: pool_kind.name().to_string(),
            query: query.to_string(),
            seed,
            round,
            labelled: labelled_idx.len(),
            score,
            macro_f1,
            validation_score,
            stage: None,
            pool_size: pool.len(),
            classes_seen,
            fit_seconds,
            query_seconds: 0.0,
        };
        if round == protocol.rounds || labelled_idx.len() == pool.len() {
            records.push(record);
            break;
        }
        let query_started = Instant::now();
        let round_seed = seed.wrapping_mul(1_000_003).wrapping_add(round as u64);
        let low_budget_now = matches!(&strategy, Strategy::Auto(a)
            if a.stage_for(labelled_idx.len()) == Stage::LowBudget);
        let passes = if query.needs_mc() && !low_budget_now {
            protocol.passes
        } else {
            0
        };
        let out = head.predict_mc(pool_x.view(), passes, round_seed)?;
        let rq = round_query(query, strategy, &out, previous.as_ref(), labelled_idx.len())?;
        // Known classes for class-balanced stages: the label of a labelled tile, the
        // head's prediction elsewhere (never the pool's hidden labels).
        let known = match data.train_y {
            Labels::Single(y) => Some(known_classes(&out.deterministic, &labelled, |i| y[pool[i]])),
            Labels::Multi(_) => None,
        };
        let mut input =
            SelectionInput::new(pool_x.view(), rq.uncertainty.view()).with_labelled(&labelled);
        if let Some(k) = &known {
            input = input.with_classes(k);
        }
        let picks = select(&rq.strategy, &input, protocol.budget, round_seed)?;
        previous = Some(out.deterministic);
        for p in picks {
            if !labelled[p.index] {
                labelled[p.index] = true;
                labelled_idx.push(p.index);
            }
        }
        record.stage = rq.stage.map(|s| s.name().to_string());
        record.query_seconds = query_started.elapsed().as_secs_f64();
        records.push(record);
    }
    Ok(records)
}
