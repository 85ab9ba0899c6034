//! Where a network's weights come from: the [`WeightProvider`] the writer
//! asks per [`ParamRef`], seeded [`RandomWeights`] for profiling, and
//! [`fold_bn`], which folds each batch norm into its convolution.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{BN_EPS, OnnxError};
use crate::naming::ParamRef;

/// Geometry of a convolution's weight, `[out, in / groups, k, k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Output channels.
    pub out_channels: usize,
    /// Input channels (all groups together).
    pub in_channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Groups (`in_channels` for depthwise).
    pub groups: usize,
}

impl ConvShape {
    /// ONNX weight dims `[out, in / groups, k, k]`.
    pub fn dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel,
            self.kernel,
        ]
    }

    /// Number of weight elements.
    pub fn weight_len(&self) -> usize {
        self.dims().iter().product()
    }

    /// Inputs feeding one output (for initialisation scales).
    pub fn fan_in(&self) -> usize {
        self.in_channels / self.groups * self.kernel * self.kernel
    }
}

/// A convolution's parameters, row-major in [`ConvShape::dims`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// Weight, `[out, in / groups, k, k]`.
    pub weight: Vec<f32>,
    /// Optional bias, `[out]` (convs followed by BN usually have none).
    pub bias: Option<Vec<f32>>,
}

/// Batch-norm parameters and running statistics, one value per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BnParams {
    /// Scale γ.
    pub gamma: Vec<f32>,
    /// Shift β.
    pub beta: Vec<f32>,
    /// Running mean μ.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// ε added to the variance.
    pub eps: f32,
}

/// A fully connected layer, `y = W x + b` with `W` row-major `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearParams {
    /// Weight, `[out, in]`.
    pub weight: Vec<f32>,
    /// Bias, `[out]`.
    pub bias: Vec<f32>,
}

/// Source of the parameters of a network or block.
///
/// The writer asks, in graph order, for each conv then its BN, and for the
/// classifier; it checks every size. Random weights for profiling come from
/// [`RandomWeights`]; export plugs in an implementation reading a trained
/// checkpoint, mapping each [`ParamRef`] to its own tensor names.
pub trait WeightProvider {
    /// Weight (and optional bias) of the conv at `at`.
    fn conv(&mut self, at: ParamRef, shape: ConvShape) -> Result<ConvParams, OnnxError>;
    /// The batch norm following the conv at `at`.
    fn batch_norm(&mut self, at: ParamRef, channels: usize) -> Result<BnParams, OnnxError>;
    /// The fully connected layer at `at`.
    fn linear(
        &mut self,
        at: ParamRef,
        in_features: usize,
        out_features: usize,
    ) -> Result<LinearParams, OnnxError>;
}

/// Seeded random weights: He-normal convs, BN near identity but perturbed so
/// that folding changes the weights, uniform fully connected layer.
#[derive(Clone, Debug)]
pub struct RandomWeights {
    rng: ChaCha8Rng,
}

impl RandomWeights {
    /// A provider whose draws depend only on `seed` and the request order.
    pub fn new(seed: u64) -> Self {
        RandomWeights {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn normal(&mut self) -> f32 {
        // Box–Muller; `1 - u` keeps the logarithm's argument in (0, 1].
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2 = self.rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    pub(super) fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.random_range(lo..hi)).collect()
    }
}

impl WeightProvider for RandomWeights {
    fn conv(&mut self, _at: ParamRef, shape: ConvShape) -> Result<ConvParams, OnnxError> {
        let std = (2.0 / shape.fan_in().max(1) as f32).sqrt();
        let weight = (0..shape.weight_len())
            .map(|_| self.normal() * std)
            .collect();
        Ok(ConvParams { weight, bias: None })
    }

    fn batch_norm(&mut self, _at: ParamRef, channels: usize) -> Result<BnParams, OnnxError> {
        Ok(BnParams {
            gamma: self.uniform(channels, 0.75, 1.25),
            beta: self.uniform(channels, -0.1, 0.1),
            mean: self.uniform(channels, -0.1, 0.1),
            var: self.uniform(channels, 0.5, 1.5),
            eps: BN_EPS,
        })
    }

    fn linear(
        &mut self,
        _at: ParamRef,
        in_features: usize,
        out_features: usize,
    ) -> Result<LinearParams, OnnxError> {
        let bound = 1.0 / (in_features.max(1) as f32).sqrt();
        Ok(LinearParams {
            weight: self.uniform(in_features * out_features, -bound, bound),
            bias: self.uniform(out_features, -bound, bound),
        })
    }
}

/// Folds a batch norm into the conv before it:
/// `w' = w·γ/√(var+ε)`, `b' = (b−μ)·γ/√(var+ε) + β` per output channel.
/// Returns the new weight and bias; sizes must already be consistent.
pub fn fold_bn(conv: &ConvParams, bn: &BnParams) -> (Vec<f32>, Vec<f32>) {
    let out = bn.gamma.len();
    let per_out = conv.weight.len().checked_div(out).unwrap_or(0);
    let scale: Vec<f64> = (0..out)
        .map(|o| f64::from(bn.gamma[o]) / (f64::from(bn.var[o]) + f64::from(bn.eps)).sqrt())
        .collect();
    let weight = conv
        .weight
        .iter()
        .enumerate()
        .map(|(i, &w)| (f64::from(w) * scale[i / per_out]) as f32)
        .collect();
    let bias = (0..out)
        .map(|o| {
            let b = conv.bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
            ((b - f64::from(bn.mean[o])) * scale[o] + f64::from(bn.beta[o])) as f32
        })
        .collect();
    (weight, bias)
}
