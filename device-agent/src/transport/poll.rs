//! Bounded reads on file descriptors that have no timeout of their own
//! (pipes to a child process): `poll(2)` before each read.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// A reader whose reads fail with [`io::ErrorKind::TimedOut`] when no byte
/// arrives by the deadline.
pub struct PollRead<R> {
    inner: R,
    deadline: Option<Instant>,
}

impl<R: Read + AsRawFd> PollRead<R> {
    /// Wraps `inner`; no deadline until [`PollRead::set_deadline`].
    pub fn new(inner: R) -> PollRead<R> {
        PollRead {
            inner,
            deadline: None,
        }
    }

    /// Bounds every read by `deadline`; `None` lets reads block.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Waits until the descriptor is readable (or hung up) or `deadline`.
    fn wait_readable(&self, deadline: Instant) -> io::Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no data before the deadline",
                ));
            }
            // Rounded up, so a wait never ends just before the deadline and
            // spins; capped, as poll takes an int of milliseconds.
            let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
            let mut fd = libc::pollfd {
                fd: self.inner.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `fd` is one valid pollfd that outlives the call.
            let n = unsafe { libc::poll(&mut fd, 1, ms) };
            match n {
                0 => continue,
                n if n > 0 => return Ok(()),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl<R: Read + AsRawFd> Read for PollRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            self.wait_readable(deadline)?;
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    #[test]
    fn a_silent_child_times_out_and_a_talking_one_is_read() {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("read line; echo \"$line\"")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut out = PollRead::new(child.stdout.take().expect("stdout"));
        out.set_deadline(Some(Instant::now() + Duration::from_millis(200)));
        let mut buf = [0u8; 16];
        let err = out.read(&mut buf).expect_err("silent child");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        writeln!(stdin, "hi").expect("write");
        out.set_deadline(Some(Instant::now() + Duration::from_secs(30)));
        let n = out.read(&mut buf).expect("answer");
        assert_eq!(&buf[..n], b"hi\n");
        drop(stdin);
        child.wait().expect("wait");
    }
}
