//! Shared set-up for tests that boot the real default kernel.

#![allow(dead_code)]

use luo_harness::events::Silent;
use luo_harness::plan::{self, Needs, Plan, PlanRequest};
use luo_harness::{Guest, GuestError};
use luo_protocol::{Reply, Request};
use std::path::PathBuf;

/// The default kernel (built or cached) and the guest image. Panics with the reason if either
/// cannot be had: a VM test without a kernel is a failure, never a skip.
pub async fn plan() -> Plan {
    match plan::resolve(&PlanRequest::default(), &Needs::default(), &Silent).await {
        Ok(p) => p,
        Err(e) => panic!("cannot prepare the default kernel and image: {e:?}"),
    }
}

pub async fn boot(name: &str) -> Guest {
    let p = plan().await;
    Guest::boot(p.vm_config(name))
        .await
        .unwrap_or_else(|e: GuestError| panic!("{e}"))
}

pub async fn req(g: &mut Guest, r: Request) -> Reply {
    let what = format!("{r:?}");
    g.request(r).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub fn s(x: &str) -> String {
    x.to_string()
}

/// The project's directories, for tests that run the command line on them. Read when the test
/// runs, not when it was built: a test run from a nextest archive on another machine finds the
/// checkout there (`--workspace-remap` sets it).
pub fn project(dir: &str) -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.join("..").join(dir)
}

/// `luo-harness ARGS` run in `dir` with wide reports: its output, and its stdout and stderr as
/// one text for assertions and their messages.
pub fn harness_in(dir: &std::path::Path, args: &[&str]) -> (std::process::Output, String) {
    let o = std::process::Command::new(bin())
        .current_dir(dir)
        .env("COLUMNS", "300")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, text)
}

/// The `luo-harness` binary, where the run that started this test put it (nextest sets the
/// variable for a test run from an archive too).
pub fn bin() -> PathBuf {
    ["NEXTEST_BIN_EXE_luo-harness", "CARGO_BIN_EXE_luo-harness"]
        .iter()
        .find_map(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_luo-harness")))
}

/// The kernel's own tools/testing/kunit/kunit.py: the stage's (a run from a nextest archive),
/// else the one in a Debian source `setup` unpacked.
pub fn kunit_py() -> PathBuf {
    let stage = luo_harness::plan::Stage::beside(&bin()).expect("a readable stage");
    if let Some(dir) = stage.and_then(|s| s.tree("kunit").expect("the staged kunit")) {
        return dir.join("kunit.py");
    }
    let sources = luo_kernels::Cache::from_env().sources_dir();
    std::fs::read_dir(&sources)
        .unwrap_or_else(|e| panic!("{}: {e} (run `luo-harness setup`)", sources.display()))
        .flatten()
        .map(|e| e.path().join("tools/testing/kunit/kunit.py"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no kunit.py under {} (run `luo-harness setup`)",
                sources.display()
            )
        })
}

/// The Debian 7.3 source `setup` unpacked: the tree holding `file` (a path inside it).
pub fn debian_7_3_source(file: &str) -> PathBuf {
    let sources = luo_kernels::Cache::from_env().sources_dir();
    std::fs::read_dir(&sources)
        .unwrap_or_else(|e| panic!("{}: {e} (run `luo-harness setup`)", sources.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-source-7.3_7.3."))
                && p.join(file).is_file()
        })
        .unwrap_or_else(|| {
            panic!(
                "no Debian 7.3 source under {} (run `luo-harness setup`)",
                sources.display()
            )
        })
}

/// The harness as a test that builds on its machine runs it: never from a stage (a stage beside
/// the binary would serve the kernel the test means to build).
pub fn building() -> std::process::Command {
    let mut cmd = std::process::Command::new(bin());
    cmd.env("LUO_HARNESS_STAGE", "");
    cmd
}

/// Processes of a session, other than zombies (which have already let go of everything).
pub mod session {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// Spawns `cmd` as the leader of a new session: everything it starts stays in that session
    /// (QEMU and virtiofsd get process groups of their own, but not sessions), so the session id
    /// finds every descendant, however it is named and whoever has reaped its parent.
    pub fn spawn(mut cmd: Command) -> Child {
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawning luo-harness")
    }

    /// `pid: comm` of every live process in session `sid`.
    pub fn members(sid: i32) -> Vec<String> {
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp session ...: comm may hold spaces and parentheses.
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let comm = &stat[stat.find('(').map_or(0, |i| i + 1)..close];
            let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            if rest.len() > 3 && rest[0] != "Z" && rest[3].parse() == Ok(sid) {
                found.push(format!("{name}: {comm}"));
            }
        }
        found
    }

    /// Waits a few seconds for session `sid` to empty, and fails naming what is left.
    pub fn assert_empty(sid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = members(sid);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left running after the runner ended:\n{}",
                left.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a process of session `sid` has `needle` in its name.
    pub fn has(sid: i32, needle: &str) -> bool {
        members(sid).iter().any(|m| m.contains(needle))
    }

    /// The pid of a member whose name contains `needle`.
    pub fn pid_of(sid: i32, needle: &str) -> Option<i32> {
        members(sid)
            .iter()
            .find(|m| m.contains(needle))
            .and_then(|m| m.split(':').next()?.parse().ok())
    }
}
