//! Command lines that reach a board over `ssh` or `adb`.
//!
//! Both tools hand the words after the destination to a shell on the board,
//! joined with spaces, so every such word is shell-quoted here; and the
//! destination comes after `--`, so ssh never reads it as an option even if
//! validation (in [`crate::target`]) were to let a `-` through.

use std::path::PathBuf;
use std::process::Command;

use crate::target::TransportSpec;

/// Environment variable naming an ssh client configuration file (`ssh -F`),
/// for keys, known-hosts files and jump hosts. The user's environment, not a
/// target file, decides it: a configuration can run commands.
pub const SSH_CONFIG_ENV: &str = "PADNAS_SSH_CONFIG";

/// Errors building a remote command.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A word cannot be quoted for a POSIX shell (it holds a NUL byte).
    #[error("{word:?} cannot be passed to the board's shell (NUL byte)")]
    Unquotable {
        /// The word.
        word: String,
    },
    /// The transport starts no remote command.
    #[error("transport {0} does not reach the board through ssh or adb")]
    NotRemote(String),
}

/// Quotes `word` for the POSIX shell on the board.
pub fn quote(word: &str) -> Result<String, RemoteError> {
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .map_err(|_| RemoteError::Unquotable {
            word: word.to_string(),
        })
}

/// Quotes each word and joins them with spaces: one remote command line.
pub fn command_line(words: &[&str]) -> Result<String, RemoteError> {
    let quoted: Result<Vec<String>, RemoteError> = words.iter().map(|w| quote(w)).collect();
    Ok(quoted?.join(" "))
}

/// `ssh [options] -- DESTINATION COMMAND_LINE` for an ssh transport, where
/// `remote` is a command line already quoted (see [`command_line`]).
pub fn ssh(spec: &TransportSpec, remote: &str) -> Result<Command, RemoteError> {
    let (TransportSpec::Ssh { port, .. }, Some(destination)) = (spec, spec.ssh_destination())
    else {
        return Err(RemoteError::NotRemote(spec.to_string()));
    };
    let mut c = Command::new("ssh");
    if let Some(config) = std::env::var_os(SSH_CONFIG_ENV).filter(|v| !v.is_empty()) {
        c.arg("-F").arg(PathBuf::from(config));
    }
    // BatchMode: a password prompt would otherwise wait forever on a terminal
    // nobody watches. ServerAlive: a board that drops off the network ends
    // the session within 45 s instead of never.
    c.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=3",
    ]);
    if let Some(p) = port {
        c.arg("-p").arg(p.to_string());
    }
    c.arg("--").arg(destination).arg(remote);
    Ok(c)
}

/// `adb [-s SERIAL]` for an adb transport.
pub fn adb(spec: &TransportSpec) -> Result<Command, RemoteError> {
    let TransportSpec::Adb { serial } = spec else {
        return Err(RemoteError::NotRemote(spec.to_string()));
    };
    let mut c = Command::new("adb");
    if let Some(s) = serial {
        c.arg("-s").arg(s);
    }
    Ok(c)
}

/// `adb [-s SERIAL] shell -T COMMAND_LINE`; `-T`: no pty, so binary frames
/// pass through untouched.
pub fn adb_shell(spec: &TransportSpec, remote: &str) -> Result<Command, RemoteError> {
    let mut c = adb(spec)?;
    c.args(["shell", "-T"]).arg(remote);
    Ok(c)
}

/// The remote command line that installs what arrives on stdin as an
/// executable at `path`: written beside it, then renamed, so a cut
/// connection never leaves half an agent where the old one was.
pub fn install_from_stdin(path: &str) -> Result<String, RemoteError> {
    let tmp = quote(&format!("{path}.padnas-new"))?;
    let dest = quote(path)?;
    Ok(format!(
        "cat > {tmp} && chmod 755 {tmp} && mv -f -- {tmp} {dest}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a POSIX shell makes of a command line: its words, one per line.
    fn words_seen_by_sh(line: &str) -> Vec<String> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {line}"))
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{line}");
        String::from_utf8(out.stdout)
            .expect("utf8")
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn hostile_words_reach_the_shell_as_one_word_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let canary = dir.path().join("canary");
        let c = canary.display();
        let hostile = [
            format!("/tmp/a;touch {c}"),
            format!("/tmp/$(touch {c})"),
            format!("/tmp/`touch {c}`"),
            format!("/tmp/a' ; touch {c}; '"),
            format!("/tmp/a\" ; touch {c}; \""),
            format!("/tmp/a && touch {c}"),
            format!("/tmp/a | touch {c}"),
            "/tmp/with space/*".to_string(),
            "/tmp/$HOME/~".to_string(),
        ];
        for word in &hostile {
            let line = command_line(&[word, "--stdio"]).expect("quotable");
            assert_eq!(
                words_seen_by_sh(&line),
                [word.as_str(), "--stdio"],
                "{line}"
            );
            let install = install_from_stdin(word).expect("quotable");
            // Run the install line for real into a scratch directory: the
            // canary must not appear, whatever the path says.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(&install)
                .current_dir(dir.path())
                .stdin(std::process::Stdio::null())
                .output();
            assert!(!canary.exists(), "{word:?} ran a command via {install}");
        }
        assert!(quote("a\0b").is_err());
    }

    #[test]
    fn destination_follows_double_dash() {
        let spec = TransportSpec::parse("ssh://pi@[fe80::1%eth0]:2222").expect("valid");
        let c = ssh(&spec, "x").expect("ssh");
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dd = args.iter().position(|a| a == "--").expect("--");
        assert_eq!(args[dd + 1], "pi@fe80::1%eth0");
        assert_eq!(args[dd + 2], "x");
        let p = args.iter().position(|a| a == "-p").expect("-p");
        assert_eq!(args[p + 1], "2222");
        assert!(p < dd);
    }
}
