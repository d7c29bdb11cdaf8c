//! The uncertainty heatmap: a Cloud-Optimized GeoTIFF in the scene CRS with
//! one pixel per tile, plus a QGIS style beside it.

use std::path::Path;

use gdal::raster::{Buffer, RasterCreationOptions};
use gdal::{DriverManager, Metadata};

use super::OutputError;
use crate::report::ScoreResult;
use crate::uncertainty::Metric;

/// Value of heatmap pixels whose tile was not scored (outside the AOI,
/// mostly nodata, or a partial edge).
pub const HEATMAP_NODATA: f64 = -1.0;

/// Description of the heatmap's last band: each tile's distance to the training data
/// (see [`TrainingDistance`](crate::uncertainty::TrainingDistance)).
pub const DISTANCE_BAND: &str = "distance_to_training";

/// Band layout of the heatmap: one band per metric in [`Metric::ALL`] order,
/// then the predicted class index; heads with a loss-prediction output add
/// `predicted_loss`; the last band is always [`DISTANCE_BAND`] (appended last, so that
/// the earlier bands keep their numbers).
pub fn heatmap_band_names() -> Vec<String> {
    let mut v: Vec<String> = Metric::ALL.iter().map(|m| m.name().to_string()).collect();
    v.push("predicted_class".into());
    v.push(DISTANCE_BAND.into());
    v
}

/// What a heatmap band holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Band {
    /// An uncertainty metric.
    Metric(Metric),
    /// The predicted class index.
    Class,
    /// The distance to the training data.
    Distance,
}

/// The bands of this result's heatmap: the metrics, `predicted_class`,
/// `predicted_loss` when the head has a loss output, then [`DISTANCE_BAND`].
fn bands_of(result: &ScoreResult) -> Vec<(String, Band)> {
    let mut v: Vec<(String, Band)> = Metric::ALL
        .iter()
        .map(|m| (m.name().to_string(), Band::Metric(*m)))
        .collect();
    v.push(("predicted_class".into(), Band::Class));
    if result.uncertainties.predicted_loss.is_some() {
        v.push((
            Metric::PredictedLoss.name().into(),
            Band::Metric(Metric::PredictedLoss),
        ));
    }
    v.push((DISTANCE_BAND.into(), Band::Distance));
    v
}

/// Write `heatmap.tif` (COG, DEFLATE, Float32, nodata −1) and `heatmap.qml`.
/// `style_metric` picks the band the QML colours.
pub fn write_heatmap(
    result: &ScoreResult,
    path: &Path,
    style_metric: Metric,
) -> Result<(), OutputError> {
    let grid = &result.grid;
    let (w, h) = (grid.cols, grid.rows);
    let layout = bands_of(result);
    let names: Vec<String> = layout.iter().map(|(n, _)| n.clone()).collect();
    let gerr = |e: gdal::errors::GdalError| OutputError::Gdal {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mem = DriverManager::get_driver_by_name("MEM").map_err(gerr)?;
    let mut ds = mem
        .create_with_band_type::<f32, _>("", w, h, names.len())
        .map_err(gerr)?;
    ds.set_geo_transform(&grid.cell_geo_transform().0)
        .map_err(gerr)?;
    ds.set_projection(&result.scene.crs_wkt).map_err(gerr)?;

    let mut planes = vec![vec![HEATMAP_NODATA as f32; w * h]; names.len()];
    for (i, id) in result.tiles.iter().enumerate() {
        let px = id.row as usize * w + id.col as usize;
        for (b, (_, m)) in layout.iter().enumerate() {
            planes[b][px] = match m {
                Band::Metric(m) => {
                    let v = result.uncertainties.get(*m)[i];
                    // The predicted loss has no fixed sign; keep a real −1
                    // from reading as "not scored".
                    if f64::from(v) == HEATMAP_NODATA {
                        v.next_down()
                    } else {
                        v
                    }
                }
                Band::Class => result.predicted[i] as f32,
                Band::Distance => result.training_distance.values[i],
            };
        }
    }
    for (b, plane) in planes.into_iter().enumerate() {
        let mut band = ds.rasterband(b + 1).map_err(gerr)?;
        band.set_no_data_value(Some(HEATMAP_NODATA)).map_err(gerr)?;
        band.set_description(&names[b]).map_err(gerr)?;
        let mut buf = Buffer::new((w, h), plane);
        band.write((0, 0), (w, h), &mut buf).map_err(gerr)?;
    }
    let classes = result
        .class_names
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}={c}"))
        .collect::<Vec<_>>()
        .join(",");
    for (k, v) in [
        ("NEXTTILE_SCENE", result.scene.path.as_str()),
        ("NEXTTILE_TILE_SIZE", &grid.tile_size.to_string()),
        ("NEXTTILE_STRIDE", &grid.stride.to_string()),
        ("NEXTTILE_MC_PASSES", &result.mc_passes.to_string()),
        ("NEXTTILE_ENCODER_SHA256", &result.encoder.sha256),
        ("NEXTTILE_HEAD_SHA256", &result.head.sha256),
        ("NEXTTILE_CLASSES", &classes),
        (
            "NEXTTILE_DISTANCE_REFERENCE",
            result.training_distance.reference.name(),
        ),
    ] {
        ds.set_metadata_item(k, v, "").map_err(gerr)?;
    }
    let cog = DriverManager::get_driver_by_name("COG").map_err(gerr)?;
    let opts =
        RasterCreationOptions::from_iter(["COMPRESS=DEFLATE", "PREDICTOR=YES", "OVERVIEWS=AUTO"]);
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| OutputError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    }
    ds.create_copy(&cog, path, &opts).map_err(gerr)?;

    let band = layout
        .iter()
        .position(|(_, m)| *m == Band::Metric(style_metric))
        .unwrap_or(0)
        + 1;
    let values = result.uncertainties.get(style_metric);
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let max = finite().fold(f32::NEG_INFINITY, f32::max);
    let min = if style_metric == Metric::PredictedLoss {
        finite().fold(f32::INFINITY, f32::min)
    } else {
        0.0
    };
    let max = if max.is_finite() {
        max.max(min + 1e-6)
    } else {
        1e-6
    };
    let min = if min.is_finite() { min } else { 0.0 };
    let qml = path.with_extension("qml");
    std::fs::write(
        &qml,
        pseudocolor_qml(band, &names[band - 1], min as f64, max as f64),
    )
    .map_err(|e| OutputError::Io {
        path: qml.display().to_string(),
        source: e,
    })?;
    Ok(())
}

/// A QGIS single-band pseudocolour style (viridis-like ramp from certain to
/// uncertain) for `band`, `min..max`.
pub fn pseudocolor_qml(band: usize, label: &str, min: f64, max: f64) -> String {
    const RAMP: [(f64, &str); 5] = [
        (0.0, "#440154"),
        (0.25, "#3b528b"),
        (0.5, "#21918c"),
        (0.75, "#5ec962"),
        (1.0, "#fde725"),
    ];
    let items: String = RAMP
        .iter()
        .map(|(t, c)| {
            let v = min + (max - min) * t;
            format!(
                "            <item alpha=\"255\" value=\"{v:.6}\" label=\"{v:.3}\" color=\"{c}\"/>\n"
            )
        })
        .collect();
    format!(
        r#"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="0.75" alphaBand="-1" classificationMin="{min:.6}" classificationMax="{max:.6}">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="{min:.6}" maximumValue="{max:.6}" labelPrecision="3">
{items}        </colorrampshader>
      </rastershader>
    </rasterrenderer>
  </pipe>
  <!-- band {band}: {label} (higher = more uncertain) -->
</qgis>
"#
    )
}
