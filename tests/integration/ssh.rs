//! The ssh path through a real OpenSSH server: `sshd` from Debian's
//! `openssh-server` (scripts/setup.sh installs it) on 127.0.0.1, a free
//! port, a throw-away host key and authorized key in a temporary directory.
//! `padnas agent deploy` copies the agent, `hello` answers, a tiny space
//! profiles; a hostile agent path goes through the board's real shell
//! quoted. (`tests/integration/export.rs` verifies a network over it too.)

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{ChildGuard, json_line, padnas_bin, repo};

/// A running sshd and the files a client needs to reach it.
pub struct Sshd {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// ssh client configuration for `PADNAS_SSH_CONFIG`: key, known host.
    pub client_config: PathBuf,
    /// The login.
    pub user: String,
    /// Scratch directory: keys, configuration, the "board" directory.
    pub dir: tempfile::TempDir,
    _server: ChildGuard,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Sshd {
    /// Starts sshd; `None` (with a note) where there is none and this is not
    /// CI. Under `CI=true` a missing sshd fails the test.
    pub fn start() -> Option<Sshd> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "/usr/sbin/sshd is missing (scripts/setup.sh installs openssh-server)"
            );
            eprintln!("SKIPPED: no /usr/sbin/sshd (scripts/setup.sh installs openssh-server)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let user = String::from_utf8(run(Command::new("id").arg("-un")).stdout)
            .expect("utf8")
            .trim()
            .to_string();
        for (key, comment) in [
            ("host_key", "padnas-test-host"),
            ("id", "padnas-test-client"),
        ] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(d.join(key)));
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).expect("authorized_keys");
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 AllowUsers {user}\nLogLevel ERROR\n",
                hk = d.join("host_key").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .expect("sshd_config");
        let server = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sshd");
        let server = ChildGuard(server);
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (fields.next().expect("type"), fields.next().expect("key"));
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .expect("known_hosts");
        let client_config = d.join("ssh_config");
        std::fs::write(
            &client_config,
            format!(
                "Host *\n  IdentityFile {id}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
                 StrictHostKeyChecking yes\n  ConnectTimeout 20\n  LogLevel ERROR\n",
                id = d.join("id").display(),
                kh = d.join("known_hosts").display(),
            ),
        )
        .expect("ssh_config");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::create_dir_all(d.join("board")).expect("board dir");
        Some(Sshd {
            port,
            client_config,
            user,
            dir,
            _server: server,
        })
    }

    /// A target file for this machine's agent behind the sshd, deployed to
    /// `agent_path`.
    pub fn target(&self, name: &str, agent_path: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &p,
            format!(
                "name: {name}\ntriple: {}\ntransport: ssh://{}@127.0.0.1:{}\nagent_path: {agent_path:?}\n\
                 threads: 1\nbench: {{ warmup_runs: 1, warmup_ms: 0, min_runs: 3, max_runs: 10, max_time_ms: 200 }}\n",
                padnas::target::host_triple(),
                self.user,
                self.port
            ),
        )
        .expect("target");
        p
    }

    /// The "board" path of the deployed agent.
    pub fn agent_path(&self) -> String {
        self.dir
            .path()
            .join("board/padnas-agent")
            .display()
            .to_string()
    }

    /// `padnas ARGS` with this sshd's client configuration.
    pub fn padnas(&self, args: &[&str]) -> Output {
        Command::new(padnas_bin())
            .args(args)
            .env("PADNAS_SSH_CONFIG", &self.client_config)
            .current_dir(repo())
            .output()
            .expect("run padnas")
    }
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "padnas failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_line(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn deploy_hello_and_profile_over_a_real_sshd() {
    let Some(sshd) = Sshd::start() else { return };
    let agent_path = sshd.agent_path();
    let target = sshd.target("ssh-test", &agent_path);
    let t = target.to_str().expect("utf8");

    let v = ok(&sshd.padnas(&["agent", "deploy", "--target", t]));
    assert_eq!(v["agent_path"], agent_path.as_str(), "{v}");
    let meta = std::fs::metadata(&agent_path).expect("the agent was copied");
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
        "executable"
    );
    let v = ok(&sshd.padnas(&["agent", "hello", "--target", t]));
    assert_eq!(v["arch"], std::env::consts::ARCH, "{v}");

    let space = sshd.dir.path().join("tiny.yaml");
    std::fs::write(
        &space,
        "name: tiny\ninput: { channels: 3, height: 8, width: 8 }\nnum_classes: 4\n\
         stem: { kernel: 3, channels: 8, stride: 1 }\n\
         stages:\n  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1, k5e1] }\n\
         head: { channels: 16 }\n",
    )
    .expect("space");
    let table = sshd.dir.path().join("tiny.json");
    let v = ok(&sshd.padnas(&[
        "profile",
        "--target",
        t,
        "--space",
        space.to_str().expect("utf8"),
        "--out",
        table.to_str().expect("utf8"),
    ]));
    assert_eq!(v["entries"], 4, "stem, two blocks, head: {v}");
    assert_eq!(v["measured_now"], 4, "{v}");
}

#[test]
fn a_hostile_agent_path_reaches_the_board_shell_quoted() {
    let Some(sshd) = Sshd::start() else { return };
    let canary = sshd.dir.path().join("canary");
    let c = canary.display();
    for (i, path) in [
        format!("/tmp/padnas-no-agent;touch {c}"),
        format!("/tmp/padnas-no-agent$(touch {c})"),
        format!("/tmp/padnas-no-agent`touch {c}`"),
        format!("/tmp/padnas no agent' ; touch {c}; '"),
    ]
    .iter()
    .enumerate()
    {
        let target = sshd.target(&format!("hostile-{i}"), path);
        let out = sshd.padnas(&["agent", "hello", "--target", target.to_str().expect("utf8")]);
        assert!(!out.status.success(), "{path}: there is no such agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("hostile-{i}")),
            "names the target: {err}"
        );
        // The failed start is told once: the command with its stderr.
        let line = err
            .lines()
            .find(|l| l.starts_with("padnas: error:"))
            .unwrap_or("");
        assert_eq!(line.matches("its stderr ended with").count(), 1, "{err}");
        assert!(!canary.exists(), "{path:?} ran a command on the board");
    }
}
