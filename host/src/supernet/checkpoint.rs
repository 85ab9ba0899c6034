//! Weights and training checkpoints as safetensors files in the run
//! directory, each written atomically (temp file, fsync, rename) so a run
//! killed at any moment leaves either the previous file or the new one.
//!
//! - [`WEIGHTS_FILE`]: the supernet's tensors (f32, standard contiguous
//!   layout), names as in [`Supernet::named_tensors`].
//! - [`CHECKPOINT_FILE`]: the same tensors plus one momentum buffer per
//!   parameter that has taken a step (`optimizer.momentum.<name>`), and the
//!   [`TrainState`] as JSON in the header's metadata. All in one file, so
//!   weights, optimizer and step can never disagree after a crash.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{Sgd, Supernet, SupernetError};

/// Final (or latest exported) supernet weights in a run directory.
pub const WEIGHTS_FILE: &str = "supernet.safetensors";
/// Training checkpoint in a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// Prefix of momentum buffers in a checkpoint.
pub const MOMENTUM_PREFIX: &str = "optimizer.momentum.";
/// Metadata key of the [`TrainState`] JSON.
const STATE_KEY: &str = "padnas.train_state";
/// Metadata key of the space hash in weights files.
const SPACE_KEY: &str = "padnas.space_hash";

/// Where training stands; everything random is derived from `seed` and
/// `step`, so this is the whole random-number state too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done.
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Job seed.
    pub seed: u64,
    /// Hash of the sampling space.
    pub space_hash: String,
    /// Settings that must not change across a resume (train config and
    /// data sizes, as JSON).
    pub fingerprint: String,
}

/// How strictly a file must match the supernet's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Same names, same shapes (resume).
    Exact,
    /// Every supernet tensor present; extra tensors in the file ignored
    /// (loading a full supernet's weights into a pruned one).
    Subset,
}

/// A tensor ready for serialisation: name, shape, little-endian f32 bytes.
type RawTensor = (String, Vec<usize>, Vec<u8>);

fn io_err(path: &Path, source: std::io::Error) -> SupernetError {
    SupernetError::Io {
        path: path.to_path_buf(),
        cause: source,
    }
}

fn bad(path: &Path, message: impl Into<String>) -> SupernetError {
    SupernetError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// f32 values of a tensor in row-major order (whatever its strides).
pub(crate) fn to_f32(t: &Tensor) -> Result<Vec<f32>, SupernetError> {
    let t = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?;
    let n = t.numel();
    let mut v = vec![0f32; n];
    t.f_copy_data(&mut v, n)?;
    Ok(v)
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// [`crate::files::write_atomic`], its error as this module's.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SupernetError> {
    crate::files::write_atomic(path, bytes).map_err(|e| io_err(&e.path, e.cause))
}

fn serialize(
    path: &Path,
    tensors: Vec<RawTensor>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, SupernetError> {
    let views = tensors
        .iter()
        .map(|(n, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| bad(path, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| bad(path, e.to_string()))
}

fn net_tensors(net: &Supernet) -> Result<Vec<RawTensor>, SupernetError> {
    net.named_tensors()
        .map(|(name, t, _)| {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((name.to_string(), shape, to_bytes(&to_f32(t)?)))
        })
        .collect()
}

/// Saves the supernet's tensors to `path`.
pub fn save_weights(net: &Supernet, path: &Path) -> Result<(), SupernetError> {
    let meta = HashMap::from([(SPACE_KEY.to_string(), net.space().hash())]);
    let bytes = serialize(path, net_tensors(net)?, meta)?;
    write_atomic(path, &bytes)
}

/// A safetensors file read whole: f32 tensors by name, and its metadata.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    /// Shape and row-major values of each tensor.
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Header metadata.
    pub metadata: HashMap<String, String>,
}

/// Reads a safetensors file of f32 tensors.
pub fn read_tensor_file(path: &Path) -> Result<TensorFile, SupernetError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let mut out = TensorFile {
        metadata: meta.metadata().clone().unwrap_or_default(),
        ..Default::default()
    };
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(
                path,
                format!("{name}: dtype {:?}, expected F32", view.dtype()),
            ));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// Hash of the space whose supernet wrote a weights file or checkpoint
/// (`None` for a file without one).
pub fn weights_space_hash(path: &Path) -> Result<Option<String>, SupernetError> {
    Ok(read_tensor_file(path)?.metadata.remove(SPACE_KEY))
}

fn tensor_of(shape: &[usize], values: &[f32]) -> Result<Tensor, SupernetError> {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_slice(values)?.f_view(dims.as_slice())?)
}

/// Copies the tensors of `file` into `net`; returns the names in the file
/// that the supernet does not have (always empty in [`LoadMode::Exact`]).
fn load_into(
    net: &Supernet,
    file: &TensorFile,
    path: &Path,
    mode: LoadMode,
) -> Result<Vec<String>, SupernetError> {
    let missing: Vec<&str> = net
        .named_tensors()
        .map(|(n, _, _)| n)
        .filter(|n| !file.tensors.contains_key(*n))
        .collect();
    if let Some(first) = missing.first() {
        return Err(bad(
            path,
            format!("{} supernet tensors missing, e.g. {first}", missing.len()),
        ));
    }
    let mut extra = Vec::new();
    for (name, (shape, values)) in &file.tensors {
        if name.starts_with(MOMENTUM_PREFIX) {
            continue;
        }
        match net.param_index(name) {
            Some(i) => net
                .set(i, &tensor_of(shape, values)?.f_to_device(net.device())?)
                .map_err(|e| bad(path, e.to_string()))?,
            None => extra.push(name.clone()),
        }
    }
    extra.sort();
    if mode == LoadMode::Exact && !extra.is_empty() {
        return Err(bad(
            path,
            format!(
                "{} tensors the supernet does not have, e.g. {}",
                extra.len(),
                extra[0]
            ),
        ));
    }
    Ok(extra)
}

/// Loads weights (from a weights file or a checkpoint) into `net`; returns
/// the names of ignored extra tensors.
pub fn load_weights(
    net: &Supernet,
    path: &Path,
    mode: LoadMode,
) -> Result<Vec<String>, SupernetError> {
    let file = read_tensor_file(path)?;
    load_into(net, &file, path, mode)
}

/// Saves weights, momentum buffers and `state` to `path`.
pub fn save_checkpoint(
    net: &Supernet,
    sgd: &Sgd,
    state: &TrainState,
    path: &Path,
) -> Result<(), SupernetError> {
    let mut tensors = net_tensors(net)?;
    let mut buffers: Vec<(&usize, &Tensor)> = sgd.buffers().iter().collect();
    buffers.sort_by_key(|(i, _)| **i);
    for (&i, buf) in buffers {
        let name = format!("{MOMENTUM_PREFIX}{}", net.params()[i].name);
        let shape = buf.size().iter().map(|&d| d as usize).collect();
        tensors.push((name, shape, to_bytes(&to_f32(buf)?)));
    }
    let state_json = serde_json::to_string(state).map_err(|e| bad(path, e.to_string()))?;
    let meta = HashMap::from([
        (STATE_KEY.to_string(), state_json),
        (SPACE_KEY.to_string(), net.space().hash()),
    ]);
    let bytes = serialize(path, tensors, meta)?;
    write_atomic(path, &bytes)
}

/// Restores weights and momentum buffers from a checkpoint and returns its state.
pub fn load_checkpoint(
    net: &Supernet,
    sgd: &mut Sgd,
    path: &Path,
) -> Result<TrainState, SupernetError> {
    let file = read_tensor_file(path)?;
    let state: TrainState = file
        .metadata
        .get(STATE_KEY)
        .ok_or_else(|| {
            bad(
                path,
                "no training state in the header (a weights file, not a checkpoint?)",
            )
        })
        .and_then(|s| {
            serde_json::from_str(s).map_err(|e| bad(path, format!("training state: {e}")))
        })?;
    load_into(net, &file, path, LoadMode::Exact)?;
    let mut buffers = HashMap::new();
    for (name, (shape, values)) in &file.tensors {
        let Some(param) = name.strip_prefix(MOMENTUM_PREFIX) else {
            continue;
        };
        let i = net
            .param_index(param)
            .ok_or_else(|| bad(path, format!("momentum for unknown {param}")))?;
        let like = &net.params()[i].tensor;
        if like.size() != tensor_of(shape, values)?.size() {
            return Err(bad(
                path,
                format!("momentum of {param} has shape {shape:?}"),
            ));
        }
        // Same layout as the parameter, so updates stay in channels-last.
        let buf =
            super::model::channels_last(&tensor_of(shape, values)?.f_to_device(net.device())?)?;
        buffers.insert(i, buf);
    }
    sgd.set_buffers(buffers);
    Ok(state)
}

/// The training state of a checkpoint, without loading its tensors into anything.
pub fn read_state(path: &Path) -> Result<TrainState, SupernetError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let text = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| bad(path, "no training state in the header"))?;
    serde_json::from_str(text).map_err(|e| bad(path, format!("training state: {e}")))
}
