//! Deepness and GeoDeep interop: reading their metadata the way they do, and
//! checking a file against the formats they read.
//!
//! Facts this module relies on (Deepness 0.6,
//! <https://qgis-plugin-deepness.readthedocs.io/en/latest/creators/creators_add_metadata_to_model.html>,
//! and its `processing/models/model_base.py`; GeoDeep's `geodeep/inference.py`):
//!
//! - every Deepness key is read with `json.loads`: `model_type` must be a JSON
//!   string (`"Recognition"`, written with `json.dumps('Recognition')`), numbers
//!   JSON numbers, `standardization_mean/std` JSON lists; `class_names` a JSON
//!   object `{"0": "a", …}` (Deepness falls back to Python's `ast.literal_eval`,
//!   so `{0: 'a'}` loads too; GeoDeep does not);
//! - the tile-size key is `tiles_size` in the documentation and `tile_size` in
//!   the code that fills the dialog;
//! - the graph has exactly one input, N × C × H × W; Deepness's recognition path
//!   resizes to the input's H × W and GeoDeep tiles at its W, so both must be
//!   fixed numbers;
//! - the input is `raw / 255`, then `(x − mean) / std` per channel with
//!   `standardization_mean/std`; nothing else.

use std::collections::BTreeMap;

use super::IoInfo;

/// Where Deepness documents its metadata keys.
pub const DEEPNESS_METADATA_DOC: &str = "https://qgis-plugin-deepness.readthedocs.io/en/latest/creators/creators_add_metadata_to_model.html";

/// The `model_type` values Deepness knows (it capitalises what it reads).
pub const DEEPNESS_MODEL_TYPES: [&str; 5] = [
    "Segmentor",
    "Detector",
    "Regressor",
    "Recognition",
    "Superresolution",
];

/// Deepness's input scaling: every raw value is divided by 255 before standardising.
pub const DEEPNESS_SCALE: f32 = 1.0 / 255.0;

/// The metadata with every value that is a JSON string literal (`"Recognition"`)
/// replaced by its text: Deepness writes strings with `json.dumps`, older files
/// (and NextTile's shipped models until 2026-12-07) hold the bare text; both read the same.
pub(super) fn decode_json_strings(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| {
            let t = v.trim();
            let decoded = if t.starts_with('"') {
                serde_json::from_str::<String>(t).ok()
            } else {
                None
            };
            (k.clone(), decoded.unwrap_or_else(|| v.clone()))
        })
        .collect()
}

/// A file written for Deepness or GeoDeep rather than for NextTile: it names a
/// Deepness `model_type` and carries none of NextTile's scaling keys or its
/// contract version, so its input is Deepness's `raw / 255`.
pub(super) fn uses_deepness_scaling(m: &BTreeMap<String, String>) -> bool {
    let deepness_type = m.get("model_type").is_some_and(|t| {
        DEEPNESS_MODEL_TYPES
            .iter()
            .any(|d| d.eq_ignore_ascii_case(t))
    });
    deepness_type
        && ![
            "nexttile_contract",
            "input_scale",
            "input_offset",
            "input_clip",
        ]
        .iter()
        .any(|k| m.contains_key(*k))
}

/// The bands a Deepness file without `input_bands` is fed: Deepness passes the
/// layer's first channels in RGB order, so a 3-channel model gets red, green,
/// blue (Sentinel-2 names B04, B03, B02). `None` for other channel counts.
pub(super) fn default_bands(channels: i64) -> Option<Vec<String>> {
    (channels == 3).then(|| vec!["B04".into(), "B03".into(), "B02".into()])
}

/// Text a Python literal (`{0: 'a', 1: "b"}`, `['a', 'b']`) as JSON, as Deepness's
/// `ast.literal_eval` fallback reads `class_names`: single-quoted strings become
/// JSON strings and bare integer keys are quoted. `None` when it is something else.
pub(super) fn python_literal_to_json(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len() + 8);
    let mut chars = raw.trim().chars().peekable();
    // Whether the next token sits in an object's key position.
    let mut expect_key = false;
    let mut depth: Vec<char> = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '\\' => s.push(escape(chars.next()?)?),
                        q if q == c => break,
                        other => s.push(other),
                    }
                }
                out.push_str(&serde_json::to_string(&s).ok()?);
                expect_key = false;
            }
            '{' | '[' => {
                depth.push(c);
                expect_key = c == '{';
                out.push(c);
            }
            '}' | ']' => {
                depth.pop();
                expect_key = false;
                out.push(c);
            }
            ',' => {
                expect_key = depth.last() == Some(&'{');
                out.push(c);
            }
            ':' => {
                expect_key = false;
                out.push(c);
            }
            d if d.is_ascii_digit() && expect_key => {
                let mut n = String::from(d);
                while let Some(x) = chars.peek().copied().filter(char::is_ascii_digit) {
                    n.push(x);
                    chars.next();
                }
                out.push('"');
                out.push_str(&n);
                out.push('"');
                expect_key = false;
            }
            w if w.is_whitespace() => out.push(w),
            other => {
                out.push(other);
                expect_key = false;
            }
        }
    }
    Some(out)
}

fn escape(c: char) -> Option<char> {
    Some(match c {
        'n' => '\n',
        't' => '\t',
        '\\' | '\'' | '"' => c,
        _ => return None,
    })
}

/// What Deepness (or GeoDeep) would trip over in a model with this metadata and
/// these graph inputs/outputs: one sentence per problem, each naming the key and
/// the fix. Empty when Deepness reads the file and feeds it the input NextTile
/// feeds it.
pub fn problems(
    metadata: &BTreeMap<String, String>,
    inputs: &[IoInfo],
    outputs: &[IoInfo],
) -> Vec<String> {
    let mut out = Vec::new();
    let json = |k: &str| {
        metadata
            .get(k)
            .map(|v| (v, serde_json::from_str::<serde_json::Value>(v)))
    };
    match json("model_type") {
        None => out.push("no model_type: Deepness cannot tell what the model does; set model_type to the JSON string \"Recognition\" (encoders)".into()),
        Some((v, Ok(serde_json::Value::String(t)))) => {
            if !DEEPNESS_MODEL_TYPES.iter().any(|d| d.eq_ignore_ascii_case(&t)) {
                out.push(format!("model_type {v} is not a Deepness model type ({})", DEEPNESS_MODEL_TYPES.join(", ")));
            }
        }
        Some((v, _)) => out.push(format!("model_type is the bare text '{v}': Deepness and GeoDeep read it with json.loads; store the JSON string \"{v}\" (set_metadata.py writes it so), or export with `python onnx/set_metadata.py MODEL --deepness OUT`")),
    }
    if let Some((v, parsed)) = json("class_names") {
        let ok = match parsed {
            Ok(serde_json::Value::Object(o)) => {
                let mut keys: Vec<usize> = o.keys().filter_map(|k| k.parse().ok()).collect();
                keys.sort_unstable();
                keys.len() == o.len() && keys.iter().enumerate().all(|(i, k)| i == *k)
            }
            _ => false,
        };
        if !ok {
            out.push(format!("class_names {v} is not a JSON object {{\"0\": \"name\", …}} with indices 0…K−1: Deepness sorts its items by index"));
        }
    }
    for key in ["resolution", "tiles_overlap"] {
        if let Some((v, parsed)) = json(key)
            && !matches!(parsed, Ok(serde_json::Value::Number(_)))
        {
            out.push(format!("{key} '{v}' is not a plain number: Deepness reads it with json.loads, GeoDeep with float()"));
        }
    }
    let tile = |k: &str| json(k).map(|(v, p)| (v.clone(), p.ok().and_then(|x| x.as_u64())));
    match (tile("tiles_size"), tile("tile_size")) {
        (_, Some((_, Some(_)))) => {}
        (_, Some((v, None))) => out.push(format!("tile_size '{v}' is not a JSON integer")),
        (Some((v, None)), None) => out.push(format!("tiles_size '{v}' is not a JSON integer")),
        // Only tiles_size (the documented key): Deepness's dialog does not pre-fill
        // the tile size from it, but nothing breaks.
        (Some(_), None) | (None, None) => {}
    }
    let channels = image_channels(inputs, &mut out);
    if metadata
        .get("per_band")
        .is_some_and(|v| v.trim().trim_matches('"') == "true")
    {
        out.push("per_band is true: the encoder embeds one band at a time and Deepness feeds every channel at once, so it cannot go to Deepness".into());
        return out;
    }
    for key in ["standardization_mean", "standardization_std"] {
        if let Some((v, parsed)) = json(key) {
            let n = parsed.ok().and_then(|x| {
                x.as_array()
                    .map(|a| (a.len(), a.iter().all(serde_json::Value::is_number)))
            });
            match (n, channels) {
                (Some((len, true)), Some(c)) if len as i64 == c => {}
                (Some((_, true)), None) => {}
                _ => out.push(format!(
                    "{key} {v} is not a JSON list of one number per input channel"
                )),
            }
        }
    }
    if metadata
        .get("model_type")
        .map(|t| t.contains("Recognition"))
        .unwrap_or(false)
        && outputs.len() != 1
    {
        out.push(format!(
            "a Recognition model has one output N × D for Deepness; this one has {}",
            outputs.len()
        ));
    }
    let scaled = ["input_scale", "input_offset", "input_clip"]
        .iter()
        .any(|k| metadata.contains_key(*k));
    let deepness_scale = metadata
        .get("input_scale")
        .and_then(|s| s.trim().parse::<f32>().ok())
        .is_some_and(|s| (s - DEEPNESS_SCALE).abs() <= DEEPNESS_SCALE * 1e-5);
    let no_offset = metadata
        .get("input_offset")
        .is_none_or(|o| o.trim().parse::<f32>().ok() == Some(0.0));
    if scaled && !(deepness_scale && no_offset && !metadata.contains_key("input_clip")) {
        out.push("its input_scale/input_offset/input_clip are not Deepness's raw / 255 with no clip, so Deepness would feed it other numbers than NextTile does; export with `python onnx/set_metadata.py MODEL --deepness OUT`".into());
    }
    out
}

/// The channel count of the single N × C × H × W input, noting what Deepness
/// and GeoDeep need of it.
fn image_channels(inputs: &[IoInfo], out: &mut Vec<String>) -> Option<i64> {
    let [input] = inputs else {
        out.push(format!(
            "the graph has {} inputs; Deepness and GeoDeep take exactly one (N × C × H × W)",
            inputs.len()
        ));
        return None;
    };
    let [_, c, h, w] = input.shape[..] else {
        out.push(format!(
            "input '{}' has rank {}; Deepness and GeoDeep need N × C × H × W",
            input.name,
            input.shape.len()
        ));
        return None;
    };
    if h <= 0 || w <= 0 {
        out.push(format!("input '{}' has a dynamic height/width: Deepness's recognition resizes to the input's H × W and GeoDeep tiles at its W, so they must be fixed; export with `python onnx/set_metadata.py MODEL --deepness OUT` (fixes them at tiles_size)", input.name));
    }
    (c > 0).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn io(name: &str, shape: &[i64]) -> IoInfo {
        IoInfo {
            name: name.into(),
            dtype: "f32".into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn json_strings_decode_and_others_stay() {
        let m = decode_json_strings(&meta(&[
            ("model_type", "\"Recognition\""),
            ("bare", "Recognition"),
            ("list", "[1, 2]"),
            ("num", "1000"),
            ("broken", "\"unterminated"),
        ]));
        assert_eq!(m["model_type"], "Recognition");
        assert_eq!(m["bare"], "Recognition");
        assert_eq!(m["list"], "[1, 2]");
        assert_eq!(m["num"], "1000");
        assert_eq!(m["broken"], "\"unterminated");
    }

    #[test]
    fn python_literals_become_json() {
        let j = python_literal_to_json("{0: 'background', 1: \"field\", 2: 'it\\'s'}").unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["0"], "background");
        assert_eq!(v["1"], "field");
        assert_eq!(v["2"], "it's");
        let j = python_literal_to_json("['a', 'b']").unwrap();
        assert_eq!(serde_json::from_str::<Vec<String>>(&j).unwrap(), ["a", "b"]);
        assert!(python_literal_to_json("{0: 'open").is_none());
    }

    #[test]
    fn deepness_scaling_only_for_deepness_files() {
        assert!(uses_deepness_scaling(&meta(&[(
            "model_type",
            "Recognition"
        )])));
        assert!(!uses_deepness_scaling(&meta(&[
            ("model_type", "Recognition"),
            ("input_scale", "1")
        ])));
        assert!(!uses_deepness_scaling(&meta(&[
            ("model_type", "Recognition"),
            ("nexttile_contract", "1")
        ])));
        assert!(!uses_deepness_scaling(&meta(&[(
            "model_type",
            "Classifier"
        )])));
        assert!(!uses_deepness_scaling(&meta(&[])));
    }

    #[test]
    fn a_deepness_file_has_no_problems() {
        let m = meta(&[
            ("model_type", "\"Recognition\""),
            ("resolution", "1000"),
            ("tiles_size", "64"),
            ("tile_size", "64"),
            ("tiles_overlap", "0"),
            ("standardization_mean", "[0.4, 0.4, 0.4]"),
            ("standardization_std", "[0.2, 0.2, 0.2]"),
        ]);
        let p = problems(
            &m,
            &[io("image", &[-1, 3, 64, 64])],
            &[io("embedding", &[-1, 8])],
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn each_problem_is_named() {
        let m = meta(&[
            ("model_type", "Recognition"),
            ("class_names", "[\"a\", \"b\"]"),
            ("resolution", "\"1000\""),
            ("tiles_size", "sixty-four"),
            ("standardization_mean", "[0.4, 0.4]"),
            ("input_scale", "0.0004"),
        ]);
        let p = problems(
            &m,
            &[io("image", &[-1, 3, -1, -1])],
            &[io("embedding", &[-1, 8])],
        )
        .join("\n");
        for want in [
            "bare text",
            "class_names",
            "resolution",
            "standardization_mean",
            "dynamic height/width",
            "raw / 255",
        ] {
            assert!(p.contains(want), "{want}: {p}");
        }
        let two = problems(
            &meta(&[("model_type", "\"Recognition\"")]),
            &[io("a", &[-1, 8]), io("b", &[])],
            &[io("p", &[-1, 2])],
        );
        assert!(two.join(" ").contains("2 inputs"), "{two:?}");
    }
}
