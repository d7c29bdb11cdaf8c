//! The output stage: a [`ScoreResult`] → files (heatmap COG and its QGIS style, the
//! suggestions and every tile as GeoJSON, the tiles as CSV, `summary.json`) and the
//! machine-readable summary `--json` prints.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::output;
use crate::report::ScoreResult;

/// Paths of the files [`write_outputs`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct OutputPaths {
    /// `heatmap.tif` (COG).
    pub heatmap: PathBuf,
    /// `heatmap.qml` (QGIS style).
    pub heatmap_style: PathBuf,
    /// `suggestions.geojson`.
    pub suggestions: PathBuf,
    /// `tiles.geojson`.
    pub tiles_geojson: PathBuf,
    /// `tiles.csv`.
    pub tiles_csv: PathBuf,
    /// `summary.json`.
    pub summary: PathBuf,
}

/// Write every output into `dir` (created if needed).
pub fn write_outputs(result: &ScoreResult, dir: &Path) -> Result<OutputPaths> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let paths = OutputPaths {
        heatmap: dir.join("heatmap.tif"),
        heatmap_style: dir.join("heatmap.qml"),
        suggestions: dir.join("suggestions.geojson"),
        tiles_geojson: dir.join("tiles.geojson"),
        tiles_csv: dir.join("tiles.csv"),
        summary: dir.join("summary.json"),
    };
    // Every tile's GeoJSON is the largest file (a full granule: 29,241 footprints); it is
    // written on its own thread while this one writes the others. Both read the tiles'
    // lon/lat footprints and centres, reprojected first (once per scene grid).
    output::project_tiles(result)?;
    std::thread::scope(|s| -> Result<()> {
        let tiles = s.spawn(|| output::write_tiles_geojson(result, &paths.tiles_geojson));
        output::write_heatmap(result, &paths.heatmap, result.metric)?;
        output::write_collection(&output::suggestions_collection(result)?, &paths.suggestions)?;
        output::write_tiles_csv(result, &paths.tiles_csv)?;
        tiles
            .join()
            .map_err(|_| Error::Internal("writing tiles.geojson panicked".into()))??;
        Ok(())
    })?;
    let summary = summary_json(result, Some(&paths));
    std::fs::write(
        &paths.summary,
        serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n",
    )
    .map_err(|e| Error::Io {
        path: paths.summary.display().to_string(),
        source: e,
    })?;
    Ok(paths)
}

/// A machine-readable summary of a run (what `--json` prints).
pub fn summary_json(result: &ScoreResult, paths: Option<&OutputPaths>) -> serde_json::Value {
    let picks: Vec<serde_json::Value> = result
        .picks
        .iter()
        .enumerate()
        .map(|(r, p)| {
            serde_json::json!({
                "rank": r + 1,
                "tile_id": result.tiles[p.index].to_string(),
                "score": p.score,
                "predicted_class": result.class_names.get(result.predicted[p.index]),
            })
        })
        .collect();
    serde_json::json!({
        "scene": result.scene,
        "grid": {
            "tile_size": result.grid.tile_size,
            "stride": result.grid.stride,
            "rows": result.grid.rows,
            "cols": result.grid.cols,
        },
        "encoder": result.encoder,
        "head": result.head,
        "classes": result.class_names,
        "candidate_tiles": result.candidate_tiles,
        "scored_tiles": result.tiles.len(),
        "skipped_nodata": result.skipped_nodata.len(),
        "embeddings_from_cache": result.cache_hit,
        "labelled_tiles": result.labelled_tiles,
        "mc_passes": result.mc_passes,
        "strategy": result.strategy.name(),
        "strategy_params": result.strategy_params,
        "metric": result.metric.name(),
        "budget": result.budget,
        "min_spacing_m": result.min_spacing_m,
        "seed": result.seed,
        "suggestions": picks,
        "runtime": result.runtime,
        "distance_to_training": result.training_distance,
        "warnings": result.warnings,
        "input": result.input,
        "timings": result.timings,
        "retrained": result.retrained,
        "outputs": paths,
    })
}
