//! Pinning the worker thread to one CPU for a bench, and undoing it.

/// The calling thread pinned to one CPU; dropping it restores the CPU set
/// the thread had before.
pub(super) struct Pinned {
    pub(super) cpu: usize,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    before: libc::cpu_set_t,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Pinned {
    pub(super) fn to(cpu: usize) -> std::io::Result<Pinned> {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("cpu {cpu} is beyond CPU_SETSIZE"),
            ));
        }
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: cpu_set_t is plain data for which all-zero is the empty
        // set; CPU_SET stays in bounds (checked above); pid 0 is the
        // calling thread, and both calls get the set's true size.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut before) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size, &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Pinned { cpu, before })
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: as in `to`; the set is one the kernel gave this thread.
        let rc = unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.before)
        };
        if rc != 0 {
            tracing::warn!(
                "cannot restore the worker's CPU set after pinning to CPU {}: {}",
                self.cpu,
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Pinned {
    pub(super) fn to(_cpu: usize) -> std::io::Result<Pinned> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "CPU pinning needs Linux",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn pinning_is_undone_when_the_guard_drops() {
        let allowed = || {
            // SAFETY: as in `Pinned::to`.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                assert_eq!(
                    libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                    0
                );
                (0..libc::CPU_SETSIZE as usize)
                    .filter(|&c| libc::CPU_ISSET(c, &set))
                    .collect::<Vec<usize>>()
            }
        };
        // On a thread of its own, so the test runner's threads keep theirs.
        thread::spawn(move || {
            let before = allowed();
            let cpu = *before.last().expect("some CPU");
            let pin = Pinned::to(cpu).expect("pin");
            assert_eq!(allowed(), vec![cpu]);
            drop(pin);
            assert_eq!(allowed(), before);
        })
        .join()
        .expect("no panic");
    }
}
