//! The tensor blob codec: f32 values as little-endian bytes.

use alloc::format;
use alloc::vec::Vec;

use crate::ProtoError;

/// Encodes f32 values as little-endian bytes (tensor blobs).
pub fn f32s_to_le(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Number of elements of a shape, or `None` when it overflows `usize`.
pub fn shape_elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A shape (or any list of sizes) in messages, as `{:?}` writes a slice
/// (`[1, 28, 28, 1]`), but through `Display` alone: `Debug`'s list builder
/// and padding adapter cost the microcontroller firmware about 1 KB of
/// flash.
pub struct Dims<'a>(pub &'a [usize]);

impl core::fmt::Display for Dims<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Decodes a tensor blob of `shape` from f32 LE bytes, checking its size.
pub fn f32s_from_le(shape: &[usize], bytes: &[u8]) -> Result<Vec<f32>, ProtoError> {
    let n = shape_elements(shape)
        .ok_or_else(|| ProtoError::BadTensor(format!("shape {} overflows", Dims(shape))))?;
    if n.checked_mul(4) != Some(bytes.len()) {
        return Err(ProtoError::BadTensor(format!(
            "shape {} needs {n} f32 values ({} bytes), blob has {} bytes",
            Dims(shape),
            n.saturating_mul(4),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::ToString;

    use super::*;

    #[test]
    fn dims_read_as_debug_does() {
        for shape in [&[][..], &[7], &[1, 28, 28, 1]] {
            assert_eq!(Dims(shape).to_string(), format!("{shape:?}"));
        }
    }
}
