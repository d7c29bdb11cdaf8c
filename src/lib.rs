//! NextTile: decide which part of a satellite scene to label next.
//!
//! A scene (GeoTIFF or any GDAL raster) is cut into a [`tiling::TileGrid`];
//! each tile is read ([`raster`]), preprocessed by the encoder's contract
//! ([`model::ModelSpec`]) and embedded once by an ONNX encoder; a classifier
//! head runs T times with dropout on (MC dropout); [`uncertainty`] turns the
//! T × N × C probabilities into per-tile scores and [`sampling`] picks the
//! tiles to label next. [`engine::score`] runs all of it and
//! [`engine::write_outputs`] writes the heatmap COG and the ranked GeoJSON.

#![warn(missing_docs)]

pub mod aoi;
pub mod cli;
pub mod crs;
pub mod engine;
pub mod error;
pub mod eval;
pub mod head;
pub mod model;
pub mod output;
pub mod paths;
pub mod preprocess;
pub mod raster;
pub mod report;
pub mod sampling;
pub mod server;
pub mod simd;
pub mod store;
pub mod threads;
pub mod tiling;
pub mod uncertainty;

pub use error::{Error, ErrorKind, Result};
