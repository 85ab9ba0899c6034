//! Supernet modules: stem, every candidate op of every searchable layer (own
//! convs and own batch norms per op), head and classifier. The blocks match
//! what [`crate::onnx`] writes, op for op, so a path exports unchanged.
//!
//! Files: this one holds the types and the forward pass; `build` creates
//! and initialises the parameters; `dense` is the matmul form of depthwise
//! convolutions on maps smaller than their kernel.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::SupernetError;
use crate::onnx::BN_EPS;
use crate::space::{Activation, Arch, Space};

mod build;
mod dense;
#[cfg(test)]
mod tests;

use dense::Dense;

/// Running-statistics momentum during training (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// What a parameter is; decides whether it trains and whether it decays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Convolution weight (trained, decayed).
    ConvWeight,
    /// BN scale γ (trained, not decayed: decaying γ/β only fights BN).
    BnWeight,
    /// BN shift β (trained, not decayed).
    BnBias,
    /// BN running mean (a buffer).
    BnMean,
    /// BN running variance (a buffer).
    BnVar,
    /// Classifier weight (trained, decayed).
    FcWeight,
    /// Classifier bias (trained, not decayed).
    FcBias,
}

impl ParamKind {
    /// Whether SGD updates it.
    pub fn trainable(self) -> bool {
        !matches!(self, ParamKind::BnMean | ParamKind::BnVar)
    }

    /// Whether weight decay applies.
    pub fn decays(self) -> bool {
        matches!(self, ParamKind::ConvWeight | ParamKind::FcWeight)
    }
}

/// How batch norms behave in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BnMode {
    /// Batch statistics; running statistics move by [`BN_MOMENTUM`].
    Train,
    /// Batch statistics; running statistics move by `momentum` (BN
    /// recalibration passes `1 / (k + 1)` at batch `k` for a plain average).
    Recalibrate {
        /// Weight of this batch in the running statistics.
        momentum: f64,
    },
    /// Batch statistics; running statistics untouched (the shards after
    /// the first of a data-parallel step: one buffer, one writer).
    BatchOnly,
    /// Running statistics (evaluation).
    Eval,
}

/// A named tensor of the supernet.
#[derive(Debug)]
pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) tensor: Tensor,
    pub(crate) kind: ParamKind,
}

/// Indices into [`Supernet::params`] of one batch norm.
#[derive(Clone, Copy, Debug)]
struct Bn {
    weight: usize,
    bias: usize,
    mean: usize,
    var: usize,
}

/// A convolution without bias, its batch norm, and its geometry.
#[derive(Clone, Copy, Debug)]
struct ConvBn {
    weight: usize,
    bn: Bn,
    stride: i64,
    padding: i64,
    groups: i64,
    /// A depthwise convolution computed as dense matrices: index into
    /// [`Supernet::dense`].
    dense: Option<usize>,
}

/// One MBConv candidate.
#[derive(Clone, Copy, Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

/// The weight-sharing supernet of a space.
#[derive(Debug)]
pub struct Supernet {
    space: Space,
    device: Device,
    params: Vec<Param>,
    by_name: HashMap<String, usize>,
    stem: ConvBn,
    stem_act: Activation,
    /// Per layer, per candidate (in the space's order); `None` for identity.
    layers: Vec<Vec<Option<MbConv>>>,
    head: ConvBn,
    head_act: Activation,
    fc_weight: usize,
    fc_bias: usize,
    /// Dense forms of the depthwise convolutions that use one.
    dense: Vec<Dense>,
}

/// Gives NCHW-shaped 4-D tensors NHWC strides ("channels last"). tch has
/// no memory-format API, but a permute → contiguous → permute round trip
/// lays the data out the same way; oneDNN then picks its NHWC kernels,
/// ~2.5× faster on this CPU than NCHW for these small convolutions.
pub(crate) fn channels_last(t: &Tensor) -> Result<Tensor, tch::TchError> {
    if t.dim() == 4 {
        t.f_permute([0, 2, 3, 1])?
            .f_contiguous()?
            .f_permute([0, 3, 1, 2])
    } else {
        Ok(t.shallow_clone())
    }
}

impl Supernet {
    /// The space whose every candidate this supernet holds.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// Where the parameters live.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Number of named tensors (parameters and BN buffers).
    pub fn num_tensors(&self) -> usize {
        self.params.len()
    }

    /// Trainable scalar parameters over all candidates.
    pub fn num_parameters(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.kind.trainable())
            .map(|p| p.tensor.numel())
            .sum()
    }

    /// Names and tensors, in build order.
    pub fn named_tensors(&self) -> impl Iterator<Item = (&str, &Tensor, ParamKind)> {
        self.params
            .iter()
            .map(|p| (p.name.as_str(), &p.tensor, p.kind))
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.by_name.get(name).map(|&i| &self.params[i].tensor)
    }

    pub(crate) fn params(&self) -> &[Param] {
        &self.params
    }

    pub(crate) fn param_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The candidate index, per layer, of each op of `arch` (a path).
    pub fn path_of(&self, arch: &Arch) -> Result<Vec<usize>, SupernetError> {
        Ok(self.space.arch_indices(arch)?)
    }

    /// The architecture a path stands for.
    pub fn arch_of(&self, path: &[usize]) -> Result<Arch, SupernetError> {
        Ok(self.space.arch_from_indices(path)?)
    }

    fn check_path(&self, path: &[usize]) -> Result<(), SupernetError> {
        if path.len() != self.layers.len()
            || path
                .iter()
                .zip(&self.layers)
                .any(|(&i, ops)| i >= ops.len())
        {
            return Err(SupernetError::Mismatch(format!(
                "path {path:?} does not fit the supernet's {} layers",
                self.layers.len()
            )));
        }
        Ok(())
    }

    fn conv_bns_of(&self, path: &[usize]) -> Vec<ConvBn> {
        let mut out = vec![self.stem];
        for (ops, &i) in self.layers.iter().zip(path) {
            if let Some(Some(m)) = ops.get(i) {
                out.extend(m.expand);
                out.push(m.depthwise);
                out.push(m.project);
            }
        }
        out.push(self.head);
        out
    }

    /// Indices of the trainable parameters a path uses (what one SPOS step
    /// updates; the others get no gradient and are left alone, as
    /// PyTorch's SGD leaves parameters whose gradient is `None`).
    pub(crate) fn trainable_of(&self, path: &[usize]) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .conv_bns_of(path)
            .iter()
            .flat_map(|conv| [conv.weight, conv.bn.weight, conv.bn.bias])
            .collect();
        out.extend([self.fc_weight, self.fc_bias]);
        out
    }

    /// Indices of the (running mean, running var) pairs a path uses.
    pub(crate) fn bn_stats_of(&self, path: &[usize]) -> Vec<(usize, usize)> {
        self.conv_bns_of(path)
            .iter()
            .map(|conv| (conv.bn.mean, conv.bn.var))
            .collect()
    }

    fn conv_bn(&self, x: &Tensor, conv: &ConvBn, mode: BnMode) -> Result<Tensor, SupernetError> {
        let p = |i: usize| &self.params[i].tensor;
        let y = match conv.dense {
            Some(d) => self.dense[d].forward(x, p(conv.weight))?,
            None => x.f_conv2d::<&Tensor>(
                p(conv.weight),
                None,
                [conv.stride, conv.stride],
                [conv.padding, conv.padding],
                [1, 1],
                conv.groups,
            )?,
        };
        let (training, momentum, stats) = match mode {
            BnMode::Train => (true, BN_MOMENTUM, true),
            BnMode::Recalibrate { momentum } => (true, momentum, true),
            BnMode::BatchOnly => (true, 0.0, false),
            BnMode::Eval => (false, 0.0, true),
        };
        Ok(y.f_batch_norm(
            Some(p(conv.bn.weight)),
            Some(p(conv.bn.bias)),
            stats.then(|| p(conv.bn.mean)),
            stats.then(|| p(conv.bn.var)),
            training,
            momentum,
            f64::from(BN_EPS),
            true,
        )?)
    }

    /// In place: BN's backward does not need its output, so the activation
    /// may overwrite it (as torchvision's `ReLU6(inplace=True)` does). Note: tch's
    /// `hardtanh_` clamps to its defaults [−1, 1]; `relu6_` is [0, 6].
    fn act(mut x: Tensor, act: Activation) -> Result<Tensor, SupernetError> {
        let _ = match act {
            Activation::Relu6 => x.f_relu6_()?,
            Activation::Relu => x.f_relu_()?,
        };
        Ok(x)
    }

    /// Logits `[n, classes]` of the network that takes candidate `path[l]`
    /// at layer `l`; `x` is `[n, c, h, w]` on the supernet's device.
    pub fn forward(
        &self,
        x: &Tensor,
        path: &[usize],
        mode: BnMode,
    ) -> Result<Tensor, SupernetError> {
        self.check_path(path)?;
        let mut x = Self::act(self.conv_bn(x, &self.stem, mode)?, self.stem_act)?;
        for (ops, &i) in self.layers.iter().zip(path) {
            let Some(m) = &ops[i] else { continue };
            let mut y = match &m.expand {
                Some(e) => Self::act(self.conv_bn(&x, e, mode)?, Activation::Relu6)?,
                None => x.shallow_clone(),
            };
            y = Self::act(self.conv_bn(&y, &m.depthwise, mode)?, Activation::Relu6)?;
            y = self.conv_bn(&y, &m.project, mode)?;
            x = if m.residual { y.f_add(&x)? } else { y };
        }
        let x = Self::act(self.conv_bn(&x, &self.head, mode)?, self.head_act)?;
        let x = x.f_mean_dim([2i64, 3].as_slice(), false, Kind::Float)?;
        Ok(x.f_linear(
            &self.params[self.fc_weight].tensor,
            Some(&self.params[self.fc_bias].tensor),
        )?)
    }

    /// Copies `values` into the tensor called `name` (shapes must agree).
    pub(crate) fn set(&self, index: usize, values: &Tensor) -> Result<(), SupernetError> {
        let p = &self.params[index];
        if p.tensor.size() != values.size() {
            return Err(SupernetError::Mismatch(format!(
                "{}: shape {:?} does not fit {:?}",
                p.name,
                values.size(),
                p.tensor.size()
            )));
        }
        let mut t = p.tensor.shallow_clone();
        tch::no_grad(|| t.f_copy_(values))?;
        Ok(())
    }
}
