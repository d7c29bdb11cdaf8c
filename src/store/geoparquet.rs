//! The embedding store: one GeoParquet file per scene that GeoPandas, DuckDB, QGIS (GDAL's
//! Parquet driver) and pyarrow read as they are. GeoParquet 1.1,
//! <https://geoparquet.org/releases/v1.1.0/> (schema:
//! <https://github.com/opengeospatial/geoparquet/blob/v1.1.0/format-specs/geoparquet.md>).
//!
//! Columns, one row per scored tile, in tile (row-major) order:
//!
//! | column | type | what |
//! | --- | --- | --- |
//! | `tile_id` | string | `r{row}_c{col}` of the scene's tile grid |
//! | `row`, `col` | uint32 | the same, as numbers |
//! | `scene_id` | string | the file's stem: the scene's file stem and a hash of its path |
//! | `scene_path` | string | the scene's canonical path |
//! | `geometry` | binary, WKB | the tile footprint, a lon/lat polygon (OGC:CRS84) |
//! | `centre_lon`, `centre_lat` | float64 | the tile centre |
//! | `valid_fraction` | float32 | share of valid (not nodata) pixels |
//! | `embedding` | `fixed_size_list<halffloat>[D]` | the encoder's embedding, f16 |
//!
//! File key-value metadata: `geo` (GeoParquet: version 1.1.0, primary column `geometry`,
//! WKB, `Polygon`, bbox; no `crs`, which means OGC:CRS84, lon/lat) and NextTile's
//! `nexttile:*` keys ([`StoreMeta`]). Files are written to `NAME.parquet.tmp` and renamed,
//! so a file named `*.parquet` is always complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Float16Builder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, FixedSizeListArray, Float16Array, Float32Array, Float64Array,
    RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use geo::{Coord, LineString, Polygon};
use half::f16;
use ndarray::Array2;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::tiling::TileId;

/// The extension of a complete store file.
pub const STORE_EXTENSION: &str = "parquet";

/// The suffix of a file being written (never read as part of the store).
pub const TMP_SUFFIX: &str = ".parquet.tmp";

/// The file metadata key of NextTile's [`StoreMeta`] (JSON).
pub const META_KEY: &str = "nexttile:scene";

/// The file metadata key of the encoder's SHA-256 (also inside [`META_KEY`]).
pub const ENCODER_KEY: &str = "nexttile:encoder_sha256";

/// The file metadata key of the tile grid (JSON).
pub const GRID_KEY: &str = "nexttile:grid";

/// Rows per record batch and row group written.
const BATCH_ROWS: usize = 4096;

/// Errors of the embedding store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store folder or a file cannot be read.
    #[error("cannot read the embedding store {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write the embedding store file {path}: {message}")]
    Write {
        /// Path.
        path: String,
        /// What failed.
        message: String,
    },
    /// A file that is not a NextTile store file, or is damaged.
    #[error(
        "{path} is not a readable NextTile embedding store file ({message}); delete it and run `nexttile embed` for its scene again"
    )]
    Damaged {
        /// Path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// What a store file says about its scene and how its embeddings were made (the
/// `nexttile:scene` metadata key, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// The scene id (the file's stem).
    pub scene_id: String,
    /// The scene's canonical path.
    pub scene_path: String,
    /// The scene file's size, bytes.
    pub scene_size: u64,
    /// The scene file's modification time, nanoseconds since the epoch.
    pub scene_mtime_ns: u128,
    /// SHA-256 of the encoder file.
    pub encoder_sha256: String,
    /// The encoder file as given.
    pub encoder_path: String,
    /// Embedding dimensions.
    pub dim: usize,
    /// Tiles (rows) in the file.
    pub tiles: usize,
    /// 1-based raster bands in the encoder's order.
    pub bands: Vec<usize>,
    /// The scene's CRS (WKT); the grid is in it.
    pub crs_wkt: String,
    /// The NextTile version that wrote the file.
    pub nexttile_version: String,
}

/// The rows of one scene's file, in tile order.
#[derive(Debug, Clone)]
pub struct StoreRows {
    /// Tiles.
    pub tiles: Vec<TileId>,
    /// Footprints, lon/lat polygons.
    pub footprints: Vec<Polygon<f64>>,
    /// Tile centres, lon/lat.
    pub centres: Vec<(f64, f64)>,
    /// Valid fraction per tile.
    pub valid_fraction: Vec<f32>,
    /// `[tiles, D]` embeddings.
    pub embeddings: Array2<f32>,
}

/// Writes one scene's rows to `path` (a `.parquet` name) through `path` + `.tmp` and a
/// rename. `grid_json` is the tile grid as JSON (the `nexttile:grid` key).
///
/// # Errors
///
/// [`StoreError::Write`] when the file cannot be written or the rows disagree in length.
pub fn write_scene_file(
    path: &Path,
    meta: &StoreMeta,
    grid_json: &str,
    rows: &StoreRows,
) -> Result<(), StoreError> {
    let n = rows.tiles.len();
    let write_err = |message: String| StoreError::Write {
        path: path.display().to_string(),
        message,
    };
    if rows.footprints.len() != n
        || rows.centres.len() != n
        || rows.valid_fraction.len() != n
        || rows.embeddings.nrows() != n
    {
        return Err(write_err("rows of different lengths (a bug)".into()));
    }
    let tmp = tmp_path(path);
    let result = write_file(&tmp, meta, grid_json, rows)
        .map_err(write_err)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| write_err(e.to_string())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name `path` is written under.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The arrow schema of a store file with `dim`-d embeddings.
fn schema(dim: usize) -> Result<Schema, String> {
    let dim = i32::try_from(dim).map_err(|_| format!("{dim}-d embeddings are too wide"))?;
    Ok(Schema::new(vec![
        Field::new("tile_id", DataType::Utf8, false),
        Field::new("row", DataType::UInt32, false),
        Field::new("col", DataType::UInt32, false),
        Field::new("scene_id", DataType::Utf8, false),
        Field::new("scene_path", DataType::Utf8, false),
        Field::new("geometry", DataType::Binary, false),
        Field::new("centre_lon", DataType::Float64, false),
        Field::new("centre_lat", DataType::Float64, false),
        Field::new("valid_fraction", DataType::Float32, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float16, false)), dim),
            false,
        ),
    ]))
}

/// The GeoParquet `geo` metadata of footprints within `bbox`.
fn geo_metadata(bbox: [f64; 4]) -> String {
    serde_json::json!({
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "bbox": bbox,
            }
        }
    })
    .to_string()
}

/// The lon/lat bounding box of the footprints (`[0; 4]` for none).
fn bbox(footprints: &[Polygon<f64>]) -> [f64; 4] {
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for c in footprints.iter().flat_map(|p| p.exterior().coords()) {
        b = [b[0].min(c.x), b[1].min(c.y), b[2].max(c.x), b[3].max(c.y)];
    }
    if b[0].is_finite() { b } else { [0.0; 4] }
}

fn write_file(
    tmp: &Path,
    meta: &StoreMeta,
    grid_json: &str,
    rows: &StoreRows,
) -> Result<(), String> {
    let dim = rows.embeddings.ncols();
    let schema = Arc::new(schema(dim)?);
    let meta_json = serde_json::to_string(meta).map_err(|e| e.to_string())?;
    // Twice: in the file's key-value metadata (what GDAL and DuckDB read) and on the
    // Arrow schema, which the writer keeps in `ARROW:schema` (pyarrow, and so GeoPandas,
    // take the schema's metadata from there alone).
    let kv = std::collections::HashMap::from([
        ("geo".to_string(), geo_metadata(bbox(&rows.footprints))),
        (ENCODER_KEY.to_string(), meta.encoder_sha256.clone()),
        (GRID_KEY.to_string(), grid_json.to_string()),
        (META_KEY.to_string(), meta_json),
    ]);
    let file_kv = kv
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let schema = Arc::new(schema.as_ref().clone().with_metadata(kv));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(BATCH_ROWS))
        .set_key_value_metadata(Some(file_kv))
        .build();
    let file = File::create(tmp).map_err(|e| e.to_string())?;
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| e.to_string())?;
    let n = rows.tiles.len();
    let mut start = 0;
    while start < n {
        let end = (start + BATCH_ROWS).min(n);
        let batch = record_batch(&schema, meta, rows, start..end)?;
        writer.write(&batch).map_err(|e| e.to_string())?;
        start = end;
    }
    let file = writer.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}

/// Rows `range` of `rows` as a record batch of `schema`.
fn record_batch(
    schema: &Arc<Schema>,
    meta: &StoreMeta,
    rows: &StoreRows,
    range: std::ops::Range<usize>,
) -> Result<RecordBatch, String> {
    let dim = rows.embeddings.ncols();
    let len = range.len();
    let mut ids = StringBuilder::new();
    let mut geoms = BinaryBuilder::new();
    let mut values = Float16Builder::with_capacity(len * dim);
    for i in range.clone() {
        ids.append_value(rows.tiles[i].to_string());
        geoms.append_value(polygon_wkb(&rows.footprints[i]));
        for v in rows.embeddings.row(i) {
            values.append_value(f16::from_f32(*v));
        }
    }
    let item = Arc::new(Field::new("item", DataType::Float16, false));
    let embedding = FixedSizeListArray::try_new(item, dim as i32, Arc::new(values.finish()), None)
        .map_err(|e| e.to_string())?;
    let tiles = &rows.tiles[range.clone()];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        Arc::new(UInt32Array::from_iter_values(tiles.iter().map(|t| t.row))),
        Arc::new(UInt32Array::from_iter_values(tiles.iter().map(|t| t.col))),
        Arc::new(StringArray::from(vec![meta.scene_id.as_str(); len])),
        Arc::new(StringArray::from(vec![meta.scene_path.as_str(); len])),
        Arc::new(geoms.finish()),
        Arc::new(Float64Array::from_iter_values(
            rows.centres[range.clone()].iter().map(|c| c.0),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.centres[range.clone()].iter().map(|c| c.1),
        )),
        Arc::new(Float32Array::from(rows.valid_fraction[range].to_vec())),
        Arc::new(embedding),
    ];
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// A polygon as little-endian ISO WKB (type 3: rings of x, y doubles).
pub fn polygon_wkb(p: &Polygon<f64>) -> Vec<u8> {
    let rings: Vec<&LineString<f64>> = std::iter::once(p.exterior()).chain(p.interiors()).collect();
    let points: usize = rings.iter().map(|r| r.0.len()).sum();
    let mut out = Vec::with_capacity(9 + 4 * rings.len() + 16 * points);
    out.push(1u8); // little-endian
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(rings.len() as u32).to_le_bytes());
    for r in rings {
        out.extend_from_slice(&(r.0.len() as u32).to_le_bytes());
        for c in &r.0 {
            out.extend_from_slice(&c.x.to_le_bytes());
            out.extend_from_slice(&c.y.to_le_bytes());
        }
    }
    out
}

/// Reads a WKB polygon (either byte order, 2-D), as [`polygon_wkb`] writes it.
///
/// # Errors
///
/// A message when the bytes are not a 2-D WKB polygon.
pub fn wkb_polygon(b: &[u8]) -> Result<Polygon<f64>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = b
            .get(at..at + n)
            .ok_or_else(|| format!("WKB ends at byte {at}"))?;
        at += n;
        Ok(s)
    };
    let little = match take(1)?[0] {
        1 => true,
        0 => false,
        o => return Err(format!("WKB byte order {o}")),
    };
    let u32_of = |s: &[u8]| -> u32 {
        let a = [s[0], s[1], s[2], s[3]];
        if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let f64_of = |s: &[u8]| -> f64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        if little {
            f64::from_le_bytes(a)
        } else {
            f64::from_be_bytes(a)
        }
    };
    let kind = u32_of(take(4)?);
    if kind != 3 {
        return Err(format!("WKB geometry type {kind}, not a 2-D polygon (3)"));
    }
    let ring_count = u32_of(take(4)?) as usize;
    let mut rings = Vec::with_capacity(ring_count.min(64));
    for _ in 0..ring_count {
        let n = u32_of(take(4)?) as usize;
        let mut coords = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let x = f64_of(take(8)?);
            let y = f64_of(take(8)?);
            coords.push(Coord { x, y });
        }
        rings.push(LineString(coords));
    }
    let mut rings = rings.into_iter();
    let exterior = rings.next().ok_or("WKB polygon without rings")?;
    Ok(Polygon::new(exterior, rings.collect()))
}

/// The complete files of a store folder (`*.parquet`, not `*.parquet.tmp`), by name.
///
/// # Errors
///
/// [`StoreError::Read`] when the folder cannot be listed.
pub fn list_store(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let read_err = |source| StoreError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == STORE_EXTENSION) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn damaged(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Damaged {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a store file's [`StoreMeta`] from its footer only (no row is read).
///
/// # Errors
///
/// [`StoreError::Read`] when it cannot be opened, [`StoreError::Damaged`] when it is not
/// a Parquet file with NextTile's metadata.
pub fn read_meta(path: &Path) -> Result<StoreMeta, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| damaged(path, e.to_string()))?;
    meta_of(path, &builder)
}

fn meta_of(
    path: &Path,
    builder: &ParquetRecordBatchReaderBuilder<File>,
) -> Result<StoreMeta, StoreError> {
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .ok_or_else(|| damaged(path, "no key-value metadata"))?;
    let json = kv
        .iter()
        .find(|k| k.key == META_KEY)
        .and_then(|k| k.value.as_deref())
        .ok_or_else(|| damaged(path, format!("no `{META_KEY}` metadata")))?;
    serde_json::from_str(json).map_err(|e| damaged(path, format!("`{META_KEY}`: {e}")))
}

/// One record batch of a store file, decoded.
#[derive(Debug, Clone)]
pub struct StoreBatch {
    /// Tiles.
    pub tiles: Vec<TileId>,
    /// Footprints, lon/lat.
    pub footprints: Vec<Polygon<f64>>,
    /// Centres, lon/lat.
    pub centres: Vec<(f64, f64)>,
    /// Embeddings, row-major, `tiles.len() × dim` values (f16 widened to f32).
    pub embeddings: Vec<f32>,
}

/// Streams a store file's rows, a record batch at a time, into `on_batch`; returns the
/// file's metadata. Memory: one batch of `BATCH_ROWS` rows at a time.
///
/// # Errors
///
/// [`StoreError::Read`] / [`StoreError::Damaged`] as for [`read_meta`], and
/// [`StoreError::Damaged`] for rows that do not have the store's columns.
pub fn read_rows(
    path: &Path,
    mut on_batch: impl FnMut(&StoreMeta, StoreBatch),
) -> Result<StoreMeta, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| damaged(path, e.to_string()))?;
    let meta = meta_of(path, &builder)?;
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| damaged(path, e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| damaged(path, e.to_string()))?;
        on_batch(&meta, decode_batch(path, &batch, meta.dim)?);
    }
    Ok(meta)
}

/// The footprints (lon/lat) of rows `rows` (distinct 0-based positions in the file) of a store
/// file, in the order given: only the `geometry` column of the row groups that hold them
/// is read.
///
/// # Errors
///
/// [`StoreError::Read`] / [`StoreError::Damaged`] as for [`read_meta`], and
/// [`StoreError::Damaged`] when a row is past the file's end or a geometry is not WKB.
pub fn read_footprints(path: &Path, rows: &[usize]) -> Result<Vec<Polygon<f64>>, StoreError> {
    read_column_rows(path, rows, "geometry", |b, wanted| {
        let geoms = column::<BinaryArray>(path, b, "geometry")?;
        wanted
            .iter()
            .map(|&i| wkb_polygon(geoms.value(i)).map_err(|m| damaged(path, m)))
            .collect()
    })
}

/// The embeddings (f16 widened to f32, `dim` values each) of rows `rows` (distinct
/// 0-based positions in the file) of a store file, in the order given: only the `embedding`
/// column of the row groups that hold them is read.
///
/// # Errors
///
/// [`StoreError::Read`] / [`StoreError::Damaged`] as for [`read_meta`], and
/// [`StoreError::Damaged`] when a row is past the file's end or the embeddings are not
/// `dim`-d f16.
pub fn read_embeddings(path: &Path, rows: &[usize], dim: usize) -> Result<Array2<f32>, StoreError> {
    let vectors = read_column_rows(path, rows, "embedding", |b, wanted| {
        let emb = column::<FixedSizeListArray>(path, b, "embedding")?;
        if emb.value_length() as usize != dim {
            return Err(damaged(
                path,
                format!("{}-d embeddings, metadata says {dim}", emb.value_length()),
            ));
        }
        let values = emb
            .values()
            .as_any()
            .downcast_ref::<Float16Array>()
            .ok_or_else(|| damaged(path, "embedding values are not f16"))?;
        Ok(wanted
            .iter()
            .map(|&i| {
                let start = (emb.offset() + i) * dim;
                (start..start + dim)
                    .map(|k| values.value(k).to_f32())
                    .collect::<Vec<f32>>()
            })
            .collect())
    })?;
    let mut out = Array2::<f32>::zeros((rows.len(), dim));
    for (mut dst, v) in out.outer_iter_mut().zip(vectors) {
        dst.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    }
    Ok(out)
}

/// Rows `rows` (file positions) of the column `name` of a store file, in the order
/// given: only that column of the row groups holding a wanted row is read, and
/// `decode(batch, positions)` turns the wanted positions of a batch into values.
fn read_column_rows<T>(
    path: &Path,
    rows: &[usize],
    name: &str,
    mut decode: impl FnMut(&RecordBatch, &[usize]) -> Result<Vec<T>, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| damaged(path, e.to_string()))?;
    let index = builder
        .schema()
        .index_of(name)
        .map_err(|_| damaged(path, format!("no column `{name}`")))?;
    let wanted: std::collections::HashSet<usize> = rows.iter().copied().collect();
    // Row groups holding a wanted row, and the file positions of their rows in order.
    let mut groups = Vec::new();
    let mut positions = Vec::new();
    let mut start = 0usize;
    for (g, rg) in builder.metadata().row_groups().iter().enumerate() {
        let len = usize::try_from(rg.num_rows()).unwrap_or(0);
        if (start..start + len).any(|r| wanted.contains(&r)) {
            groups.push(g);
            positions.extend(start..start + len);
        }
        start += len;
    }
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_row_groups(groups)
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| damaged(path, e.to_string()))?;
    let mut found: std::collections::HashMap<usize, T> = Default::default();
    let mut at = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| damaged(path, e.to_string()))?;
        let local: Vec<usize> = (0..batch.num_rows())
            .filter(|i| positions.get(at + i).is_some_and(|p| wanted.contains(p)))
            .collect();
        let values = decode(&batch, &local)?;
        found.extend(local.iter().map(|i| positions[at + i]).zip(values));
        at += batch.num_rows();
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        // Rows are distinct (the callers' contract): each is taken once.
        out.push(
            found
                .remove(r)
                .ok_or_else(|| damaged(path, format!("no row {r}")))?,
        );
    }
    Ok(out)
}

fn column<'a, T: 'static>(
    path: &Path,
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, StoreError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| damaged(path, format!("no column `{name}` of the store's type")))
}

fn decode_batch(path: &Path, b: &RecordBatch, dim: usize) -> Result<StoreBatch, StoreError> {
    let rows = column::<UInt32Array>(path, b, "row")?;
    let cols = column::<UInt32Array>(path, b, "col")?;
    let geoms = column::<BinaryArray>(path, b, "geometry")?;
    let lon = column::<Float64Array>(path, b, "centre_lon")?;
    let lat = column::<Float64Array>(path, b, "centre_lat")?;
    let emb = column::<FixedSizeListArray>(path, b, "embedding")?;
    if emb.value_length() as usize != dim {
        return Err(damaged(
            path,
            format!("{}-d embeddings, metadata says {dim}", emb.value_length()),
        ));
    }
    let values = emb
        .values()
        .as_any()
        .downcast_ref::<Float16Array>()
        .ok_or_else(|| damaged(path, "embedding values are not f16"))?;
    let n = b.num_rows();
    let tiles = (0..n)
        .map(|i| TileId {
            row: rows.value(i),
            col: cols.value(i),
        })
        .collect();
    let footprints = (0..n)
        .map(|i| wkb_polygon(geoms.value(i)).map_err(|m| damaged(path, m)))
        .collect::<Result<Vec<_>, _>>()?;
    let centres = (0..n).map(|i| (lon.value(i), lat.value(i))).collect();
    let start = emb.offset() * dim;
    let embeddings = (start..start + n * dim)
        .map(|k| values.value(k).to_f32())
        .collect();
    Ok(StoreBatch {
        tiles,
        footprints,
        centres,
        embeddings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkb_round_trips_a_polygon() {
        let p = Polygon::new(
            LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]),
            vec![],
        );
        let b = polygon_wkb(&p);
        assert_eq!(&b[..9], &[1, 3, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(wkb_polygon(&b).unwrap(), p);
        assert!(wkb_polygon(&b[..20]).is_err());
    }
}
