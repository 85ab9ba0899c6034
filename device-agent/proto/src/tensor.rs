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

/// Decodes a tensor blob of `shape` from f32 LE bytes, checking its size.
pub fn f32s_from_le(shape: &[usize], bytes: &[u8]) -> Result<Vec<f32>, ProtoError> {
    let n = shape_elements(shape)
        .ok_or_else(|| ProtoError::BadTensor(format!("shape {shape:?} overflows")))?;
    if n.checked_mul(4) != Some(bytes.len()) {
        return Err(ProtoError::BadTensor(format!(
            "shape {shape:?} needs {n} f32 values ({} bytes), blob has {} bytes",
            n.saturating_mul(4),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}
