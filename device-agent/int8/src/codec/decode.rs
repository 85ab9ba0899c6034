//! Decoding: owned parameters from a blob, checked against a shape (the
//! layout and the checks are in the parent module's documentation).

use alloc::vec::Vec;

use super::{BLOCK_TAG, HEAD_TAG, REQUANT, STEM_TAG, TRUNCATED, VERSION};
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

/// One convolution's owned constants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct OwnedConv {
    weights: Vec<i8>,
    bias: Vec<i32>,
    requant: Vec<Requant>,
}

impl OwnedConv {
    fn view(&self) -> ConvWeights<'_> {
        ConvWeights {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
        }
    }
}

/// A block's parameters decoded from a blob, checked against its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedBlock {
    shape: BlockShape,
    expand: OwnedConv,
    depthwise: OwnedConv,
    project: OwnedConv,
    input_zero_point: i8,
    expand_out: Activation,
    depthwise_out: Activation,
    project_out: Activation,
    add: AddParams,
}

impl OwnedBlock {
    /// The parameters in `bytes` (an [`encode_block`](super::encode_block)
    /// blob), for `shape`: `Err` unless the tag and version match, the blob
    /// is complete with nothing after it, and the parameters pass
    /// [`BlockParams::check`].
    pub fn decode(shape: &BlockShape, bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, BLOCK_TAG)?;
        // Struct fields are evaluated in the order written: the layout's.
        let block = OwnedBlock {
            shape: *shape,
            expand: r.conv()?,
            depthwise: r.conv()?,
            project: r.conv()?,
            input_zero_point: r.i8()?,
            expand_out: r.activation()?,
            depthwise_out: r.activation()?,
            project_out: r.activation()?,
            add: r.add()?,
        };
        r.finish()?;
        block.params().check(shape)?;
        Ok(block)
    }

    /// Borrowed parameters for [`crate::run_block`].
    pub fn params(&self) -> BlockParams<'_> {
        BlockParams {
            expand: self.expand.view(),
            depthwise: self.depthwise.view(),
            project: self.project.view(),
            input_zero_point: self.input_zero_point,
            expand_out: self.expand_out,
            depthwise_out: self.depthwise_out,
            project_out: self.project_out,
            add: self.add,
        }
    }

    /// The shape it was decoded (and checked) for.
    pub fn shape(&self) -> &BlockShape {
        &self.shape
    }
}

/// A stem's parameters decoded from a blob, checked against its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedStem {
    shape: StemShape,
    conv: OwnedConv,
    input_zero_point: i8,
    output: Activation,
}

impl OwnedStem {
    /// The parameters in `bytes` (an [`encode_stem`](super::encode_stem)
    /// blob), for `shape`; the checks of [`OwnedBlock::decode`] with
    /// [`StemParams::check`].
    pub fn decode(shape: &StemShape, bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, STEM_TAG)?;
        let stem = OwnedStem {
            shape: *shape,
            conv: r.conv()?,
            input_zero_point: r.i8()?,
            output: r.activation()?,
        };
        r.finish()?;
        stem.params().check(shape)?;
        Ok(stem)
    }

    /// Borrowed parameters for [`crate::run_stem`].
    pub fn params(&self) -> StemParams<'_> {
        StemParams {
            conv: self.conv.view(),
            input_zero_point: self.input_zero_point,
            output: self.output,
        }
    }

    /// The shape it was decoded (and checked) for.
    pub fn shape(&self) -> &StemShape {
        &self.shape
    }
}

/// A head's parameters decoded from a blob, checked against its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedHead {
    shape: HeadShape,
    conv: OwnedConv,
    fc_weights: Vec<i8>,
    fc_bias: Vec<i32>,
    fc_requant: Requant,
    input_zero_point: i8,
    conv_out: Activation,
    logits: Activation,
}

impl OwnedHead {
    /// The parameters in `bytes` (an [`encode_head`](super::encode_head)
    /// blob), for `shape`; the checks of [`OwnedBlock::decode`] with
    /// [`HeadParams::check`].
    pub fn decode(shape: &HeadShape, bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, HEAD_TAG)?;
        let conv = r.conv()?;
        let (fc_weights, fc_bias) = (r.count()?, r.count()?);
        let head = OwnedHead {
            shape: *shape,
            conv,
            fc_weights: r.vec(fc_weights, |[b]| b as i8)?,
            fc_bias: r.vec(fc_bias, i32::from_le_bytes)?,
            fc_requant: r.requant()?,
            input_zero_point: r.i8()?,
            conv_out: r.activation()?,
            logits: r.activation()?,
        };
        r.finish()?;
        head.params().check(shape)?;
        Ok(head)
    }

    /// Borrowed parameters for [`crate::run_head`].
    pub fn params(&self) -> HeadParams<'_> {
        HeadParams {
            conv: self.conv.view(),
            input_zero_point: self.input_zero_point,
            conv_out: self.conv_out,
            fc: FcWeights {
                weights: &self.fc_weights,
                bias: &self.fc_bias,
                requant: self.fc_requant,
            },
            logits: self.logits,
        }
    }

    /// The shape it was decoded (and checked) for.
    pub fn shape(&self) -> &HeadShape {
        &self.shape
    }
}

/// Reads fields little-endian from the front of a blob; every read checks
/// that its bytes are there.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// After the tag and version, which must be `tag` and [`VERSION`].
    fn new(bytes: &'a [u8], tag: [u8; 4]) -> Result<Self, Error> {
        let mut r = Reader(bytes);
        if r.array::<4>()? != tag {
            return Err(Error::Codec("wrong tag (not this kind of blob)"));
        }
        if r.array::<1>()? != [VERSION] {
            return Err(Error::Codec("unsupported version"));
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(TRUNCATED)?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N)?.try_into().map_err(|_| TRUNCATED)
    }

    /// `count` values of `N` bytes each, after checking that they are there.
    fn vec<T, const N: usize>(
        &mut self,
        count: usize,
        from: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, Error> {
        let raw = self.take(count.checked_mul(N).ok_or(TRUNCATED)?)?;
        let (chunks, _) = raw.as_chunks::<N>();
        Ok(chunks.iter().map(|&c| from(c)).collect())
    }

    fn i8(&mut self) -> Result<i8, Error> {
        let [b] = self.array()?;
        Ok(b as i8)
    }

    fn i32(&mut self) -> Result<i32, Error> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn count(&mut self) -> Result<usize, Error> {
        let n = u32::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| TRUNCATED)
    }

    fn requant(&mut self) -> Result<Requant, Error> {
        Ok(requant_from(self.array()?))
    }

    fn activation(&mut self) -> Result<Activation, Error> {
        let [zero_point, min, max] = self.array::<3>()?.map(|b| b as i8);
        Ok(Activation {
            zero_point,
            min,
            max,
        })
    }

    fn conv(&mut self) -> Result<OwnedConv, Error> {
        let (weights, bias, requant) = (self.count()?, self.count()?, self.count()?);
        Ok(OwnedConv {
            weights: self.vec(weights, |[b]| b as i8)?,
            bias: self.vec(bias, i32::from_le_bytes)?,
            requant: self.vec(requant, requant_from)?,
        })
    }

    fn add(&mut self) -> Result<AddParams, Error> {
        Ok(AddParams {
            input1_offset: self.i32()?,
            input1: self.requant()?,
            input2_offset: self.i32()?,
            input2: self.requant()?,
            left_shift: self.i32()?,
            output_offset: self.i32()?,
            output: self.requant()?,
            act_min: self.i8()?,
            act_max: self.i8()?,
        })
    }

    /// `Ok` when every byte was read.
    fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Codec("trailing bytes after the parameters"))
        }
    }
}

/// A requant from its 8 bytes: multiplier, then shift.
fn requant_from(b: [u8; REQUANT]) -> Requant {
    let [m0, m1, m2, m3, s0, s1, s2, s3] = b;
    Requant {
        multiplier: i32::from_le_bytes([m0, m1, m2, m3]),
        shift: i32::from_le_bytes([s0, s1, s2, s3]),
    }
}
