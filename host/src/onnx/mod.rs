//! ONNX writer for single blocks (latency profiling, random weights) and
//! whole networks (export, trained weights): one graph builder serves both.
//!
//! Weights come from a [`WeightProvider`], asked per [`ParamRef`] (stem conv,
//! layer 3's `k5e6` expand conv, …). Batch norms are folded into the
//! preceding convolution here, so the file holds plain `Conv` nodes with
//! bias, as an inference engine would fuse them anyway; ReLU6 is `Clip` with
//! its bounds as inputs (opset 13). Shapes are concrete (batch 1) by
//! default because tract runs symbolic shapes far slower, which would skew
//! latency measurements.
//!
//! This file holds the entry points and their checks; `weights` the
//! providers and BN folding, `graph` the builder that emits nodes, `proto`
//! the protobuf helpers; `quant` rewrites a written network into its int8
//! QDQ form (calibration in tract, post-training quantisation). Parameter
//! names ([`ParamRef`]) live in [`crate::naming`], shared with the supernet.

mod graph;
mod proto;
pub mod quant;
#[cfg(test)]
mod tests;
mod weights;

pub use weights::{
    BnParams, ConvParams, ConvShape, LinearParams, RandomWeights, WeightProvider, fold_bn,
};
// The supernet and export name parameters through `onnx::`; the names
// themselves belong to no one file format.
pub use crate::naming::{ParamRef, Part, Site};

use crate::space::{Arch, BlockKey, Op, Space, SpaceError};
use graph::Graph;

/// ONNX operator set the writer targets.
pub const OPSET_VERSION: i64 = 13;
/// ONNX IR version of written files.
pub const IR_VERSION: i64 = 8;
/// Name of the graph input (NCHW, f32).
pub const INPUT_NAME: &str = "input";
/// Name of the graph output (feature map for stem/MBConv blocks, logits otherwise).
pub const OUTPUT_NAME: &str = "output";
/// Batch-norm epsilon of [`RandomWeights`] (PyTorch's default).
pub const BN_EPS: f32 = 1e-5;

/// Everything that can go wrong while writing ONNX.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The architecture does not fit the space.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// A weight provider returned tensors of the wrong size or bad values.
    #[error("weights for {name}: {message}")]
    Weights {
        /// The parameter, as [`ParamRef`] displays it.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A block key describes a block that cannot be built.
    #[error("block {key}: {message}")]
    Block {
        /// The key, as text.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The write options are unusable.
    #[error("write options: {0}")]
    Options(String),
    /// Int8 quantisation (calibration or the QDQ rewrite) failed.
    #[error("int8 quantisation: {0}")]
    Quantize(String),
}

/// How to write a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Concrete batch size; `None` writes a symbolic batch dimension `N`.
    pub batch: Option<usize>,
    /// Extra `metadata_props` entries, after the writer's own.
    pub metadata: Vec<(String, String)>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            batch: Some(1),
            metadata: Vec::new(),
        }
    }
}

/// Seed of the random weights of profiled blocks. Latency does not depend
/// on the values (no sparsity tricks in tract), so one fixed seed suffices;
/// `verify` and `validate` write the same blocks with it.
pub const BLOCK_SEED: u64 = 0;

/// One block (stem, MBConv or head) with random weights from `seed`, batch 1,
/// for latency profiling. Metadata `padnas.block` holds the key.
pub fn write_block(key: &BlockKey, seed: u64) -> Result<Vec<u8>, OnnxError> {
    write_block_with(key, &mut RandomWeights::new(seed), &WriteOptions::default())
}

/// One block with the given weights and options.
pub fn write_block_with(
    key: &BlockKey,
    weights: &mut dyn WeightProvider,
    opts: &WriteOptions,
) -> Result<Vec<u8>, OnnxError> {
    check_block(key)?;
    let mut g = Graph::new(weights);
    let x = INPUT_NAME.to_string();
    let (last, out_dims) = match *key {
        BlockKey::Stem {
            input,
            kernel,
            out_channels,
            stride,
            activation,
        } => {
            let y = g.stem(x, input, kernel, out_channels, stride, activation)?;
            (y, key.output())
        }
        BlockKey::MbConv {
            input,
            kernel,
            expansion,
            out_channels,
            stride,
        } => {
            let site = Site::Layer {
                index: 0,
                op: Op::MbConv { kernel, expansion },
            };
            let y = g.mbconv(x, site, input, kernel, expansion, out_channels, stride)?;
            (y, key.output())
        }
        BlockKey::Head {
            input,
            channels,
            num_classes,
            activation,
        } => {
            let y = g.head(x, input, channels, num_classes, activation)?;
            (y, key.output())
        }
    };
    let out_shape: Vec<usize> = match key {
        BlockKey::Head { num_classes, .. } => vec![*num_classes],
        _ => vec![out_dims.channels, out_dims.height, out_dims.width],
    };
    let mut meta = vec![("padnas.block".to_string(), key.to_string())];
    meta.extend(opts.metadata.iter().cloned());
    g.finish(
        last,
        key.input(),
        &out_shape,
        opts.batch,
        meta,
        "padnas_block",
    )
}

/// A whole network: `arch` in `space`, weights from `weights`, batch 1.
/// Metadata: `padnas.arch`, `padnas.space_hash` and (if named) `padnas.space`.
pub fn write_network(
    space: &Space,
    arch: &Arch,
    weights: &mut dyn WeightProvider,
) -> Result<Vec<u8>, OnnxError> {
    write_network_with(space, arch, weights, &WriteOptions::default())
}

/// A whole network with options (batch, extra metadata).
pub fn write_network_with(
    space: &Space,
    arch: &Arch,
    weights: &mut dyn WeightProvider,
    opts: &WriteOptions,
) -> Result<Vec<u8>, OnnxError> {
    space.check_arch(arch)?;
    let mut g = Graph::new(weights);
    let stem = space.stem();
    let mut x = g.stem(
        INPUT_NAME.to_string(),
        space.input(),
        stem.kernel,
        stem.channels,
        stem.stride,
        stem.activation,
    )?;
    for (layer, &op) in space.layers().iter().zip(&arch.ops) {
        if let Op::MbConv { kernel, expansion } = op {
            let site = Site::Layer {
                index: layer.index,
                op,
            };
            x = g.mbconv(
                x,
                site,
                layer.input,
                kernel,
                expansion,
                layer.out_channels,
                layer.stride,
            )?;
        }
    }
    let head = space.head();
    let y = g.head(
        x,
        space.head_input(),
        head.channels,
        space.num_classes(),
        head.activation,
    )?;
    let mut meta = vec![
        ("padnas.arch".to_string(), arch.to_string()),
        ("padnas.space_hash".to_string(), space.hash()),
    ];
    if let Some(name) = space.name() {
        meta.push(("padnas.space".to_string(), name.to_string()));
    }
    meta.extend(opts.metadata.iter().cloned());
    g.finish(
        y,
        space.input(),
        &[space.num_classes()],
        opts.batch,
        meta,
        "padnas_network",
    )
}

fn check_block(key: &BlockKey) -> Result<(), OnnxError> {
    let bad = |message: &str| {
        Err(OnnxError::Block {
            key: key.to_string(),
            message: message.into(),
        })
    };
    let input = key.input();
    if input.channels == 0 || input.height == 0 || input.width == 0 {
        return bad("empty input shape");
    }
    match *key {
        BlockKey::Stem {
            kernel,
            out_channels,
            stride,
            ..
        } => {
            if kernel.is_multiple_of(2) || out_channels == 0 || stride == 0 {
                return bad("kernel must be odd, channels and stride ≥ 1");
            }
        }
        BlockKey::MbConv {
            kernel,
            expansion,
            out_channels,
            stride,
            ..
        } => {
            if kernel.is_multiple_of(2) || expansion == 0 || out_channels == 0 || stride == 0 {
                return bad("kernel must be odd, expansion, channels and stride ≥ 1");
            }
        }
        BlockKey::Head {
            channels,
            num_classes,
            ..
        } => {
            if channels == 0 || num_classes == 0 {
                return bad("channels and classes must be ≥ 1");
            }
        }
    }
    Ok(())
}
