//! Sensor presets and band common names: how a raster that is not a
//! Sentinel-2 L1C stack with band descriptions is matched to a model's bands
//! and brought to the model's input units.
//!
//! Models name their bands the Sentinel-2 way (`B04`, `B08`, …) and their
//! `input_scale`/`input_offset` were made for **Sentinel-2 L1C digital
//! numbers**, where reflectance = DN / 10000. A preset says where each band of
//! a product sits in a stack (as Sentinel-2 band names) and how its digital
//! numbers become reflectance; [`model_scaling`] turns that into the scale and
//! offset to apply instead of the model's.

use serde::Serialize;

use super::bands::{S2_L1C_BANDS, S2_L2A_BANDS};

/// How a product's digital numbers become model input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Radiometry {
    /// Reflectance = DN × `scale` + `offset`.
    Reflectance {
        /// Multiplier.
        scale: f64,
        /// Added after the multiplier.
        offset: f64,
    },
    /// 8-bit display values 0–255 (a colour-stretched picture, not a
    /// measurement): mapped linearly onto the model's input clip range.
    Display8Bit,
}

/// A sensor/product preset: band order of a full stack and radiometry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SensorPreset {
    /// Name given to `--sensor`.
    pub name: &'static str,
    /// What it is, for messages and the README.
    pub title: &'static str,
    /// The bands of a full stack of this product in file order, as the
    /// Sentinel-2 band names models use (`B04` = red, …).
    pub bands: &'static [&'static str],
    /// The product's own band names in the same order (for messages).
    pub product_bands: &'static [&'static str],
    /// How DN become model input.
    pub radiometry: Radiometry,
}

/// Landsat 8/9 OLI Collection 2 Level-2 surface reflectance `SR_B1`…`SR_B7`
/// (coastal, blue, green, red, NIR, SWIR 1, SWIR 2). OLI's NIR band (B5,
/// 851–879 nm) is nearest Sentinel-2's B8A, but it is named `B08` here because
/// encoders ask for the broad NIR band B08.
const LANDSAT_OLI: [&str; 7] = ["B01", "B02", "B03", "B04", "B08", "B11", "B12"];
/// Landsat 7 ETM+ Collection 2 Level-2 surface reflectance `SR_B1`…`SR_B5`,
/// `SR_B7` (blue, green, red, NIR, SWIR 1, SWIR 2; thermal B6 is not a
/// reflectance band).
const LANDSAT_ETM: [&str; 6] = ["B02", "B03", "B04", "B08", "B11", "B12"];

/// USGS Landsat Collection 2 Level-2 surface reflectance scale factors:
/// reflectance = DN × 0.0000275 − 0.2 (USGS, "Landsat Collection 2 Level-2
/// Science Products", and the `REFLECTANCE_MULT_BAND_n` /
/// `REFLECTANCE_ADD_BAND_n` values of every C2 L2 MTL file).
const LANDSAT_C2_L2: Radiometry = Radiometry::Reflectance {
    scale: 0.0000275,
    offset: -0.2,
};

/// Every preset `--sensor` accepts.
pub const SENSOR_PRESETS: [SensorPreset; 7] = [
    SensorPreset {
        name: "s2-l1c",
        title: "Sentinel-2 L1C top-of-atmosphere reflectance × 10000, 13 bands B01…B12",
        bands: &S2_L1C_BANDS,
        product_bands: &S2_L1C_BANDS,
        // ESA Sentinel-2 L1C: reflectance = DN / QUANTIFICATION_VALUE (10000);
        // from processing baseline 04.00 the L1C products also carry a −1000
        // RADIO_ADD_OFFSET, but L1C stacks in the wild (and the models' training
        // data) are mostly without it: use s2-l2a's scaling for offset L1C DN.
        radiometry: Radiometry::Reflectance {
            scale: 1e-4,
            offset: 0.0,
        },
    },
    SensorPreset {
        name: "s2-l2a",
        title: "Sentinel-2 L2A surface reflectance, processing baseline 04.00 or later (DN − 1000) / 10000, 12 bands B01…B12 without B10",
        bands: &S2_L2A_BANDS,
        product_bands: &S2_L2A_BANDS,
        // ESA, "Sentinel-2 L2A product format, processing baseline 04.00"
        // (25 January 2022 on): BOA_ADD_OFFSET = −1000 and
        // BOA_QUANTIFICATION_VALUE = 10000, so reflectance = (DN − 1000) / 10000.
        // Earlier L2A products have no offset: score them without --sensor.
        radiometry: Radiometry::Reflectance {
            scale: 1e-4,
            offset: -0.1,
        },
    },
    SensorPreset {
        name: "landsat8",
        title: "Landsat 8 OLI Collection 2 Level-2 surface reflectance, 7 bands SR_B1…SR_B7",
        bands: &LANDSAT_OLI,
        product_bands: &[
            "SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7",
        ],
        radiometry: LANDSAT_C2_L2,
    },
    SensorPreset {
        name: "landsat9",
        title: "Landsat 9 OLI-2 Collection 2 Level-2 surface reflectance, 7 bands SR_B1…SR_B7",
        bands: &LANDSAT_OLI,
        product_bands: &[
            "SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7",
        ],
        radiometry: LANDSAT_C2_L2,
    },
    SensorPreset {
        name: "landsat7",
        title: "Landsat 7 ETM+ Collection 2 Level-2 surface reflectance, 6 bands SR_B1…SR_B5, SR_B7",
        bands: &LANDSAT_ETM,
        product_bands: &["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"],
        radiometry: LANDSAT_C2_L2,
    },
    SensorPreset {
        name: "reflectance",
        title: "reflectance 0–1 of any optical sensor (e.g. Float32), bands by description or colour interpretation, else the Sentinel-2 order",
        bands: &S2_L1C_BANDS,
        product_bands: &S2_L1C_BANDS,
        radiometry: Radiometry::Reflectance {
            scale: 1.0,
            offset: 0.0,
        },
    },
    SensorPreset {
        name: "rgb",
        title: "8-bit display RGB (0–255, e.g. an aerial orthophoto or a screenshot), 3 bands red, green, blue",
        bands: &["B04", "B03", "B02"],
        product_bands: &["red", "green", "blue"],
        radiometry: Radiometry::Display8Bit,
    },
];

/// The preset called `name` (case-insensitive; `_` and `-` alike).
///
/// # Examples
/// ```
/// use nexttile::raster::sensor_preset;
/// assert_eq!(sensor_preset("S2_L2A").map(|p| p.name), Some("s2-l2a"));
/// assert!(sensor_preset("sentinel-3").is_none());
/// ```
pub fn sensor_preset(name: &str) -> Option<&'static SensorPreset> {
    let key = name.trim().to_ascii_lowercase().replace('_', "-");
    SENSOR_PRESETS.iter().find(|p| p.name == key)
}

/// The names `--sensor` accepts, comma-separated (for messages).
pub fn sensor_names() -> String {
    SENSOR_PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// STAC `eo:common_name` (and GDAL colour interpretation) → the Sentinel-2
/// band name models use. After the STAC electro-optical extension's common
/// band names table; `nir` is the broad NIR band (S2 B08), `nir08` the narrow
/// one (B8A); `rededge` alone is taken as the first red-edge band (B05).
pub const COMMON_NAMES: [(&str, &str); 16] = [
    ("coastal", "B01"),
    ("blue", "B02"),
    ("green", "B03"),
    ("red", "B04"),
    ("rededge", "B05"),
    ("rededge071", "B05"),
    ("rededge075", "B06"),
    ("rededge078", "B07"),
    ("nir", "B08"),
    ("nir08", "B8A"),
    ("nir09", "B09"),
    ("cirrus", "B10"),
    ("swir16", "B11"),
    ("swir22", "B12"),
    // GDAL ≥ 3.10 colour interpretation names.
    ("swir", "B11"),
    ("coastalblue", "B01"),
];

/// The Sentinel-2 band name of a STAC common name or GDAL colour
/// interpretation name (`Red` → `B04`, `nir` → `B08`), case-insensitive.
///
/// # Examples
/// ```
/// use nexttile::raster::common_name_to_s2;
/// assert_eq!(common_name_to_s2("Red"), Some("B04"));
/// assert_eq!(common_name_to_s2("swir16"), Some("B11"));
/// assert_eq!(common_name_to_s2("Gray"), None);
/// ```
pub fn common_name_to_s2(name: &str) -> Option<&'static str> {
    let key: String = name
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    COMMON_NAMES
        .iter()
        .find(|(common, _)| *common == key)
        .map(|(_, s2)| *s2)
}

/// A sensor recognised from a raster's metadata, and the item that gave it
/// away.
#[derive(Debug, Clone, Serialize)]
pub struct DetectedSensor {
    /// The preset.
    pub preset: &'static str,
    /// The metadata item (`KEY=value`) it was recognised from.
    pub evidence: String,
}

/// Recognise a preset from dataset metadata items (`KEY=value`, any domain),
/// only on strong evidence: a Sentinel-2 L1C product; a Sentinel-2 L2A
/// product whose processing baseline is given and ≥ 04.00; a Landsat
/// Collection 2 Level-2 product. `None` otherwise (including L2A without a
/// baseline, where the offset is unknown: see [`l2a_without_baseline`]).
pub fn detect_sensor(items: &[String]) -> Option<DetectedSensor> {
    let upper: Vec<String> = items.iter().map(|i| i.to_ascii_uppercase()).collect();
    // The first item that satisfies `pred`, as written in the file.
    let find = |pred: &dyn Fn(&str) -> bool| {
        upper
            .iter()
            .position(|u| pred(u))
            .and_then(|i| items.get(i).cloned())
    };
    let s2 = find(&|u| u.contains("SENTINEL-2") || u.contains("SENTINEL2"));
    let l1c = find(&|u| u.contains("L1C") || u.contains("LEVEL-1C"));
    let l2a = find(&|u| u.contains("L2A") || u.contains("LEVEL-2A"));
    let evidence = |a: &str, b: &str| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}, {b}")
        }
    };
    if let (Some(s), Some(l)) = (&s2, &l1c) {
        return Some(DetectedSensor {
            preset: "s2-l1c",
            evidence: evidence(s, l),
        });
    }
    if let (Some(_), Some(_)) = (&s2, &l2a)
        && let Some(e) = find(&|u| {
            u.starts_with("PROCESSING_BASELINE=")
                && u.split('=')
                    .nth(1)
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .is_some_and(|v| v >= 4.0)
        })
    {
        return Some(DetectedSensor {
            preset: "s2-l2a",
            evidence: e,
        });
    }
    let landsat_l2 = find(&|u| u.contains("L2SP") || u.contains("L2SR"));
    for (id, preset) in [
        ("LANDSAT_8", "landsat8"),
        ("LANDSAT_9", "landsat9"),
        ("LANDSAT_7", "landsat7"),
    ] {
        if let (Some(l2), Some(e)) = (&landsat_l2, find(&|u| u.contains(id))) {
            return Some(DetectedSensor {
                preset,
                evidence: evidence(&e, l2),
            });
        }
    }
    None
}

/// The metadata item that says "Sentinel-2 L2A" when no processing baseline
/// says whether the −1000 offset applies (for a warning).
pub fn l2a_without_baseline(items: &[String]) -> Option<String> {
    if detect_sensor(items).is_some() {
        return None;
    }
    let has = |pred: &dyn Fn(&str) -> bool| {
        items
            .iter()
            .find(|i| pred(&i.to_ascii_uppercase()))
            .cloned()
    };
    let s2 = has(&|u| u.contains("SENTINEL-2") || u.contains("SENTINEL2"))?;
    let l2a = has(&|u| u.contains("L2A") || u.contains("LEVEL-2A"))?;
    Some(if s2 == l2a {
        s2
    } else {
        format!("{s2}, {l2a}")
    })
}

/// The scale and offset that bring a preset's DN to a model's inputs.
///
/// The model computes `x = clip(raw · s + o, lo, hi)` with `s`, `o` made for
/// Sentinel-2 L1C DN (`raw = 10000 · reflectance`). A reflectance preset
/// gives `reflectance = DN · a + b`, so `raw = 10000 · (DN · a + b)` and
/// `x = DN · (10000 · a · s) + (10000 · b · s + o)`. A display preset maps
/// 0–255 linearly onto the model's clip range `[lo, hi]`:
/// `x = lo + DN · (hi − lo) / 255` (for the EuroSAT-RGB encoders, `[0, 1]`:
/// `DN / 255`, exactly how their 8-bit training JPEGs were fed); `None` when
/// the model has no clip range (no honest mapping exists).
///
/// # Examples
/// ```
/// use nexttile::raster::{model_scaling, sensor_preset};
/// let l2a = sensor_preset("s2-l2a").unwrap();
/// let (s, o) = model_scaling(l2a, 1.0 / 2800.0, 0.0, Some((0.0, 1.0))).unwrap();
/// assert!((s - 1.0 / 2800.0).abs() < 1e-12 && (o + 1000.0 / 2800.0).abs() < 1e-12);
/// ```
pub fn model_scaling(
    preset: &SensorPreset,
    model_scale: f64,
    model_offset: f64,
    clip: Option<(f64, f64)>,
) -> Option<(f64, f64)> {
    match preset.radiometry {
        Radiometry::Reflectance { scale, offset } => Some((
            1e4 * scale * model_scale,
            1e4 * offset * model_scale + model_offset,
        )),
        Radiometry::Display8Bit => clip.map(|(lo, hi)| ((hi - lo) / 255.0, lo)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_consistent() {
        for p in &SENSOR_PRESETS {
            assert_eq!(p.bands.len(), p.product_bands.len(), "{}", p.name);
            assert_eq!(sensor_preset(p.name).map(|q| q.name), Some(p.name));
        }
        assert!(sensor_names().contains("landsat7"));
    }

    #[test]
    fn scaling_conversions() {
        let s = 1.0 / 2800.0;
        let l1c = sensor_preset("s2-l1c").unwrap();
        assert_eq!(model_scaling(l1c, s, 0.0, None), Some((s, 0.0)));
        // Landsat: DN 10000 → reflectance 0.075 → L1C DN 750.
        let ls = sensor_preset("landsat8").unwrap();
        let (a, b) = model_scaling(ls, s, 0.0, None).unwrap();
        assert!((10000.0 * a + b - 750.0 * s).abs() < 1e-9);
        // Float reflectance 0.0725 ≡ L1C DN 725.
        let r = sensor_preset("reflectance").unwrap();
        let (a, b) = model_scaling(r, s, 0.0, None).unwrap();
        assert!((0.0725 * a + b - 725.0 * s).abs() < 1e-9);
        let rgb = sensor_preset("rgb").unwrap();
        assert_eq!(model_scaling(rgb, s, 0.0, None), None);
        let (a, b) = model_scaling(rgb, s, 0.0, Some((0.0, 1.0))).unwrap();
        assert!((255.0 * a + b - 1.0).abs() < 1e-12);
    }

    #[test]
    fn detection_needs_strong_evidence() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let d = detect_sensor(&items(&["PRODUCT=Sentinel-2 L1C TOA reflectance x 10000"]));
        assert_eq!(d.map(|d| d.preset), Some("s2-l1c"));
        let l2a = items(&["SPACECRAFT_NAME=Sentinel-2A", "PROCESSING_LEVEL=Level-2A"]);
        assert!(detect_sensor(&l2a).is_none());
        assert!(l2a_without_baseline(&l2a).is_some());
        let mut with = l2a.clone();
        with.push("PROCESSING_BASELINE=05.10".into());
        assert_eq!(detect_sensor(&with).map(|d| d.preset), Some("s2-l2a"));
        let mut old = l2a;
        old.push("PROCESSING_BASELINE=03.01".into());
        assert!(detect_sensor(&old).is_none());
        let ls = items(&[
            "LANDSAT_PRODUCT_ID=LC09_L2SP_014033_20220101",
            "SPACECRAFT_ID=LANDSAT_9",
        ]);
        assert_eq!(detect_sensor(&ls).map(|d| d.preset), Some("landsat9"));
        assert!(detect_sensor(&items(&["AREA_OR_POINT=Area"])).is_none());
    }

    #[test]
    fn common_names() {
        for (n, want) in [
            ("red", "B04"),
            ("Green", "B03"),
            ("BLUE", "B02"),
            ("nir", "B08"),
            ("nir08", "B8A"),
            ("swir16", "B11"),
            ("swir22", "B12"),
            ("coastal", "B01"),
            ("rededge", "B05"),
            ("NIR", "B08"),
        ] {
            assert_eq!(common_name_to_s2(n), Some(want), "{n}");
        }
        assert_eq!(common_name_to_s2("Alpha"), None);
        assert_eq!(common_name_to_s2(""), None);
    }
}
