//! Uncertainty metrics over MC-dropout probabilities.
//!
//! Every function takes `probs`, an `[T, N, C]` array (`T` MC-dropout passes, `N` tiles,
//! `C` classes) whose rows are softmax probability vectors, and returns one `f32` per tile
//! where **higher means more uncertain**, so any metric can rank tiles the same way.
//! Sums and logarithms are computed in `f64`; entropies are in nats with `0 · ln 0 = 0`.
//!
//! MC dropout (Gal & Ghahramani 2016, *Dropout as a Bayesian Approximation*) keeps dropout
//! active at inference and treats the `T` passes as samples from an approximate posterior.
//!
//! | metric | function | formula |
//! |---|---|---|
//! | [`Metric::Entropy`] | [`predictive_entropy`] | `H[mean_t p_t]` |
//! | [`Metric::Bald`] | [`bald`] | `H[mean_t p_t] − mean_t H[p_t]` |
//! | [`Metric::Margin`] | [`margin`] | `1 − (p(1) − p(2))` of the mean |
//! | [`Metric::LeastConfidence`] | [`least_confidence`] | `1 − max_c` of the mean (MCFPS) |
//! | [`Metric::VariationRatio`] | [`variation_ratio`] | `1 − f_mode / T` |
//!
//! Input is validated before use: `T >= 1`, `C >= 2`, every value finite and in `[0, 1]`
//! and every vector summing to 1 (within [`PROBABILITY_TOLERANCE`]); errors
//! ([`UncertaintyError`]) name the first offending tile. `N == 0` yields empty outputs.
//! [`compute_all`] validates once and returns every metric.
//!
//! ## Multi-label
//!
//! Multi-label models (one independent sigmoid per class, trained with binary
//! cross-entropy) get the uncertainties of Möllenbrok, Sumbul & Demir 2023, *Deep Active
//! Learning for Multi-Label Classification of Remote Sensing Images* (IEEE GRSL),
//! Sec. II-A, named by [`MultiLabelMetric`]:
//!
//! | metric | function | formula |
//! |---|---|---|
//! | [`MultiLabelMetric::Ll`] | [`predicted_loss`] | loss-prediction output `l̂` (Eq. 4) |
//! | [`MultiLabelMetric::Tpd`] | [`tpd`] | `‖F^τ(x) − F^{τ−1}(x)‖₂` (Eq. 5) |
//! | [`MultiLabelMetric::Mge`] | [`mge`] | `‖p − ŷ‖₂ · ‖h‖₂`, the last layer's BCE gradient norm (Eqs. 6–7) |
//!
//! They take `[N, C]` outputs (average MC-dropout passes with [`mean_sigmoid_probs`]) and
//! are meant for [`Strategy::Clustering`](crate::sampling::Strategy::Clustering).
//!
//! ## Distance to the training data
//!
//! [`TrainingDistance`] is not a metric of the head's probabilities but of the embedding:
//! how far each tile is from the data the model learnt from (diagonal Mahalanobis, Lee et
//! al. 2018; nearest labelled tile, Sun et al. 2022), so that out-of-distribution tiles
//! are visible as such.

mod bald;
mod entropy;
mod error;
mod least_confidence;
mod margin;
mod mean;
mod metric;
mod multilabel;
mod multilabel_metric;
mod multilabel_uncertainties;
mod predicted_class;
mod training_distance;
mod uncertainties;
mod validate;
mod variation_ratio;

pub use crate::uncertainty::bald::bald;
pub use crate::uncertainty::entropy::{expected_entropy, predictive_entropy};
pub use crate::uncertainty::error::{PROBABILITY_TOLERANCE, UncertaintyError};
pub use crate::uncertainty::least_confidence::least_confidence;
pub use crate::uncertainty::margin::margin;
pub use crate::uncertainty::mean::mean_probs;
pub use crate::uncertainty::metric::Metric;
pub use crate::uncertainty::multilabel::{mean_sigmoid_probs, mge, predicted_loss, tpd};
pub use crate::uncertainty::multilabel_metric::MultiLabelMetric;
pub use crate::uncertainty::multilabel_uncertainties::compute_all_multilabel;
pub use crate::uncertainty::predicted_class::predicted_class;
pub use crate::uncertainty::training_distance::{
    DistanceQuantiles, FAR_DISTANCE, FAR_SHARE_WARNING, FeatureStats, METADATA_MEAN, METADATA_STD,
    ReferenceKind, TrainingDistance, mahalanobis_diag, nearest_labelled, nearest_labelled_serial,
    reference_from_metadata, scene_stats,
};
pub use crate::uncertainty::uncertainties::{Uncertainties, compute_all};
pub use crate::uncertainty::variation_ratio::variation_ratio;
