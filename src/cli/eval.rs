//! `nexttile eval`: the label-savings benchmark on a labelled image folder.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::eval::{self, EvalProtocol, EvalRequest, MosaicOptions, PoolKind, Query, QueryParams};
use crate::head::HeadConfig;
use crate::model::SessionConfig;
use crate::sampling::{AutoParams, LowBudget, McfpsParams, ProbcoverParams, TypiclustParams};
use crate::store::EmbeddingCache;

/// Arguments of `nexttile eval`.
#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    /// Image folder with one sub-folder per class (e.g. the extracted eurosat-rgb/);
    /// its splits.csv (path,class,split) fixes the split when present.
    dataset: PathBuf,
    /// Output folder for rounds.csv, summary.csv, summary.json and curves.png.
    #[arg(long, short)]
    out: PathBuf,
    /// Encoder ONNX (default: the default pair's encoder, onnx/rcf_chroma/).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Query functions, comma-separated: random, typiclust, probcover, auto,
    /// auto+<metric>, entropy, bald, margin, least_confidence, variation_ratio, mcfps,
    /// mcfps+<metric>, coreset, <metric>+clustering; with --multi-label also ll, tpd,
    /// mge, auto+ll, auto+tpd, auto+mge (default: random, bald, margin, mcfps, coreset,
    /// typiclust, probcover, auto; --multi-label: random, ll, tpd, mge, typiclust,
    /// probcover, auto+mge).
    #[arg(long, value_delimiter = ',')]
    queries: Option<Vec<String>>,
    /// Carve a validation fold out of `train` (this share of each class, by a fixed hash
    /// of the image path) and score every round on it as well as on `test`; the pool is
    /// the rest of `train`. Make choices on the fold, report on `test`. The `val` split of
    /// splits.csv is never read either way.
    #[arg(long, num_args = 0..=1, default_missing_value = "0.2")]
    validation_fold: Option<f64>,
    /// auto: labels per class at which it switches from the low-budget stage to
    /// uncertainty + clustering (default: the encoder's `nexttile_auto_switch_per_class`
    /// metadata, else 20).
    #[arg(long)]
    switch_per_class: Option<usize>,
    /// auto: the low-budget stage, typiclust or probcover.
    #[arg(long, default_value = "typiclust")]
    low_budget: String,
    /// auto: candidate factor m of the uncertainty stage (1 = top-k).
    #[arg(long, default_value_t = AutoParams::DEFAULT_M)]
    auto_m: usize,
    /// auto: share the uncertainty stage's budget out over the classes, those with the
    /// fewest labels first, by the head's predictions (class-balanced; true or false).
    #[arg(long, default_value_t = AutoParams::DEFAULT_BALANCE, action = clap::ArgAction::Set)]
    auto_balance: bool,
    /// probcover: ball radius δ (default: from the data by the purity rule).
    #[arg(long)]
    probcover_delta: Option<f32>,
    /// probcover: purity α of the δ rule.
    #[arg(long, default_value_t = ProbcoverParams::default().purity)]
    probcover_purity: f32,
    /// typiclust: neighbours K of the typicality.
    #[arg(long, default_value_t = TypiclustParams::default().neighbours)]
    typiclust_neighbours: usize,
    /// typiclust: at most this many sampled tiles per cluster (0, the default: only the
    /// 10,000 cap).
    #[arg(long, default_value_t = TypiclustParams::default().points_per_cluster)]
    typiclust_points_per_cluster: usize,
    /// Pools, comma-separated: balanced, unbalanced (default: both; --multi-label:
    /// balanced only).
    #[arg(long, value_delimiter = ',')]
    pools: Option<Vec<String>>,
    /// Number of seeds (trials per query and pool): 0, 1, ..., N−1.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Labelled samples before the first round.
    #[arg(long, default_value_t = 64)]
    initial: usize,
    /// Samples queried per round (b; MCFPS paper: 64).
    #[arg(long, short, default_value_t = 64)]
    budget: usize,
    /// Query rounds (MCFPS paper: 8).
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// MC-dropout passes T.
    #[arg(long, short = 't', default_value_t = 20)]
    passes: usize,
    /// Imbalance ratio of the unbalanced pool (commonest : rarest class).
    #[arg(long, default_value_t = eval::pool::DEFAULT_IMBALANCE_RATIO)]
    imbalance_ratio: f64,
    /// Continue training from the previous round's weights (default: cold start).
    #[arg(long)]
    warm_start: bool,
    /// Clustering queries: candidate factor m (seed 004 uses 3-4).
    #[arg(long, default_value_t = 4)]
    cluster_factor: usize,
    /// MCFPS: neighbourhood size k.
    #[arg(long, default_value_t = McfpsParams::default().neighbours)]
    neighbours: usize,
    /// Head optimiser steps per round (with --epochs: the most).
    #[arg(long, default_value_t = HeadConfig::default().steps)]
    steps: usize,
    /// Steps grow with the labels: ⌈E · labels / batch⌉, clamped to --min-steps..=--steps.
    #[arg(long)]
    epochs: Option<f64>,
    /// With --epochs: the fewest steps a round trains.
    #[arg(long, default_value_t = HeadConfig::default().min_steps)]
    min_steps: usize,
    /// Head dropout probability.
    #[arg(long, default_value_t = HeadConfig::default().dropout)]
    dropout: f32,
    /// Derive the multi-label benchmark: 2×2 mosaics of the folder's images, labelled
    /// with the classes they contain.
    #[arg(long)]
    multi_label: bool,
    /// --multi-label: mosaics in the pool (from train images).
    #[arg(long, default_value_t = 4000)]
    mosaic_pool: usize,
    /// --multi-label: mosaics in the test set (from test images).
    #[arg(long, default_value_t = 1000)]
    mosaic_test: usize,
    /// --multi-label: at most this many distinct classes per mosaic.
    #[arg(long, default_value_t = 3)]
    mosaic_max_classes: usize,
    /// Multiplier for raw pixel values (default: 1/255 for 8-bit images, else the
    /// encoder's input_scale).
    #[arg(long)]
    pixel_scale: Option<f32>,
    /// Report the labels needed to reach this score.
    #[arg(long, default_value_t = 0.9)]
    target: f64,
    /// Trials run in parallel (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Embedding cache folder (default: $NEXTTILE_HOME/cache/embeddings).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Neither read nor write the embedding cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Seed of the mosaics (and of the split when there is no splits.csv).
    #[arg(long, default_value_t = 0)]
    data_seed: u64,
    /// Re-run only --queries and keep every other query's rows from this earlier output
    /// folder (refused unless it used the same protocol, data and encoder).
    #[arg(long)]
    merge_from: Option<PathBuf>,
    /// Print the JSON summary on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// The queries compared when `--queries` is not given (single-label data).
const DEFAULT_QUERIES: [&str; 8] = [
    "random",
    "bald",
    "margin",
    "mcfps",
    "coreset",
    "typiclust",
    "probcover",
    "auto",
];

/// The queries compared on `--multi-label` mosaics when `--queries` is not given.
const DEFAULT_MULTI_LABEL_QUERIES: [&str; 7] = [
    "random",
    "ll",
    "tpd",
    "mge",
    "typiclust",
    "probcover",
    "auto+mge",
];

/// The queries' parameters from the flags; `auto`'s switch from `--switch-per-class`,
/// else the encoder's `nexttile_auto_switch_per_class`, else the default.
fn selection_params(a: &EvalArgs, encoder: &std::path::Path) -> Result<QueryParams> {
    let typiclust = TypiclustParams {
        neighbours: a.typiclust_neighbours,
        points_per_cluster: a.typiclust_points_per_cluster,
        ..TypiclustParams::default()
    };
    let probcover = ProbcoverParams {
        delta: a.probcover_delta,
        purity: a.probcover_purity,
        ..ProbcoverParams::default()
    };
    let low_budget = match a.low_budget.trim().to_ascii_lowercase().as_str() {
        "typiclust" => LowBudget::Typiclust(typiclust),
        "probcover" => LowBudget::Probcover(probcover),
        other => {
            return Err(Error::Invalid(format!(
                "--low-budget {other:?}: use typiclust or probcover"
            )));
        }
    };
    let switch_per_class = match a.switch_per_class {
        Some(n) => n,
        None => crate::model::inspect(encoder)?
            .auto_switch_per_class
            .unwrap_or(AutoParams::DEFAULT_SWITCH_PER_CLASS),
    };
    Ok(QueryParams {
        clustering_m: a.cluster_factor,
        mcfps: McfpsParams {
            anchors: None,
            neighbours: a.neighbours,
        },
        typiclust,
        probcover,
        auto: AutoParams {
            switch_per_class: Some(switch_per_class),
            low_budget,
            m: a.auto_m,
            balance: a.auto_balance,
            ..AutoParams::default()
        },
    })
}

pub(crate) fn run(a: EvalArgs) -> Result<()> {
    let default_queries = if a.multi_label {
        &DEFAULT_MULTI_LABEL_QUERIES[..]
    } else {
        &DEFAULT_QUERIES[..]
    };
    let names: Vec<String> = a
        .queries
        .clone()
        .unwrap_or_else(|| default_queries.iter().map(|q| q.to_string()).collect());
    let queries = names
        .iter()
        .map(|q| q.parse::<Query>())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let encoder = a
        .encoder
        .clone()
        .unwrap_or_else(|| super::default_model("encoder.onnx"));
    let selection = selection_params(&a, &encoder)?;
    let pools = match &a.pools {
        Some(names) => names
            .iter()
            .map(|p| p.parse::<PoolKind>())
            .collect::<std::result::Result<Vec<_>, _>>()?,
        None if a.multi_label => vec![PoolKind::Balanced],
        None => vec![PoolKind::Balanced, PoolKind::Unbalanced],
    };
    if a.multi_label && pools.contains(&PoolKind::Unbalanced) {
        return Err(Error::Invalid(
            "--multi-label mosaics form a balanced pool only; drop unbalanced from --pools".into(),
        ));
    }
    if a.seeds == 0 {
        return Err(Error::Invalid("--seeds must be at least 1".into()));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let protocol = EvalProtocol {
        initial: a.initial,
        budget: a.budget,
        rounds: a.rounds,
        seeds: (0..a.seeds).collect(),
        passes: a.passes,
        queries,
        pools,
        imbalance_ratio: a.imbalance_ratio,
        head: HeadConfig {
            steps: a.steps,
            epochs: a.epochs,
            min_steps: a.min_steps,
            dropout: a.dropout,
            ..HeadConfig::default()
        },
        warm_start: a.warm_start,
        selection,
        threads: a.jobs.unwrap_or(cores),
    };
    protocol.head.validate().map_err(eval::EvalError::from)?;
    let req = EvalRequest {
        dataset: a.dataset.clone(),
        encoder,
        session: SessionConfig::default(),
        out: a.out.clone(),
        protocol,
        mosaics: a.multi_label.then_some(MosaicOptions {
            pool: a.mosaic_pool,
            test: a.mosaic_test,
            max_classes: a.mosaic_max_classes,
        }),
        pixel_scale: a.pixel_scale,
        cache: if a.no_cache {
            None
        } else {
            Some(EmbeddingCache::new(
                a.cache_dir
                    .clone()
                    .unwrap_or_else(EmbeddingCache::default_dir),
            ))
        },
        target: a.target,
        data_seed: a.data_seed,
        validation_fold: a.validation_fold,
        merge_from: a.merge_from.clone(),
    };
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let outcome = eval::evaluate(&req, &|stage, done, total| {
        bar.set_message(stage.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "embeddings: {} ({:.1} s); trials: {:.1} s",
        if outcome.cache_hit {
            "cached"
        } else {
            "computed"
        },
        outcome.embed_seconds,
        outcome.trial_seconds
    );
    for r in &outcome.reached {
        let last = outcome
            .summary
            .iter()
            .rfind(|s| s.pool == r.pool && s.query == r.query);
        let reach = match r.labels {
            Some(n) => format!("reaches {:.2} at {n:.0} labels", a.target),
            None => format!("does not reach {:.2}", a.target),
        };
        if let Some(s) = last {
            println!(
                "{:>10} {:>20}: {:.3} ± {:.3} at {:.0} labels; {reach}",
                r.pool, r.query, s.mean, s.std, s.labelled
            );
        }
    }
    println!("wrote {}", outcome.paths.summary_json.display());
    println!("      {}", outcome.paths.plot_png.display());
    Ok(())
}
