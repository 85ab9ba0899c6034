//! Trained weights for the ONNX writer: a [`WeightProvider`] over a
//! supernet weights file (or a live supernet), answering each
//! [`ParamRef`] with the tensors named after it.

use std::path::Path;

use super::checkpoint::{TensorFile, read_tensor_file, to_f32};
use super::{Supernet, SupernetError};
use crate::onnx::{
    BN_EPS, BnParams, ConvParams, ConvShape, LinearParams, OnnxError, ParamRef, WeightProvider,
};

/// Supernet tensors by name, in row-major f32.
#[derive(Clone, Debug, Default)]
pub struct TrainedWeights {
    file: TensorFile,
}

impl TrainedWeights {
    /// Reads a weights file ([`super::checkpoint::WEIGHTS_FILE`] or a checkpoint).
    pub fn load(path: &Path) -> Result<TrainedWeights, SupernetError> {
        Ok(TrainedWeights {
            file: read_tensor_file(path)?,
        })
    }

    /// Copies the current tensors of a supernet (e.g. right after BN
    /// recalibration of the path to export).
    pub fn from_supernet(net: &Supernet) -> Result<TrainedWeights, SupernetError> {
        let mut file = TensorFile::default();
        for (name, t, _) in net.named_tensors() {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            file.tensors.insert(name.to_string(), (shape, to_f32(t)?));
        }
        Ok(TrainedWeights { file })
    }

    fn get(&self, at: ParamRef, suffix: &str, dims: &[usize]) -> Result<Vec<f32>, OnnxError> {
        let name = format!("{at}.{suffix}");
        let bad = |message: String| OnnxError::Weights {
            name: at.to_string(),
            message,
        };
        let (shape, values) = self
            .file
            .tensors
            .get(&name)
            .ok_or_else(|| bad(format!("no tensor {name}")))?;
        if shape != dims {
            return Err(bad(format!(
                "{name} has shape {shape:?}, expected {dims:?}"
            )));
        }
        Ok(values.clone())
    }
}

impl WeightProvider for TrainedWeights {
    fn conv(&mut self, at: ParamRef, shape: ConvShape) -> Result<ConvParams, OnnxError> {
        Ok(ConvParams {
            weight: self.get(at, "weight", &shape.dims())?,
            bias: None,
        })
    }

    fn batch_norm(&mut self, at: ParamRef, channels: usize) -> Result<BnParams, OnnxError> {
        Ok(BnParams {
            gamma: self.get(at, "bn.weight", &[channels])?,
            beta: self.get(at, "bn.bias", &[channels])?,
            mean: self.get(at, "bn.running_mean", &[channels])?,
            var: self.get(at, "bn.running_var", &[channels])?,
            eps: BN_EPS,
        })
    }

    fn linear(
        &mut self,
        at: ParamRef,
        in_features: usize,
        out_features: usize,
    ) -> Result<LinearParams, OnnxError> {
        Ok(LinearParams {
            weight: self.get(at, "weight", &[out_features, in_features])?,
            bias: self.get(at, "bias", &[out_features])?,
        })
    }
}
