//! The host against a silent device: a real TCP agent stopped with SIGSTOP
//! in the middle of a profile. The profile must fail within its deadlines
//! with an error naming the target and the request, keep what it measured,
//! and a rerun (agent continued) must measure only what is missing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{padnas_bin, tcp_agent};

// 19 blocks; each entry takes at least 120 ms of warm-up.
use crate::latency::WIDER as SPACE;

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child this test started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

fn entries(table: &Path) -> serde_json::Map<String, Value> {
    let bytes = std::fs::read(table).expect("table");
    let t: Value = serde_json::from_slice(&bytes).expect("never a torn table");
    t["entries"].as_object().cloned().unwrap_or_default()
}

#[test]
fn a_stopped_agent_fails_the_profile_within_its_deadline_and_nothing_is_lost() {
    let (agent, addr) = tcp_agent(&[]);
    let pid = agent.0.id();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("stopped-board.yaml");
    let triple = padnas::target::host_triple();
    std::fs::write(
        &target,
        format!(
            "name: stopped-board\ntriple: {triple}\ntransport: tcp://{addr}\nthreads: 1\n\
             deadline_s: 10\ndeadline_margin: 2\n\
             bench: {{ warmup_runs: 1, warmup_ms: 120, min_runs: 6, max_runs: 20, max_time_ms: 400 }}\n"
        ),
    )
    .expect("target");
    let space = dir.path().join("wider.yaml");
    std::fs::write(&space, SPACE).expect("space");
    let table = dir.path().join("wider.json");
    let profile = || {
        let mut c = Command::new(padnas_bin());
        c.args(["profile", "--reconnects", "1", "--target"])
            .arg(&target)
            .arg("--space")
            .arg(&space)
            .arg("--out")
            .arg(&table);
        c
    };

    let mut child = profile()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn profile");
    let wait_first = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < wait_first, "no entry appeared");
        if table.exists() && !entries(&table).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(pid, libc::SIGSTOP);
    let stopped_at = Instant::now();
    // Bench deadline 10 + 2 × 0.52 s, then one reconnection whose Hello
    // waits 10 s: about 25 s. Generous bound for a busy machine.
    let bound = Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if stopped_at.elapsed() > bound {
            let _ = child.kill();
            signal(pid, libc::SIGCONT);
            panic!("profile still waiting {bound:?} after the agent was stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    signal(pid, libc::SIGCONT);
    assert!(
        !status.success(),
        "the profile cannot finish on a stopped agent"
    );
    let last = err
        .lines()
        .rev()
        .find(|l| l.contains("error"))
        .unwrap_or("");
    assert!(
        last.contains("stopped-board") && last.contains("no reply to"),
        "the error names the target and the request: {last}\n{err}"
    );
    let saved = entries(&table);
    assert!(!saved.is_empty() && saved.len() < 19, "{}", saved.len());

    // The agent goes on; the rerun measures only what is missing.
    let out = profile().output().expect("rerun");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(text.lines().last().expect("summary")).expect("json");
    assert_eq!(summary["entries"].as_u64(), Some(19), "{summary}");
    assert_eq!(
        summary["skipped"].as_u64(),
        Some(saved.len() as u64),
        "{summary}"
    );
    let all = entries(&table);
    for (k, e) in &saved {
        assert_eq!(all.get(k), Some(e), "{k}: measured before the stop, kept");
    }
}
