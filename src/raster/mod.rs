//! GDAL raster access: opening scenes, matching bands, windowed tile reads.

mod bands;
mod block_cache;
mod confine;
mod read;
mod resample;
mod scene;
mod sensor;
mod stac;
mod stac_items;
mod stac_sensor;
mod stack;
mod stats;

pub use bands::{S2_L1C_BANDS, S2_L2A_BANDS, canonical_band_name, default_band_names};
pub use block_cache::{fit_block_cache, reader_need};
pub use confine::{
    ConfineError, Confinement, DENIED_DRIVERS, MAX_VRT_DEPTH, SourceRef, SourceRefusal, file_list,
    gdal_atoi, gdal_defences, is_virtual, open_allowed, resolve_source, vrt_sources,
};
pub use read::{ReadPlan, ReadReport, TileBatch, read_tiles};
pub use resample::{MemVrt, Resampled, resample_scene};
pub use scene::{BandInfo, BandMatch, Scene};
pub use sensor::{
    COMMON_NAMES, DetectedSensor, Radiometry, SENSOR_PRESETS, SensorPreset, common_name_to_s2,
    detect_sensor, l2a_without_baseline, model_scaling, sensor_names, sensor_preset,
};
pub use stac::{StacBand, StacStack, read_stac_item, stack_stac_item, stack_stac_item_with};
pub use stac_items::{
    ListedItem, SkippedFile, StacItems, StacItemsSource, item_label, list_stac_items,
    read_collection_item, stack_collection_item,
};
pub use stac_sensor::{STAC_PRESET, StacRadiometry, StacSensor, stac_radiometry};
pub use stack::{stack_pair, warp_files};
pub use stats::{BandStats, InputScaling, sample_input_stats, spread_sample};

/// Errors from opening or reading a raster.
#[derive(Debug, thiserror::Error)]
pub enum RasterError {
    /// No file at the path.
    #[error("no such file: {0}; check the path")]
    NotFound(String),
    /// GDAL cannot read it as a raster.
    #[error(
        "{path} is not a raster GDAL can read ({message}); give a GeoTIFF or another GDAL raster format"
    )]
    NotRaster {
        /// File path.
        path: String,
        /// GDAL's message.
        message: String,
    },
    /// No CRS.
    #[error(
        "{0} has no coordinate reference system, so tiles cannot be placed on the map; assign one, e.g. `gdal_edit.py -a_srs EPSG:32618 {0}`"
    )]
    NoCrs(String),
    /// No geotransform.
    #[error(
        "{0} has no geotransform (pixel-to-map mapping); georeference it, e.g. `gdal_edit.py -a_ullr ulx uly lrx lry {0}` or with ground control points and gdalwarp"
    )]
    NoGeoTransform(String),
    /// Rotated or sheared geotransform.
    #[error("{0} has a rotated geotransform; warp it north-up first: `gdalwarp {0} northup.tif`")]
    Rotated(String),
    /// The model needs bands the raster lacks.
    #[error(
        "{path} lacks the band(s) {missing:?} that the model needs; it has [{}]. Give the raster that holds them as a second raster (--pair FILE), stack them (gdalbuildvrt -separate), set band descriptions with GDAL, or map them with --bands",
        available.join(", ")
    )]
    MissingBands {
        /// File path.
        path: String,
        /// Band names the model needs and the raster lacks.
        missing: Vec<String>,
        /// What the raster has.
        available: Vec<String>,
    },
    /// The two rasters of a pair share no ground.
    #[error("{second} does not overlap {first}: {extents}; give two rasters of the same place")]
    NoOverlap {
        /// The first raster (its grid is used).
        first: String,
        /// The second raster.
        second: String,
        /// Both extents in the first raster's CRS, for the message.
        extents: String,
    },
    /// A multi-modal encoder got a raster that lacks one sensor's bands.
    #[error(
        "the encoder stacks {modalities}; {path} has none of the {missing} bands ({bands}). Give the {missing} raster as the second raster (--pair FILE), or a stack that holds both"
    )]
    MissingModality {
        /// The raster(s) given.
        path: String,
        /// The sensor whose bands are absent.
        missing: String,
        /// Its bands.
        bands: String,
        /// Every modality the encoder stacks, for the message.
        modalities: String,
    },
    /// A bad `--bands` override.
    #[error("{0}")]
    BandOverride(String),
    /// Every candidate tile was nodata.
    #[error(
        "{path}: all {tiles} candidate tiles are nodata (fewer than {min_valid_percent:.0}% valid pixels each); check the nodata value, the AOI, or lower --min-valid"
    )]
    AllNodata {
        /// File path.
        path: String,
        /// Number of candidate tiles.
        tiles: usize,
        /// Threshold in percent.
        min_valid_percent: f32,
    },
    /// The raster would make GDAL read outside the raster roots (daemon only).
    #[error(transparent)]
    Confined(#[from] ConfineError),
    /// A STAC item that cannot be stacked.
    #[error("{item}: {message}")]
    Stac {
        /// The item file.
        item: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A GDAL call failed.
    #[error("GDAL failed on {path}: {message}")]
    Gdal {
        /// File path.
        path: String,
        /// GDAL's message.
        message: String,
    },
}
