//! The predict stage: [`Embedded`](super::embed::Embedded) embeddings → class
//! probabilities, T MC passes × tiles × classes, from the ONNX head, a head saved by an
//! earlier round, or a head retrained here on the analysts' labels.

use ndarray::{Array1, Array2, Array3, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::head::{HeadConfig, HeadSpec, Targets, TrainableHead};
use crate::model::Head;
use crate::report::RetrainSummary;
use crate::tiling::{TileGrid, TileId};

use super::labels::tile_classes;
use super::request::{Retrain, ScoreRequest};

/// What the predict stage gives.
pub(super) struct Predicted {
    /// Probabilities, passes × tiles × classes.
    pub probs: Array3<f32>,
    /// The ONNX head's predicted loss per tile, when it has a loss output.
    pub predicted_loss: Option<ndarray::Array1<f32>>,
    /// What retraining did, when the head was retrained.
    pub retrained: Option<RetrainSummary>,
    /// Retrained: which scored tiles the head learnt from (the score stage's
    /// distance-to-training reference).
    pub training_rows: Option<Vec<bool>>,
}

/// Where the scored tiles lie, for mapping labels onto them.
pub(super) struct TilePlaces<'a> {
    /// The tile grid.
    pub grid: &'a TileGrid,
    /// Scored tiles, in the order of the embedding rows.
    pub tiles: &'a [TileId],
    /// The scene CRS.
    pub crs_wkt: &'a str,
}

/// A classification head as the predict stage runs it: the model pair's ONNX head or
/// a head NextTile trained (on the analysts' labels, now or in an earlier round),
/// behind one interface, so the stage has one path for T MC passes whichever it is.
pub(crate) trait PredictHead {
    /// The classes of the probability columns, in order.
    fn classes(&self) -> &[String];

    /// `passes` MC-dropout passes (at least one) over `[N, D]` embeddings:
    /// probabilities `[T, N, C]`, and the predicted loss per tile when the head has a
    /// loss output. `seed` fixes the masks where the head draws them itself.
    fn mc_passes(
        &mut self,
        embeddings: ArrayView2<'_, f32>,
        passes: usize,
        seed: u64,
    ) -> Result<(Array3<f32>, Option<Array1<f32>>)>;
}

impl PredictHead for Head {
    fn classes(&self) -> &[String] {
        &self.spec.class_names
    }

    /// onnxruntime draws the masks inside the graph: `seed` is not used.
    fn mc_passes(
        &mut self,
        embeddings: ArrayView2<'_, f32>,
        passes: usize,
        _seed: u64,
    ) -> Result<(Array3<f32>, Option<Array1<f32>>)> {
        Ok(self.predict_mc_with_loss(embeddings, passes)?)
    }
}

impl PredictHead for TrainableHead {
    fn classes(&self) -> &[String] {
        &self.spec().classes
    }

    fn mc_passes(
        &mut self,
        embeddings: ArrayView2<'_, f32>,
        passes: usize,
        seed: u64,
    ) -> Result<(Array3<f32>, Option<Array1<f32>>)> {
        let out = self.predict_mc(embeddings, passes.max(1), seed)?;
        Ok((out.probs, out.predicted_loss))
    }
}

/// The predict stage. In: the ONNX head (its classes), the embeddings (one row per
/// scored tile) and where those tiles lie. Out: [`Predicted`]: `req.mc_passes` passes
/// of the head the request asks for (retrained on `req.labelled` when `req.retrain` is
/// set, else the saved `req.trained_head`, else the ONNX head); warnings join
/// `warnings`.
pub(super) fn predict(
    req: &ScoreRequest,
    head: &mut Head,
    embeddings: &Array2<f32>,
    places: &TilePlaces<'_>,
    warnings: &mut Vec<String>,
) -> Result<Predicted> {
    if req.mc_passes > 1 && !head.has_mc_dropout() {
        warnings.push(format!(
            "head {} has no mc_dropout_input: its {} passes are identical unless its graph keeps dropout on",
            head.spec.name, req.mc_passes
        ));
    }
    let (mut trained, retrained, training_rows) = match (&req.retrain, &req.trained_head) {
        (Some(r), _) => {
            let labelled = req.labelled.as_ref().ok_or_else(|| {
                Error::Invalid(
                    "retraining needs labels: pass --labelled with features that have a `class` property".into(),
                )
            })?;
            let classes = tile_classes(
                labelled,
                places.grid,
                places.tiles,
                places.crs_wkt,
                &head.spec.class_names,
                warnings,
            )?;
            let (trained, summary) = retrain_head(
                r,
                embeddings.view(),
                &classes,
                &head.spec.class_names,
                req.seed,
            )?;
            let rows = classes.iter().map(Option::is_some).collect();
            (Some(trained), Some(summary), Some(rows))
        }
        (None, Some(path)) => {
            let trained = TrainableHead::load(path)?;
            if trained.spec().input_dim != embeddings.ncols() || trained.classes() != head.classes()
            {
                return Err(Error::Invalid(format!(
                    "{} was trained for other classes or another encoder than this run's",
                    path.display()
                )));
            }
            (Some(trained), None, None)
        }
        (None, None) => (None, None, None),
    };
    let chosen: &mut dyn PredictHead = match trained.as_mut() {
        Some(t) => t,
        None => head,
    };
    let (probs, predicted_loss) = chosen.mc_passes(embeddings.view(), req.mc_passes, req.seed)?;
    Ok(Predicted {
        probs,
        predicted_loss,
        retrained,
        training_rows,
    })
}

/// Trains (or continues) a head on the labelled tiles' embeddings and saves it if asked.
pub(super) fn retrain_head(
    r: &Retrain,
    embeddings: ArrayView2<'_, f32>,
    classes: &[Option<usize>],
    class_names: &[String],
    seed: u64,
) -> Result<(TrainableHead, RetrainSummary)> {
    let rows: Vec<usize> = (0..classes.len())
        .filter(|&i| classes[i].is_some())
        .collect();
    let ys: Vec<usize> = rows.iter().filter_map(|&i| classes[i]).collect();
    if rows.is_empty() {
        return Err(Error::Invalid(
            "no scored tile has a class label: give the --labelled features a `class` property naming one of the head's classes, inside the scene".into(),
        ));
    }
    let mut head = match &r.warm_from {
        Some(path) => {
            let h = TrainableHead::load(path)?;
            if h.spec().classes != class_names || h.spec().input_dim != embeddings.ncols() {
                return Err(Error::Invalid(format!(
                    "{} was trained for {} classes on {}-d embeddings, but this run has {} classes and {}-d embeddings; drop --warm-from to start a new head",
                    path.display(),
                    h.spec().classes.len(),
                    h.spec().input_dim,
                    class_names.len(),
                    embeddings.ncols()
                )));
            }
            h
        }
        None => TrainableHead::new(
            HeadSpec {
                input_dim: embeddings.ncols(),
                classes: class_names.to_vec(),
                multi_label: false,
                loss_prediction: false,
            },
            HeadConfig {
                seed,
                ..r.config.clone()
            },
            embeddings.view(),
        )?,
    };
    let x = embeddings.select(Axis(0), &rows);
    let report = head.fit(x.view(), Targets::Single(&ys), r.warm_from.is_some())?;
    let mut per_class: Vec<(String, usize)> = class_names
        .iter()
        .enumerate()
        .map(|(c, name)| (name.clone(), ys.iter().filter(|&&y| y == c).count()))
        .filter(|(_, n)| *n > 0)
        .collect();
    per_class.sort_by_key(|c| std::cmp::Reverse(c.1));
    let saved_to = match &r.save_to {
        Some(path) => {
            head.save(path)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    Ok((
        head,
        RetrainSummary {
            labelled_tiles: rows.len(),
            per_class,
            report,
            saved_to,
        },
    ))
}
