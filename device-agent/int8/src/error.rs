//! The crate's one error type.
//!
//! Every kernel checks its slice lengths and parameters before it touches
//! memory, so a caller on the board (where a panic means a reset) gets a
//! value back instead. The variants carry `&'static str` names only: no
//! allocation, and `Display` works in `no_std` firmware logs.

use core::fmt;

/// Why a kernel or a block refused to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A slice has the wrong number of elements.
    Length {
        /// Which slice (`"input"`, `"depthwise.bias"`, ...).
        what: &'static str,
        /// The length the shape asks for.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The caller's arena cannot hold the block's intermediate tensors.
    ArenaTooSmall {
        /// Bytes the block needs.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// A dimension is out of its supported range, or the sizes overflow
    /// `usize` (which, on a 32-bit board, can happen before memory runs out).
    Shape(&'static str),
    /// A quantization parameter is out of the range the kernels support
    /// (a shift, a multiplier, an offset, or an empty clamp range).
    Param(&'static str),
    /// A parameter blob (module `codec`, feature `alloc`) is malformed: wrong
    /// tag or version, truncated, or followed by trailing bytes.
    Codec(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Length {
                what,
                expected,
                got,
            } => write!(f, "{what} has {got} elements, expected {expected}"),
            Error::ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: {got} bytes, the block needs {needed}")
            }
            Error::Shape(why) => write!(f, "bad shape: {why}"),
            Error::Param(why) => write!(f, "bad quantization parameter: {why}"),
            Error::Codec(why) => write!(f, "bad parameter blob: {why}"),
        }
    }
}

impl core::error::Error for Error {}

/// `Err(Error::Length)` unless `got == expected`.
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), Error> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Length {
            what,
            expected,
            got,
        })
    }
}

/// `a * b`, or `Error::Shape` when it overflows `usize`.
pub(crate) fn mul(a: usize, b: usize) -> Result<usize, Error> {
    a.checked_mul(b).ok_or(Error::Shape("size overflows usize"))
}
