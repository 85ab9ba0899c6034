//! int8 inference of one MobileNetV2 inverted-residual block (MBConv) with
//! the arithmetic of ARM's CMSIS-NN int8 kernels, bit for bit, in `no_std`
//! Rust without allocation: the microcontroller agent runs it, and the host
//! computes the reference output with the very same code.
//!
//! Layout HWC (NHWC, batch 1), as CMSIS-NN. Modules, bottom up:
//!
//! | module | one job |
//! |---|---|
//! | [`requant`] | fixed-point multipliers: `arm_nn_requantize`, TFLite's `QuantizeMultiplier` |
//! | [`quant`] | a tensor's zero point and clamp; a convolution's offsets |
//! | [`conv`] | 1×1 and depthwise k×k convolutions |
//! | [`add`] | the residual add, `arm_elementwise_add_s8` |
//! | [`shape`] | a block's shape, its flash and RAM costs |
//! | [`block`] | a block's parameters; running it in caller memory |
//! | [`random`] | (feature `alloc`) seeded blocks and inputs |
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
pub mod block;
pub mod conv;
mod error;
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
pub use conv::{
    ConvWeights, DepthwiseShape, PointwiseShape, depthwise_s8, pointwise_s8, same_padding,
};
pub use error::Error;
pub use quant::{Activation, ConvQuant};
#[cfg(any(test, feature = "alloc"))]
pub use random::{RandomBlock, RandomConv, TensorScales, random_input};
pub use requant::{Requant, quantize_multiplier};
pub use shape::BlockShape;
