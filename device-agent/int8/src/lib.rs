//! int8 inference of a MobileNetV2-style network's blocks (the stem, the
//! inverted-residual MBConv blocks, the head) with the arithmetic of ARM's
//! CMSIS-NN int8 kernels, bit for bit, in `no_std` Rust without allocation:
//! the microcontroller agent runs them, and the host computes the reference
//! output with the very same code.
//!
//! Layout HWC (NHWC, batch 1), as CMSIS-NN. Modules, bottom up:
//!
//! | module | one job |
//! |---|---|
//! | [`requant`] | fixed-point multipliers: `arm_nn_requantize`, TFLite's `QuantizeMultiplier` |
//! | [`quant`] | a tensor's zero point and clamp; a convolution's offsets |
//! | [`conv`] | 1×1 and depthwise k×k convolutions |
//! | [`conv_full`] | full k×k convolution (the stem) |
//! | [`pool`] | global average pooling (the head) |
//! | [`fc`] | fully connected layer (the head's classifier) |
//! | [`add`] | the residual add, `arm_elementwise_add_s8` |
//! | [`shape`] | a block's shape, its flash and RAM costs |
//! | `arena` | (internal) the caller's arena cut into a block's tensors |
//! | [`block`] | a block's parameters; running it in caller memory |
//! | [`net_shape`] | a network's stem and head: shapes, flash and RAM costs |
//! | [`net_blocks`] | the stem's and head's parameters; running them |
//! | [`random`] | (feature `alloc`) seeded blocks, stems, heads and inputs |
//! | [`codec`] | (feature `alloc`) parameters to and from a compact binary blob |
//!
//! Every public function checks its slice lengths and parameters and returns
//! [`Error`] instead of panicking.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod add;
mod arena;
pub mod block;
#[cfg(any(test, feature = "alloc"))]
pub mod codec;
pub mod conv;
pub mod conv_full;
mod error;
pub mod fc;
pub mod net_blocks;
pub mod net_shape;
pub mod pool;
pub mod quant;
#[cfg(any(test, feature = "alloc"))]
pub mod random;
pub mod requant;
pub mod shape;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod testkit;

pub use add::{AddParams, add_s8, add_s8_in_place};
pub use block::{BlockParams, run_block, run_block_in_arena};
#[cfg(any(test, feature = "alloc"))]
pub use codec::{
    OwnedBlock, OwnedHead, OwnedStem, encode_block, encode_head, encode_stem, encoded_len_block,
    encoded_len_head, encoded_len_stem,
};
pub use conv::{
    ConvWeights, DepthwiseShape, PointwiseShape, depthwise_s8, pointwise_s8, same_padding,
};
pub use conv_full::{ConvShape, conv_s8};
pub use error::Error;
pub use fc::{FcShape, FcWeights, fully_connected_s8};
pub use net_blocks::{
    HeadParams, StemParams, run_head, run_head_in_arena, run_stem, run_stem_in_arena,
};
pub use net_shape::{HeadShape, StemShape};
pub use pool::{MAX_POOL_PIXELS, PoolShape, avgpool_s8};
pub use quant::{Activation, ConvQuant};
#[cfg(any(test, feature = "alloc"))]
pub use random::{
    RandomBlock, RandomConv, RandomFc, RandomHead, RandomStem, TensorScales, random_input,
};
pub use requant::{Requant, quantize_multiplier};
pub use shape::BlockShape;
