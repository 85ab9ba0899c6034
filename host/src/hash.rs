//! The one content hash of the project: FNV-1a, 64 bits.
//!
//! Used where a file or a set of settings needs a short, stable name that
//! changes when its content does (a space's hash, a pipeline step's
//! fingerprint). Not cryptographic: it guards against mistakes, not
//! against someone forging a collision.

/// FNV-1a over `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// [`fnv1a64`] as 16 lowercase hex digits.
pub fn hex_digest(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a64(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hex_digest(b"a"), "af63dc4c8601ec8c");
    }
}
