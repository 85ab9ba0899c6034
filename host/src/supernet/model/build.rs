//! Building a supernet: every parameter created, named after the ONNX
//! writer's parameter references, and initialised from the seed and its
//! name alone (so adding an op never changes another op's initial weights).
//! With nested weight sharing (`train.weight_sharing: nested`) a layer's
//! candidates instead hold views into one set of weights per layer, created
//! and initialised as its largest candidate's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::dense::Dense;
use super::{Bn, ConvBn, MbConv, Param, ParamKind, Supernet, channels_last};
use crate::config::{TrainConfig, WeightSharing};
use crate::data::derive_seed;
use crate::onnx::{ParamRef, Part, Site};
use crate::space::{Op, Space};
use crate::supernet::SupernetError;

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
        let t = self.tensor(values, dims)?;
        self.push(name, t, kind)
    }

    /// A channels-last tensor on the builder's device, outside autograd.
    fn tensor(&self, values: Vec<f32>, dims: &[i64]) -> Result<Tensor, SupernetError> {
        let t = Tensor::f_from_slice(&values)?
            .f_view(dims)?
            .f_to_device(self.device)?;
        Ok(channels_last(&t)?)
    }

    /// Adds `t` as the parameter `name`; a trainable one becomes an
    /// autograd leaf.
    fn push(&mut self, name: String, t: Tensor, kind: ParamKind) -> Result<usize, SupernetError> {
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

    /// He init in fan-out mode, as torchvision's MobileNets do.
    fn he_std(out_c: usize, kernel: usize) -> f32 {
        (2.0 / (out_c * kernel * kernel) as f32).sqrt()
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
        let w = self.conv_weight(at, [out_c, in_c / groups, kernel, kernel])?;
        let weight = self.push(format!("{at}.weight"), w, ParamKind::ConvWeight)?;
        self.bn_for(at, weight, out_c, kernel, stride, groups)
    }

    /// A convolution whose weight is `view`, a part of a layer's shared
    /// weight: a leaf of its own for autograd and the optimiser, but
    /// aliasing the shared storage, so an update through one candidate is
    /// seen by every candidate that overlaps it.
    fn conv_bn_view(
        &mut self,
        at: ParamRef,
        view: &Tensor,
        stride: usize,
        groups: usize,
    ) -> Result<ConvBn, SupernetError> {
        let (out_c, kernel) = (view.size()[0] as usize, view.size()[2] as usize);
        let weight = self.push(
            format!("{at}.weight"),
            view.f_detach()?,
            ParamKind::ConvWeight,
        )?;
        self.bn_for(at, weight, out_c, kernel, stride, groups)
    }

    /// The batch norm after the convolution `weight`, and the geometry.
    fn bn_for(
        &mut self,
        at: ParamRef,
        weight: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<ConvBn, SupernetError> {
        let name = at.to_string();
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

    /// The weight `[out, in, k, k]` of the convolution `at`, He-initialised
    /// from the seed and its name (a layer's shared weight is named after
    /// its largest candidate).
    fn conv_weight(&self, at: ParamRef, dims: [usize; 4]) -> Result<Tensor, SupernetError> {
        let n = dims.iter().product();
        let w = self.normal(&format!("{at}.weight"), n, Self::he_std(dims[0], dims[2]));
        let d = dims.map(|d| d as i64);
        self.tensor(w, &d)
    }
}

/// One layer's shared weights under nested sharing: every candidate's
/// expand, depthwise and project convolutions are the leading channels
/// (and, for the depthwise, the centred `k`×`k` taps) of the layer's
/// largest expansion and kernel, as in Once-for-All's elastic width and
/// kernel or Single-Path NAS's superkernel.
struct LayerShare {
    expand: Option<Tensor>,
    depthwise: Tensor,
    project: Tensor,
    kernel: usize,
}

impl LayerShare {
    fn new(b: &Builder, layer: &crate::space::Layer) -> Result<Option<LayerShare>, SupernetError> {
        let mbconvs = || {
            layer.ops.iter().filter_map(|op| match *op {
                Op::MbConv { kernel, expansion } => Some((kernel, expansion)),
                _ => None,
            })
        };
        let (Some(kernel), Some(expansion)) = (
            mbconvs().map(|(k, _)| k).max(),
            mbconvs().map(|(_, e)| e).max(),
        ) else {
            return Ok(None);
        };
        let in_c = layer.input.channels;
        let hidden = in_c * expansion;
        let largest = Site::Layer {
            index: layer.index,
            op: Op::MbConv { kernel, expansion },
        };
        let at = |part| ParamRef {
            site: largest,
            part,
        };
        Ok(Some(LayerShare {
            expand: if expansion > 1 {
                Some(b.conv_weight(at(Part::Expand), [hidden, in_c, 1, 1])?)
            } else {
                None
            },
            depthwise: b.conv_weight(at(Part::Depthwise), [hidden, 1, kernel, kernel])?,
            project: b.conv_weight(at(Part::Project), [layer.out_channels, hidden, 1, 1])?,
            kernel,
        }))
    }

    fn expand(&self, hidden: usize) -> Result<Option<Tensor>, SupernetError> {
        Ok(match &self.expand {
            Some(t) => Some(t.f_narrow(0, 0, hidden as i64)?),
            None => None,
        })
    }

    fn depthwise(&self, hidden: usize, kernel: usize) -> Result<Tensor, SupernetError> {
        let off = ((self.kernel - kernel) / 2) as i64;
        let k = kernel as i64;
        Ok(self
            .depthwise
            .f_narrow(0, 0, hidden as i64)?
            .f_narrow(2, off, k)?
            .f_narrow(3, off, k)?)
    }

    fn project(&self, hidden: usize) -> Result<Tensor, SupernetError> {
        Ok(self.project.f_narrow(1, 0, hidden as i64)?)
    }
}

impl Supernet {
    /// Builds the supernet of `space` on `device`, initialised from `seed`.
    pub fn new(space: &Space, device: Device, seed: u64) -> Result<Supernet, SupernetError> {
        Self::build(space, device, seed, true, WeightSharing::None)
    }

    /// The supernet to train with `cfg`: its weight sharing, and its
    /// residual candidates' γ zeroed when asked. Evaluation needs neither:
    /// a trained file holds every candidate's weights under its own name,
    /// so it loads into [`Supernet::new`] with the same result.
    pub fn for_training(
        space: &Space,
        device: Device,
        seed: u64,
        cfg: &TrainConfig,
    ) -> Result<Supernet, SupernetError> {
        let net = Self::build(space, device, seed, true, cfg.weight_sharing)?;
        if cfg.zero_residual_gamma {
            net.zero_residual_gammas()?;
        }
        Ok(net)
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
    #[cfg(test)]
    pub(crate) fn with_dense(
        space: &Space,
        device: Device,
        seed: u64,
        dense_allowed: bool,
    ) -> Result<Supernet, SupernetError> {
        Self::build(space, device, seed, dense_allowed, WeightSharing::None)
    }

    fn build(
        space: &Space,
        device: Device,
        seed: u64,
        dense_allowed: bool,
        sharing: WeightSharing,
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
            let share = match sharing {
                WeightSharing::None => None,
                WeightSharing::Nested => LayerShare::new(&b, layer)?,
            };
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
                let (expand, mut depthwise, project) = match &share {
                    None => (
                        if expansion == 1 {
                            None
                        } else {
                            Some(b.conv_bn(at(site, Part::Expand), hidden, in_c, 1, 1, 1)?)
                        },
                        b.conv_bn(
                            at(site, Part::Depthwise),
                            hidden,
                            hidden,
                            kernel,
                            layer.stride,
                            hidden,
                        )?,
                        b.conv_bn(at(site, Part::Project), layer.out_channels, hidden, 1, 1, 1)?,
                    ),
                    Some(sh) => (
                        match sh.expand(hidden)?.filter(|_| expansion > 1) {
                            Some(v) => Some(b.conv_bn_view(at(site, Part::Expand), &v, 1, 1)?),
                            None => None,
                        },
                        b.conv_bn_view(
                            at(site, Part::Depthwise),
                            &sh.depthwise(hidden, kernel)?,
                            layer.stride,
                            hidden,
                        )?,
                        b.conv_bn_view(at(site, Part::Project), &sh.project(hidden)?, 1, 1)?,
                    ),
                };
                let (h, w) = (layer.input.height, layer.input.width);
                if dense_allowed && Dense::pays(h, w, kernel) {
                    depthwise.dense = Some(dense.len());
                    dense.push(Dense::new(h, w, kernel, layer.stride, device)?);
                }
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
}
