//! Bounded reads and writes on file descriptors that have no timeout of
//! their own (pipes to a child process): `poll(2)` before each read or
//! write.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

/// Bytes a pipe that `poll` reports writable accepts without blocking
/// (POSIX `PIPE_BUF`; 4096 on Linux): a write is cut to this, so that a
/// blocking pipe never blocks past the deadline.
const PIPE_ATOMIC: usize = 4096;

/// Waits until `fd` is ready for `events` (or hung up, or in error: the
/// read or write that follows then reports it) or `deadline`.
fn wait_ready(fd: RawFd, events: libc::c_short, deadline: Instant, what: &str) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} before the deadline"),
            ));
        }
        // Rounded up, so a wait never ends just before the deadline and
        // spins; capped, as poll takes an int of milliseconds.
        let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd that outlives the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
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
}

impl<R: Read + AsRawFd> Read for PollRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            wait_ready(self.inner.as_raw_fd(), libc::POLLIN, deadline, "no data")?;
        }
        self.inner.read(buf)
    }
}

/// A writer whose writes fail with [`io::ErrorKind::TimedOut`] when the
/// other end has not made room by the deadline (a stopped or wedged child
/// that no longer reads its stdin, once the pipe's buffer is full).
pub struct PollWrite<W> {
    inner: W,
    deadline: Option<Instant>,
}

impl<W: Write + AsRawFd> PollWrite<W> {
    /// Wraps `inner`; no deadline until [`PollWrite::set_deadline`].
    pub fn new(inner: W) -> PollWrite<W> {
        PollWrite {
            inner,
            deadline: None,
        }
    }

    /// Bounds every write by `deadline`; `None` lets writes block.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }
}

impl<W: Write + AsRawFd> Write for PollWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.deadline {
            None => self.inner.write(buf),
            Some(deadline) => {
                wait_ready(
                    self.inner.as_raw_fd(),
                    libc::POLLOUT,
                    deadline,
                    "the reader made no room",
                )?;
                self.inner.write(&buf[..buf.len().min(PIPE_ATOMIC)])
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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

    #[test]
    fn a_child_that_stops_reading_times_the_write_out() {
        // `sleep` never reads its stdin: the pipe fills, then the write
        // must give up at the deadline instead of blocking forever.
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::piped())
            .spawn()
            .expect("sleep");
        let mut stdin = PollWrite::new(child.stdin.take().expect("stdin"));
        stdin.set_deadline(Some(Instant::now() + Duration::from_millis(300)));
        let err = stdin
            .write_all(&vec![0u8; 4 << 20])
            .expect_err("a full pipe");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        // Without the deadline, what fits goes through as before.
        let mut cat = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cat");
        let mut to_cat = PollWrite::new(cat.stdin.take().expect("stdin"));
        to_cat.set_deadline(Some(Instant::now() + Duration::from_secs(30)));
        to_cat.write_all(b"hello").expect("write");
        drop(to_cat);
        let out = cat.wait_with_output().expect("cat");
        assert_eq!(out.stdout, b"hello");
        let _ = child.kill();
        let _ = child.wait();
    }
}
