//! An independent reference CNN for the writer's tests: direct convolution
//! loops with each batch norm applied unfolded, over exactly the weights the
//! writer was handed, so a folding or wiring mistake shows as a difference.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::naming::{ParamRef, Part, Site};
use crate::onnx::{
    BnParams, ConvParams, ConvShape, LinearParams, OnnxError, RandomWeights, WeightProvider,
};
use crate::space::{Activation, Arch, BlockKey, Op, Shape, Space};

/// Hands out random parameters, remembering them by name so the reference
/// sees exactly what the writer folded. Convs get a bias so the `(b − μ)`
/// term of the folding is exercised too.
pub(super) struct Recorded {
    inner: RandomWeights,
    conv: HashMap<String, ConvParams>,
    bn: HashMap<String, BnParams>,
    fc: HashMap<String, LinearParams>,
}

impl Recorded {
    pub(super) fn new(seed: u64) -> Self {
        Recorded {
            inner: RandomWeights::new(seed),
            conv: HashMap::new(),
            bn: HashMap::new(),
            fc: HashMap::new(),
        }
    }
}

impl WeightProvider for Recorded {
    fn conv(&mut self, at: ParamRef, shape: ConvShape) -> Result<ConvParams, OnnxError> {
        if let Some(p) = self.conv.get(&at.to_string()) {
            return Ok(p.clone());
        }
        let mut p = self.inner.conv(at, shape)?;
        p.bias = Some(self.inner.uniform(shape.out_channels, -0.2, 0.2));
        self.conv.insert(at.to_string(), p.clone());
        Ok(p)
    }

    fn batch_norm(&mut self, at: ParamRef, channels: usize) -> Result<BnParams, OnnxError> {
        let p = self.inner.batch_norm(at, channels)?;
        Ok(self.bn.entry(at.to_string()).or_insert(p).clone())
    }

    fn linear(
        &mut self,
        at: ParamRef,
        in_features: usize,
        out_features: usize,
    ) -> Result<LinearParams, OnnxError> {
        let p = self.inner.linear(at, in_features, out_features)?;
        Ok(self.fc.entry(at.to_string()).or_insert(p).clone())
    }
}

/// A feature map, batch 1, CHW.
#[derive(Clone, Debug)]
pub(super) struct Fm {
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) d: Vec<f32>,
}

impl Fm {
    pub(super) fn random(s: Shape, seed: u64) -> Fm {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = (0..s.numel())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        Fm {
            c: s.channels,
            h: s.height,
            w: s.width,
            d,
        }
    }
}

fn conv_ref(x: &Fm, p: &ConvParams, out_c: usize, k: usize, stride: usize, groups: usize) -> Fm {
    let pad = k / 2;
    let oh = (x.h + 2 * pad - k) / stride + 1;
    let ow = (x.w + 2 * pad - k) / stride + 1;
    let in_per = x.c / groups;
    let out_per = out_c / groups;
    let mut d = vec![0f32; out_c * oh * ow];
    for o in 0..out_c {
        let g = o / out_per;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = p.bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
                for i in 0..in_per {
                    let ic = g * in_per + i;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (oy * stride + ky, ox * stride + kx);
                            // Padded coordinates: inside when pad ≤ i < pad + size.
                            if iy < pad || ix < pad || iy - pad >= x.h || ix - pad >= x.w {
                                continue;
                            }
                            let xv = x.d[(ic * x.h + iy - pad) * x.w + ix - pad];
                            let wv = p.weight[((o * in_per + i) * k + ky) * k + kx];
                            acc += f64::from(xv) * f64::from(wv);
                        }
                    }
                }
                d[(o * oh + oy) * ow + ox] = acc as f32;
            }
        }
    }
    Fm {
        c: out_c,
        h: oh,
        w: ow,
        d,
    }
}

fn bn_ref(mut x: Fm, p: &BnParams) -> Fm {
    let hw = x.h * x.w;
    for (i, v) in x.d.iter_mut().enumerate() {
        let c = i / hw;
        let norm = (f64::from(*v) - f64::from(p.mean[c]))
            / (f64::from(p.var[c]) + f64::from(p.eps)).sqrt();
        *v = (norm * f64::from(p.gamma[c]) + f64::from(p.beta[c])) as f32;
    }
    x
}

fn act_ref(mut x: Fm, act: Activation) -> Fm {
    for v in &mut x.d {
        *v = match act {
            Activation::Relu6 => v.clamp(0.0, 6.0),
            Activation::Relu => v.max(0.0),
        };
    }
    x
}

fn conv_bn_ref(
    x: &Fm,
    rec: &Recorded,
    at: ParamRef,
    out_c: usize,
    k: usize,
    s: usize,
    g: usize,
) -> Fm {
    let name = at.to_string();
    bn_ref(
        conv_ref(x, &rec.conv[&name], out_c, k, s, g),
        &rec.bn[&name],
    )
}

fn stem_ref(x: &Fm, rec: &Recorded, k: usize, out_c: usize, s: usize, act: Activation) -> Fm {
    let at = ParamRef {
        site: Site::Stem,
        part: Part::Conv,
    };
    act_ref(conv_bn_ref(x, rec, at, out_c, k, s, 1), act)
}

fn mbconv_ref(
    x: &Fm,
    rec: &Recorded,
    site: Site,
    k: usize,
    e: usize,
    out_c: usize,
    s: usize,
) -> Fm {
    let at = |part| ParamRef { site, part };
    let hidden = x.c * e;
    let mut y = x.clone();
    if e != 1 {
        y = act_ref(
            conv_bn_ref(&y, rec, at(Part::Expand), hidden, 1, 1, 1),
            Activation::Relu6,
        );
    }
    y = act_ref(
        conv_bn_ref(&y, rec, at(Part::Depthwise), hidden, k, s, hidden),
        Activation::Relu6,
    );
    y = conv_bn_ref(&y, rec, at(Part::Project), out_c, 1, 1, 1);
    if s == 1 && x.c == out_c {
        for (a, b) in y.d.iter_mut().zip(&x.d) {
            *a += b;
        }
    }
    y
}

fn head_ref(x: &Fm, rec: &Recorded, channels: usize, classes: usize, act: Activation) -> Vec<f32> {
    let at = ParamRef {
        site: Site::Head,
        part: Part::Conv,
    };
    let y = act_ref(conv_bn_ref(x, rec, at, channels, 1, 1, 1), act);
    let hw = y.h * y.w;
    let pooled: Vec<f64> = (0..channels)
        .map(|c| {
            y.d[c * hw..(c + 1) * hw]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / hw as f64
        })
        .collect();
    let fc = &rec.fc["classifier.fc"];
    (0..classes)
        .map(|o| {
            let dot: f64 = (0..channels)
                .map(|i| f64::from(fc.weight[o * channels + i]) * pooled[i])
                .sum();
            (dot + f64::from(fc.bias[o])) as f32
        })
        .collect()
}

pub(super) fn block_ref(key: &BlockKey, rec: &Recorded, x: &Fm) -> Vec<f32> {
    match *key {
        BlockKey::Stem {
            kernel,
            out_channels,
            stride,
            activation,
            ..
        } => stem_ref(x, rec, kernel, out_channels, stride, activation).d,
        BlockKey::MbConv {
            kernel,
            expansion,
            out_channels,
            stride,
            ..
        } => {
            let site = Site::Layer {
                index: 0,
                op: Op::MbConv { kernel, expansion },
            };
            mbconv_ref(x, rec, site, kernel, expansion, out_channels, stride).d
        }
        BlockKey::Head {
            channels,
            num_classes,
            activation,
            ..
        } => head_ref(x, rec, channels, num_classes, activation),
    }
}

pub(super) fn network_ref(space: &Space, arch: &Arch, rec: &Recorded, x: &Fm) -> Vec<f32> {
    let st = space.stem();
    let mut y = stem_ref(x, rec, st.kernel, st.channels, st.stride, st.activation);
    for (l, &op) in space.layers().iter().zip(&arch.ops) {
        if let Op::MbConv { kernel, expansion } = op {
            let site = Site::Layer { index: l.index, op };
            y = mbconv_ref(&y, rec, site, kernel, expansion, l.out_channels, l.stride);
        }
    }
    head_ref(
        &y,
        rec,
        space.head().channels,
        space.num_classes(),
        space.head().activation,
    )
}
