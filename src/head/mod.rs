//! The trainable classifier head: an MLP with dropout trained on cached embeddings when
//! analysts' labels arrive, with MC-dropout inference and an optional loss-prediction
//! branch.
//!
//! Training runs on [candle](https://github.com/huggingface/candle) (autograd, AdamW,
//! pure Rust on the CPU, CUDA behind a feature): the head is small and retrains in
//! about a second on a few hundred labels, so a full deep-learning runtime is not
//! needed, and hand-written backpropagation would be code to get wrong. Inference, which
//! runs over every tile of a scene `T` times, uses the trained weights directly through
//! `ndarray`: the first layer runs once and only the dropout mask and last layer are
//! repeated per pass (see [`TrainableHead::predict_mc`]).
//!
//! | piece | paper |
//! |---|---|
//! | MC dropout at inference | Gal & Ghahramani 2016, as used by MCFPS (seed 000, Sec. III-B) |
//! | softmax cross-entropy (single-label) / BCE (multi-label, Eq. 1) | Möllenbrok et al. 2023 (seed 004) |
//! | loss-prediction branch, margin ranking loss (Eqs. 2–3, ξ = 1) | Möllenbrok et al. 2023 after Yoo & Kweon 2019 |
//! | warm- vs cold-start per round (Sec. III-B, Fig. 3) | Möllenbrok et al. 2023 |
//!
//! Everything is deterministic given [`HeadConfig::seed`]: initial weights, minibatch
//! order, dropout masks and MC masks all come from ChaCha8 streams.

mod checkpoint;
mod config;
mod error;
mod infer;
mod train;

pub use config::{HeadConfig, HeadSpec, Targets};
pub use error::HeadError;
pub use infer::McOutput;
pub use train::{TrainReport, TrainableHead};

#[cfg(test)]
mod tests;
