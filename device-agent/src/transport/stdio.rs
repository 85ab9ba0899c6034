//! Frames over standard streams.
//!
//! Agent side: [`agent_side`] speaks on the process's own stdin/stdout (so
//! stdout must carry nothing but frames; the agent logs to stderr). Host
//! side: [`ChildTransport`] spawns the agent — locally, under qemu-user, or
//! through `ssh host padnas-agent --stdio` / `adb shell …` — and speaks on
//! the child's pipes, while a thread drains the child's stderr into the
//! host's log so the child never blocks on a full pipe.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Stdin, Stdout};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::poll::{PollRead, PollWrite};
use super::{StreamTransport, Transport, TransportError};
use crate::proto::{Frame, FrameReader};

/// The agent's end: this process's stdin and stdout.
pub fn agent_side() -> StreamTransport<Stdin, Stdout> {
    StreamTransport::new(std::io::stdin(), std::io::stdout(), "stdio")
}

/// Lines of the child's stderr kept for error messages.
const TAIL_LINES: usize = 20;

/// Where the child's stderr lines go.
pub type StderrSink = Box<dyn FnMut(&str) + Send>;

struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    done: AtomicBool,
}

impl StderrTail {
    fn text(&self) -> String {
        match self.lines.lock() {
            Ok(lines) => lines
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            Err(_) => String::new(),
        }
    }
}

/// The host's end of an agent child process.
///
/// Dropping it closes the child's stdin (the agent exits on end of input),
/// waits briefly, then kills and reaps the child.
pub struct ChildTransport {
    reader: FrameReader<PollRead<ChildStdout>>,
    writer: Option<PollWrite<ChildStdin>>,
    child: Child,
    command: String,
    tail: Arc<StderrTail>,
}

impl ChildTransport {
    /// Spawns `command` with piped stdio; its stderr lines are logged through
    /// `tracing` (target `padnas_agent::remote`).
    pub fn spawn(command: Command) -> Result<ChildTransport, TransportError> {
        ChildTransport::spawn_with_stderr(
            command,
            Box::new(|line: &str| tracing::info!(target: "padnas_agent::remote", "{line}")),
        )
    }

    /// Spawns `command`, handing each line of its stderr to `sink`.
    pub fn spawn_with_stderr(
        mut command: Command,
        mut sink: StderrSink,
    ) -> Result<ChildTransport, TransportError> {
        let description = format!("{command:?}");
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| TransportError::Spawn {
            command: description.clone(),
            cause: source,
        })?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
            // Cannot happen with Stdio::piped(); clean up rather than panic.
            let _ = child.kill();
            let _ = child.wait();
            return Err(TransportError::Spawn {
                command: description,
                cause: std::io::Error::other("child pipes missing"),
            });
        };
        let tail = Arc::new(StderrTail {
            lines: Mutex::new(VecDeque::new()),
            done: AtomicBool::new(false),
        });
        let thread_tail = Arc::clone(&tail);
        let spawned = thread::Builder::new()
            .name("agent-stderr".into())
            .spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    match reader.read_until(b'\n', &mut raw) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&raw);
                            let line = line.trim_end_matches(['\n', '\r']);
                            sink(line);
                            if let Ok(mut lines) = thread_tail.lines.lock() {
                                if lines.len() == TAIL_LINES {
                                    lines.pop_front();
                                }
                                lines.push_back(line.to_string());
                            }
                        }
                    }
                }
                thread_tail.done.store(true, Ordering::Release);
            });
        if let Err(source) = spawned {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TransportError::Spawn {
                command: description,
                cause: source,
            });
        }
        Ok(ChildTransport {
            reader: FrameReader::new(PollRead::new(stdout)),
            writer: Some(PollWrite::new(stdin)),
            child,
            command: description,
            tail,
        })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the child wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.tail.text()
    }

    /// Closes the child's stdin and waits up to `grace` for it to exit, then
    /// kills it. Returns its exit status.
    pub fn close(mut self, grace: Duration) -> Result<ExitStatus, TransportError> {
        self.finish(grace)
    }

    fn finish(&mut self, grace: Duration) -> Result<ExitStatus, TransportError> {
        self.writer = None;
        if let Some(status) = self.wait_for(grace)? {
            return Ok(status);
        }
        // Already exited between the poll and the kill is fine: wait reaps it.
        let _ = self.child.kill();
        self.child
            .wait()
            .map_err(|e| TransportError::io("waiting for the agent process", e))
    }

    fn wait_for(&mut self, grace: Duration) -> Result<Option<ExitStatus>, TransportError> {
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(Some(status)),
                Ok(None) if Instant::now() >= deadline => return Ok(None),
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(TransportError::io("waiting for the agent process", e)),
            }
        }
    }

    /// Exit status (when it came within a grace period) and the error that
    /// describes a child whose stdout ended.
    fn exit_report(&mut self) -> (Option<ExitStatus>, TransportError) {
        let (status, text) = match self.wait_for(Duration::from_secs(2)) {
            Ok(Some(status)) => (Some(status), status.to_string()),
            Ok(None) => (None, "still running, stdout closed".to_string()),
            Err(e) => (None, e.to_string()),
        };
        // Give the stderr thread a moment to collect the last words.
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.tail.done.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let err = TransportError::ChildExited {
            command: self.command.clone(),
            status: text,
            stderr_tail: self.tail.text(),
        };
        (status, err)
    }
}

impl Transport for ChildTransport {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        let bytes = frame.encode().map_err(TransportError::Proto)?;
        let Some(writer) = self.writer.as_mut() else {
            return Err(TransportError::io(
                "writing to the agent",
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin closed"),
            ));
        };
        let written =
            std::io::Write::write_all(writer, &bytes).and_then(|()| std::io::Write::flush(writer));
        match written {
            Ok(()) => Ok(()),
            // A broken pipe means the child is gone: say why, not just EPIPE.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(self.exit_report().1),
            // The child stopped reading (wedged, or stopped with SIGSTOP):
            // the client names the request whose deadline passed. The frame
            // is half sent, so the link is done for; the caller reconnects.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(TransportError::TimedOut),
            Err(e) => Err(TransportError::io("writing to the agent", e)),
        }
    }

    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self.reader.read_frame() {
            Ok(Some(frame)) => Ok(Some(frame)),
            Ok(None) => {
                // A clean exit (after Shutdown) is a clean close; anything
                // else is reported with the child's last stderr lines.
                let (status, err) = self.exit_report();
                if status.is_some_and(|s| s.success()) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        self.reader.set_deadline(deadline);
        self.reader.get_mut().set_deadline(deadline);
        if let Some(w) = self.writer.as_mut() {
            w.set_deadline(deadline);
        }
        Ok(())
    }

    fn set_max_payload(&mut self, max: u32) {
        self.reader.set_max_payload(max);
    }

    fn peer(&self) -> String {
        format!("child {}", self.command)
    }
}

impl Drop for ChildTransport {
    fn drop(&mut self) {
        if let Err(e) = self.finish(Duration::from_secs(2)) {
            tracing::warn!("stopping agent process {}: {e}", self.command);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Request, Response};

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn a_dying_child_is_reported_with_its_stderr() {
        let mut child =
            ChildTransport::spawn(sh("echo 'padnas-agent: not found' >&2; exit 127")).unwrap();
        match child.recv() {
            Err(TransportError::ChildExited {
                status,
                stderr_tail,
                ..
            }) => {
                assert!(status.contains("127"), "{status}");
                assert!(stderr_tail.contains("not found"), "{stderr_tail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_clean_exit_is_a_clean_close() {
        let mut child = ChildTransport::spawn(sh("exit 0")).unwrap();
        assert!(child.recv().unwrap().is_none());
    }

    #[test]
    fn frames_pass_through_a_child_and_stderr_is_drained() {
        // `cat` echoes our frames back; the stderr sink sees what the child
        // logs, even a lot of it, without blocking the child.
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = Arc::clone(&lines);
        let sink: StderrSink =
            Box::new(move |l: &str| sink_lines.lock().unwrap().push(l.to_string()));
        let cmd =
            sh("i=0; while [ $i -lt 2000 ]; do echo log line $i >&2; i=$((i+1)); done; exec cat");
        let mut child = ChildTransport::spawn_with_stderr(cmd, sink).unwrap();
        let frame = Request::Shutdown.into_frame().unwrap();
        child.send(&frame).unwrap();
        assert_eq!(child.recv().unwrap(), Some(frame));
        let status = child.close(Duration::from_secs(5)).unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while lines.lock().unwrap().len() < 2000 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(lines.lock().unwrap().len(), 2000);
        let _ = Response::Bye;
    }

    #[test]
    fn spawn_failure_names_the_command() {
        let err = ChildTransport::spawn(Command::new("/nonexistent/padnas-agent"))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/nonexistent/padnas-agent"),
            "{err}"
        );
    }
}
