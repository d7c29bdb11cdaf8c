//! Shape and hyper-parameters of the trainable head, and the labels it trains on.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::HeadError;

/// What the head maps: `input_dim`-wide embeddings to `classes` outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Embedding width (the encoder's output).
    pub input_dim: usize,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Multi-label: one sigmoid per class and BCE; otherwise softmax and cross-entropy.
    pub multi_label: bool,
    /// Adds the loss-prediction branch of LL (Möllenbrok et al. 2023, Eqs. 2–4).
    pub loss_prediction: bool,
}

/// Training hyper-parameters. The defaults were chosen on EuroSAT-RGB embeddings (see
/// the README's active-learning results) and keep one training under about a second on
/// two CPU cores for a few hundred labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadConfig {
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Dropout probability on the hidden layer, in training and in MC passes.
    pub dropout: f32,
    /// Optimiser steps per training (minibatches drawn epoch by epoch without
    /// replacement); with [`epochs`](Self::epochs) set, the most steps a training takes.
    pub steps: usize,
    /// When set, a training on `n` samples takes `⌈epochs · n / batch_size⌉` steps,
    /// clamped to [`min_steps`](Self::min_steps)`..=`[`steps`](Self::steps): a schedule
    /// that grows with the labels instead of a fixed count (see [`Self::steps_for`]).
    pub epochs: Option<f64>,
    /// The fewest steps a training takes when [`epochs`](Self::epochs) is set.
    pub min_steps: usize,
    /// Minibatch size (capped at the number of samples).
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Width of the loss-prediction branch's hidden layer.
    pub loss_hidden: usize,
    /// Weight λ of the loss-prediction loss in the joint objective (Eq. 3).
    pub loss_weight: f64,
    /// Margin ξ of the ranking loss (Eq. 2; 1 in the paper).
    pub loss_margin: f64,
    /// Fraction of the steps after which the loss-prediction branch stops sending
    /// gradients into the classifier (60/100 epochs in the paper, after Yoo & Kweon).
    pub loss_detach_after: f64,
    /// Seed of every random stream (initialisation, minibatches, dropout).
    pub seed: u64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            hidden: 256,
            dropout: 0.3,
            steps: 600,
            epochs: None,
            min_steps: 200,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            loss_hidden: 32,
            loss_weight: 1.0,
            loss_margin: 1.0,
            loss_detach_after: 0.6,
            seed: 0,
        }
    }
}

impl HeadConfig {
    /// Optimiser steps of a training on `samples` samples: [`steps`](Self::steps), or
    /// with [`epochs`](Self::epochs) set `⌈epochs · samples / batch⌉` clamped to
    /// `min_steps..=steps` (`batch` is the minibatch size capped at `samples`).
    pub fn steps_for(&self, samples: usize) -> usize {
        let Some(epochs) = self.epochs else {
            return self.steps;
        };
        let batch = self.batch_size.min(samples).max(1) as f64;
        let wanted = (epochs * samples as f64 / batch).ceil();
        // `as` saturates; the clamp keeps it in the validated range.
        (wanted as usize).clamp(self.min_steps.min(self.steps), self.steps)
    }

    /// Checks every value's range.
    ///
    /// # Errors
    ///
    /// [`HeadError::InvalidConfig`] naming the first bad value.
    pub fn validate(&self) -> Result<(), HeadError> {
        let bad = |m: String| Err(HeadError::InvalidConfig(m));
        if self.hidden == 0 || self.loss_hidden == 0 {
            return bad("hidden widths must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if self.steps == 0 || self.batch_size == 0 {
            return bad("steps and batch_size must be at least 1".into());
        }
        if let Some(e) = self.epochs {
            if !(e > 0.0 && e.is_finite()) {
                return bad(format!("epochs {e} must be > 0"));
            }
            if self.min_steps == 0 || self.min_steps > self.steps {
                return bad(format!(
                    "min_steps {} must be in 1..={} (steps)",
                    self.min_steps, self.steps
                ));
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!("learning rate {} must be > 0", self.learning_rate));
        }
        if !(self.weight_decay >= 0.0 && self.loss_weight >= 0.0 && self.loss_margin >= 0.0) {
            return bad("weight decay, loss weight and margin must be >= 0".into());
        }
        if !(0.0..=1.0).contains(&self.loss_detach_after) {
            return bad(format!(
                "loss_detach_after {} must be in [0, 1]",
                self.loss_detach_after
            ));
        }
        Ok(())
    }
}

/// Labels of the training samples, one per embedding row.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// Single-label: the class index of each sample.
    Single(&'a [usize]),
    /// Multi-label: `[N, C]` with 1 where the class is present, 0 where it is not.
    Multi(ArrayView2<'a, f32>),
}

impl Targets<'_> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Single(v) => v.len(),
            Targets::Multi(a) => a.nrows(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the labels against the head's `spec`.
    pub(crate) fn check(&self, spec: &HeadSpec) -> Result<(), HeadError> {
        let classes = spec.classes.len();
        match (self, spec.multi_label) {
            (Targets::Single(v), false) => {
                if let Some((i, c)) = v.iter().enumerate().find(|(_, c)| **c >= classes) {
                    return Err(HeadError::InvalidLabels(format!(
                        "sample {i} has class index {c} but the head has {classes} classes"
                    )));
                }
                Ok(())
            }
            (Targets::Multi(a), true) => {
                if a.ncols() != classes {
                    return Err(HeadError::InvalidLabels(format!(
                        "multi-label targets have {} columns but the head has {classes} classes",
                        a.ncols()
                    )));
                }
                if let Some(((r, c), v)) = a.indexed_iter().find(|(_, v)| **v != 0.0 && **v != 1.0)
                {
                    return Err(HeadError::InvalidLabels(format!(
                        "multi-label target [{r}, {c}] is {v}; use 0 or 1"
                    )));
                }
                Ok(())
            }
            (Targets::Single(_), true) => Err(HeadError::InvalidLabels(
                "the head is multi-label; give a 0/1 row per sample".into(),
            )),
            (Targets::Multi(_), false) => Err(HeadError::InvalidLabels(
                "the head is single-label; give one class index per sample".into(),
            )),
        }
    }
}
