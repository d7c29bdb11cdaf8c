//! Preparing the encoder's input from a raster the user has: the sensor preset
//! (given with `--sensor` or recognised from metadata), band matching, the
//! scaling (the model's, a preset's, or `--input-scale`/`--input-offset`), and
//! the input-distribution check that warns when the scaled input does not look
//! like the encoder's training data.

use super::ScoreRequest;
use crate::error::{Error, Result};
use crate::model::Preprocess;
use crate::raster::{
    BandMatch, InputScaling, RasterError, S2_L1C_BANDS, Scene, SensorPreset, StacRadiometry,
    canonical_band_name, l2a_without_baseline, model_scaling, sample_input_stats, sensor_names,
    sensor_preset, spread_sample,
};
use crate::report::{BandCheck, ScalingReport, SensorUse};
use crate::tiling::{TileGrid, TileId};

/// Most tiles the input-distribution check reads (spread over the candidates).
pub const CHECK_TILES: usize = 64;
/// A band whose input mean is more than this many training standard
/// deviations from the training mean is reported.
pub const CHECK_MAX_SIGMA: f64 = 3.0;
/// A band with more than this share of values changed by the clip range is
/// reported.
pub const CHECK_MAX_CLIPPED: f64 = 0.5;

/// Whether every band name is a Sentinel-2 optical band (presets only scale
/// optical reflectance, not SAR backscatter).
fn all_optical(bands: &[String]) -> bool {
    bands
        .iter()
        .all(|b| S2_L1C_BANDS.contains(&canonical_band_name(b).as_str()))
}

/// The sensor preset a run uses and why.
pub(super) struct ChosenSensor {
    /// The preset (a copy: a STAC item's may carry the item's own radiometry).
    pub preset: SensorPreset,
    /// What the report says of it.
    pub usage: SensorUse,
    /// Whether the preset's band order may place unnamed bands (`--sensor` and raster
    /// metadata; a STAC item names its bands itself).
    pub places_bands: bool,
}

/// The preset to use: `--sensor`'s (refused when unknown, or for an encoder
/// that takes non-optical bands), else the one a STAC item's properties and assets
/// say (unless `--input-scale`/`--input-offset` are given), else one recognised from
/// the scene's metadata; unnamed bands are then named by the preset's order.
pub(super) fn choose_sensor(
    req: &ScoreRequest,
    scene: &mut Scene,
    stac: Option<&StacRadiometry>,
    model_bands: &[String],
    warnings: &mut Vec<String>,
) -> Result<Option<ChosenSensor>> {
    let user_scaling = req.input_scale.is_some() || req.input_offset.is_some();
    let chosen = match (&req.sensor, stac) {
        (Some(name), _) => {
            let preset = sensor_preset(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown --sensor '{name}'; give one of: {}",
                    sensor_names()
                ))
            })?;
            if !all_optical(model_bands) {
                return Err(Error::Invalid(format!(
                    "--sensor {} scales optical reflectance, but this encoder also takes [{}]; leave --sensor out (or give --input-scale/--input-offset)",
                    preset.name,
                    model_bands.join(", ")
                )));
            }
            Some((*preset, "--sensor".to_string(), true))
        }
        (None, Some(item)) if !user_scaling => {
            warnings.extend(item.warnings.iter().cloned());
            item.sensor.as_ref().and_then(|s| {
                all_optical(model_bands)
                    .then(|| (s.preset, format!("STAC properties: {}", s.evidence), false))
            })
        }
        _ => scene.detected_sensor.as_ref().and_then(|d| {
            let preset = sensor_preset(d.preset)?;
            all_optical(model_bands).then(|| (*preset, format!("metadata {}", d.evidence), true))
        }),
    };
    if chosen.is_none()
        && let Some(item) = l2a_without_baseline(&scene.metadata_items)
    {
        warnings.push(format!(
            "{} looks like Sentinel-2 L2A ({item}) but says no processing baseline: products of baseline 04.00 or later (from 25 January 2022) carry a +1000 offset; if this one does, score it with --sensor s2-l2a",
            scene.path.display()
        ));
    }
    Ok(chosen.map(|(preset, source, places_bands)| {
        if places_bands {
            scene.name_bands_by_preset(&preset);
        }
        ChosenSensor {
            usage: SensorUse {
                name: preset.name.into(),
                title: preset.title.into(),
                source,
            },
            preset,
            places_bands,
        }
    }))
}

/// The raster band for each model band, with how it was matched; with a
/// preset, a failure says what the preset holds and how to map the bands.
pub(super) fn match_bands(
    req: &ScoreRequest,
    scene: &Scene,
    model_bands: &[String],
    preset: Option<&SensorPreset>,
) -> Result<Vec<BandMatch>> {
    let err = match scene.match_bands(model_bands, req.bands.as_deref()) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let (Some(p), RasterError::MissingBands { missing, .. }) = (preset, &err) else {
        return Err(err.into());
    };
    let pairs = p
        .product_bands
        .iter()
        .zip(p.bands)
        .map(|(a, b)| format!("{a}={b}"))
        .collect::<Vec<_>>()
        .join(", ");
    let lacking: Vec<&String> = missing
        .iter()
        .filter(|m| !p.bands.contains(&canonical_band_name(m).as_str()))
        .collect();
    if !lacking.is_empty() {
        return Err(Error::Invalid(format!(
            "the encoder needs the band(s) {} which --sensor {} does not have (it has {pairs}); give a raster with those bands, or an encoder that takes {}",
            lacking
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            p.name,
            p.bands.join(", ")
        )));
    }
    Err(Error::Invalid(format!(
        "--sensor {} places bands by position in a {}-band stack ({pairs}), but {} has {} band(s) and no band names for {}; give --bands with the raster band numbers in the encoder's order ({}), or set band descriptions (e.g. `gdal_edit.py` or a VRT with <Description>)",
        p.name,
        p.bands.len(),
        scene.path.display(),
        scene.bands.len(),
        missing.join(", "),
        model_bands.join(", ")
    )))
}

/// Replace the model's scale and offset with the preset's conversion, then
/// with `--input-scale`/`--input-offset` where given.
pub(super) fn apply_scaling(
    req: &ScoreRequest,
    preset: Option<&SensorPreset>,
    pre: &mut Preprocess,
) -> Result<ScalingReport> {
    let mut source = "model".to_string();
    if let Some(p) = preset {
        let clip = pre.clip.map(|(lo, hi)| (f64::from(lo), f64::from(hi)));
        let (s, o) = model_scaling(p, f64::from(pre.scale), f64::from(pre.offset), clip)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "--sensor {} maps 8-bit display values onto the encoder's input_clip range, but this encoder declares none, so there is no honest mapping; give --input-scale and --input-offset in the encoder's input units",
                    p.name
                ))
            })?;
        pre.scale = s as f32;
        pre.offset = o as f32;
        source = format!("sensor_preset:{}", p.name);
    }
    if let Some(s) = req.input_scale {
        if !s.is_finite() || s == 0.0 {
            return Err(Error::Invalid(format!(
                "--input-scale must be a finite, non-zero number, got {s}"
            )));
        }
        pre.scale = s;
        source.push_str(" + --input-scale");
    }
    if let Some(o) = req.input_offset {
        if !o.is_finite() {
            return Err(Error::Invalid(format!(
                "--input-offset must be a finite number, got {o}"
            )));
        }
        pre.offset = o;
        source.push_str(" + --input-offset");
    }
    Ok(ScalingReport {
        scale: pre.scale,
        offset: pre.offset,
        clip: pre.clip,
        source,
    })
}

/// What the distribution check reads and compares.
pub(super) struct CheckInput<'a> {
    /// The scene (or pair stack) being scored.
    pub scene: &'a Scene,
    /// Matched bands, model order.
    pub matches: &'a [BandMatch],
    /// The grid.
    pub grid: &'a TileGrid,
    /// Candidate tiles.
    pub candidates: &'a [TileId],
    /// The final preprocessing.
    pub pre: &'a Preprocess,
    /// Tiles with fewer valid pixels are not scored, nor counted.
    pub min_valid: f32,
}

/// Per-band statistics of the scaled input over at most [`CHECK_TILES`]
/// tiles, compared with the encoder's training statistics; warnings (with the
/// numbers, the likely cause and the fix) go into `warnings`.
pub(super) fn check_distribution(
    c: &CheckInput<'_>,
    scaling: &ScalingReport,
    warnings: &mut Vec<String>,
) -> Result<(usize, Vec<BandCheck>, String)> {
    let bands: Vec<usize> = c.matches.iter().map(|m| m.raster_band).collect();
    let tiles = spread_sample(c.candidates, CHECK_TILES);
    let stats = sample_input_stats(
        c.scene,
        &bands,
        c.grid,
        &tiles,
        InputScaling {
            scale: c.pre.scale,
            offset: c.pre.offset,
            clip: c.pre.clip,
        },
        c.min_valid,
    )?;
    let data_type = bands
        .first()
        .and_then(|b| c.scene.bands.get(b - 1))
        .map(|b| b.data_type.clone())
        .unwrap_or_default();
    let checks: Vec<BandCheck> = c
        .matches
        .iter()
        .zip(stats)
        .enumerate()
        .map(|(k, (m, input))| {
            let (mean, std) = (f64::from(c.pre.mean[k]), f64::from(c.pre.std[k]));
            BandCheck {
                band: m.model_band.clone(),
                sigma: (input.mean - mean) / std,
                input,
                training_mean: mean,
                training_std: std,
            }
        })
        .collect();
    if let Some(w) = distribution_warning(&checks, &data_type, scaling, c.pre) {
        warnings.push(w);
    }
    Ok((tiles.len(), checks, data_type))
}

/// The warning for a run whose input does not look like the training data,
/// or `None`.
fn distribution_warning(
    checks: &[BandCheck],
    data_type: &str,
    scaling: &ScalingReport,
    pre: &Preprocess,
) -> Option<String> {
    let counted: Vec<&BandCheck> = checks.iter().filter(|c| c.input.pixels > 0).collect();
    let off: Vec<&BandCheck> = counted
        .iter()
        .copied()
        .filter(|c| c.sigma.abs() > CHECK_MAX_SIGMA || c.input.clipped_fraction > CHECK_MAX_CLIPPED)
        .collect();
    let numbers = |list: &[&BandCheck]| {
        list.iter()
            .map(|c| {
                format!(
                    "{} mean {:.3} vs training {:.3} ± {:.3} ({:+.1} σ), {:.0} % clipped",
                    c.band,
                    c.input.mean,
                    c.training_mean,
                    c.training_std,
                    c.sigma,
                    c.input.clipped_fraction * 100.0
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // The brightest 8-bit value after the model's scaling, against the
    // training data's typical values.
    let top = 255.0 * pre.scale + pre.offset;
    let typical = pre
        .mean
        .iter()
        .zip(&pre.std)
        .map(|(m, s)| m + s)
        .fold(f32::NEG_INFINITY, f32::max);
    // Whatever the scaling came from (the encoder, a reflectance preset), an
    // 8-bit raster whose brightest value lands below half the training range
    // is a display image fed as reflectance.
    if data_type == "Byte" && top < 0.5 * typical {
        return Some(format!(
            "this looks like an 8-bit display image (GDAL type Byte, values 0–255) but the encoder expects Sentinel-2 reflectance (input_scale {:.6}, made for L1C digital numbers = reflectance × 10000): the brightest possible value becomes {top:.3} against training values around {:.3}, so every tile looks near-black and the scores are meaningless ({}). Score it with --sensor rgb (0–255 mapped onto the encoder's input range: a colour-stretched approximation), or give --sensor/--input-scale for the data's real units",
            pre.scale,
            pre.mean.iter().map(|m| f64::from(*m)).sum::<f64>() / pre.mean.len().max(1) as f64,
            numbers(&counted),
        ));
    }
    if off.is_empty() {
        return None;
    }
    let small_float = data_type.starts_with("Float")
        && counted
            .iter()
            .all(|c| c.input.raw_max <= 2.0 && c.input.raw_min >= -1.0);
    let low = off.iter().filter(|c| c.sigma < 0.0).count() * 2 > off.len();
    let cause = if small_float && pre.scale < 0.01 {
        "the values look like reflectance 0–1 (floating point, all within −1…2) but are scaled as digital numbers; score with --sensor reflectance, or --input-scale".to_string()
    } else if low {
        "the input is much darker or smaller than the training data: wrong bands (see band_matching), another unit than the encoder's (give --sensor, or --input-scale/--input-offset), or an 8-bit image (--sensor rgb)".to_string()
    } else {
        "the input is much brighter or larger than the training data: a Sentinel-2 L2A product of baseline 04.00 or later with its +1000 offset (--sensor s2-l2a), another unit than the encoder's (--sensor, or --input-scale/--input-offset), or wrong bands (see band_matching)".to_string()
    };
    Some(format!(
        "the scaled input does not look like the encoder's training data (mean more than {CHECK_MAX_SIGMA} σ off, or more than {:.0} % of values clipped, on {} of {} bands; scaling from {}): {}. Likely cause: {cause}; the scores of this run are unreliable",
        CHECK_MAX_CLIPPED * 100.0,
        off.len(),
        counted.len(),
        scaling.source,
        numbers(&off)
    ))
}

/// The note a `--sensor rgb` run carries in its warnings.
pub(super) fn display_note(
    preset: Option<&SensorPreset>,
    scaling: &ScalingReport,
) -> Option<String> {
    let p = preset?;
    matches!(p.radiometry, crate::raster::Radiometry::Display8Bit).then(|| {
        format!(
            "--sensor {}: 8-bit display values 0–255 mapped linearly onto the encoder's input range (× {:.6} + {}), as its EuroSAT-RGB training JPEGs were; this is a colour-stretched approximation, not reflectance, so scores depend on how the image was stretched",
            p.name, scaling.scale, scaling.offset
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::BandStats;

    fn pre(scale: f32) -> Preprocess {
        Preprocess {
            bands: vec!["B04".into(), "B02".into()],
            scale,
            offset: 0.0,
            clip: Some((0.0, 1.0)),
            mean: vec![0.345, 0.408],
            std: vec![0.203, 0.116],
        }
    }

    fn check(
        band: &str,
        mean: f64,
        clipped: f64,
        raw_max: f64,
        p: &Preprocess,
        k: usize,
    ) -> BandCheck {
        let (m, s) = (f64::from(p.mean[k]), f64::from(p.std[k]));
        BandCheck {
            band: band.into(),
            input: BandStats {
                pixels: 100,
                mean,
                std: 0.1,
                clipped_fraction: clipped,
                raw_min: 0.0,
                raw_max,
            },
            training_mean: m,
            training_std: s,
            sigma: (mean - m) / s,
        }
    }

    fn scaling(p: &Preprocess, source: &str) -> ScalingReport {
        ScalingReport {
            scale: p.scale,
            offset: p.offset,
            clip: p.clip,
            source: source.into(),
        }
    }

    #[test]
    fn silent_near_the_training_data() {
        let p = pre(1.0 / 2800.0);
        let c = [
            check("B04", 0.3, 0.01, 4000.0, &p, 0),
            check("B02", 0.45, 0.0, 4000.0, &p, 1),
        ];
        assert!(distribution_warning(&c, "UInt16", &scaling(&p, "model"), &p).is_none());
    }

    #[test]
    fn eight_bit_gets_its_own_message_unless_scaled_for_it() {
        let p = pre(1.0 / 2800.0);
        let c = [
            check("B04", 0.03, 0.0, 255.0, &p, 0),
            check("B02", 0.04, 0.0, 255.0, &p, 1),
        ];
        let w = distribution_warning(&c, "Byte", &scaling(&p, "model"), &p).unwrap();
        assert!(
            w.starts_with("this looks like an 8-bit display image"),
            "{w}"
        );
        assert!(w.contains("--sensor rgb"), "{w}");
        // A reflectance preset recognised from metadata does not hide it.
        let l1c = scaling(&p, "sensor_preset:s2-l1c");
        assert!(distribution_warning(&c, "Byte", &l1c, &p).is_some());
        let rgb = pre(1.0 / 255.0);
        let c = [
            check("B04", 0.35, 0.0, 255.0, &rgb, 0),
            check("B02", 0.4, 0.0, 255.0, &rgb, 1),
        ];
        assert!(
            distribution_warning(&c, "Byte", &scaling(&rgb, "sensor_preset:rgb"), &rgb).is_none()
        );
    }

    #[test]
    fn causes() {
        let p = pre(1.0 / 2800.0);
        // Float reflectance 0–1 scaled as DN.
        let c = [
            check("B04", 0.0, 0.0, 0.5, &p, 0),
            check("B02", 0.0, 0.0, 0.5, &p, 1),
        ];
        let w = distribution_warning(&c, "Float32", &scaling(&p, "model"), &p).unwrap();
        assert!(
            w.contains("look like reflectance 0–1") && w.contains("B02 mean 0.000"),
            "{w}"
        );
        // Mostly clipped at the top: brighter than the training data.
        let c = [
            check("B04", 0.9, 0.7, 9000.0, &p, 0),
            check("B02", 0.5, 0.1, 9000.0, &p, 1),
        ];
        let w = distribution_warning(&c, "UInt16", &scaling(&p, "model"), &p).unwrap();
        assert!(
            w.contains("on 1 of 2 bands") && w.contains("70 % clipped"),
            "{w}"
        );
        assert!(w.contains("--sensor s2-l2a"), "{w}");
    }
}
