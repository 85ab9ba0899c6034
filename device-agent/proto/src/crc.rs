//! The frame checksum: CRC-32 (IEEE 802.3, as zlib), from a well-kept crate
//! either way. crc32fast (default) is the fastest on a host (SIMD, a 16 KiB
//! table); with the feature `small-crc` the `crc` crate's one-table variant
//! (1 KiB) saves a microcontroller's flash. Both give the same value, which
//! the tests check.

/// CRC-32 of `bytes`.
#[cfg(not(feature = "small-crc"))]
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(feature = "small-crc")]
const SMALL: crc::Crc<u32, crc::Table<1>> =
    crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 of `bytes`.
#[cfg(feature = "small-crc")]
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    SMALL.checksum(bytes)
}
