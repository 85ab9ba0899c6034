//! The three kinds of int8 block a network is made of (stem, MBConv, head),
//! behind one interface: shape in and out, memory, a run in one buffer.
//! Built from a protocol `Int8Block` and either the parameters the host sent
//! (`padnas-int8`'s codec: a quantised trained network's) or, without them,
//! the same seeded ones the host draws (`RandomStem`, `RandomBlock`,
//! `RandomHead`).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use padnas_int8::{
    BlockParams, BlockShape, Error, HeadParams, HeadShape, OwnedBlock, OwnedHead, OwnedStem,
    RandomBlock, RandomHead, RandomStem, StemParams, StemShape, encoded_len_block,
    encoded_len_head, encoded_len_stem, run_block_in_arena, run_head_in_arena, run_stem_in_arena,
};
use padnas_proto::{Int8Block, Int8Kind};

/// A shape checked, not yet drawn: what it costs is known before any
/// allocation, so the agent can refuse what would not fit.
pub enum Shape {
    Stem(StemShape),
    Block(BlockShape),
    Head(HeadShape),
}

/// Where a block's parameters came from.
pub enum Weights<R, O> {
    /// Drawn from the seed.
    Drawn(R),
    /// Sent by the host.
    Sent(O),
}

/// A block with its weights, ready to run.
pub enum Net {
    Stem(StemShape, Weights<RandomStem, OwnedStem>),
    Block(BlockShape, Weights<RandomBlock, OwnedBlock>),
    Head(HeadShape, Weights<RandomHead, OwnedHead>),
}

impl Shape {
    /// The shape `spec` describes, checked.
    pub fn of(spec: &Int8Block) -> Result<Shape, String> {
        let d = |v: u32| v as usize;
        let shape = match spec.kind {
            Int8Kind::Stem => Shape::Stem(StemShape {
                in_c: d(spec.in_c),
                out_c: d(spec.out_c),
                kernel: d(spec.kernel),
                stride: d(spec.stride),
                h: d(spec.h),
                w: d(spec.w),
            }),
            Int8Kind::Mbconv => Shape::Block(BlockShape {
                in_c: d(spec.in_c),
                out_c: d(spec.out_c),
                expand: d(spec.expand),
                kernel: d(spec.kernel),
                stride: d(spec.stride),
                h: d(spec.h),
                w: d(spec.w),
            }),
            Int8Kind::Head => Shape::Head(HeadShape {
                in_c: d(spec.in_c),
                channels: d(spec.out_c),
                classes: d(spec.classes),
                h: d(spec.h),
                w: d(spec.w),
            }),
        };
        let checked = match &shape {
            Shape::Stem(s) => s.validate(),
            Shape::Block(s) => s.validate(),
            Shape::Head(s) => s.validate(),
        };
        checked.map_err(|e| format!("int8 {:?} block: {e}", spec.kind))?;
        Ok(shape)
    }

    /// Flash its weights take.
    pub fn weight_bytes(&self) -> usize {
        match self {
            Shape::Stem(s) => s.weight_bytes(),
            Shape::Block(s) => s.weight_bytes(),
            Shape::Head(s) => s.weight_bytes(),
        }
    }

    /// The one buffer it runs in: its peak live activations.
    pub fn activation_bytes(&self) -> usize {
        match self {
            Shape::Stem(s) => s.peak_activation_bytes(),
            Shape::Block(s) => s.peak_activation_bytes(),
            Shape::Head(s) => s.peak_activation_bytes(),
        }
    }

    /// Bytes of its parameters as the host sends them.
    pub fn encoded_len(&self) -> usize {
        match self {
            Shape::Stem(s) => encoded_len_stem(s),
            Shape::Block(s) => encoded_len_block(s),
            Shape::Head(s) => encoded_len_head(s),
        }
    }

    /// Draws the weights from `seed`.
    pub fn draw(self, seed: u64) -> Result<Net, Error> {
        Ok(match self {
            Shape::Stem(s) => Net::Stem(s, Weights::Drawn(RandomStem::new(s, seed)?)),
            Shape::Block(s) => Net::Block(s, Weights::Drawn(RandomBlock::new(s, seed)?)),
            Shape::Head(s) => Net::Head(s, Weights::Drawn(RandomHead::new(s, seed)?)),
        })
    }

    /// Takes the parameters the host sent, checked against the shape.
    pub fn decode(self, blob: &[u8]) -> Result<Net, Error> {
        Ok(match self {
            Shape::Stem(s) => Net::Stem(s, Weights::Sent(OwnedStem::decode(&s, blob)?)),
            Shape::Block(s) => Net::Block(s, Weights::Sent(OwnedBlock::decode(&s, blob)?)),
            Shape::Head(s) => Net::Head(s, Weights::Sent(OwnedHead::decode(&s, blob)?)),
        })
    }
}

impl Net {
    /// Input tensor, NHWC.
    pub fn input_shape(&self) -> Vec<usize> {
        match self {
            Net::Stem(s, _) => vec![1, s.h, s.w, s.in_c],
            Net::Block(s, _) => vec![1, s.h, s.w, s.in_c],
            Net::Head(s, _) => vec![1, s.h, s.w, s.in_c],
        }
    }

    /// Output tensor: NHWC, or `[1, classes]` logits for a head.
    pub fn output_shape(&self) -> Vec<usize> {
        match self {
            Net::Stem(s, _) => {
                let (h, w) = s.out_hw();
                vec![1, h, w, s.out_c]
            }
            Net::Block(s, _) => {
                let (h, w) = s.out_hw();
                vec![1, h, w, s.out_c]
            }
            Net::Head(s, _) => vec![1, s.classes],
        }
    }

    /// Values of the input.
    pub fn input_len(&self) -> usize {
        match self {
            Net::Stem(s, _) => s.input_len(),
            Net::Block(s, _) => s.input_len(),
            Net::Head(s, _) => s.input_len(),
        }
    }

    /// Runs on the input at the start of `arena`; where the output is.
    pub fn run(&self, arena: &mut [i8]) -> Result<Range<usize>, Error> {
        match self {
            Net::Stem(s, w) => run_stem_in_arena(s, &stem_params(w), arena),
            Net::Block(s, w) => run_block_in_arena(s, &block_params(w), arena),
            Net::Head(s, w) => run_head_in_arena(s, &head_params(w), arena),
        }
    }
}

fn stem_params(w: &Weights<RandomStem, OwnedStem>) -> StemParams<'_> {
    match w {
        Weights::Drawn(r) => r.params(),
        Weights::Sent(o) => o.params(),
    }
}

fn block_params(w: &Weights<RandomBlock, OwnedBlock>) -> BlockParams<'_> {
    match w {
        Weights::Drawn(r) => r.params(),
        Weights::Sent(o) => o.params(),
    }
}

fn head_params(w: &Weights<RandomHead, OwnedHead>) -> HeadParams<'_> {
    match w {
        Weights::Drawn(r) => r.params(),
        Weights::Sent(o) => o.params(),
    }
}
