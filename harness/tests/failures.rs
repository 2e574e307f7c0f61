//! Failures are reported with their boot, step and console, and nothing is left running.

mod common;

use common::{s, session};
use luo_harness::guest::Failure;
use luo_protocol::Request;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn guest_panic_is_reported_as_a_panic_with_the_console_tail() {
    let mut g = common::boot("panic").await;
    let artifacts = g.artifacts().to_path_buf();
    // PID 1 exits after replying: "Attempted to kill init", a real kernel panic.
    let _ = g.request(Request::Exit { code: 3 }).await;
    let err = g
        .request(Request::Ping)
        .await
        .expect_err("a panicked guest cannot answer");
    assert_eq!(err.failure(), Some(&Failure::Panic), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Kernel panic"),
        "the console tail must show the panic:\n{text}"
    );
    assert!(
        text.contains("boot 0") && text.contains("step `ping`"),
        "{text}"
    );
    drop(g);
    assert!(
        artifacts.join("console.log").is_file(),
        "artifacts of a failed run must be kept"
    );
    std::fs::remove_dir_all(&artifacts).unwrap();
}

/// Starts `luo-harness drive` with a private artifacts root, waits for the hello, and returns the
/// child with the root.
fn start_runner() -> (std::process::Child, tempfile::TempDir) {
    let root = tempfile::Builder::new()
        .prefix("luo-kill")
        .tempdir_in("/tmp")
        .unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.arg("drive")
        .env("LUO_HARNESS_ARTIFACTS", root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = session::spawn(cmd);
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.contains("\"protocol\""),
        "expected the hello, got {first:?}"
    );
    let sid = child.id() as i32;
    assert!(
        session::has(sid, "qemu-system"),
        "QEMU should be running before the kill"
    );
    assert!(
        session::has(sid, "virtiofsd"),
        "virtiofsd should be running"
    );
    (child, root)
}

#[test]
fn sigkill_of_the_runner_leaves_no_qemu_or_virtiofsd() {
    let (mut child, root) = start_runner();
    child.kill().unwrap(); // SIGKILL: no cleanup code runs in the runner
    child.wait().unwrap();
    session::assert_empty(child.id() as i32);
    drop(root);
}

#[test]
fn sigint_kills_children_keeps_artifacts_and_exits_130() {
    let (child, root) = start_runner();
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let sid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    session::assert_empty(sid);
    let kept: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().collect();
    assert_eq!(
        kept.len(),
        1,
        "the interrupted run's artifacts must be kept"
    );
    assert!(kept[0].path().join("console.log").is_file());
    let _ = s("");
}
