//! Supernet modules: stem, every candidate op of every searchable layer (own
//! convs and own batch norms per op), head and classifier. The blocks match
//! what [`crate::onnx`] writes, op for op, so a path exports unchanged.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::SupernetError;
use crate::data::derive_seed;
use crate::onnx::{BN_EPS, ParamRef, Part, Site};
use crate::space::{Activation, Arch, Op, Space};

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

/// A depthwise convolution on a map with fewer pixels than its kernel has
/// taps, written as one dense (out pixels × in pixels) matrix per channel
/// and one batched matmul. libtorch's depthwise kernels, its backward
/// above all, are slow on such maps: forward + backward measured 3.1–5.8×
/// faster for k7 and 1.4× for k5 on 4×4 maps, and slower wherever the map
/// has more pixels than taps (`scripts/bench-depthwise.py`, host/README.md).
#[derive(Debug)]
struct Dense {
    /// `[out pixels · in pixels]`: the kernel tap feeding each pair, or
    /// `k²` (a zero appended to the taps) where the window misses the pixel.
    index: Tensor,
    input: (i64, i64),
    output: (i64, i64),
}

impl Dense {
    fn new(
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        device: Device,
    ) -> Result<Dense, SupernetError> {
        let pad = k / 2;
        let (ho, wo) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let mut index = vec![(k * k) as i64; ho * wo * h * w];
        for oy in 0..ho {
            for ox in 0..wo {
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (oy * stride + ky, ox * stride + kx);
                        if (pad..h + pad).contains(&iy) && (pad..w + pad).contains(&ix) {
                            let pixel = (iy - pad) * w + (ix - pad);
                            index[(oy * wo + ox) * h * w + pixel] = (ky * k + kx) as i64;
                        }
                    }
                }
            }
        }
        Ok(Dense {
            index: Tensor::f_from_slice(&index)?.f_to_device(device)?,
            input: (h as i64, w as i64),
            output: (ho as i64, wo as i64),
        })
    }

    /// Whether the dense form pays for a `k`×`k` kernel on an `h`×`w` map.
    fn pays(h: usize, w: usize, k: usize) -> bool {
        h * w < k * k
    }

    /// `x` `[n, c, h, w]` convolved depthwise with `weight` `[c, 1, k, k]`;
    /// the result is channels-last like libtorch's.
    fn forward(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor, tch::TchError> {
        let (c, n) = (weight.size()[0], x.size()[0]);
        let taps = weight.size()[2] * weight.size()[3];
        let (h, w) = self.input;
        let (ho, wo) = self.output;
        let zero = Tensor::f_zeros([c, 1], (weight.kind(), weight.device()))?;
        let m = Tensor::f_cat(&[&weight.f_reshape([c, taps])?, &zero], 1)?
            .f_index_select(1, &self.index)?
            .f_view([c, ho * wo, h * w])?;
        let xs = x.f_permute([1, 0, 2, 3])?.f_reshape([c, n, h * w])?;
        let y = xs.f_bmm(&m.f_transpose(1, 2)?)?;
        // [c, n, ho·wo] → [n, c, ho, wo] with NHWC memory.
        y.f_permute([1, 2, 0])?
            .f_contiguous()?
            .f_view([n, ho, wo, c])?
            .f_permute([0, 3, 1, 2])
    }
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

struct Builder {
    seed: u64,
    device: Device,
    params: Vec<Param>,
}

impl Builder {
    fn add(
        &mut self,
        name: String,
        values: Vec<f32>,
        dims: &[i64],
        kind: ParamKind,
    ) -> Result<usize, SupernetError> {
        let t = Tensor::f_from_slice(&values)?
            .f_view(dims)?
            .f_to_device(self.device)?;
        let t = channels_last(&t)?;
        let t = if kind.trainable() {
            t.set_requires_grad(true)
        } else {
            t
        };
        self.params.push(Param {
            name,
            tensor: t,
            kind,
        });
        Ok(self.params.len() - 1)
    }

    /// Normal(0, std) values drawn from a generator seeded by (seed, name):
    /// a parameter's initial value depends on nothing else, so a pruned
    /// space's supernet starts its surviving ops exactly as the full one.
    fn normal(&self, name: &str, n: usize, std: f32) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.seed, name, 0));
        (0..n)
            .map(|_| {
                // Box–Muller; `1 - u` keeps the logarithm's argument in (0, 1].
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 * std
            })
            .collect()
    }

    fn conv_bn(
        &mut self,
        at: ParamRef,
        out_c: usize,
        in_c: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<ConvBn, SupernetError> {
        let name = at.to_string();
        let dims = [
            out_c as i64,
            (in_c / groups) as i64,
            kernel as i64,
            kernel as i64,
        ];
        // He init in fan-out mode, as torchvision's MobileNets do.
        let std = (2.0 / (out_c * kernel * kernel) as f32).sqrt();
        let n = dims.iter().product::<i64>() as usize;
        let w = self.normal(&format!("{name}.weight"), n, std);
        let weight = self.add(format!("{name}.weight"), w, &dims, ParamKind::ConvWeight)?;
        let c = [out_c as i64];
        // γ = 1 (tch's own BatchNorm would draw U(0, 1)), β = 0, fresh statistics.
        let bn = Bn {
            weight: self.add(
                format!("{name}.bn.weight"),
                vec![1.0; out_c],
                &c,
                ParamKind::BnWeight,
            )?,
            bias: self.add(
                format!("{name}.bn.bias"),
                vec![0.0; out_c],
                &c,
                ParamKind::BnBias,
            )?,
            mean: self.add(
                format!("{name}.bn.running_mean"),
                vec![0.0; out_c],
                &c,
                ParamKind::BnMean,
            )?,
            var: self.add(
                format!("{name}.bn.running_var"),
                vec![1.0; out_c],
                &c,
                ParamKind::BnVar,
            )?,
        };
        Ok(ConvBn {
            weight,
            bn,
            stride: stride as i64,
            padding: (kernel / 2) as i64,
            groups: groups as i64,
            dense: None,
        })
    }
}

impl Supernet {
    /// Builds the supernet of `space` on `device`, initialised from `seed`.
    pub fn new(space: &Space, device: Device, seed: u64) -> Result<Supernet, SupernetError> {
        Self::with_dense(space, device, seed, true)
    }

    /// Zeroes the scale γ of the last batch norm (after the projection) of
    /// every candidate with a residual path, so each such block starts as
    /// the identity (Goyal et al.; BigNAS/OFA train supernets this way):
    /// a freshly sampled, barely trained op then adds nothing to the
    /// residual stream instead of noise. Candidates without a residual
    /// (stage transitions) keep γ = 1, or no signal would pass.
    pub fn zero_residual_gammas(&self) -> Result<(), SupernetError> {
        let _guard = tch::no_grad_guard();
        for m in self.layers.iter().flatten().flatten() {
            if m.residual {
                let mut g = self.params[m.project.bn.weight].tensor.shallow_clone();
                let _ = g.f_zero_()?;
            }
        }
        Ok(())
    }

    /// [`Supernet::new`], with the dense form of small-map depthwise
    /// convolutions allowed or not (libtorch's convolution everywhere):
    /// the two compute the same function, which tests check step by step.
    pub(crate) fn with_dense(
        space: &Space,
        device: Device,
        seed: u64,
        dense_allowed: bool,
    ) -> Result<Supernet, SupernetError> {
        let mut b = Builder {
            seed,
            device,
            params: Vec::new(),
        };
        let input = space.input();
        let stem = space.stem();
        let at = |site, part| ParamRef { site, part };
        let stem_cb = b.conv_bn(
            at(Site::Stem, Part::Conv),
            stem.channels,
            input.channels,
            stem.kernel,
            stem.stride,
            1,
        )?;
        let mut layers = Vec::new();
        let mut dense = Vec::new();
        for layer in space.layers() {
            let mut ops = Vec::new();
            for &op in &layer.ops {
                let Op::MbConv { kernel, expansion } = op else {
                    ops.push(None);
                    continue;
                };
                let site = Site::Layer {
                    index: layer.index,
                    op,
                };
                let in_c = layer.input.channels;
                let hidden = in_c * expansion;
                // Expansion 1 has no expand conv, as in the ONNX writer.
                let expand = if expansion == 1 {
                    None
                } else {
                    Some(b.conv_bn(at(site, Part::Expand), hidden, in_c, 1, 1, 1)?)
                };
                let mut depthwise = b.conv_bn(
                    at(site, Part::Depthwise),
                    hidden,
                    hidden,
                    kernel,
                    layer.stride,
                    hidden,
                )?;
                let (h, w) = (layer.input.height, layer.input.width);
                if dense_allowed && Dense::pays(h, w, kernel) {
                    depthwise.dense = Some(dense.len());
                    dense.push(Dense::new(h, w, kernel, layer.stride, device)?);
                }
                let project =
                    b.conv_bn(at(site, Part::Project), layer.out_channels, hidden, 1, 1, 1)?;
                ops.push(Some(MbConv {
                    expand,
                    depthwise,
                    project,
                    residual: layer.keeps_shape(),
                }));
            }
            layers.push(ops);
        }
        let head = space.head();
        let head_in = space.head_input();
        let head_cb = b.conv_bn(
            at(Site::Head, Part::Conv),
            head.channels,
            head_in.channels,
            1,
            1,
            1,
        )?;
        let classes = space.num_classes();
        let fc = at(Site::Classifier, Part::Fc).to_string();
        let fc_w = b.normal(&format!("{fc}.weight"), classes * head.channels, 0.01);
        let fc_weight = b.add(
            format!("{fc}.weight"),
            fc_w,
            &[classes as i64, head.channels as i64],
            ParamKind::FcWeight,
        )?;
        let fc_bias = b.add(
            format!("{fc}.bias"),
            vec![0.0; classes],
            &[classes as i64],
            ParamKind::FcBias,
        )?;
        let by_name = b
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        Ok(Supernet {
            space: space.clone(),
            device,
            params: b.params,
            by_name,
            stem: stem_cb,
            stem_act: stem.activation,
            layers,
            head: head_cb,
            head_act: head.activation,
            fc_weight,
            fc_bias,
            dense,
        })
    }

    /// Another handle to the same tensors (same storage, same autograd
    /// leaves), for another thread: tch tensors are `Send` but not `Sync`.
    pub(crate) fn share(&self) -> Supernet {
        Supernet {
            space: self.space.clone(),
            device: self.device,
            params: self
                .params
                .iter()
                .map(|p| Param {
                    name: p.name.clone(),
                    tensor: p.tensor.shallow_clone(),
                    kind: p.kind,
                })
                .collect(),
            by_name: self.by_name.clone(),
            stem: self.stem,
            stem_act: self.stem_act,
            layers: self.layers.clone(),
            head: self.head,
            head_act: self.head_act,
            fc_weight: self.fc_weight,
            fc_bias: self.fc_bias,
            dense: self
                .dense
                .iter()
                .map(|d| Dense {
                    index: d.index.shallow_clone(),
                    input: d.input,
                    output: d.output,
                })
                .collect(),
        }
    }

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
            .flat_map(|cb| [cb.weight, cb.bn.weight, cb.bn.bias])
            .collect();
        out.extend([self.fc_weight, self.fc_bias]);
        out
    }

    /// Indices of the (running mean, running var) pairs a path uses.
    pub(crate) fn bn_stats_of(&self, path: &[usize]) -> Vec<(usize, usize)> {
        self.conv_bns_of(path)
            .iter()
            .map(|cb| (cb.bn.mean, cb.bn.var))
            .collect()
    }

    fn conv_bn(&self, x: &Tensor, cb: &ConvBn, mode: BnMode) -> Result<Tensor, SupernetError> {
        let p = |i: usize| &self.params[i].tensor;
        let y = match cb.dense {
            Some(d) => self.dense[d].forward(x, p(cb.weight))?,
            None => x.f_conv2d::<&Tensor>(
                p(cb.weight),
                None,
                [cb.stride, cb.stride],
                [cb.padding, cb.padding],
                [1, 1],
                cb.groups,
            )?,
        };
        let (training, momentum, stats) = match mode {
            BnMode::Train => (true, BN_MOMENTUM, true),
            BnMode::Recalibrate { momentum } => (true, momentum, true),
            BnMode::BatchOnly => (true, 0.0, false),
            BnMode::Eval => (false, 0.0, true),
        };
        Ok(y.f_batch_norm(
            Some(p(cb.bn.weight)),
            Some(p(cb.bn.bias)),
            stats.then(|| p(cb.bn.mean)),
            stats.then(|| p(cb.bn.var)),
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const TINY: &str = "
input: { channels: 1, height: 8, width: 8 }
num_classes: 3
stem: { kernel: 3, channels: 4, stride: 1 }
stages:
  - { channels: 4, num_layers: 1, stride: 1, first_ops: [k3e1] }
  - { channels: 8, num_layers: 2, stride: 2, first_ops: [k3e3, k5e2], ops: [k3e3, id] }
head: { channels: 16 }
";

    fn tiny() -> Space {
        Space::from_yaml_str(TINY, "tiny").unwrap()
    }

    #[test]
    fn names_follow_the_onnx_param_refs() {
        let net = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
        let names: Vec<&str> = net.named_tensors().map(|(n, _, _)| n).collect();
        for want in [
            "stem.conv.weight",
            "stem.conv.bn.running_var",
            "layers.0.k3e1.depthwise.weight",
            "layers.1.k5e2.expand.bn.weight",
            "layers.2.k3e3.project.bn.bias",
            "head.conv.weight",
            "classifier.fc.weight",
            "classifier.fc.bias",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        // Expansion 1 has no expand conv; identity has no tensors.
        assert!(!names.iter().any(|n| n.starts_with("layers.0.k3e1.expand")));
        assert!(!names.iter().any(|n| n.contains(".id.")));
        let dw = net.tensor("layers.1.k5e2.depthwise.weight").unwrap();
        assert_eq!(dw.size(), [8, 1, 5, 5]);
        assert_eq!(
            net.tensor("stem.conv.bn.weight")
                .unwrap()
                .double_value(&[0]),
            1.0
        );
    }

    #[test]
    fn init_depends_on_seed_and_name_only() {
        let a = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
        let b = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
        let c = Supernet::new(&tiny(), Device::Cpu, 2).unwrap();
        let w = "layers.2.k3e3.expand.weight";
        assert!(a.tensor(w).unwrap().equal(b.tensor(w).unwrap()));
        assert!(!a.tensor(w).unwrap().equal(c.tensor(w).unwrap()));
    }

    #[test]
    fn dense_depthwise_matches_libtorch() {
        // 4×4 and 3×5 maps, stride 1 and 2, k5 and k7: values and both
        // gradients as libtorch's depthwise convolution computes them.
        for (h, w, k, stride) in [(4, 4, 7, 1), (4, 4, 5, 1), (3, 5, 5, 2), (4, 4, 7, 2)] {
            let c = 6;
            let d = Dense::new(h, w, k, stride, Device::Cpu).unwrap();
            let x = channels_last(&Tensor::randn(
                [3, c, h as i64, w as i64],
                (Kind::Float, Device::Cpu),
            ))
            .unwrap()
            .set_requires_grad(true);
            let wt = Tensor::randn([c, 1, k as i64, k as i64], (Kind::Float, Device::Cpu))
                .set_requires_grad(true);
            let s = stride as i64;
            let p = (k / 2) as i64;
            let want = x.conv2d::<&Tensor>(&wt, None, [s, s], [p, p], [1, 1], c);
            let got = d.forward(&x, &wt).unwrap();
            assert_eq!(got.size(), want.size(), "{h}×{w} k{k} s{stride}");
            let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
            assert!(diff(&got, &want) < 1e-4, "{h}×{w} k{k} s{stride}: values");
            let g = Tensor::randn(want.size(), (Kind::Float, Device::Cpu));
            let gw =
                Tensor::run_backward(&[&(&want * &g).sum(Kind::Float)], &[&x, &wt], false, false);
            let gg =
                Tensor::run_backward(&[&(&got * &g).sum(Kind::Float)], &[&x, &wt], false, false);
            assert!(
                diff(&gw[0], &gg[0]) < 1e-4,
                "{h}×{w} k{k} s{stride}: input gradient"
            );
            assert!(
                diff(&gw[1], &gg[1]) < 1e-4,
                "{h}×{w} k{k} s{stride}: weight gradient"
            );
        }
        assert!(Dense::pays(4, 4, 5) && !Dense::pays(4, 4, 3) && !Dense::pays(7, 7, 7));
    }

    #[test]
    fn forward_shapes_and_layout() {
        let net = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
        let x = Tensor::randn([5, 1, 8, 8], (Kind::Float, Device::Cpu));
        for path in [[0, 0, 0], [0, 1, 1], [0, 0, 1]] {
            let y = net.forward(&x, &path, BnMode::Train).unwrap();
            assert_eq!(y.size(), [5, 3]);
        }
        assert!(net.forward(&x, &[0, 2, 0], BnMode::Eval).is_err());
        assert!(net.forward(&x, &[0, 0], BnMode::Eval).is_err());
        // 3×3 weights over 3 channels: NHWC strides. (1×1 and depthwise
        // weights are laid out the same either way.)
        let w = channels_last(&Tensor::randn([2, 3, 3, 3], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(w.stride(), [27, 1, 9, 3]);
    }
}
