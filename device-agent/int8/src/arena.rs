//! Carving the caller's arena into a block's activation buffers: the one
//! implementation behind [`crate::block`] (MBConv) and [`crate::net_blocks`]
//! (stem, head), which lay their tensors out the same way.
//!
//! Two layouts, one per entry point: the intermediates side by side at the
//! arena's start ([`consecutive`], for `run_block` and `run_head`), or every
//! tensor including input and output inside one buffer of the block's peak
//! ([`Ends`] and [`split`], for the `*_in_arena` runs). Everything here
//! returns [`Error`] rather than panicking: on the board a panic is a reset.

#[cfg(test)]
mod tests;

use core::ops::Range;

use crate::error::Error;

/// `Err(Error::ArenaTooSmall)` unless `arena` holds `needed` bytes. Every
/// run checks this before any kernel writes, so a short arena fails with
/// the caller's memory untouched.
pub(crate) fn check(arena: &[i8], needed: usize) -> Result<(), Error> {
    if arena.len() < needed {
        return Err(Error::ArenaTooSmall {
            needed,
            got: arena.len(),
        });
    }
    Ok(())
}

/// `arena[..first]` and `arena[first..first + second]`: two intermediates
/// side by side, the first at the arena's start. `first + second` is what
/// the shapes' `arena_bytes` announce, so a shorter arena gets that sum
/// back in its error.
pub(crate) fn consecutive(
    arena: &mut [i8],
    first: usize,
    second: usize,
) -> Result<(&mut [i8], &mut [i8]), Error> {
    check(arena, first.saturating_add(second))?;
    let (a, rest) = arena.split_at_mut(first);
    Ok((a, &mut rest[..second]))
}

/// The part of an arena the in-arena layouts fill from either end, so that
/// each tensor can go at the end opposite the one it is computed from and
/// producer and consumer never overlap.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ends {
    /// First byte a tensor may take (past anything kept alive, such as a
    /// residual block's input).
    pub start: usize,
    /// One past the last byte used: the block's peak, not the arena's length,
    /// so that bytes past the peak are never touched.
    pub end: usize,
}

impl Ends {
    /// `len` bytes from [`Ends::start`].
    pub(crate) fn at_start(self, len: usize) -> Range<usize> {
        self.start..self.start + len
    }

    /// `len` bytes ending at [`Ends::end`].
    pub(crate) fn at_end(self, len: usize) -> Range<usize> {
        self.end - len..self.end
    }
}

/// Disjoint views of `arena`: `read` shared, `write` mutable. The layout
/// guarantees disjointness; this returns an error instead of panicking if it
/// were ever violated.
pub(crate) fn split(
    arena: &mut [i8],
    read: Range<usize>,
    write: Range<usize>,
) -> Result<(&[i8], &mut [i8]), Error> {
    const OVERLAP: Error = Error::Shape("internal error: arena buffers overlap");
    let write_len = write.len();
    let read_len = read.len();
    if read.end <= write.start {
        let (low, high) = arena.split_at_mut_checked(write.start).ok_or(OVERLAP)?;
        let src = low.get(read).ok_or(OVERLAP)?;
        Ok((src, high.get_mut(..write_len).ok_or(OVERLAP)?))
    } else if write.end <= read.start {
        let (low, high) = arena.split_at_mut_checked(read.start).ok_or(OVERLAP)?;
        let src = high.get(..read_len).ok_or(OVERLAP)?;
        Ok((src, low.get_mut(write).ok_or(OVERLAP)?))
    } else {
        Err(OVERLAP)
    }
}
