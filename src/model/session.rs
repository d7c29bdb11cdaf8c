//! onnxruntime sessions for encoders and heads.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView4, Axis, Ix2};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorRef, ValueType};
use sha2::{Digest, Sha256};

use super::spec::{BandFusion, IoInfo, ModelRole, ModelSpec};
use super::{ModelError, runtime};

/// Default cap on the size of a model file: 2 GiB (the shipped models are a few MB;
/// onnxruntime keeps weights over 2 GB in external data files anyway).
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 2 << 30;

/// Session settings (threads); the execution provider comes from the build.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Threads inside one operator; 0 = onnxruntime's default (all cores).
    pub intra_threads: usize,
    /// Let onnxruntime's idle worker threads spin (lower latency per call,
    /// but they hold the cores the raster reader needs). Default off.
    pub spinning: bool,
    /// Larger model files are refused before they are read.
    pub max_model_bytes: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            intra_threads: 0,
            spinning: std::env::var("NEXTTILE_ORT_SPIN").is_ok_and(|v| v == "1"),
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
        }
    }
}

/// Read an ONNX file's contract without keeping a session around.
pub fn inspect(path: &Path) -> Result<ModelSpec, ModelError> {
    inspect_with(path, SessionConfig::default())
}

/// [`inspect`] with session settings (the model size cap among them).
pub fn inspect_with(path: &Path, cfg: SessionConfig) -> Result<ModelSpec, ModelError> {
    load(path, cfg).map(|(_, spec)| spec)
}

/// What a path that is not a regular file is, for the error.
fn file_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() { "a folder" } else { "not a file" }
}

/// Reads a model file, refusing devices, FIFOs, folders and files over `max` bytes
/// before reading any of it. The file is opened without blocking (a FIFO swapped in
/// after the first check cannot hang the open) and checked again on the open handle,
/// and the read stops at `max` bytes whatever the file does meanwhile.
fn read_model_file(path: &Path, max: u64) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let file = path.display().to_string();
    let read_err = |e| ModelError::Read {
        path: file.clone(),
        source: e,
    };
    let check = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(ModelError::NotAFile {
                path: file.clone(),
                kind: file_kind(meta.file_type()),
            });
        }
        if meta.len() > max {
            return Err(ModelError::TooLarge {
                path: file.clone(),
                bytes: meta.len(),
                max,
            });
        }
        Ok(())
    };
    check(&std::fs::metadata(path).map_err(read_err)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let handle = options.open(path).map_err(read_err)?;
    let meta = handle.metadata().map_err(read_err)?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    handle
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > max {
        return Err(ModelError::TooLarge {
            path: file,
            bytes: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

fn load(path: &Path, cfg: SessionConfig) -> Result<(Session, ModelSpec), ModelError> {
    let file = path.display().to_string();
    let bytes = read_model_file(path, cfg.max_model_bytes)?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let env = runtime::environment()?;
    let ort_err = |e: ort::Error| ModelError::NotOnnx {
        path: file.clone(),
        message: e.to_string(),
    };
    let mut builder = Session::builder(env)
        .map_err(ort_err)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| ort_err(e.into()))?
        // Worker threads sleep instead of spinning between runs, so the raster
        // reader thread gets the cores while a batch is being prepared
        // (measured on the sample: see README, Performance).
        .with_intra_op_spinning(cfg.spinning)
        .map_err(|e| ort_err(e.into()))?;
    if cfg.intra_threads > 0 {
        builder = builder
            .with_intra_threads(cfg.intra_threads)
            .map_err(|e| ort_err(e.into()))?;
    }
    #[cfg(feature = "cuda")]
    {
        let (provider, _) = runtime::provider_decision();
        if provider == "CUDA" {
            builder = match builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "CUDA execution provider failed to register; running on CPU");
                    runtime::note_cuda_fallback(e.to_string());
                    e.recover()
                }
            };
        }
    }
    let session = builder.commit_from_memory(&bytes).map_err(ort_err)?;
    let metadata = {
        let md = session.metadata().map_err(ort_err)?;
        let mut map = BTreeMap::new();
        for k in md.custom_keys().map_err(ort_err)? {
            if let Some(v) = md.custom(&k) {
                map.insert(k, v);
            }
        }
        map
    };
    let ios = |outlets: &[ort::value::Outlet]| -> Vec<IoInfo> {
        outlets
            .iter()
            .map(|o| {
                let (dtype, shape) = match o.dtype() {
                    ValueType::Tensor { ty, shape, .. } => (ty.to_string(), shape.to_vec()),
                    other => (format!("{other:?}"), Vec::new()),
                };
                IoInfo {
                    name: o.name().to_string(),
                    dtype,
                    shape,
                }
            })
            .collect()
    };
    // Inputs with a default (an initializer of the same name, like the head's
    // `mc_dropout` switch) are "overridable initializers" to onnxruntime, not
    // inputs; list them with the inputs since callers may feed them.
    let mut inputs = ios(session.inputs());
    for o in session.overridable_initializers() {
        if !inputs.iter().any(|i| i.name == o.name()) {
            let (dtype, shape) = match o.dtype() {
                ValueType::Tensor { ty, shape, .. } => (ty.to_string(), shape.to_vec()),
                other => (format!("{other:?}"), Vec::new()),
            };
            inputs.push(IoInfo {
                name: o.name().to_string(),
                dtype,
                shape,
            });
        }
    }
    let spec = ModelSpec::from_parts(
        path.to_path_buf(),
        sha256,
        metadata,
        inputs,
        ios(session.outputs()),
    )?;
    Ok((session, spec))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn expect_role(spec: &ModelSpec, role: ModelRole) -> Result<(), ModelError> {
    if spec.role == role {
        Ok(())
    } else {
        Err(ModelError::WrongRole {
            path: spec.path.display().to_string(),
            expected: role,
            found: spec.role,
        })
    }
}

fn run_err(spec: &ModelSpec) -> impl Fn(ort::Error) -> ModelError + '_ {
    move |e| ModelError::Inference {
        model: spec.name.clone(),
        message: e.to_string(),
    }
}

/// Rows per head call in [`Head::predict_mc`] (T × tiles): 65,536 rows of
/// 256-d embeddings are 64 MiB.
pub const MC_BLOCK_ROWS: usize = 65_536;

/// An encoder session: tiles in, embeddings out. Runs once per tile.
pub struct Encoder {
    session: Session,
    /// The model's contract.
    pub spec: ModelSpec,
}

impl Encoder {
    /// Load an encoder; refuses a file whose metadata makes it a head.
    pub fn load(path: &Path, cfg: SessionConfig) -> Result<Self, ModelError> {
        let (session, spec) = load(path, cfg)?;
        expect_role(&spec, ModelRole::Encoder)?;
        Ok(Encoder { session, spec })
    }

    /// Embed a batch of preprocessed tiles `[N, C, H, W]` → `[N, D]`.
    ///
    /// A per-band encoder (`per_band`) sees the `C` chosen bands one at a
    /// time: the batch is viewed as `[N·C, 1, H, W]` (no copy: the bands of a
    /// tile are contiguous), embedded in one call, and the `C` embeddings of
    /// each tile are fused by the model's `band_fusion`: their mean (`[N, D]`)
    /// or their concatenation in band order (`[N, C·D]`).
    pub fn embed(&mut self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>, ModelError> {
        if !self.spec.per_band {
            return self.embed_stack(batch);
        }
        let (n, c, h, w) = batch.dim();
        let standard = batch.as_standard_layout();
        let single = standard
            .view()
            .into_shape_with_order((n * c, 1, h, w))
            .map_err(|e| ModelError::Inference {
                model: self.spec.name.clone(),
                message: format!("cannot split {c} bands for the per-band encoder: {e}"),
            })?;
        let each = self.embed_stack(single)?;
        let d = each.ncols();
        let per_tile =
            each.into_shape_with_order((n, c, d))
                .map_err(|e| ModelError::Inference {
                    model: self.spec.name.clone(),
                    message: format!("per-band embeddings: {e}"),
                })?;
        Ok(match self.spec.band_fusion {
            BandFusion::Mean => per_tile
                .mean_axis(Axis(1))
                .unwrap_or_else(|| Array2::zeros((n, d))),
            BandFusion::Concat => {
                per_tile
                    .into_shape_with_order((n, c * d))
                    .map_err(|e| ModelError::Inference {
                        model: self.spec.name.clone(),
                        message: format!("per-band embeddings: {e}"),
                    })?
            }
        })
    }

    /// Run the graph once on `[N, C, H, W]` → `[N, D]`.
    fn embed_stack(&mut self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>, ModelError> {
        let spec = &self.spec;
        let input = TensorRef::from_array_view(batch).map_err(run_err(spec))?;
        let outputs = self
            .session
            .run(ort::inputs![spec.input_name.as_str() => input])
            .map_err(run_err(spec))?;
        let out = outputs[spec.output_name.as_str()]
            .try_extract_array::<f32>()
            .map_err(run_err(spec))?;
        let n = batch.len_of(Axis(0));
        let flat = out
            .to_shape((n, out.len() / n.max(1)))
            .map_err(|e| ModelError::Inference {
                model: spec.name.clone(),
                message: format!("embedding output has shape {:?}: {e}", out.shape()),
            })?;
        Ok(flat.into_owned())
    }
}

/// A classifier head: embeddings in, class probabilities out. Runs T times
/// with dropout on for MC-dropout uncertainty.
pub struct Head {
    session: Session,
    /// The model's contract.
    pub spec: ModelSpec,
}

impl Head {
    /// Load a head; refuses a file whose metadata makes it an encoder.
    pub fn load(path: &Path, cfg: SessionConfig) -> Result<Self, ModelError> {
        let (session, spec) = load(path, cfg)?;
        expect_role(&spec, ModelRole::Head)?;
        Ok(Head { session, spec })
    }

    /// Whether the head can switch dropout on for MC passes.
    pub fn has_mc_dropout(&self) -> bool {
        self.spec.mc_dropout_input.is_some()
    }

    /// One pass over `[N, D]` embeddings → `[N, K]` probabilities; `mc` turns
    /// dropout on (fresh masks every call) where the head allows it.
    pub fn predict(
        &mut self,
        embeddings: ArrayView2<'_, f32>,
        mc: bool,
    ) -> Result<Array2<f32>, ModelError> {
        Ok(self.predict_with_loss(embeddings, mc)?.0)
    }

    /// One pass → `[N, K]` probabilities and, for a head with a `loss_output`,
    /// the `[N]` predicted losses.
    pub fn predict_with_loss(
        &mut self,
        embeddings: ArrayView2<'_, f32>,
        mc: bool,
    ) -> Result<(Array2<f32>, Option<Array1<f32>>), ModelError> {
        let spec = &self.spec;
        let emb = TensorRef::from_array_view(embeddings).map_err(run_err(spec))?;
        let mut inputs = ort::inputs![spec.input_name.as_str() => emb];
        if let Some(name) = &spec.mc_dropout_input {
            let flag = Tensor::from_array(ndarray::arr0(mc)).map_err(run_err(spec))?;
            inputs.push((name.as_str().into(), flag.into()));
        }
        let outputs = self.session.run(inputs).map_err(run_err(spec))?;
        let out = outputs[spec.output_name.as_str()]
            .try_extract_array::<f32>()
            .map_err(run_err(spec))?;
        let probs = out
            .into_dimensionality::<Ix2>()
            .map_err(|e| ModelError::Inference {
                model: spec.name.clone(),
                message: format!("probabilities output must be N x K: {e}"),
            })?;
        if probs.ncols() != spec.class_names.len() {
            return Err(ModelError::Inference {
                model: spec.name.clone(),
                message: format!(
                    "head returned {} classes but class_names lists {}",
                    probs.ncols(),
                    spec.class_names.len()
                ),
            });
        }
        let loss = match &spec.loss_output {
            None => None,
            Some(name) => {
                let l = outputs[name.as_str()]
                    .try_extract_array::<f32>()
                    .map_err(run_err(spec))?;
                if l.len() != probs.nrows() {
                    return Err(ModelError::Inference {
                        model: spec.name.clone(),
                        message: format!(
                            "loss output '{name}' has shape {:?}; it must hold one value per tile (N x 1)",
                            l.shape()
                        ),
                    });
                }
                Some(l.iter().copied().collect::<Array1<f32>>())
            }
        };
        Ok((probs.to_owned(), loss))
    }

    /// `passes` MC-dropout passes → `[T, N, K]`. With `passes == 1` this is
    /// one deterministic pass. A head without an MC switch is run T times
    /// as it is (identical passes unless its graph keeps dropout on).
    ///
    /// The T passes run as one batch: each chunk of tiles is repeated T times
    /// and sent through the head in a single onnxruntime call (dropout draws
    /// an independent mask per row), so per-call overhead is paid once per
    /// chunk, not T times. Chunks keep the repeated block under
    /// [`MC_BLOCK_ROWS`] rows, bounding memory on large scenes.
    pub fn predict_mc(
        &mut self,
        embeddings: ArrayView2<'_, f32>,
        passes: usize,
    ) -> Result<Array3<f32>, ModelError> {
        Ok(self.predict_mc_with_loss(embeddings, passes)?.0)
    }

    /// [`predict_mc`](Self::predict_mc), plus the MC mean of the predicted
    /// loss per tile `[N]` for a head with a `loss_output`.
    pub fn predict_mc_with_loss(
        &mut self,
        embeddings: ArrayView2<'_, f32>,
        passes: usize,
    ) -> Result<(Array3<f32>, Option<Array1<f32>>), ModelError> {
        let t = passes.max(1);
        let (n, d) = embeddings.dim();
        let k = self.spec.class_names.len();
        let mut out = Array3::<f32>::zeros((t, n, k));
        if t == 1 {
            let (p, loss) = self.predict_with_loss(embeddings, false)?;
            for mut pass in out.outer_iter_mut() {
                pass.assign(&p);
            }
            return Ok((out, loss));
        }
        let mut loss_sum: Option<Array1<f32>> = self
            .spec
            .loss_output
            .as_ref()
            .map(|_| Array1::<f32>::zeros(n));
        let chunk = (MC_BLOCK_ROWS / t).max(1);
        let mut block = Array2::<f32>::zeros((t * chunk.min(n.max(1)), d));
        let mut start = 0;
        while start < n {
            let m = chunk.min(n - start);
            let src = embeddings.slice(ndarray::s![start..start + m, ..]);
            for pass in 0..t {
                block
                    .slice_mut(ndarray::s![pass * m..(pass + 1) * m, ..])
                    .assign(&src);
            }
            let (p, loss) = self.predict_with_loss(block.slice(ndarray::s![..t * m, ..]), true)?;
            for pass in 0..t {
                out.slice_mut(ndarray::s![pass, start..start + m, ..])
                    .assign(&p.slice(ndarray::s![pass * m..(pass + 1) * m, ..]));
            }
            if let (Some(sum), Some(l)) = (loss_sum.as_mut(), loss) {
                for pass in 0..t {
                    let mut dst = sum.slice_mut(ndarray::s![start..start + m]);
                    dst += &l.slice(ndarray::s![pass * m..(pass + 1) * m]);
                }
            }
            start += m;
        }
        if let Some(sum) = loss_sum.as_mut() {
            sum.mapv_inplace(|v| v / t as f32);
        }
        Ok((out, loss_sum))
    }
}
