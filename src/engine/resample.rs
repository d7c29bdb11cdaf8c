//! `--resample auto|off|<metres>`: whether a scene is warped on the fly to the
//! encoder's resolution (or a given one) before it is tiled, and what the run
//! reports about it.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::raster::{MemVrt, Scene, resample_scene};
use crate::report::{Resample, ResampleReport};

/// A scene's pixels are resampled by `auto` when they differ from the
/// encoder's resolution by more than this factor, either way.
pub const RESAMPLE_FACTOR: f64 = 1.5;

impl FromStr for Resample {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let bad = || {
            Error::Invalid(format!(
                "--resample must be auto, off or a pixel size in metres greater than 0 (e.g. --resample 10), got '{s}'"
            ))
        };
        match t.to_ascii_lowercase().as_str() {
            "auto" => Ok(Resample::Auto),
            "off" | "none" | "no" => Ok(Resample::Off),
            _ => {
                let m: f64 = t
                    .strip_suffix('m')
                    .unwrap_or(t)
                    .trim()
                    .parse()
                    .map_err(|_| bad())?;
                if m.is_finite() && m > 0.0 && m <= 100_000.0 {
                    Ok(Resample::Metres(m))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// The target ground pixel size, metres, or why there is none.
fn target(mode: Resample, scene_m: f64, model_m: Option<f64>) -> std::result::Result<f64, String> {
    match (mode, model_m) {
        (Resample::Off, _) => Err("not resampled (--resample off)".into()),
        (Resample::Metres(m), _) => {
            if ((scene_m - m) / m).abs() < 1e-6 {
                Err(format!("not resampled: the scene's pixels are already {m} m"))
            } else {
                Ok(m)
            }
        }
        (Resample::Auto, None) => Err(
            "not resampled: the encoder declares no resolution (metadata `resolution`), so --resample auto does nothing; give --resample METRES to resample"
                .into(),
        ),
        (Resample::Auto, Some(r)) => {
            let ratio = scene_m / r;
            if (1.0 / RESAMPLE_FACTOR..=RESAMPLE_FACTOR).contains(&ratio) {
                Err(format!(
                    "not resampled: the scene's {scene_m:.1} m pixels are within {RESAMPLE_FACTOR}× of the encoder's {r} m"
                ))
            } else {
                Ok(r)
            }
        }
    }
}

/// Resample `scene` as `mode` says for an encoder of resolution `model_m`:
/// the scene to tile (the warped one, or `scene` itself), the in-memory VRT
/// to keep alive while it is read, and the report. An explicit `auto` with an
/// encoder that declares no resolution adds a warning.
pub(super) fn resample_for(
    scene: Scene,
    mode: Option<Resample>,
    model_m: Option<f64>,
    warnings: &mut Vec<String>,
) -> Result<(Scene, Option<MemVrt>, ResampleReport)> {
    let explicit = mode.is_some();
    let mode = mode.unwrap_or_default();
    match target(mode, scene.ground_resolution_m(), model_m) {
        Err(message) => {
            if explicit && mode == Resample::Auto && model_m.is_none() {
                warnings.push(message.clone());
            }
            let report = ResampleReport {
                mode,
                applied: None,
                message,
            };
            Ok((scene, None, report))
        }
        Ok(to_m) => {
            let (warped, vrt, done) = resample_scene(&scene, to_m)?;
            let report = ResampleReport {
                mode,
                message: done.describe(),
                applied: Some(done),
            };
            Ok((warped, Some(vrt), report))
        }
    }
}

/// The scene a job will tile after resampling as `mode` says for an encoder of
/// resolution `model_m` (the warped one, with the in-memory VRT to keep alive, or
/// `scene` itself): for counting tiles before a job is queued.
///
/// # Errors
///
/// GDAL failures while building the warped VRT.
pub fn scene_to_tile(
    scene: Scene,
    mode: Option<Resample>,
    model_m: Option<f64>,
) -> Result<(Scene, Option<MemVrt>)> {
    let (scene, vrt, _) = resample_for(scene, mode, model_m, &mut Vec::new())?;
    Ok((scene, vrt))
}

#[cfg(test)]
mod tests {
    use super::{Resample, target};

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("auto".parse::<Resample>().ok(), Some(Resample::Auto));
        assert_eq!("OFF".parse::<Resample>().ok(), Some(Resample::Off));
        assert_eq!("10".parse::<Resample>().ok(), Some(Resample::Metres(10.0)));
        assert_eq!("2.5m".parse::<Resample>().ok(), Some(Resample::Metres(2.5)));
        for bad in ["-3", "0", "banana", "", "NaN", "inf", "1e9"] {
            let e = bad.parse::<Resample>().err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|m| m.contains("auto, off")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn auto_resamples_beyond_one_and_a_half_times() {
        assert_eq!(target(Resample::Auto, 30.0, Some(10.0)), Ok(10.0));
        assert_eq!(target(Resample::Auto, 3.0, Some(10.0)), Ok(10.0));
        assert!(target(Resample::Auto, 14.0, Some(10.0)).is_err());
        assert!(target(Resample::Auto, 7.0, Some(10.0)).is_err());
        assert!(target(Resample::Auto, 30.0, None).is_err());
        assert!(target(Resample::Off, 30.0, Some(10.0)).is_err());
        assert_eq!(target(Resample::Metres(20.0), 10.0, None), Ok(20.0));
        assert!(target(Resample::Metres(10.0), 10.0, None).is_err());
    }
}
