//! Outputs: the heatmap COG (+ QGIS style), suggestions and tiles as GeoJSON,
//! tiles as CSV.

mod features;
mod heatmap;

pub use features::{
    COORD_DECIMALS, FOOTPRINT_POINTS_PER_EDGE, suggestions_collection, tiles_collection,
    write_collection, write_tiles_csv,
};
pub use heatmap::{HEATMAP_NODATA, heatmap_band_names, pseudocolor_qml, write_heatmap};

/// Errors from writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// File system error.
    #[error("cannot write {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// GDAL failed writing a raster.
    #[error("GDAL failed writing {path}: {message}")]
    Gdal {
        /// File path.
        path: String,
        /// GDAL's message.
        message: String,
    },
    /// Reprojection failed.
    #[error(transparent)]
    Crs(#[from] crate::crs::CrsError),
}
