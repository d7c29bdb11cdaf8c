//! Saving and loading a [`TrainableHead`] as one safetensors file: the weights and the
//! standardisation as `f32` tensors, the spec, configuration and round counter as JSON
//! in the file's metadata. The write goes to a temporary file that is renamed into
//! place, so a crash never leaves a half-written checkpoint.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::train::Weights;
use super::{HeadConfig, HeadError, HeadSpec, TrainableHead};

const FORMAT: &str = "nexttile-head-1";

fn err(path: &Path, message: impl Into<String>) -> HeadError {
    HeadError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

impl TrainableHead {
    /// Writes the head to `path` (safetensors; atomic replace).
    ///
    /// # Errors
    ///
    /// [`HeadError::Checkpoint`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), HeadError> {
        let w = &self.weights;
        let mut arrays: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
            (
                "mean".into(),
                vec![self.mean.len()],
                bytes(self.mean.iter().copied()),
            ),
            (
                "inv_std".into(),
                vec![self.inv_std.len()],
                bytes(self.inv_std.iter().copied()),
            ),
            (
                "w1".into(),
                w.w1.shape().to_vec(),
                bytes(w.w1.iter().copied()),
            ),
            (
                "b1".into(),
                w.b1.shape().to_vec(),
                bytes(w.b1.iter().copied()),
            ),
            (
                "w2".into(),
                w.w2.shape().to_vec(),
                bytes(w.w2.iter().copied()),
            ),
            (
                "b2".into(),
                w.b2.shape().to_vec(),
                bytes(w.b2.iter().copied()),
            ),
        ];
        if let Some((a, b, c, d)) = &w.loss {
            arrays.push(("lw1".into(), a.shape().to_vec(), bytes(a.iter().copied())));
            arrays.push(("lb1".into(), b.shape().to_vec(), bytes(b.iter().copied())));
            arrays.push(("lw2".into(), c.shape().to_vec(), bytes(c.iter().copied())));
            arrays.push(("lb2".into(), d.shape().to_vec(), bytes(d.iter().copied())));
        }
        let mut views = Vec::with_capacity(arrays.len());
        for (name, shape, data) in &arrays {
            let view = TensorView::new(Dtype::F32, shape.clone(), data)
                .map_err(|e| err(path, e.to_string()))?;
            views.push((name.clone(), view));
        }
        let json = |v: serde_json::Result<String>| v.map_err(|e| err(path, e.to_string()));
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("spec".to_string(), json(serde_json::to_string(&self.spec))?),
            (
                "config".to_string(),
                json(serde_json::to_string(&self.config))?,
            ),
            ("fits".to_string(), self.fits.to_string()),
        ]);
        let tmp = path.with_extension("safetensors.part");
        safetensors::tensor::serialize_to_file(views, Some(metadata), &tmp)
            .map_err(|e| err(path, format!("cannot write: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| err(path, format!("cannot rename into place: {e}")))
    }

    /// Reads a head written by [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// [`HeadError::Checkpoint`] naming what is missing or inconsistent.
    pub fn load(path: &Path) -> Result<Self, HeadError> {
        let buffer = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(&buffer)
            .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or_else(|| err(path, "no metadata; not a NextTile head"))?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(err(
                path,
                format!("not a NextTile head (format is not {FORMAT})"),
            ));
        }
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| err(path, format!("metadata `{k}` missing")))
        };
        let spec: HeadSpec = serde_json::from_str(field("spec")?)
            .map_err(|e| err(path, format!("metadata `spec`: {e}")))?;
        let config: HeadConfig = serde_json::from_str(field("config")?)
            .map_err(|e| err(path, format!("metadata `config`: {e}")))?;
        let fits: u64 = field("fits")?
            .parse()
            .map_err(|e| err(path, format!("metadata `fits`: {e}")))?;
        let tensors = SafeTensors::deserialize(&buffer)
            .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, HeadError> {
            let t = tensors
                .tensor(name)
                .map_err(|_| err(path, format!("tensor `{name}` missing")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(err(
                    path,
                    format!(
                        "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let a2 = |name: &str, r: usize, c: usize| -> Result<Array2<f32>, HeadError> {
            Array2::from_shape_vec((r, c), get(name, &[r, c])?)
                .map_err(|e| err(path, format!("tensor `{name}`: {e}")))
        };
        let a1 = |name: &str, n: usize| -> Result<Array1<f32>, HeadError> {
            Ok(Array1::from_vec(get(name, &[n])?))
        };
        let (d, h, c, l) = (
            spec.input_dim,
            config.hidden,
            spec.classes.len(),
            config.loss_hidden,
        );
        let loss = if spec.loss_prediction {
            Some((
                a2("lw1", l, h)?,
                a1("lb1", l)?,
                a2("lw2", 1, l)?,
                a1("lb2", 1)?,
            ))
        } else {
            None
        };
        let weights = Weights {
            w1: a2("w1", h, d)?,
            b1: a1("b1", h)?,
            w2: a2("w2", c, h)?,
            b2: a1("b2", c)?,
            loss,
        };
        Ok(Self {
            mean: a1("mean", d)?,
            inv_std: a1("inv_std", d)?,
            spec,
            config,
            weights,
            fits,
        })
    }
}
