//! Building a supernet: every parameter created, named after the ONNX
//! writer's parameter references, and initialised from the seed and its
//! name alone (so adding an op never changes another op's initial weights).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::dense::Dense;
use super::{Bn, ConvBn, MbConv, Param, ParamKind, Supernet, channels_last};
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
}
