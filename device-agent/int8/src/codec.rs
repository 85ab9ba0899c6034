//! A compact binary form of a block's, stem's or head's int8 parameters
//! (feature `alloc`), so that a host can send a microcontroller the real
//! weights and quantization of a trained network instead of a seed.
//!
//! The encoders work from the borrowed [`BlockParams`], [`StemParams`] and
//! [`HeadParams`], so seeded ([`crate::RandomBlock`]) and real parameters
//! encode the same way. The decoders need the shape (the blob does not carry
//! it) and return owned parameters ([`OwnedBlock`], [`OwnedStem`],
//! [`OwnedHead`]) whose `params()` are checked against it.
//!
//! # Layout (version 1)
//!
//! Little-endian, nothing padded, every field at the byte after the
//! previous one (so the `i32`s are in general unaligned):
//!
//! | field | bytes |
//! |---|---|
//! | tag: `b"PI8B"` (block), `b"PI8S"` (stem), `b"PI8H"` (head) | 4 |
//! | version: `1` | 1 |
//! | then, per kind, in this order: | |
//! | block: conv `expand`, conv `depthwise`, conv `project`, `input_zero_point` (i8), act `expand_out`, act `depthwise_out`, act `project_out`, add | |
//! | stem: conv, `input_zero_point` (i8), act `output` | |
//! | head: conv, fc, `input_zero_point` (i8), act `conv_out`, act `logits` | |
//!
//! with these parts:
//!
//! | part | fields | bytes |
//! |---|---|---|
//! | conv | u32 `nw`, u32 `nb`, u32 `nr`; `nw` × i8 weight; `nb` × i32 bias; `nr` × (i32 multiplier, i32 shift) | `12 + nw + 4·nb + 8·nr` |
//! | fc | u32 `nw`, u32 `nb`; `nw` × i8 weight; `nb` × i32 bias; i32 multiplier, i32 shift (one per layer) | `16 + nw + 4·nb` |
//! | act | i8 zero point, i8 min, i8 max | 3 |
//! | add | i32 `input1_offset`, i32 `input1.multiplier`, i32 `input1.shift`, the same three for input 2, i32 `left_shift`, i32 `output_offset`, i32 `output.multiplier`, i32 `output.shift`, i8 `act_min`, i8 `act_max` | 42 |
//!
//! Weights in the layouts of [`ConvWeights`] and [`FcWeights`]. A block
//! with `expand == 1` has an empty expand conv (`0, 0, 0`); the add is
//! always present (ignored unless the block is residual). So a blob is
//! [`BlockShape::weight_bytes`] + 93 bytes ([`StemShape::weight_bytes`] + 21,
//! [`HeadShape::weight_bytes`] + 32): [`encoded_len_block`] and friends.
//!
//! Decoding reads every count from the blob, checks that the bytes are
//! there before it allocates (so it never allocates more than the blob's
//! size), that nothing follows, then that the parameters pass the
//! `check` of [`BlockParams`] (resp. stem, head) for the shape: a count
//! that does not fit the shape is an [`Error::Length`] naming the slice
//! (`"expand.weights"`, ...), a malformed blob an [`Error::Codec`]. No input
//! panics. The blob carries no spatial dimensions: the same parameters run
//! at any `h`, `w` (and, for a block, stride) the shape gives.

mod decode;
#[cfg(test)]
mod reject_tests;
#[cfg(test)]
mod tests;

pub use decode::{OwnedBlock, OwnedHead, OwnedStem};

use alloc::vec::Vec;

use crate::add::AddParams;
use crate::block::BlockParams;
use crate::conv::ConvWeights;
use crate::error::Error;
use crate::fc::FcWeights;
use crate::net_blocks::{HeadParams, StemParams};
use crate::net_shape::{HeadShape, StemShape};
use crate::quant::Activation;
use crate::requant::Requant;
use crate::shape::BlockShape;

/// The format version every blob carries after its tag.
pub const VERSION: u8 = 1;
/// The tag of a block's blob.
pub const BLOCK_TAG: [u8; 4] = *b"PI8B";
/// The tag of a stem's blob.
pub const STEM_TAG: [u8; 4] = *b"PI8S";
/// The tag of a head's blob.
pub const HEAD_TAG: [u8; 4] = *b"PI8H";

/// Tag and version.
const HEADER: usize = 4 + 1;
const ACTIVATION: usize = 3;
const REQUANT: usize = 4 + 4;
const ADD: usize = 3 * (4 + REQUANT) + 4 + 2;

const TRUNCATED: Error = Error::Codec("blob truncated");

/// Bytes of a conv part with these counts (saturating).
fn conv_bytes(weights: usize, bias: usize, requant: usize) -> usize {
    sum(&[
        12,
        weights,
        bias.saturating_mul(4),
        requant.saturating_mul(REQUANT),
    ])
}

/// Bytes of an fc part with these counts (saturating).
fn fc_bytes(weights: usize, bias: usize) -> usize {
    sum(&[8, weights, bias.saturating_mul(4), REQUANT])
}

fn sum(parts: &[usize]) -> usize {
    parts.iter().fold(0, |a, &b| a.saturating_add(b))
}

/// The length of a valid block blob for `shape`, what [`encode_block`]
/// returns for parameters that pass [`BlockParams::check`]:
/// `shape.weight_bytes() + 93`. Saturates at `usize::MAX`.
pub fn encoded_len_block(shape: &BlockShape) -> usize {
    let mid = shape.mid_c();
    let expanded = if shape.expand > 1 { mid } else { 0 };
    let taps = shape.kernel.saturating_mul(shape.kernel);
    sum(&[
        HEADER,
        conv_bytes(expanded.saturating_mul(shape.in_c), expanded, expanded),
        conv_bytes(taps.saturating_mul(mid), mid, mid),
        conv_bytes(shape.out_c.saturating_mul(mid), shape.out_c, shape.out_c),
        1 + 3 * ACTIVATION + ADD,
    ])
}

/// The length of a valid stem blob for `shape`:
/// `shape.weight_bytes() + 21`. Saturates at `usize::MAX`.
pub fn encoded_len_stem(shape: &StemShape) -> usize {
    let taps = shape.kernel.saturating_mul(shape.kernel);
    let weights = taps.saturating_mul(shape.in_c).saturating_mul(shape.out_c);
    sum(&[
        HEADER,
        conv_bytes(weights, shape.out_c, shape.out_c),
        1 + ACTIVATION,
    ])
}

/// The length of a valid head blob for `shape`:
/// `shape.weight_bytes() + 32`. Saturates at `usize::MAX`.
pub fn encoded_len_head(shape: &HeadShape) -> usize {
    let (c, l) = (shape.channels, shape.classes);
    sum(&[
        HEADER,
        conv_bytes(c.saturating_mul(shape.in_c), c, c),
        fc_bytes(l.saturating_mul(c), l),
        1 + 2 * ACTIVATION,
    ])
}

/// The blob of a block's parameters (layout in the module documentation).
/// Every slice is written whole with its length, checked or not, so a blob
/// of parameters that do not fit a shape does not decode for it. (A slice
/// of 2^32 elements or more has no valid encoding: its count is written as
/// `u32::MAX`.)
pub fn encode_block(params: &BlockParams<'_>) -> Vec<u8> {
    let convs = [params.expand, params.depthwise, params.project];
    let len = sum(&[HEADER, 1 + 3 * ACTIVATION + ADD]);
    let len = convs.iter().fold(len, |a, c| a.saturating_add(conv_len(c)));
    let mut w = Writer::new(BLOCK_TAG, len);
    convs.iter().for_each(|c| w.conv(c));
    w.i8(params.input_zero_point);
    w.activation(params.expand_out);
    w.activation(params.depthwise_out);
    w.activation(params.project_out);
    w.add(&params.add);
    w.0
}

/// The blob of a stem's parameters (see [`encode_block`]).
pub fn encode_stem(params: &StemParams<'_>) -> Vec<u8> {
    let len = sum(&[HEADER, conv_len(&params.conv), 1 + ACTIVATION]);
    let mut w = Writer::new(STEM_TAG, len);
    w.conv(&params.conv);
    w.i8(params.input_zero_point);
    w.activation(params.output);
    w.0
}

/// The blob of a head's parameters (see [`encode_block`]).
pub fn encode_head(params: &HeadParams<'_>) -> Vec<u8> {
    let fc = fc_bytes(params.fc.weights.len(), params.fc.bias.len());
    let len = sum(&[HEADER, conv_len(&params.conv), fc, 1 + 2 * ACTIVATION]);
    let mut w = Writer::new(HEAD_TAG, len);
    w.conv(&params.conv);
    w.fc(&params.fc);
    w.i8(params.input_zero_point);
    w.activation(params.conv_out);
    w.activation(params.logits);
    w.0
}

fn conv_len(c: &ConvWeights<'_>) -> usize {
    conv_bytes(c.weights.len(), c.bias.len(), c.requant.len())
}

/// Appends fields little-endian.
struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: [u8; 4], capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.extend_from_slice(&tag);
        bytes.push(VERSION);
        Writer(bytes)
    }

    fn i8(&mut self, v: i8) {
        self.0.push(v as u8);
    }

    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn count(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn requant(&mut self, r: Requant) {
        self.i32(r.multiplier);
        self.i32(r.shift);
    }

    fn activation(&mut self, a: Activation) {
        [a.zero_point, a.min, a.max]
            .into_iter()
            .for_each(|v| self.i8(v));
    }

    fn conv(&mut self, c: &ConvWeights<'_>) {
        self.count(c.weights.len());
        self.count(c.bias.len());
        self.count(c.requant.len());
        c.weights.iter().for_each(|&v| self.i8(v));
        c.bias.iter().for_each(|&v| self.i32(v));
        c.requant.iter().for_each(|&r| self.requant(r));
    }

    fn fc(&mut self, f: &FcWeights<'_>) {
        self.count(f.weights.len());
        self.count(f.bias.len());
        f.weights.iter().for_each(|&v| self.i8(v));
        f.bias.iter().for_each(|&v| self.i32(v));
        self.requant(f.requant);
    }

    fn add(&mut self, a: &AddParams) {
        self.i32(a.input1_offset);
        self.requant(a.input1);
        self.i32(a.input2_offset);
        self.requant(a.input2);
        self.i32(a.left_shift);
        self.i32(a.output_offset);
        self.requant(a.output);
        self.i8(a.act_min);
        self.i8(a.act_max);
    }
}
