//! Outputs: the heatmap COG (+ QGIS style), suggestions and tiles as GeoJSON,
//! tiles as CSV, and survey exports (GeoPackage, GPX, CSV in visit order).

mod features;
mod heatmap;
mod mosaic;
mod survey;

pub use features::{
    COORD_DECIMALS, FOOTPRINT_POINTS_PER_EDGE, project_tiles, region_collection,
    suggestions_collection, tiles_collection, write_collection, write_tiles_csv,
    write_tiles_geojson,
};
pub use heatmap::{
    DISTANCE_BAND, HEATMAP_NODATA, heatmap_band_names, pseudocolor_qml, write_heatmap,
};
pub use mosaic::write_mosaic;
pub use survey::{
    SurveyPoint, path_length_m, survey_points, visit_order, write_features_geopackage,
    write_geopackage, write_gpx, write_survey_csv,
};

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
    /// Input to an export is not what it should be.
    #[error("cannot export: {0}")]
    Invalid(String),
}
