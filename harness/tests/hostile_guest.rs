//! A hostile or broken guest cannot hurt the host: the real agent, told by the kernel command line
//! (`luo_agent.fault=NAME`, guest-images/agent/src/fault.rs) to do one thing wrong, on the real
//! kernel. Each case ends the run with exit 3, a message naming what went wrong with its boot and
//! step, the console tail, kept artifacts, and nothing left running.

mod common;

use common::session;
use std::process::{Command, Stdio};

struct Case {
    fault: &'static str,
    /// `boot` for faults before the hello; a scenario for faults that need requests or time.
    scenario: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    expect: &'static str,
    step: &'static str,
}

fn check(c: Case) {
    let artifacts = tempfile::Builder::new()
        .prefix("luo-hostile")
        .tempdir_in("/tmp")
        .unwrap();
    let mut cmd = Command::new(common::bin());
    match c.scenario {
        None => cmd.arg("boot"),
        Some(s) => {
            let out = artifacts.path().join("reports");
            cmd.arg("run").arg(common::project(s)).arg("--out").arg(out)
        }
    };
    // The fault is on the agent's command line, which a saved VM keeps: each case boots, so the
    // hostile agent is met at its hello and at the step it misbehaves in, not at a resume.
    cmd.arg("--cold-boot")
        .arg("--cmdline")
        .arg(format!("luo_agent.fault={}", c.fault))
        .env("LUO_HARNESS_ARTIFACTS", artifacts.path())
        .env("COLUMNS", "400")
        .envs(c.env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = session::spawn(cmd);
    let sid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    session::assert_empty(sid);
    let all = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{}: {all}", c.fault);
    assert!(
        all.contains(c.expect),
        "{}: expected {:?} in\n{all}",
        c.fault,
        c.expect
    );
    assert!(
        all.contains(&format!("(boot 0, step `{}`)", c.step)),
        "{}: the boot and step must be named:\n{all}",
        c.fault
    );
    assert!(
        all.contains("--- console, last lines ---\n"),
        "{}: the console tail must be shown:\n{all}",
        c.fault
    );
    let kept = all
        .split("--- artifacts kept in ")
        .nth(1)
        .and_then(|r| r.split(" ---").next())
        .unwrap_or_else(|| panic!("{}: the artifacts must be named:\n{all}", c.fault));
    let kept = std::path::Path::new(kept);
    assert!(
        kept.starts_with(artifacts.path()) && kept.join("console.log").is_file(),
        "{}: artifacts kept in {}",
        c.fault,
        kept.display()
    );
}

#[test]
fn a_guest_that_never_says_hello() {
    check(Case {
        fault: "no-hello",
        scenario: None,
        env: &[("LUO_HARNESS_BOOT_TIMEOUT_S", "8")],
        expect: "no hello from the agent within 8s",
        step: "boot",
    });
}

#[test]
fn a_hello_that_is_not_json() {
    check(Case {
        fault: "garbage-hello",
        scenario: None,
        env: &[],
        expect: "agent protocol: expected the agent's hello",
        step: "boot",
    });
}

#[test]
fn a_line_that_is_not_utf8() {
    check(Case {
        fault: "not-utf8",
        scenario: None,
        env: &[],
        expect: "a line from the agent is not UTF-8 (at byte 12)",
        step: "boot",
    });
}

#[test]
fn an_endless_line_is_cut_at_the_limit() {
    check(Case {
        fault: "endless-line",
        scenario: None,
        env: &[],
        expect: "a line from the agent is longer than 16777216 bytes",
        step: "boot",
    });
}

#[test]
fn a_reply_to_an_unknown_request() {
    check(Case {
        fault: "wrong-id",
        scenario: None,
        env: &[],
        expect: "a reply to request 1001 while waiting for 1",
        step: "kernel_log",
    });
}

#[test]
fn a_second_reply_for_one_request() {
    check(Case {
        fault: "double-reply",
        scenario: None,
        env: &[],
        expect: "a reply to request 1 while waiting for 2",
        step: "power_off",
    });
}

#[test]
fn a_console_flood_stops_the_vm() {
    check(Case {
        fault: "console-flood",
        // Its 768 MiB write keeps the guest busy while the flood passes the limit.
        scenario: Some("harness/tests/fixtures/fault-phases.yaml"),
        env: &[("LUO_HARNESS_CONSOLE_MIB", "1")],
        expect: "the guest flooded its console (more than 1 MiB); the VM was stopped",
        step: "write_pattern",
    });
}
