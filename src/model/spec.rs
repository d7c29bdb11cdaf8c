//! The model contract: what an ONNX file says about itself in its metadata.
//!
//! Keys follow Deepness where Deepness has them (`model_type`, `class_names`,
//! `resolution` in cm/px, `tiles_size`, `tiles_overlap`,
//! `standardization_mean`, `standardization_std`), read in Deepness's JSON form
//! and in the bare form alike (see [`super::deepness`]; an encoder goes to
//! Deepness through `set_metadata.py --deepness`). NextTile adds what active
//! learning needs; the README's "Model contract" section lists every key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::ModelError;
use super::deepness;

/// The part a model plays in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    /// Tiles (N × C × H × W) → embeddings (N × D); runs once per tile.
    Encoder,
    /// Embeddings (N × D) → class probabilities (N × K); runs T times for MC dropout.
    Head,
}

/// Name, element type and shape (−1 = dynamic) of one graph input or output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IoInfo {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type as onnxruntime names it (`f32`, `bool`, …).
    pub dtype: String,
    /// Dimensions; −1 where dynamic.
    pub shape: Vec<i64>,
}

pub use crate::preprocess::Preprocess;

/// How a per-band encoder's embeddings of the chosen bands become one
/// embedding per tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BandFusion {
    /// Average over bands: the head sees `D` whatever bands were chosen, so
    /// one head serves every band list (the default).
    Mean,
    /// Concatenate in band order: the head sees `D × k` for `k` bands and is
    /// tied to that band list.
    Concat,
}

/// One sensor's share of a multi-modal encoder's input channels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Modality {
    /// Name as the metadata gives it (`s1`, `s2`, …).
    pub name: String,
    /// Its bands, in input order.
    pub bands: Vec<String>,
}

/// Everything NextTile needs to know about one ONNX model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    /// File the model was read from.
    pub path: PathBuf,
    /// SHA-256 of the file (hex): the model hash written into every output.
    pub sha256: String,
    /// Encoder or head.
    pub role: ModelRole,
    /// `model_name` metadata, else the file stem.
    pub name: String,
    /// Free-text description, if any.
    pub description: Option<String>,
    /// Graph inputs.
    pub inputs: Vec<IoInfo>,
    /// Graph outputs.
    pub outputs: Vec<IoInfo>,
    /// Encoder: name of the image input.
    pub input_name: String,
    /// Encoder: name of the embedding output. Head: name of the probabilities output.
    pub output_name: String,
    /// Encoder: input preprocessing (band list, scaling, standardisation).
    pub preprocess: Option<Preprocess>,
    /// Encoder: recommended tile edge in pixels (`tiles_size`).
    pub tile_size: Option<usize>,
    /// Encoder: fixed input height/width when the graph fixes them.
    pub fixed_input_size: Option<usize>,
    /// Encoder: tile sizes must be a multiple of this (`input_stride`, e.g. the
    /// network's total downsampling).
    pub input_stride: Option<usize>,
    /// Ground sampling distance the model was trained at, metres per pixel
    /// (Deepness `resolution` is cm/px).
    pub resolution_m: Option<f64>,
    /// Encoder: tiles per batch it runs best at (`nexttile_batch_size`; e.g. encoders with
    /// large activations run faster and smaller in small batches), used unless the
    /// request sets one.
    pub batch_size: Option<usize>,
    /// Encoder: embedding length, when known (per band for per-band encoders).
    pub embedding_dim: Option<usize>,
    /// Encoder: the sensors its input stacks, in input order (`modalities`);
    /// empty for a single-sensor model.
    pub modalities: Vec<Modality>,
    /// Encoder: takes one band at a time (`per_band`); `preprocess.bands` then
    /// lists every band it accepts.
    pub per_band: bool,
    /// Encoder, per-band: how the chosen bands' embeddings are fused.
    pub band_fusion: BandFusion,
    /// Encoder, per-band: bands embedded when the user names none.
    pub default_bands: Vec<String>,
    /// Head: class names in output order.
    pub class_names: Vec<String>,
    /// Head: sigmoid per class (multi-label) instead of softmax.
    pub multi_label: bool,
    /// Head: boolean input that switches dropout on for MC passes.
    pub mc_dropout_input: Option<String>,
    /// Head: the loss-prediction output (`loss_output`, N × 1), LL of seed 004.
    pub loss_output: Option<String>,
    /// Head: SHA-256 of the encoder it was trained on, if recorded.
    pub encoder_sha256: Option<String>,
    /// Labels per class at which `auto` switches to its uncertainty stage, as chosen on
    /// the validation fold for the encoder's features (`nexttile_auto_switch_per_class`,
    /// on the head or the encoder; the head's wins, a request's own value over both).
    pub auto_switch_per_class: Option<usize>,
    /// All metadata properties as stored.
    pub metadata: BTreeMap<String, String>,
}

impl ModelSpec {
    /// Read the contract from metadata and graph signature. Pure: no onnxruntime
    /// needed, so it is unit-tested directly.
    pub fn from_parts(
        path: PathBuf,
        sha256: String,
        metadata: BTreeMap<String, String>,
        inputs: Vec<IoInfo>,
        outputs: Vec<IoInfo>,
    ) -> Result<Self, ModelError> {
        // Deepness writes string values with json.dumps: read `"Recognition"` and
        // `Recognition` alike (the stored metadata keeps what the file says).
        let decoded = deepness::decode_json_strings(&metadata);
        let m = &decoded;
        let file = path.display().to_string();
        let role = role_of(m, &inputs, &file)?;
        let name = m.get("model_name").cloned().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let mut spec = ModelSpec {
            path,
            sha256,
            role,
            name,
            description: m.get("description").cloned(),
            inputs,
            outputs,
            input_name: String::new(),
            output_name: String::new(),
            preprocess: None,
            tile_size: None,
            fixed_input_size: None,
            input_stride: None,
            resolution_m: None,
            embedding_dim: None,
            modalities: Vec::new(),
            per_band: false,
            band_fusion: BandFusion::Mean,
            default_bands: Vec::new(),
            class_names: Vec::new(),
            multi_label: false,
            mc_dropout_input: None,
            loss_output: None,
            encoder_sha256: encoder_sha256(m, &file)?,
            auto_switch_per_class: None,
            batch_size: None,
            metadata: BTreeMap::new(),
        };
        spec.resolution_m = parse_opt::<f64>(m, "resolution", &file)?.map(|cm| cm / 100.0);
        // Deepness documents `tiles_size`; its dialog reads `tile_size`.
        spec.tile_size = match parse_opt::<usize>(m, "tiles_size", &file)? {
            Some(t) => Some(t),
            None => parse_opt::<usize>(m, "tile_size", &file)?,
        };
        match role {
            ModelRole::Encoder => spec.read_encoder_contract(m, &file)?,
            ModelRole::Head => spec.read_head_contract(m, &file)?,
        }
        spec.auto_switch_per_class =
            parse_opt::<usize>(m, "nexttile_auto_switch_per_class", &file)?;
        spec.metadata = metadata;
        Ok(spec)
    }

    /// Fills an encoder's contract from its metadata: input and embedding names, the
    /// preprocessing, per-band use and fusion, default bands, modalities, the fixed
    /// input size, stride, batch size and embedding width.
    fn read_encoder_contract(
        &mut self,
        m: &BTreeMap<String, String>,
        file: &str,
    ) -> Result<(), ModelError> {
        let contract = |problem: String| ModelError::Contract {
            path: file.to_string(),
            problem,
        };
        self.input_name = pick_io(&self.inputs, m.get("input_name"), "input_name", file, 4)?;
        self.output_name = pick_io(
            &self.outputs,
            m.get("embedding_output"),
            "embedding_output",
            file,
            2,
        )?;
        // A Deepness file (its model_type, none of NextTile's scaling keys) is fed
        // the layer's RGB channels divided by 255, as Deepness runs it.
        let deepness_channels = deepness::uses_deepness_scaling(m).then(|| {
            self.inputs
                .iter()
                .find(|i| i.name == self.input_name)
                .and_then(|i| i.shape.get(1).copied())
                .unwrap_or(-1)
        });
        let pre = parse_preprocess(m, file, deepness_channels)?;
        let n = pre.bands.len();
        let bands = pre.bands.clone();
        self.preprocess = Some(pre);
        self.per_band = parse_opt::<bool>(m, "per_band", file)?.unwrap_or(false);
        self.band_fusion = match m.get("band_fusion").map(|v| v.trim().trim_matches('"')) {
            None | Some("mean") => BandFusion::Mean,
            Some("concat") => BandFusion::Concat,
            Some(other) => {
                return Err(contract(format!(
                    "band_fusion is '{other}'; it must be 'mean' or 'concat'"
                )));
            }
        };
        let defaults: Option<Vec<String>> = parse_json_opt(m, "default_bands", file)?;
        if let Some(d) = defaults {
            if let Some(bad) = d.iter().find(|b| !bands.contains(b)) {
                return Err(contract(format!(
                    "default_bands names {bad}, which input_bands does not list"
                )));
            }
            self.default_bands = d;
        }
        self.modalities = parse_modalities(m, &bands, file)?;
        let shape = self
            .inputs
            .iter()
            .find(|i| i.name == self.input_name)
            .map(|i| i.shape.clone())
            .unwrap_or_default();
        let channels = if self.per_band { 1 } else { n };
        if let [_, c, h, w] = shape[..] {
            if self.per_band && c > 0 && c != 1 {
                return Err(contract(format!(
                    "per_band is true but the input '{}' takes {c} channels; a per-band encoder takes one",
                    self.input_name
                )));
            }
            if c > 0 && c as usize != channels {
                return Err(contract(format!(
                    "input_bands lists {n} bands but the input '{}' takes {c} channels",
                    self.input_name
                )));
            }
            if h > 0 && h == w {
                self.fixed_input_size = Some(h as usize);
            }
        }
        self.input_stride = parse_opt::<usize>(m, "input_stride", file)?;
        self.batch_size = parse_opt::<usize>(m, "nexttile_batch_size", file)?.filter(|n| *n > 0);
        self.embedding_dim = parse_opt::<usize>(m, "embedding_dim", file)?.or_else(|| {
            self.outputs
                .iter()
                .find(|o| o.name == self.output_name)
                .and_then(|o| o.shape.get(1).copied())
                .filter(|d| *d > 0)
                .map(|d| d as usize)
        });
        Ok(())
    }

    /// Fills a head's contract from its metadata: embedding input and probabilities
    /// output, class names, multi-label, the MC-dropout input and the loss output.
    fn read_head_contract(
        &mut self,
        m: &BTreeMap<String, String>,
        file: &str,
    ) -> Result<(), ModelError> {
        self.input_name = pick_io(
            &self.inputs,
            m.get("embedding_input"),
            "embedding_input",
            file,
            2,
        )?;
        self.output_name = pick_io(
            &self.outputs,
            m.get("probabilities_output"),
            "probabilities_output",
            file,
            2,
        )?;
        match m.get("class_names") {
            None => {
                return Err(missing_err(
                    file.to_string(),
                    &["class_names (JSON {\"0\": \"name\", …} or [\"name\", …])"],
                ));
            }
            Some(raw) => self.class_names = parse_class_names(raw, file)?,
        }
        self.multi_label = parse_opt::<bool>(m, "multi_label", file)?.unwrap_or(false);
        self.mc_dropout_input = named_io(m, "mc_dropout_input", &self.inputs, "an input", file)?;
        self.loss_output = named_io(m, "loss_output", &self.outputs, "an output", file)?;
        Ok(())
    }

    /// What Deepness or GeoDeep would trip over in this file (empty: it loads there
    /// and gets the input NextTile gives it); see [`deepness::problems`].
    pub fn deepness_problems(&self) -> Vec<String> {
        deepness::problems(&self.metadata, &self.inputs, &self.outputs)
    }

    /// Whether this file is `sha256` or was exported from it
    /// (`nexttile_source_sha256`, written by `set_metadata.py --deepness`): a head
    /// trained on the source serves the export.
    pub fn is_or_derives_from(&self, sha256: &str) -> bool {
        self.sha256 == sha256
            || self
                .metadata
                .get("nexttile_source_sha256")
                .is_some_and(|s| s.trim().trim_matches('"') == sha256)
    }

    /// Check that a tile edge of `tile` pixels can be fed to this encoder.
    pub fn check_tile_size(&self, tile: usize) -> Result<(), ModelError> {
        let bad = |why: String| ModelError::TileSize {
            model: self.path.display().to_string(),
            tile,
            why,
        };
        if let Some(f) = self.fixed_input_size
            && tile != f
        {
            return Err(bad(format!(
                "its input is fixed at {f} x {f} px; use --tile-size {f}"
            )));
        }
        if let Some(s) = self.input_stride
            && (tile < s || !tile.is_multiple_of(s))
        {
            let hint = self.tile_size.unwrap_or(s * 4);
            return Err(bad(format!(
                "it needs a multiple of {s} px (its downsampling); e.g. --tile-size {hint}"
            )));
        }
        Ok(())
    }
}

/// A model's role: `nexttile_role` in its metadata, else guessed from its first input
/// (N×C×H×W: encoder; N×D: head).
fn role_of(
    m: &BTreeMap<String, String>,
    inputs: &[IoInfo],
    file: &str,
) -> Result<ModelRole, ModelError> {
    match m.get("nexttile_role").map(String::as_str) {
        Some("encoder") => Ok(ModelRole::Encoder),
        Some("head") => Ok(ModelRole::Head),
        Some(other) => Err(ModelError::Contract {
            path: file.to_string(),
            problem: format!("nexttile_role is '{other}'; it must be 'encoder' or 'head'"),
        }),
        None => match inputs.first().map(|i| i.shape.len()) {
            Some(4) => Ok(ModelRole::Encoder),
            Some(2) => Ok(ModelRole::Head),
            _ => Err(ModelError::Contract {
                path: file.to_string(),
                problem: "metadata has no nexttile_role and the first input is neither N×C×H×W (encoder) nor N×D (head)".into(),
            }),
        },
    }
}

/// A head's `encoder_sha256` (the SHA-256 of the encoder file it was trained on), in
/// lower case; refused unless it is 64 hexadecimal digits, since a head's metadata may
/// hold any text and this one is compared with files' digests and quoted in messages.
fn encoder_sha256(m: &BTreeMap<String, String>, file: &str) -> Result<Option<String>, ModelError> {
    let Some(v) = m.get("encoder_sha256") else {
        return Ok(None);
    };
    if v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Some(v.to_ascii_lowercase()));
    }
    let shown: String = v.chars().take(24).collect();
    let more = if v.chars().count() > 24 { "…" } else { "" };
    Err(ModelError::Contract {
        path: file.to_string(),
        problem: format!(
            "encoder_sha256 is '{shown}{more}', which is not a SHA-256: it must be the 64 hexadecimal digits of the encoder file the head was trained on (`sha256sum encoder.onnx`); set it with `python onnx/set_metadata.py HEAD.onnx encoder_sha256=<digits>` or remove it with `--delete encoder_sha256`"
        ),
    })
}

/// An encoder's preprocessing from its metadata: `input_bands` (required), the
/// standardisation (default mean 0, std 1), `input_clip`, `input_scale` and
/// `input_offset`.
fn parse_preprocess(
    m: &BTreeMap<String, String>,
    file: &str,
    deepness_channels: Option<i64>,
) -> Result<Preprocess, ModelError> {
    let contract = |problem: String| ModelError::Contract {
        path: file.to_string(),
        problem,
    };
    let mut bands: Option<Vec<String>> = parse_json_opt(m, "input_bands", file)?;
    if bands.is_none()
        && let Some(channels) = deepness_channels
    {
        bands = deepness::default_bands(channels);
    }
    let Some(bands) = bands else {
        return Err(missing_err(
            file.to_string(),
            &["input_bands (JSON list of band names, e.g. [\"B04\",\"B03\",\"B02\"])"],
        ));
    };
    if bands.is_empty() {
        return Err(contract("input_bands is empty".into()));
    }
    let n = bands.len();
    let mean: Vec<f32> =
        parse_json_opt(m, "standardization_mean", file)?.unwrap_or_else(|| vec![0.0; n]);
    let std: Vec<f32> =
        parse_json_opt(m, "standardization_std", file)?.unwrap_or_else(|| vec![1.0; n]);
    if mean.len() != n || std.len() != n || std.iter().any(|s| *s <= 0.0) {
        return Err(contract(format!(
            "standardization_mean/std must each list {n} values (one per input band), std > 0; got {} and {}",
            mean.len(),
            std.len()
        )));
    }
    let clip: Option<Vec<f32>> = parse_json_opt(m, "input_clip", file)?;
    let clip = match clip.as_deref() {
        None => None,
        Some([lo, hi]) if lo < hi => Some((*lo, *hi)),
        Some(_) => {
            return Err(contract(
                "input_clip must be [low, high] with low < high".into(),
            ));
        }
    };
    Ok(Preprocess {
        bands,
        scale: match parse_opt::<f32>(m, "input_scale", file)? {
            Some(s) => s,
            None if deepness_channels.is_some() => deepness::DEEPNESS_SCALE,
            None => 1.0,
        },
        offset: parse_opt::<f32>(m, "input_offset", file)?.unwrap_or(0.0),
        clip,
        mean,
        std,
    })
}

/// The graph input/output that metadata `key` names, if it names one; an
/// error when the name is not among `ios`.
fn named_io(
    m: &BTreeMap<String, String>,
    key: &str,
    ios: &[IoInfo],
    what: &str,
    file: &str,
) -> Result<Option<String>, ModelError> {
    match m.get(key) {
        None => Ok(None),
        Some(name) if ios.iter().any(|i| &i.name == name) => Ok(Some(name.clone())),
        Some(name) => Err(ModelError::Contract {
            path: file.to_string(),
            problem: format!("{key} names '{name}', which is not {what} of the graph"),
        }),
    }
}

/// `modalities`: a JSON object `{name: [bands…]}` whose lists, in order,
/// concatenate to `input_bands` (per-band encoders: partition it).
fn parse_modalities(
    m: &BTreeMap<String, String>,
    bands: &[String],
    file: &str,
) -> Result<Vec<Modality>, ModelError> {
    let Some(raw) = m.get("modalities") else {
        return Ok(Vec::new());
    };
    let bad = |why: String| ModelError::Contract {
        path: file.to_string(),
        problem: format!("modalities {why}: {raw}"),
    };
    // serde_json's Map keeps keys sorted unless `preserve_order`; parse the
    // pairs in file order by hand through a visitor-free route: a list of
    // (key, value) from the raw text via serde_json::Deserializer.
    let pairs = ordered_object(raw).map_err(bad)?;
    let mut out = Vec::with_capacity(pairs.len());
    for (name, v) in pairs {
        let list: Vec<String> = serde_json::from_value(v)
            .map_err(|_| bad(format!("entry '{name}' must be a list of band names")))?;
        if list.is_empty() {
            return Err(bad(format!("entry '{name}' is empty")));
        }
        out.push(Modality { name, bands: list });
    }
    let joined: Vec<&String> = out.iter().flat_map(|o| o.bands.iter()).collect();
    if joined.len() != bands.len() || joined.iter().zip(bands).any(|(a, b)| *a != b) {
        return Err(bad(format!(
            "must list input_bands [{}] split by sensor, in the same order",
            bands.join(", ")
        )));
    }
    Ok(out)
}

/// A JSON object's members in the order the text gives them.
fn ordered_object(raw: &str) -> Result<Vec<(String, serde_json::Value)>, String> {
    struct Ordered(Vec<(String, serde_json::Value)>);
    impl<'de> serde::Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Ordered, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = a.next_entry::<String, serde_json::Value>()? {
                        out.push((k, v));
                    }
                    Ok(Ordered(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Ordered>(raw)
        .map(|o| o.0)
        .map_err(|e| format!("is not a JSON object ({e})"))
}

fn missing_err(file: String, missing: &[&str]) -> ModelError {
    ModelError::Contract {
        path: file,
        problem: format!(
            "its ONNX metadata lacks {}; add them with `python onnx/set_metadata.py MODEL key=value …` (see README, Model contract)",
            missing.join(", ")
        ),
    }
}

fn parse_opt<T: std::str::FromStr>(
    m: &BTreeMap<String, String>,
    key: &str,
    file: &str,
) -> Result<Option<T>, ModelError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .trim_matches('"')
            .parse::<T>()
            .map(Some)
            .map_err(|_| ModelError::Contract {
                path: file.to_string(),
                problem: format!(
                    "metadata {key} = '{v}' is not a valid {}",
                    std::any::type_name::<T>()
                ),
            }),
    }
}

fn parse_json_opt<T: serde::de::DeserializeOwned>(
    m: &BTreeMap<String, String>,
    key: &str,
    file: &str,
) -> Result<Option<T>, ModelError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => serde_json::from_str(v)
            .map(Some)
            .map_err(|e| ModelError::Contract {
                path: file.to_string(),
                problem: format!(
                    "metadata {key} is not valid JSON of the expected shape ({e}): {v}"
                ),
            }),
    }
}

/// Deepness stores class names as a JSON object `{"0": "a", "1": "b"}`; a
/// plain list is accepted too.
fn parse_class_names(raw: &str, file: &str) -> Result<Vec<String>, ModelError> {
    let bad = |why: String| ModelError::Contract {
        path: file.to_string(),
        problem: format!("class_names {why}: {raw}"),
    };
    // Deepness falls back to Python's ast.literal_eval (`{0: 'a', 1: 'b'}`).
    let v: serde_json::Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => deepness::python_literal_to_json(raw)
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or_else(|| bad(format!("is neither JSON nor a Python literal ({e})")))?,
    };
    let names: Vec<String> = match v {
        serde_json::Value::Array(a) => a
            .into_iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("must hold strings".into()))
            })
            .collect::<Result<_, _>>()?,
        serde_json::Value::Object(o) => {
            let mut pairs = Vec::with_capacity(o.len());
            for (k, x) in o {
                let i: usize = k
                    .parse()
                    .map_err(|_| bad(format!("key '{k}' is not an index")))?;
                let s = x
                    .as_str()
                    .ok_or_else(|| bad("must map indices to strings".into()))?;
                pairs.push((i, s.to_string()));
            }
            pairs.sort();
            if pairs.iter().enumerate().any(|(n, (i, _))| n != *i) {
                return Err(bad("indices must be 0..K-1 without gaps".into()));
            }
            pairs.into_iter().map(|(_, s)| s).collect()
        }
        _ => return Err(bad("must be a list or an object".into())),
    };
    if names.len() < 2 {
        return Err(bad("must name at least two classes".into()));
    }
    Ok(names)
}

/// Choose an input/output by the metadata's name, or the only one of the right rank.
fn pick_io(
    ios: &[IoInfo],
    named: Option<&String>,
    key: &str,
    file: &str,
    rank: usize,
) -> Result<String, ModelError> {
    if let Some(n) = named {
        return if ios.iter().any(|i| &i.name == n) {
            Ok(n.clone())
        } else {
            Err(ModelError::Contract {
                path: file.to_string(),
                problem: format!(
                    "metadata {key} = '{n}' but the graph has only {:?}",
                    ios.iter().map(|i| i.name.as_str()).collect::<Vec<_>>()
                ),
            })
        };
    }
    let of_rank: Vec<&IoInfo> = ios.iter().filter(|i| i.shape.len() == rank).collect();
    match of_rank.as_slice() {
        [one] => Ok(one.name.clone()),
        _ => Err(ModelError::Contract {
            path: file.to_string(),
            problem: format!(
                "metadata has no {key} and the graph has no single rank-{rank} candidate; set {key}"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(name: &str, dtype: &str, shape: &[i64]) -> IoInfo {
        IoInfo {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.to_vec(),
        }
    }

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn encoder(pairs: &[(&str, &str)]) -> Result<ModelSpec, ModelError> {
        ModelSpec::from_parts(
            "enc.onnx".into(),
            "abc".into(),
            meta(pairs),
            vec![io("image", "f32", &[-1, 3, -1, -1])],
            vec![io("embedding", "f32", &[-1, 256])],
        )
    }

    #[test]
    fn reads_a_full_encoder_contract() {
        let s = encoder(&[
            ("nexttile_role", "encoder"),
            ("input_bands", r#"["B04","B03","B02"]"#),
            ("input_scale", "0.0004"),
            ("input_clip", "[0, 1]"),
            ("standardization_mean", "[0.3, 0.4, 0.5]"),
            ("standardization_std", "[0.1, 0.1, 0.2]"),
            ("resolution", "1000"),
            ("tiles_size", "64"),
            ("input_stride", "16"),
        ])
        .unwrap();
        assert_eq!(s.role, ModelRole::Encoder);
        let p = s.preprocess.as_ref().unwrap();
        assert_eq!(p.bands, vec!["B04", "B03", "B02"]);
        assert_eq!(p.clip, Some((0.0, 1.0)));
        assert_eq!(s.resolution_m, Some(10.0));
        assert_eq!(s.embedding_dim, Some(256));
        assert!(s.check_tile_size(64).is_ok());
        let err = s.check_tile_size(40).unwrap_err().to_string();
        assert!(err.contains("multiple of 16"), "{err}");
    }

    #[test]
    fn encoder_recommends_its_batch_size() {
        let base = [
            ("nexttile_role", "encoder"),
            ("input_bands", r#"["B04","B03","B02"]"#),
        ];
        assert_eq!(encoder(&base).unwrap().batch_size, None);
        let mut with = base.to_vec();
        with.push(("nexttile_batch_size", "16"));
        assert_eq!(encoder(&with).unwrap().batch_size, Some(16));
        with.pop();
        with.push(("nexttile_batch_size", "-3"));
        let err = encoder(&with).unwrap_err().to_string();
        assert!(err.contains("nexttile_batch_size"), "{err}");
    }

    #[test]
    fn deepness_style_metadata_reads_as_deepness_runs_it() {
        // json.dumps values, no NextTile keys: raw / 255, red/green/blue, tile_size.
        let s = encoder(&[
            ("model_type", "\"Recognition\""),
            ("tile_size", "64"),
            ("standardization_mean", "[0.4, 0.4, 0.4]"),
            ("standardization_std", "[0.2, 0.2, 0.2]"),
        ])
        .unwrap();
        let p = s.preprocess.as_ref().unwrap();
        assert_eq!(p.bands, ["B04", "B03", "B02"]);
        assert!((p.scale - 1.0 / 255.0).abs() < 1e-9);
        assert_eq!(s.tile_size, Some(64));
        // A NextTile file keeps its own scaling whatever its model_type looks like.
        let s = encoder(&[
            ("model_type", "\"Recognition\""),
            ("nexttile_contract", "1"),
            ("input_bands", r#"["B04","B03","B02"]"#),
        ])
        .unwrap();
        assert_eq!(s.preprocess.as_ref().unwrap().scale, 1.0);
        // A JSON-encoded role reads as the bare one.
        let s = encoder(&[
            ("nexttile_role", "\"encoder\""),
            ("input_bands", r#"["B04","B03","B02"]"#),
            ("nexttile_source_sha256", "\"feed\""),
        ])
        .unwrap();
        assert!(s.is_or_derives_from("abc") && s.is_or_derives_from("feed"));
        assert!(!s.is_or_derives_from("other"));
    }

    #[test]
    fn encoder_without_bands_names_the_key() {
        let err = encoder(&[("nexttile_role", "encoder")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("input_bands"), "{err}");
    }

    #[test]
    fn channel_count_must_match_bands() {
        let err = encoder(&[("input_bands", r#"["B04","B03"]"#)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 channels"), "{err}");
    }

    #[test]
    fn head_reads_deepness_class_names() {
        let s = ModelSpec::from_parts(
            "head.onnx".into(),
            "abc".into(),
            meta(&[
                ("class_names", r#"{"1":"water","0":"land"}"#),
                ("mc_dropout_input", "mc_dropout"),
            ]),
            vec![
                io("embedding", "f32", &[-1, 256]),
                io("mc_dropout", "bool", &[]),
            ],
            vec![io("probs", "f32", &[-1, 2])],
        )
        .unwrap();
        assert_eq!(s.role, ModelRole::Head);
        assert_eq!(s.class_names, vec!["land", "water"]);
        assert_eq!(s.output_name, "probs");
        assert_eq!(s.mc_dropout_input.as_deref(), Some("mc_dropout"));
    }

    #[test]
    fn head_declares_its_auto_switch() {
        let head = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("class_names", r#"["a","b"]"#)];
            pairs.extend_from_slice(extra);
            ModelSpec::from_parts(
                "head.onnx".into(),
                "abc".into(),
                meta(&pairs),
                vec![io("embedding", "f32", &[-1, 8])],
                vec![io("probs", "f32", &[-1, 2])],
            )
        };
        assert_eq!(head(&[]).unwrap().auto_switch_per_class, None);
        let s = head(&[("nexttile_auto_switch_per_class", "10")]).unwrap();
        assert_eq!(s.auto_switch_per_class, Some(10));
        let err = head(&[("nexttile_auto_switch_per_class", "ten")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nexttile_auto_switch_per_class"), "{err}");
    }

    #[test]
    fn head_without_class_names_is_refused() {
        let err = ModelSpec::from_parts(
            "head.onnx".into(),
            "abc".into(),
            BTreeMap::new(),
            vec![io("embedding", "f32", &[-1, 256])],
            vec![io("probs", "f32", &[-1, 2])],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("class_names"), "{err}");
    }

    #[test]
    fn fixed_input_size_is_enforced() {
        let s = ModelSpec::from_parts(
            "enc.onnx".into(),
            "abc".into(),
            meta(&[("input_bands", r#"["B02"]"#)]),
            vec![io("x", "f32", &[1, 1, 32, 32])],
            vec![io("y", "f32", &[1, 8])],
        )
        .unwrap();
        assert_eq!(s.fixed_input_size, Some(32));
        assert!(
            s.check_tile_size(64)
                .unwrap_err()
                .to_string()
                .contains("--tile-size 32")
        );
    }

    const S1S2: &str = r#"["VV","VH","B02","B03"]"#;

    #[test]
    fn reads_modalities_in_file_order() {
        let s = ModelSpec::from_parts(
            "enc.onnx".into(),
            "abc".into(),
            meta(&[
                ("input_bands", S1S2),
                ("modalities", r#"{"s2":["B02","B03"],"s1":["VV","VH"]}"#),
            ]),
            vec![io("x", "f32", &[-1, 4, -1, -1])],
            vec![io("y", "f32", &[-1, 8])],
        );
        // s2 before s1 does not match input_bands' order: refused.
        let err = s.unwrap_err().to_string();
        assert!(err.contains("split by sensor"), "{err}");
        let s = ModelSpec::from_parts(
            "enc.onnx".into(),
            "abc".into(),
            meta(&[
                ("input_bands", S1S2),
                ("modalities", r#"{"s1":["VV","VH"],"s2":["B02","B03"]}"#),
            ]),
            vec![io("x", "f32", &[-1, 4, -1, -1])],
            vec![io("y", "f32", &[-1, 8])],
        )
        .unwrap();
        let names: Vec<_> = s.modalities.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2"]);
        assert_eq!(s.modalities[1].bands, ["B02", "B03"]);
    }

    #[test]
    fn per_band_encoder_takes_one_channel() {
        let spec = |channels: i64, extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("input_bands", S1S2),
                ("per_band", "true"),
                ("standardization_mean", "[-12, -18, 1500, 1400]"),
                ("standardization_std", "[4, 5, 900, 800]"),
            ];
            pairs.extend_from_slice(extra);
            ModelSpec::from_parts(
                "enc.onnx".into(),
                "abc".into(),
                meta(&pairs),
                vec![io("x", "f32", &[-1, channels, -1, -1])],
                vec![io("y", "f32", &[-1, 8])],
            )
        };
        let s = spec(1, &[("default_bands", r#"["VV","B03"]"#)]).unwrap();
        assert!(s.per_band);
        assert_eq!(s.band_fusion, BandFusion::Mean);
        assert_eq!(s.default_bands, ["VV", "B03"]);
        let err = spec(4, &[]).unwrap_err().to_string();
        assert!(err.contains("takes one"), "{err}");
        let err = spec(1, &[("default_bands", r#"["B08"]"#)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("B08"), "{err}");
        let err = spec(1, &[("band_fusion", "max")]).unwrap_err().to_string();
        assert!(err.contains("'mean' or 'concat'"), "{err}");
        assert_eq!(
            spec(1, &[("band_fusion", "concat")]).unwrap().band_fusion,
            BandFusion::Concat
        );
    }

    #[test]
    fn head_loss_output_must_exist() {
        let head = |lo: &str| {
            ModelSpec::from_parts(
                "head.onnx".into(),
                "abc".into(),
                meta(&[
                    ("class_names", r#"["a","b","c"]"#),
                    ("multi_label", "true"),
                    ("probabilities_output", "probs"),
                    ("loss_output", lo),
                ]),
                vec![io("embedding", "f32", &[-1, 16])],
                vec![
                    io("probs", "f32", &[-1, 3]),
                    io("predicted_loss", "f32", &[-1, 1]),
                ],
            )
        };
        let s = head("predicted_loss").unwrap();
        assert!(s.multi_label);
        assert_eq!(s.loss_output.as_deref(), Some("predicted_loss"));
        let err = head("loss").unwrap_err().to_string();
        assert!(err.contains("not an output"), "{err}");
    }
}
