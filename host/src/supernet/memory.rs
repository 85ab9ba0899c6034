//! Keeps memory that libtorch frees inside the process, so that the next
//! training step reuses it instead of faulting fresh pages in.
//!
//! Why: a step frees and allocates the same activations again every step.
//! glibc serves blocks above its mmap threshold (at most 32 MiB; one
//! expanded activation of fmnist-small at batch 128, 128 × 96 × 28 × 28
//! floats, is 38.5 MB) with `mmap` and unmaps them when freed, and it
//! returns the top of its heaps to the kernel past 128 KiB. The kernel then
//! zero-fills every page again on first touch: 2.1 million minor faults in
//! 40 steps (about 210 MB a step), and 156 → 195 img/s at one thread once
//! they were gone (host/README.md, "Allocator"). Python PyTorch pays the
//! same unless `GLIBC_TUNABLES` is set. The cost: the process keeps its
//! peak heap (+9% peak RSS in that run) until it exits.

/// Tells glibc's allocator never to `mmap` a block and never to trim its
/// heaps below 2 GiB of free top. Process-wide and idempotent; returns
/// whether the allocator took the settings (false on a non-glibc target,
/// where it does nothing).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only adjusts glibc's allocator parameters; it is
        // thread-safe (takes the arena locks) and has no memory effects on
        // existing allocations.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn thread_faults() -> i64 {
        // SAFETY: getrusage writes one plain struct that we own.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
            u.ru_minflt
        }
    }

    /// A 48 MB buffer (over glibc's largest mmap threshold), written to
    /// every page, then freed; returns the faults its allocation took.
    fn touch_and_free() -> i64 {
        let before = thread_faults();
        let mut v = vec![0u8; 48 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        std::hint::black_box(&v);
        drop(v);
        thread_faults() - before
    }

    #[test]
    fn freed_blocks_are_reused_without_page_faults() {
        assert!(keep_freed_memory());
        let pages = (48 << 20) / 4096;
        // The first time may fault the pages in (or reuse a freed heap).
        touch_and_free();
        let again = touch_and_free();
        assert!(
            again < pages / 10,
            "second 48 MB allocation took {again} faults (of {pages} pages): memory went back to the kernel"
        );
    }
}
