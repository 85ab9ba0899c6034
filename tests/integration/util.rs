//! Helpers shared by the integration tests: locating the real binaries,
//! starting agents over each transport, and a raw frame link with timeouts.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use padnas::space::BlockKey;
use padnas_agent::proto::{Frame, FrameReader, Request, Response};

/// How long any single reply may take. Generous: qemu-user is ~100x slower.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// The `padnas` binary cargo built for these tests.
pub fn padnas_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_padnas"))
}

/// Cargo's target directory (the tests' binary lives in `<dir>/<profile>/`).
pub fn target_dir() -> PathBuf {
    padnas_bin()
        .parent()
        .and_then(Path::parent)
        .expect("padnas binary inside a target dir")
        .to_path_buf()
}

/// The agent for `triple`: None, this machine's build in the profile
/// `PADNAS_AGENT_PROFILE` names (release when unset; the test command uses
/// debug), as `padnas` itself picks it; a cross triple, its `emulated` build
/// run under qemu. The test command (scripts/test.sh) builds them first; a
/// missing one fails loudly.
pub fn agent_bin(triple: Option<&str>) -> PathBuf {
    let profile = padnas::session::host_agent_profile();
    let (p, how) = match triple {
        None => (
            target_dir().join(&profile).join("padnas-agent"),
            String::new(),
        ),
        Some(t) => (
            target_dir().join(t).join("emulated/padnas-agent"),
            format!("--emulated {t}"),
        ),
    };
    assert!(
        p.is_file(),
        "{} is missing: run `scripts/build-agent.sh {how}` (scripts/test.sh does this)",
        p.display()
    );
    p
}

/// Repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A small MBConv block: expand, depthwise, project, residual.
pub fn mbconv_key(
    kernel: usize,
    expansion: usize,
    c: usize,
    hw: usize,
    out: usize,
    stride: usize,
) -> BlockKey {
    format!("mbconv:k{kernel}e{expansion}:in{c}x{hw}x{hw}:out{out}:s{stride}")
        .parse()
        .expect("valid block key")
}

/// ONNX bytes of a block, from the host's writer.
pub fn block_onnx(key: &BlockKey, seed: u64) -> Vec<u8> {
    padnas::onnx::write_block(key, seed).expect("write block")
}

/// Deterministic input data.
pub fn input_data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// tract in this process: the reference the agents' outputs are compared with.
pub fn tract_run(model_bytes: &[u8], shape: &[usize], data: &[f32]) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(model_bytes))
        .expect("parse")
        .with_input_fact(0, f32::fact(shape).into())
        .expect("fact")
        .into_optimized()
        .expect("optimize")
        .into_runnable()
        .expect("runnable");
    let input =
        tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), data.to_vec()).expect("shape");
    let out = model
        .run(tvec!(Tensor::from(input).into_tvalue()))
        .expect("run");
    out[0]
        .to_plain_array_view::<f32>()
        .expect("f32")
        .iter()
        .copied()
        .collect()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Kills a child process (and waits for it) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A frame link to an agent over any byte stream. Frames are read on a
/// thread so every receive has a timeout, whatever the transport.
pub struct Link {
    writer: Box<dyn Write + Send>,
    frames: mpsc::Receiver<Result<Option<Frame>, String>>,
    /// Processes that must live as long as the link (agent, socat).
    pub guards: Vec<ChildGuard>,
    /// Temporary directory that must live as long as the link.
    pub _dir: Option<tempfile::TempDir>,
    /// A socket to shut down on drop: the reader thread holds a clone, so
    /// dropping the writer alone would leave the connection open.
    pub socket: Option<std::net::TcpStream>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(s) = &self.socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Link {
    /// A link over a reader and a writer.
    pub fn new(reader: Box<dyn Read + Send>, writer: Box<dyn Write + Send>) -> Link {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut fr = FrameReader::new(reader);
            loop {
                let item = fr.read_frame().map_err(|e| e.to_string());
                let end = !matches!(item, Ok(Some(_)));
                if tx.send(item).is_err() || end {
                    break;
                }
            }
        });
        Link {
            writer,
            frames: rx,
            guards: Vec::new(),
            _dir: None,
            socket: None,
        }
    }

    /// Writes bytes as they are.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to agent");
        self.writer.flush().expect("flush");
    }

    /// Sends a request.
    pub fn send(&mut self, req: Request) {
        let bytes = req.into_frame().expect("frame").encode().expect("encode");
        self.raw(&bytes);
    }

    /// The next frame, or `None` when the agent closed the link.
    pub fn next_frame(&mut self) -> Option<Frame> {
        match self.frames.recv_timeout(REPLY_TIMEOUT) {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => panic!("reading from the agent: {e}"),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no reply within {REPLY_TIMEOUT:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next reply.
    pub fn recv(&mut self) -> Response {
        let f = self.next_frame().expect("agent closed the link");
        Response::from_frame(f).expect("agent sent a valid reply")
    }

    /// Sends a request and returns the reply.
    pub fn call(&mut self, req: Request) -> Response {
        self.send(req);
        self.recv()
    }

    /// Closes the writing side (the agent sees end of input).
    pub fn close_write(&mut self) {
        self.writer = Box::new(std::io::sink());
    }
}

/// An agent spawned with `--stdio` (optionally under a wrapper such as qemu).
pub fn stdio_link(mut cmd: Command) -> Link {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut link = Link::new(Box::new(stdout), Box::new(stdin));
    link.guards.push(ChildGuard(child));
    link
}

/// The command that runs `agent --stdio`, under qemu for a cross triple.
pub fn agent_stdio_command(triple: Option<&str>) -> Command {
    let bin = agent_bin(triple);
    let mut cmd = match triple {
        None => Command::new(&bin),
        Some(t) => {
            let (qemu, sysroot) = padnas::session::qemu_for(t);
            let mut c = Command::new(qemu);
            if let Some(root) = sysroot {
                c.arg("-L").arg(root);
            }
            c.arg(&bin);
            c
        }
    };
    cmd.arg("--stdio");
    cmd
}

/// Starts `padnas-agent --listen 127.0.0.1:0` and returns it with its address.
pub fn tcp_agent(extra: &[&str]) -> (ChildGuard, String) {
    let mut cmd = Command::new(agent_bin(None));
    cmd.args(["--listen", "127.0.0.1:0"]).args(extra);
    spawn_until(cmd, "padnas-agent: listening on ")
}

/// A raw link over a fresh TCP connection.
pub fn tcp_link(addr: &str) -> Link {
    let s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).ok();
    let r = s.try_clone().expect("clone socket");
    let keep = s.try_clone().expect("clone socket");
    let mut link = Link::new(Box::new(r), Box::new(s));
    link.socket = Some(keep);
    link
}

/// A pty pair from socat: `(dir, agent_end, host_end, socat)`.
pub fn pty_pair() -> (tempfile::TempDir, PathBuf, PathBuf, ChildGuard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("agent-tty");
    let h = dir.path().join("host-tty");
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", h.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("socat (apt-get install socat; scripts/setup.sh does)");
    let guard = ChildGuard(child);
    let t0 = Instant::now();
    while !(a.exists() && h.exists()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "socat made no pty pair"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (dir, a, h, guard)
}

/// Spawns `cmd` and waits until a line of its stderr contains `ready`
/// (echoing its stderr to the test's); returns the child and what followed.
pub fn spawn_until(mut cmd: Command, ready: &'static str) -> (ChildGuard, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(i) = line.find(ready) {
                let _ = tx.send(line[i + ready.len()..].trim().to_string());
                sent = true;
            }
            eprintln!("[agent] {line}");
        }
    });
    let rest = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{cmd:?} never printed {ready:?}"));
    (ChildGuard(child), rest)
}

/// `padnas-agent --serial PATH`, once it has opened the port: input that
/// arrives before the port is opened and configured may be flushed.
pub fn serial_agent(path: &Path) -> ChildGuard {
    let mut cmd = Command::new(agent_bin(None));
    cmd.arg("--serial").arg(path).args(["--baud", "115200"]);
    spawn_until(cmd, "serving on").0
}

/// An agent serving a socat pty with `--serial`, and a raw link to the other end.
pub fn serial_link() -> Link {
    let (dir, a, h, socat) = pty_pair();
    let agent = serial_agent(&a);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&h)
        .expect("open host pty");
    let r = f.try_clone().expect("clone pty");
    let mut link = Link::new(Box::new(r), Box::new(f));
    // Drop order: agent first, then socat, then the directory.
    link.guards.push(agent);
    link.guards.push(socat);
    link._dir = Some(dir);
    link
}

/// Runs `padnas ARGS` and returns (exit code, stdout, stderr).
pub fn padnas(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(padnas_bin())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run padnas");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses the one JSON line a command printed.
pub fn json_line(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {stdout:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}
