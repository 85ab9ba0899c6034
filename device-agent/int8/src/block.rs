//! One MBConv block: expand (1×1, ReLU6) → depthwise (k×k, ReLU6) →
//! project (1×1, linear) → residual add, on int8 tensors, with the
//! intermediates in memory the caller provides.
//!
//! Two entry points, one per way a firmware may hold its tensors:
//! [`run_block`] takes input and output buffers and an arena for the
//! intermediates ([`BlockShape::arena_bytes`]); [`run_block_in_arena`] runs
//! the whole block inside one buffer of [`BlockShape::peak_activation_bytes`]
//! (a TFLite-Micro-style tensor arena), reusing memory as tensors die.

#[cfg(test)]
mod float_tests;
#[cfg(test)]
mod tests;

use core::ops::Range;

use crate::add::{AddParams, add_s8_in_place};
use crate::arena::{self, Ends, split};
use crate::conv::{ConvWeights, depthwise_s8, pointwise_s8};
use crate::error::{Error, check_len};
use crate::quant::{Activation, ConvQuant};
use crate::shape::BlockShape;

/// A block's constants and quantization, borrowed: the slices may live in
/// flash (`static`), in a `Vec` on the host, or in a buffer the firmware
/// received over the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockParams<'a> {
    /// `[mid_c][in_c]`; all three slices empty when `expand == 1`.
    pub expand: ConvWeights<'a>,
    /// `[k][k][mid_c]`.
    pub depthwise: ConvWeights<'a>,
    /// `[out_c][mid_c]`.
    pub project: ConvWeights<'a>,
    /// The block input's zero point.
    pub input_zero_point: i8,
    /// The expanded tensor: zero point and ReLU6 clamp (unused when
    /// `expand == 1`).
    pub expand_out: Activation,
    /// The depthwise output: zero point and ReLU6 clamp.
    pub depthwise_out: Activation,
    /// The projection's output (the block's output unless residual):
    /// zero point, and normally no clamp ([`Activation::linear`]).
    pub project_out: Activation,
    /// The residual add (used only when [`BlockShape::residual`]): input 1 is
    /// the block input, input 2 the projection, so its offsets must be
    /// `-input_zero_point` and `-project_out.zero_point`.
    pub add: AddParams,
}

const EXPAND: [&str; 3] = ["expand.weights", "expand.bias", "expand.requant"];
const DEPTHWISE: [&str; 3] = ["depthwise.weights", "depthwise.bias", "depthwise.requant"];
const PROJECT: [&str; 3] = ["project.weights", "project.bias", "project.requant"];

impl BlockParams<'_> {
    /// `Ok` when every slice has the length `shape` asks for and every
    /// parameter is in range, so that running the block cannot fail halfway.
    pub fn check(&self, shape: &BlockShape) -> Result<(), Error> {
        shape.validate()?;
        let mid = shape.mid_c();
        let expand_channels = if shape.expand > 1 { mid } else { 0 };
        self.expand.check(&EXPAND, expand_channels, shape.in_c)?;
        self.depthwise
            .check(&DEPTHWISE, mid, shape.kernel * shape.kernel)?;
        self.project.check(&PROJECT, shape.out_c, mid)?;
        for quant in [
            self.expand_quant(),
            self.depthwise_quant(shape),
            self.project_quant(),
        ] {
            quant.check()?;
        }
        if shape.residual() {
            self.add.check()?;
            if self.add.input1_offset != -i32::from(self.input_zero_point)
                || self.add.input2_offset != -i32::from(self.project_out.zero_point)
            {
                return Err(Error::Param(
                    "add offsets do not match the input and projection zero points",
                ));
            }
        }
        Ok(())
    }

    fn expand_quant(&self) -> ConvQuant {
        ConvQuant::new(self.input_zero_point, self.expand_out)
    }

    fn depthwise_quant(&self, shape: &BlockShape) -> ConvQuant {
        let input = if shape.expand > 1 {
            self.expand_out.zero_point
        } else {
            self.input_zero_point
        };
        ConvQuant::new(input, self.depthwise_out)
    }

    fn project_quant(&self) -> ConvQuant {
        ConvQuant::new(self.depthwise_out.zero_point, self.project_out)
    }
}

/// Runs the block from `input` (`[h][w][in_c]`) to `output`
/// (`[out_h][out_w][out_c]`), with the expanded and depthwise tensors in
/// `arena` (at least [`BlockShape::arena_bytes`] long; after the call it holds
/// the expanded tensor at its start and the depthwise output right after).
/// Everything is checked before anything is written.
pub fn run_block(
    shape: &BlockShape,
    params: &BlockParams<'_>,
    input: &[i8],
    arena: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    params.check(shape)?;
    check_len("input", input.len(), shape.input_len())?;
    check_len("output", output.len(), shape.output_len())?;
    // E + D bytes, which is `arena_bytes`: a short arena's error names the
    // size the caller was told to provide.
    let (expanded, filtered) =
        arena::consecutive(arena, shape.expanded_len(), shape.depthwise_len())?;
    if shape.expand > 1 {
        expand(shape, params, input, expanded)?;
        depthwise(shape, params, expanded, filtered)?;
    } else {
        depthwise(shape, params, input, filtered)?;
    }
    project(shape, params, filtered, output)?;
    if shape.residual() {
        add_s8_in_place(input, output, &params.add)?;
    }
    Ok(())
}

/// Runs the block inside `arena` alone. The input must be in
/// `arena[..shape.input_len()]`; the output's place is returned (its start
/// depends on the shape: see below). `arena` must be at least
/// [`BlockShape::peak_activation_bytes`] long (`P`); only `arena[..P]` is used.
///
/// Layout: the input sits at the start. Each later tensor is placed at the
/// opposite end from the one it is computed from, so that producer and
/// consumer never overlap: expanded `E` at the end (`[P - E, P)`), depthwise
/// `D` at the start, output at the end again (when `expand == 1`, `D` at the
/// end and the output at the start). A residual block keeps its input alive
/// for the add, so there "the start" means just after the input. Each stage
/// then needs exactly one of the sums in `peak_activation_bytes`.
pub fn run_block_in_arena(
    shape: &BlockShape,
    params: &BlockParams<'_>,
    arena: &mut [i8],
) -> Result<Range<usize>, Error> {
    params.check(shape)?;
    let needed = shape.peak_activation_bytes();
    arena::check(arena, needed)?;
    let input = 0..shape.input_len();
    let ends = Ends {
        start: if shape.residual() { input.end } else { 0 },
        end: needed,
    };

    let filtered = if shape.expand > 1 {
        let expanded = ends.at_end(shape.expanded_len());
        let (src, dst) = split(arena, input.clone(), expanded.clone())?;
        expand(shape, params, src, dst)?;
        let filtered = ends.at_start(shape.depthwise_len());
        let (src, dst) = split(arena, expanded, filtered.clone())?;
        depthwise(shape, params, src, dst)?;
        filtered
    } else {
        let filtered = ends.at_end(shape.depthwise_len());
        let (src, dst) = split(arena, input.clone(), filtered.clone())?;
        depthwise(shape, params, src, dst)?;
        filtered
    };
    let output = if shape.expand > 1 {
        ends.at_end(shape.output_len())
    } else {
        ends.at_start(shape.output_len())
    };
    let (src, dst) = split(arena, filtered, output.clone())?;
    project(shape, params, src, dst)?;
    if shape.residual() {
        let (src, dst) = split(arena, input, output.clone())?;
        add_s8_in_place(src, dst, &params.add)?;
    }
    Ok(output)
}

fn expand(s: &BlockShape, p: &BlockParams<'_>, src: &[i8], dst: &mut [i8]) -> Result<(), Error> {
    pointwise_s8(s.expand_shape(), src, &p.expand, &p.expand_quant(), dst)
}

fn depthwise(s: &BlockShape, p: &BlockParams<'_>, src: &[i8], dst: &mut [i8]) -> Result<(), Error> {
    depthwise_s8(
        s.depthwise_shape(),
        src,
        &p.depthwise,
        &p.depthwise_quant(s),
        dst,
    )
}

fn project(s: &BlockShape, p: &BlockParams<'_>, src: &[i8], dst: &mut [i8]) -> Result<(), Error> {
    pointwise_s8(s.project_shape(), src, &p.project, &p.project_quant(), dst)
}
