//! What a STAC item says about its sensor and its digital numbers, turned into one of
//! the sensor presets (or a preset with the item's own radiometry), so a STAC item of a
//! Sentinel-2 L2A or Landsat Collection 2 Level-2 product scores with no `--sensor`.
//!
//! Read, in this order of precedence:
//! - `earthsearch:boa_offset_applied: true` (Element 84 Earth Search; formerly
//!   `sentinel:boa_offset_applied`): the provider already removed the Sentinel-2 L2A
//!   +1000 offset, so reflectance = DN / 10000, whatever else the item says;
//! - `raster:bands` `scale`/`offset` on the assets that were stacked (STAC raster
//!   extension v1, <https://github.com/stac-extensions/raster>: value = raw × scale +
//!   offset; STAC 1.1 puts `scale`/`offset` on the `bands` objects), used when every
//!   stacked band gives the same pair;
//! - the processing baseline (`s2:processing_baseline`, `processing:version`,
//!   `sentinel:processing_baseline`): Sentinel-2 L2A ≥ 04.00 carries BOA_ADD_OFFSET
//!   −1000 (ESA, 25 January 2022 on), L1C ≥ 04.00 RADIO_ADD_OFFSET −1000;
//! - which product it is: `platform` (`sentinel-2a/b/c`, `landsat-7/8/9`) or
//!   `constellation` (`sentinel-2`), and the level from `processing:level` (STAC
//!   processing extension: `L1C`, `L2A`, `L2`), `s2:product_type` (`S2MSI2A`),
//!   `landsat:correction` (`L2SP`) or the item's `collection` id (`sentinel-2-l2a`,
//!   `landsat-c2-l2`).
//!
//! A Sentinel-2 L2A item that gives neither a baseline nor an offset is not guessed: the
//! offset depends on when it was processed, so the run gets a warning asking for
//! `--sensor s2-l2a` when it applies (as a GeoTIFF's metadata does).

use serde_json::Value;

use super::bands::S2_L1C_BANDS;
use super::sensor::{Radiometry, SensorPreset, sensor_preset};
use super::stac::StacBand;

/// The name of a preset made from an item's own radiometry.
pub const STAC_PRESET: &str = "stac";

/// Title of a preset with the `raster:bands` scale and offset.
const TITLE_RASTER_BANDS: &str = "reflectance = DN × scale + offset, as the STAC item's raster:bands give them (STAC raster extension)";
/// Title of a Sentinel-2 L2A item whose offset is not in its values.
const TITLE_S2_L2A_NO_OFFSET: &str = "Sentinel-2 L2A surface reflectance without the +1000 offset (processing baseline before 04.00, or the provider removed it): DN / 10000";
/// Title of a Sentinel-2 L1C item of baseline 04.00 or later.
const TITLE_S2_L1C_OFFSET: &str = "Sentinel-2 L1C top-of-atmosphere reflectance, processing baseline 04.00 or later: (DN − 1000) / 10000 (RADIO_ADD_OFFSET)";

/// A sensor preset chosen from a STAC item's properties and assets.
#[derive(Debug, Clone)]
pub struct StacSensor {
    /// One of [`SENSOR_PRESETS`](super::SENSOR_PRESETS), or (named [`STAC_PRESET`]) a
    /// preset with the radiometry the item gives.
    pub preset: SensorPreset,
    /// What in the item said so: `platform sentinel-2b, processing:level L2A,
    /// s2:processing_baseline 05.10`.
    pub evidence: String,
}

/// What an item's metadata decided about its scaling.
#[derive(Debug, Clone, Default)]
pub struct StacRadiometry {
    /// The preset to use when the user gives no `--sensor`, `--input-scale` or
    /// `--input-offset`.
    pub sensor: Option<StacSensor>,
    /// What the metadata leaves open or contradicts (warnings of the run).
    pub warnings: Vec<String>,
}

/// The product family an item names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    Sentinel2,
    /// A Landsat platform and its preset.
    Landsat(&'static str),
    Unknown,
}

/// The processing level an item names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    L1C,
    L2A,
    /// Landsat Level-2 surface reflectance.
    L2,
    Unknown,
}

/// Lower-case letters and digits only (`Sentinel-2B` → `sentinel2b`).
fn squash(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The text property `key` of the item, as written.
fn text(doc: &Value, key: &str) -> Option<String> {
    doc.get("properties")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

fn family(doc: &Value, ev: &mut Vec<String>) -> Family {
    if let Some(p) = text(doc, "platform") {
        let s = squash(&p);
        let found = if s.starts_with("sentinel2") {
            Some(Family::Sentinel2)
        } else {
            [
                ("landsat8", "landsat8"),
                ("landsat9", "landsat9"),
                ("landsat7", "landsat7"),
            ]
            .iter()
            .find(|(k, _)| s == *k)
            .map(|(_, preset)| Family::Landsat(preset))
        };
        if let Some(f) = found {
            ev.push(format!("platform {p}"));
            return f;
        }
    }
    if let Some(c) = text(doc, "constellation")
        && squash(&c) == "sentinel2"
    {
        ev.push(format!("constellation {c}"));
        return Family::Sentinel2;
    }
    if let Some(c) = doc.get("collection").and_then(Value::as_str) {
        let s = squash(c);
        if s.contains("sentinel2") || s.starts_with("sentinels2") {
            ev.push(format!("collection {c}"));
            return Family::Sentinel2;
        }
    }
    Family::Unknown
}

fn level(doc: &Value, family: Family, ev: &mut Vec<String>) -> Level {
    let of = |s: &str| {
        let s = squash(s);
        match family {
            Family::Landsat(_) if s.contains("l2") => Level::L2,
            Family::Sentinel2 if s.contains("l2a") || s.ends_with("2a") => Level::L2A,
            Family::Sentinel2 if s.contains("l1c") || s.ends_with("1c") => Level::L1C,
            _ => Level::Unknown,
        }
    };
    for key in ["processing:level", "s2:product_type", "landsat:correction"] {
        if let Some(v) = text(doc, key)
            && of(&v) != Level::Unknown
        {
            ev.push(format!("{key} {v}"));
            return of(&v);
        }
    }
    if let Some(c) = doc.get("collection").and_then(Value::as_str)
        && of(c) != Level::Unknown
    {
        if !ev.iter().any(|e| e.starts_with("collection ")) {
            ev.push(format!("collection {c}"));
        }
        return of(c);
    }
    Level::Unknown
}

/// The processing baseline (`05.10` → 5.1) and the property that gave it.
fn baseline(doc: &Value) -> Option<(f64, String)> {
    let props = doc.get("properties")?;
    [
        "s2:processing_baseline",
        "processing:version",
        "sentinel:processing_baseline",
    ]
    .iter()
    .find_map(|k| {
        let v = props.get(*k)?;
        let n = match v {
            Value::String(s) => s.trim().parse::<f64>().ok()?,
            other => other.as_f64()?,
        };
        Some((
            n,
            format!("{k} {}", v.as_str().map_or(v.to_string(), str::to_string)),
        ))
    })
}

/// Whether the provider says the Sentinel-2 L2A offset was already removed.
fn offset_applied(doc: &Value) -> Option<(bool, String)> {
    let props = doc.get("properties")?;
    [
        "earthsearch:boa_offset_applied",
        "sentinel:boa_offset_applied",
    ]
    .iter()
    .find_map(|k| {
        let b = props.get(*k)?.as_bool()?;
        Some((b, format!("{k} {b}")))
    })
}

/// The `(scale, offset)` the stacked bands' `raster:bands` give, when every band gives
/// one and they agree; otherwise a warning when only some give one or they differ.
fn raster_scaling(doc: &Value, bands: &[StacBand]) -> Result<Option<(f64, f64)>, String> {
    let per_band: Vec<Option<(f64, f64)>> = bands
        .iter()
        .map(|b| {
            let asset = doc.get("assets")?.get(&b.asset)?;
            let list = asset
                .get("raster:bands")
                .or_else(|| asset.get("bands"))?
                .as_array()?;
            let entry = list.get(b.band.checked_sub(1)?)?;
            let scale = entry.get("scale").and_then(Value::as_f64);
            let offset = entry.get("offset").and_then(Value::as_f64);
            (scale.is_some() || offset.is_some())
                .then(|| (scale.unwrap_or(1.0), offset.unwrap_or(0.0)))
        })
        .collect();
    if per_band.iter().all(Option::is_none) {
        return Ok(None);
    }
    let listed = bands
        .iter()
        .zip(&per_band)
        .map(|(b, s)| match s {
            Some((a, o)) => format!("{} scale {a}, offset {o}", b.asset),
            None => format!("{} none", b.asset),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let first = per_band[0];
    let same = |x: &Option<(f64, f64)>, y: &Option<(f64, f64)>| match (x, y) {
        (Some(a), Some(b)) => close(a.0, b.0) && close(a.1, b.1),
        _ => false,
    };
    if per_band.iter().all(|s| same(s, &first)) {
        return Ok(first);
    }
    Err(format!(
        "the item's raster:bands give a scale and offset for some bands only, or different ones per band ({listed}); NextTile applies one scale and offset to every band, so it did not use them: give --sensor, or --input-scale and --input-offset"
    ))
}

/// Equal up to rounding in the JSON.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// The preset for a product whose reflectance = DN × `scale` + `offset`: `named` when
/// its radiometry is that, else a [`STAC_PRESET`] with it.
fn with_radiometry(
    named: Option<&str>,
    scale: f64,
    offset: f64,
    title: &'static str,
) -> SensorPreset {
    if let Some(p) = named.and_then(sensor_preset)
        && let Radiometry::Reflectance {
            scale: s,
            offset: o,
        } = p.radiometry
        && close(s, scale)
        && close(o, offset)
    {
        return *p;
    }
    // A STAC item's bands are named by the item, so the band order is never used to
    // place them; it is the `reflectance` preset's (Sentinel-2 order).
    SensorPreset {
        name: STAC_PRESET,
        title,
        bands: &S2_L1C_BANDS,
        product_bands: &S2_L1C_BANDS,
        radiometry: Radiometry::Reflectance { scale, offset },
    }
}

/// What the item's properties and the stacked bands' `raster:bands` say about its
/// sensor and scaling (see the module's documentation for the rules).
pub fn stac_radiometry(doc: &Value, bands: &[StacBand]) -> StacRadiometry {
    let mut ev = Vec::new();
    let mut warnings = Vec::new();
    let fam = family(doc, &mut ev);
    let lvl = level(doc, fam, &mut ev);
    let raster = match raster_scaling(doc, bands) {
        Ok(r) => r,
        Err(w) => {
            warnings.push(w);
            None
        }
    };
    let raster_ev = raster.map(|(s, o)| format!("raster:bands scale {s}, offset {o}"));
    let applied = offset_applied(doc);
    let base = baseline(doc);
    let preset = match (fam, lvl) {
        (Family::Sentinel2, Level::L2A) => {
            s2_l2a(raster, applied, base, &raster_ev, &mut ev, &mut warnings)
        }
        (Family::Sentinel2, Level::L1C) => match (raster, base) {
            (Some((s, o)), _) => {
                ev.extend(raster_ev);
                Some(with_radiometry(Some("s2-l1c"), s, o, TITLE_RASTER_BANDS))
            }
            (None, Some((b, e))) if b >= 4.0 => {
                ev.push(e);
                Some(with_radiometry(None, 1e-4, -0.1, TITLE_S2_L1C_OFFSET))
            }
            (None, _) => sensor_preset("s2-l1c").copied(),
        },
        (Family::Landsat(p), Level::L2) => match raster {
            Some((s, o)) => {
                ev.extend(raster_ev);
                Some(with_radiometry(Some(p), s, o, TITLE_RASTER_BANDS))
            }
            None => sensor_preset(p).copied(),
        },
        _ => raster.map(|(s, o)| {
            ev.extend(raster_ev);
            with_radiometry(None, s, o, TITLE_RASTER_BANDS)
        }),
    };
    StacRadiometry {
        sensor: preset.map(|preset| StacSensor {
            preset,
            evidence: ev.join(", "),
        }),
        warnings,
    }
}

/// A Sentinel-2 L2A item: the provider's "offset applied", else `raster:bands`, else the
/// processing baseline; none of them → no preset and a warning.
fn s2_l2a(
    raster: Option<(f64, f64)>,
    applied: Option<(bool, String)>,
    base: Option<(f64, String)>,
    raster_ev: &Option<String>,
    ev: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<SensorPreset> {
    if let Some((true, e)) = &applied {
        ev.push(e.clone());
        if let Some((_, o)) = raster.filter(|(_, o)| *o != 0.0) {
            warnings.push(format!(
                "the STAC item says {e} (its values hold no +1000 offset) but its raster:bands give offset {o}; followed {e} (reflectance = DN / 10000). If the tiles look too dark, score it with --sensor s2-l2a"
            ));
        }
        return Some(with_radiometry(None, 1e-4, 0.0, TITLE_S2_L2A_NO_OFFSET));
    }
    if let Some((s, o)) = raster {
        ev.extend(raster_ev.clone());
        if let Some((b, e)) = &base {
            let offset_expected = *b >= 4.0;
            if offset_expected != (o != 0.0) {
                warnings.push(format!(
                    "the STAC item's raster:bands give offset {o} but its {e} says the product {} the +1000 offset; followed raster:bands. If the scores look wrong, give --sensor s2-l2a (offset) or --input-offset 0 (none)",
                    if offset_expected { "carries" } else { "has no" }
                ));
            }
        }
        return Some(with_radiometry(Some("s2-l2a"), s, o, TITLE_RASTER_BANDS));
    }
    match base {
        Some((b, e)) => {
            ev.push(e);
            Some(if b >= 4.0 {
                with_radiometry(Some("s2-l2a"), 1e-4, -0.1, TITLE_S2_L2A_NO_OFFSET)
            } else {
                with_radiometry(None, 1e-4, 0.0, TITLE_S2_L2A_NO_OFFSET)
            })
        }
        None => {
            warnings.push(format!(
                "the STAC item says Sentinel-2 L2A ({}) but gives no processing baseline (s2:processing_baseline) and no raster:bands offset: products of baseline 04.00 or later (from 25 January 2022) carry a +1000 offset; if this one does, score it with --sensor s2-l2a",
                ev.join(", ")
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bands(assets: &[&str]) -> Vec<StacBand> {
        assets
            .iter()
            .map(|a| StacBand {
                name: "B04".into(),
                asset: (*a).into(),
                file: "x.tif".into(),
                band: 1,
            })
            .collect()
    }

    fn item(props: Value, assets: Value) -> Value {
        json!({"type": "Feature", "stac_version": "1.0.0", "id": "i", "properties": props, "assets": assets})
    }

    fn chosen(r: &StacRadiometry) -> Option<(&str, f64, f64)> {
        let s = r.sensor.as_ref()?;
        match s.preset.radiometry {
            Radiometry::Reflectance { scale, offset } => Some((s.preset.name, scale, offset)),
            Radiometry::Display8Bit => None,
        }
    }

    #[test]
    fn sentinel_2_l2a_by_baseline_offset_or_provider() {
        let b = bands(&["red"]);
        let plain = json!({"red": {"href": "x.tif"}});
        let p = json!({"platform": "sentinel-2b", "processing:level": "L2A", "s2:processing_baseline": "05.10"});
        let r = stac_radiometry(&item(p, plain.clone()), &b);
        assert_eq!(chosen(&r), Some(("s2-l2a", 1e-4, -0.1)));
        assert_eq!(
            r.sensor.unwrap().evidence,
            "platform sentinel-2b, processing:level L2A, s2:processing_baseline 05.10"
        );
        let old = json!({"platform": "Sentinel-2A", "s2:product_type": "S2MSI2A", "s2:processing_baseline": "02.14"});
        assert_eq!(
            chosen(&stac_radiometry(&item(old, plain.clone()), &b)),
            Some((STAC_PRESET, 1e-4, 0.0))
        );
        // Earth Search: the collection id says the level; the provider removed the offset.
        let mut e84 = item(
            json!({"constellation": "sentinel-2", "earthsearch:boa_offset_applied": true}),
            json!({"red": {"href": "x.tif", "raster:bands": [{"scale": 0.0001, "offset": -0.1}]}}),
        );
        e84["collection"] = json!("sentinel-2-l2a");
        let r = stac_radiometry(&e84, &b);
        assert_eq!(chosen(&r), Some((STAC_PRESET, 1e-4, 0.0)));
        assert!(
            r.warnings[0].contains("followed earthsearch:boa_offset_applied true"),
            "{r:?}"
        );
        // No baseline, no offset: not guessed.
        let r = stac_radiometry(
            &item(
                json!({"platform": "sentinel-2b", "processing:level": "L2A"}),
                plain,
            ),
            &b,
        );
        assert!(r.sensor.is_none());
        assert!(r.warnings[0].contains("--sensor s2-l2a"), "{r:?}");
    }

    #[test]
    fn raster_bands_alone_and_landsat() {
        let b = bands(&["red", "nir"]);
        let rb =
            |s: f64, o: f64| json!({"href": "x.tif", "raster:bands": [{"scale": s, "offset": o}]});
        let r = stac_radiometry(
            &item(
                json!({}),
                json!({"red": rb(1e-4, -0.1), "nir": rb(1e-4, -0.1)}),
            ),
            &b,
        );
        assert_eq!(chosen(&r), Some((STAC_PRESET, 1e-4, -0.1)));
        assert_eq!(
            r.sensor.unwrap().evidence,
            "raster:bands scale 0.0001, offset -0.1"
        );
        let r = stac_radiometry(
            &item(
                json!({}),
                json!({"red": rb(1e-4, -0.1), "nir": rb(1e-4, 0.0)}),
            ),
            &b,
        );
        assert!(r.sensor.is_none());
        assert!(r.warnings[0].contains("different ones per band"), "{r:?}");
        let ls = json!({"platform": "landsat-8", "landsat:correction": "L2SP"});
        let r = stac_radiometry(
            &item(
                ls.clone(),
                json!({"red": rb(2.75e-5, -0.2), "nir": rb(2.75e-5, -0.2)}),
            ),
            &b,
        );
        assert_eq!(chosen(&r), Some(("landsat8", 2.75e-5, -0.2)));
        let r = stac_radiometry(
            &item(ls, json!({"red": {"href": "x"}, "nir": {"href": "y"}})),
            &b,
        );
        assert_eq!(chosen(&r).map(|c| c.0), Some("landsat8"));
        // Nothing said: nothing chosen, nothing warned.
        let r = stac_radiometry(
            &item(json!({"datetime": null}), json!({"red": {"href": "x"}})),
            &bands(&["red"]),
        );
        assert!(r.sensor.is_none() && r.warnings.is_empty());
    }
}
