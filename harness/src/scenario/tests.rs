//! The engine without QEMU: scenario text in, requests and report out, through the scripted fake
//! agent. What a real kernel does is for the VM tests and the scenario files; these check that each
//! step asks for what it says and reports what it was told.

use super::engine::drive;
use super::fake::{self, FakeGuest, Script};
use super::parse;
use crate::guest::{Failure, GuestError};
use crate::outcome::Outcome;
use luo_protocol::{AgentError, Reply, Request};
use std::time::Duration;

fn run(yaml: &str, guest: FakeGuest) -> (super::Ran, std::sync::Arc<std::sync::Mutex<fake::Seen>>) {
    run_on(fake::plan(), yaml, guest)
}

fn run_on(
    plan: crate::plan::Plan,
    yaml: &str,
    guest: FakeGuest,
) -> (super::Ran, std::sync::Arc<std::sync::Mutex<fake::Seen>>) {
    let scenario = parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{:?}", miette::Report::new(e)));
    let seen = guest.seen.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ran = rt
        .block_on(drive(&scenario, &plan, guest))
        .unwrap_or_else(|e| panic!("{e}"));
    (ran, seen)
}

fn ops(seen: &fake::Seen) -> Vec<String> {
    seen.requests
        .iter()
        .map(|(r, _)| crate::guest::op_name(r).to_string())
        .collect()
}

const ROUNDTRIP: &str = "description: d
steps:
  - open_device: {}
  - create_session: {name: a, as: s}
  - create_memfd: {as: m, size: 4K, seed: 7}
  - preserve: {session: s, fd: m, token: 1}
  - kexec: {}
  - open_device: {}
  - retrieve_session: {name: a, as: s}
  - retrieve_fd: {session: s, token: 1, as: m}
  - verify: {fd: m, seed: 7}
  - finish: {session: s}
";

#[test]
fn each_step_makes_its_requests_and_leaves_its_line() {
    let (ran, seen) = run(ROUNDTRIP, FakeGuest::agreeable());
    let seen = seen.lock().unwrap();
    assert_eq!(
        ops(&seen),
        [
            "open_device",
            "create_session",
            "create_memfd",
            "write_pattern",
            "preserve_fd",
            "kernel_records",
            "open_device",
            "retrieve_session",
            "retrieve_fd",
            "observe",
            "verify_pattern",
            "finish_session",
            "kernel_records"
        ],
        "the verify learns the retrieved file's size first; the log is read before the kexec and at the end"
    );
    assert_eq!(seen.kexecs.len(), 1);
    assert_eq!(
        seen.kexecs[0].kernel,
        std::path::Path::new("/cache/stock/bzImage")
    );
    assert!(seen.powered_off && !seen.kept);
    assert_eq!(ran.outcome, Outcome::Pass);
    assert_eq!(
        ran.report.steps,
        [
            "L3 open_device dev: ok",
            "L4 create_session \"a\": ok",
            "L5 create_memfd m 4096 bytes seed 7: ok",
            "L6 preserve m in s token 1: ok",
            "L7 kexec into boot 1: ok",
            "L8 open_device dev: ok",
            "L9 retrieve_session \"a\": ok",
            "L10 retrieve_fd token 1 from s as m: ok",
            "L11 verify m seed 7 [0, 0): ok",
            "L12 finish s: ok"
        ]
    );
    assert_eq!(ran.report.boots.len(), 2);
    assert_eq!(ran.report.boots[1].liveupdate_number, Some(1));
    assert_eq!(ran.report.kernel.variant, "stock");
}

#[test]
fn an_expected_errno_passes_and_an_unexpected_success_fails_where_it_happened() {
    let yaml = "description: d\nsteps:\n  - open_device: {}\n  - create_session: {name: a}\n  - create_session: {name: a, as: b, expect: EEXIST}\n";
    let eexist: Script = Box::new(|r| match r {
        Request::CreateSession { handle, .. } if handle == "b" => Some(Err(AgentError::syscall(
            "ioctl(LIVEUPDATE_IOCTL_CREATE_SESSION)",
            libc::EEXIST,
        ))),
        _ => None,
    });
    let (ran, _) = run(yaml, FakeGuest::new(eexist));
    assert_eq!(ran.outcome, Outcome::Pass);
    assert_eq!(
        ran.report.steps[2],
        "L5 create_session \"a\": EEXIST as expected"
    );
    let (ran, seen) = run(yaml, FakeGuest::agreeable());
    let reason = "L5 create_session: expected EEXIST, but the call succeeded";
    assert_eq!(
        ran.outcome,
        Outcome::Fail {
            reason: reason.into()
        }
    );
    assert_eq!(ran.report.failures, [reason]);
    assert!(
        seen.lock().unwrap().kept,
        "a failed scenario keeps its artifacts"
    );
    assert!(ran.artifacts.is_some());
}

#[test]
fn nested_repeats_expand_both_indices_and_tokens_stay_distinct() {
    let yaml = "description: d
steps:
  - open_device: {}
  - create_session: {name: s}
  - repeat:
      count: 2
      steps:
        - repeat:
            count: 3
            as: j
            steps:
              - create_memfd: {as: \"m{i}-{j}\", size: 4K}
              - preserve: {session: s, fd: \"m{i}-{j}\", token: 100}
";
    let (ran, seen) = run(yaml, FakeGuest::agreeable());
    assert_eq!(ran.outcome, Outcome::Pass);
    let seen = seen.lock().unwrap();
    let preserved: Vec<(String, u64)> = seen
        .requests
        .iter()
        .filter_map(|(r, _)| match r {
            Request::PreserveFd { fd, token, .. } => Some((fd.clone(), *token)),
            _ => None,
        })
        .collect();
    assert_eq!(
        preserved,
        [
            ("m0-0", 100),
            ("m0-1", 101),
            ("m0-2", 102),
            ("m1-0", 103),
            ("m1-1", 104),
            ("m1-2", 105)
        ]
        .map(|(f, t)| (f.to_string(), t))
    );
    assert_eq!(
        ran.report.steps[2], "L5 repeat x2 (1 step(s) each): ok",
        "a repeat is one line"
    );
}

#[test]
fn a_failure_inside_nested_repeats_names_the_step_and_every_iteration() {
    let yaml = "description: d
steps:
  - open_device: {}
  - repeat:
      count: 2
      steps:
        - repeat:
            count: 3
            as: j
            steps:
              - create_session: {name: \"s{i}{j}\"}
";
    let fail_at: Script = Box::new(|r| match r {
        Request::CreateSession { name, .. } if name == "s12" => Some(Err(AgentError::syscall(
            "ioctl(LIVEUPDATE_IOCTL_CREATE_SESSION)",
            libc::ENOMEM,
        ))),
        _ => None,
    });
    let (ran, _) = run(yaml, FakeGuest::new(fail_at));
    let Outcome::Fail { reason } = &ran.outcome else {
        panic!("{:?}", ran.outcome)
    };
    assert!(
        reason.starts_with("L11 create_session (repeat iteration 2 of 3, within iteration 1 of 2): ioctl(LIVEUPDATE_IOCTL_CREATE_SESSION) failed: ENOMEM"),
        "{reason}"
    );
}

#[test]
fn observed_session_fds_are_labelled_and_their_identity_summarised() {
    let yaml = "description: d
steps:
  - open_device: {}
  - create_session: {name: a}
  - create_session: {name: b}
  - observe: {handle: a}
  - observe: {handle: b}
";
    let mut shared = FakeGuest::agreeable();
    shared.inodes = [("a".into(), 7), ("b".into(), 7)].into();
    let (ran, _) = run(yaml, shared);
    assert_eq!(
        ran.report.session_identity,
        ["boot 0: 2 session fds share one inode"]
    );
    assert_eq!(
        ran.report.observations["a"].inode,
        ran.report.observations["b"].inode
    );
    assert_eq!(ran.report.observations["a"].fs, "ANON_INODE_FS_MAGIC");
    let mut unique = FakeGuest::agreeable();
    unique.inodes = [("a".into(), 7), ("b".into(), 8)].into();
    let (ran, _) = run(yaml, unique);
    assert_eq!(
        ran.report.session_identity,
        ["boot 0: 2 session fds, each with its own inode"]
    );
}

#[test]
fn a_kernel_report_is_a_finding_that_fails_a_scenario_whose_steps_passed() {
    let warn: Script = Box::new(|r| {
        matches!(r, Request::KernelRecords { .. }).then(|| {
            Ok(Reply::Records(records(&[
                "luo-agent: request 1",
                "WARNING: CPU: 0 PID: 1 at kernel/liveupdate/luo_session.c:99 luo_session_release+0x8e/0x120",
                "Call Trace:",
                " __fput+0x1e8/0x4d0",
                " </TASK>",
            ])))
        })
    });
    let (ran, _) = run(
        "description: d\nsteps:\n  - open_device: {}\n",
        FakeGuest::new(warn),
    );
    assert_eq!(
        ran.outcome,
        Outcome::Fail {
            reason: "boot 0, L3 open_device: WARNING in luo_session_release".into()
        }
    );
    let f = &ran.report.findings[0];
    assert_eq!(
        (f.kind.as_str(), f.step.as_str()),
        ("WARNING", "L3 open_device")
    );
    assert!(
        ran.report.kernel_log.is_empty(),
        "the report is a finding, not a stray line"
    );
}

/// A read of the kernel log holding `texts`.
fn records(texts: &[&str]) -> luo_protocol::KernelRecords {
    luo_protocol::KernelRecords {
        records: texts
            .iter()
            .enumerate()
            .map(|(i, t)| luo_protocol::LogRecord {
                seq: i as u64,
                level: 4,
                usec: 100_000 * i as u64,
                text: t.to_string(),
            })
            .collect(),
        next: texts.len() as u64,
        lost: 0,
        truncated: false,
    }
}

#[test]
fn a_gcov_boot_without_counters_fails_naming_the_boot_and_its_checkpoint() {
    let mut plan = fake::plan();
    plan.boot.gcov = Some(crate::plan::GcovNotes {
        dir: "/cache/stock/gcov".into(),
        files: vec!["kernel/liveupdate/luo_session.c".into()],
    });
    // The first boot's counters are there; the kernel after the kexec has none.
    let mut reads = 0;
    let script: Script = Box::new(move |r| {
        matches!(r, Request::GcovData).then(|| {
            reads += 1;
            let files = if reads == 1 {
                vec![luo_protocol::GcovFile {
                    path: "/b/kernel/liveupdate/luo_session.gcda".into(),
                    hex: "00".into(),
                }]
            } else {
                vec![]
            };
            Ok(Reply::Gcov { files })
        })
    });
    let (ran, seen) = run_on(
        plan,
        "description: d\nsteps:\n  - open_device: {}\n  - kexec: {}\n",
        FakeGuest::new(script),
    );
    let asked = ops(&seen.lock().unwrap());
    assert_eq!(
        asked.iter().filter(|o| *o == "gcov_data").count(),
        2,
        "once before the kexec, once at the end: {asked:?}"
    );
    assert_eq!(
        ran.outcome,
        Outcome::Fail {
            reason: "boot 1, end: no gcov data in /sys/kernel/debug/gcov although the kernel was built to profile 1 file".into()
        }
    );
    let boots: Vec<u32> = ran.gcov.iter().map(|g| g.boot).collect();
    assert_eq!(boots, [0], "boot 0's counters are kept for the tracefile");
}

#[test]
fn unmet_requirements_skip_the_scenario_before_any_step() {
    let yaml = "description: d\nrequires: {config: [CONFIG_LIVEUPDATE_MEMFD]}\nsteps:\n  - open_device: {}\n";
    let (ran, seen) = run(yaml, FakeGuest::agreeable());
    assert_eq!(
        ran.outcome,
        Outcome::Skip {
            reason: "boot 0: requires CONFIG_LIVEUPDATE_MEMFD=y, which this kernel lacks".into()
        }
    );
    assert!(ran.report.steps.is_empty());
    assert!(!ops(&seen.lock().unwrap()).contains(&"open_device".to_string()));
    let newer = "description: d\nrequires: {kernel: \"7.4\"}\nsteps:\n  - open_device: {}\n";
    let (ran, _) = run(newer, FakeGuest::agreeable());
    assert!(
        matches!(ran.outcome, Outcome::Skip { .. }),
        "{:?}",
        ran.outcome
    );
}

#[test]
fn exec_limits_the_program_below_the_hosts_wait_and_stages_selftests() {
    let yaml = "description: d\nsteps:\n  - exec: {path: selftests/luo_kexec_simple, args: [\"-s\", \"1\"], timeout_s: 45}\n";
    let (ran, seen) = run(yaml, FakeGuest::agreeable());
    assert_eq!(ran.outcome, Outcome::Pass);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.staged,
        [(
            "/cache/selftests/luo_kexec_simple".into(),
            "selftests/luo_kexec_simple".to_string()
        )]
    );
    let (req, within) = seen
        .requests
        .iter()
        .find(|(r, _)| matches!(r, Request::Exec { .. }))
        .unwrap();
    let Request::Exec { timeout_ms, .. } = req else {
        unreachable!()
    };
    assert_eq!(*timeout_ms, Some(45_000));
    assert!(
        within.unwrap() > Duration::from_secs(45),
        "the host waits longer than the guest's limit"
    );
}

#[test]
fn a_kexec_into_a_variant_loads_that_variants_kernel() {
    let yaml = "description: d\nsteps:\n  - kexec: {kernel: magic-unique}\n";
    let (ran, seen) = run(yaml, FakeGuest::agreeable());
    assert_eq!(
        ran.report.steps,
        ["L3 kexec into boot 1 (magic-unique): ok"]
    );
    assert_eq!(
        seen.lock().unwrap().kexecs[0].kernel,
        std::path::Path::new("/cache/magic-unique/bzImage")
    );
}

#[test]
fn a_vm_failure_is_the_error_and_keeps_the_artifacts() {
    let scenario = parse("t.yaml", "description: d\nsteps:\n  - kexec: {}\n").unwrap();
    let lost = GuestError::Failed {
        failure: Failure::BootTimeout(Duration::from_secs(30)),
        boot: 1,
        step: "kexec into boot 1".into(),
        console: String::new(),
        artifacts: "/tmp/a".into(),
        reports: Box::default(),
    };
    let guest = FakeGuest::agreeable().failing_kexec(lost);
    let seen = guest.seen.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(drive(&scenario, &fake::plan(), guest))
        .unwrap_err();
    assert_eq!(
        err.failure(),
        Some(&Failure::BootTimeout(Duration::from_secs(30)))
    );
    assert!(seen.lock().unwrap().kept);
}

#[test]
fn a_kexec_that_loses_the_state_is_named_as_that() {
    let yaml = "description: d\nsteps:\n  - open_device: {}\n  - create_session: {name: a}\n  - kexec: {}\n  - open_device: {}\n  - retrieve_session: {name: a}\n";
    let gone: Script = Box::new(|r| match r {
        Request::RetrieveSession { .. } => Some(Err(AgentError::syscall(
            "ioctl(LIVEUPDATE_IOCTL_RETRIEVE_SESSION)",
            libc::ENOENT,
        ))),
        _ => None,
    });
    let guest = FakeGuest::new(gone).losing_state();
    let (ran, _) = run(yaml, guest);
    assert_eq!(
        ran.report.handover,
        ["boot 1: state lost: no KHO data found (no `KHO: exec from`), no liveupdate number"]
    );
    let Outcome::Fail { reason } = &ran.outcome else {
        panic!("{:?}", ran.outcome)
    };
    assert!(
        reason.starts_with("live update: boot 1: state lost:")
            && reason.contains("L7 retrieve_session"),
        "{reason}"
    );
}

#[test]
fn a_refusal_in_the_next_kernels_log_is_incompatible() {
    let refuse: Script = Box::new(|r| {
        matches!(r, Request::KernelRecords { .. }).then(|| {
            Ok(Reply::Records(records(&[
                "luo: LUO state is incompatible with 'luo-v5'",
            ])))
        })
    });
    let (ran, _) = run(
        "description: d\nsteps:\n  - kexec: {}\n",
        FakeGuest::new(refuse),
    );
    assert!(
        ran.report
            .handover
            .iter()
            .any(|h| h.starts_with("boot 1: incompatible: luo: LUO state is incompatible")),
        "{:?}",
        ran.report.handover
    );
}

/// A guest whose every `exec` prints `stdout` and exits with `code`.
fn printing(stdout: &'static str, code: i32) -> FakeGuest {
    let script: Script = Box::new(move |req| {
        matches!(req, Request::Exec { .. }).then(|| {
            Ok(Reply::Exited(luo_protocol::ExitStatus {
                code: Some(code),
                signal: None,
                stdout: stdout.into(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                duration_us: 1,
            }))
        })
    });
    FakeGuest::new(script)
}

const EXEC: &str = "description: d\nsteps:\n  - exec: {path: selftests/luo_kexec_simple}\n";

#[test]
fn ktap_output_becomes_sub_results_in_the_report() {
    let (ran, _) = run(
        EXEC,
        printing(
            "TAP version 13\n1..2\n# RUN a\nok 1 a\nok 2 b # SKIP no b here\n",
            0,
        ),
    );
    assert_eq!(ran.outcome, Outcome::Pass);
    assert_eq!(
        ran.report.steps,
        ["L3 exec selftests/luo_kexec_simple: exit 0, 2 subtests: 1 ok, 1 skip"]
    );
    let g = &ran.report.subtests[0];
    assert_eq!(g.step, "L3 exec selftests/luo_kexec_simple");
    assert_eq!(g.parsed.cases[1].reason.as_deref(), Some("no b here"));
}

#[test]
fn a_not_ok_fails_the_step_and_names_the_case_even_with_exit_0() {
    let (ran, _) = run(
        EXEC,
        printing("TAP version 13\n1..3\nok 1 a\nok 2 b\nnot ok 3 foo\n", 0),
    );
    let Outcome::Fail { reason } = &ran.outcome else {
        panic!("{:?}", ran.outcome)
    };
    assert!(
        reason.starts_with("L3 exec: selftests/luo_kexec_simple: not ok 3 foo (exit 0)"),
        "{reason}"
    );
    assert_eq!(
        ran.report.subtests[0].parsed.cases.len(),
        3,
        "kept in the report"
    );
}

#[test]
fn exit_4_with_only_skips_is_a_skip_with_its_reasons_never_a_pass() {
    let (ran, _) = run(
        EXEC,
        printing("TAP version 13\n1..1\nok 1 a # SKIP needs hugetlb\n", 4),
    );
    assert_eq!(
        ran.outcome,
        Outcome::Skip {
            reason: "L3 exec selftests/luo_kexec_simple: skipped (exit 4): a: needs hugetlb".into()
        }
    );
    // Exit 4 with a case that passed is not a skip: the exit code is wrong.
    let (ran, _) = run(
        EXEC,
        printing("TAP version 13\n1..2\nok 1 a\nok 2 b # SKIP x\n", 4),
    );
    assert!(
        matches!(ran.outcome, Outcome::Fail { .. }),
        "{:?}",
        ran.outcome
    );
}

#[test]
fn tap_that_does_not_add_up_is_reported_and_does_not_fail_a_passing_program() {
    let (ran, _) = run(EXEC, printing("TAP version 13\n1..5\nok 1 a\n", 0));
    assert_eq!(ran.outcome, Outcome::Pass);
    assert_eq!(
        ran.report.subtests[0].parsed.problems,
        ["the plan (line 2) announces 5 tests, the output has 1"]
    );
    let (ran, _) = run(EXEC, printing("plain output\n", 0));
    assert!(ran.report.subtests.is_empty(), "not TAP: no sub-results");
    assert_eq!(
        ran.report.steps,
        ["L3 exec selftests/luo_kexec_simple: exit 0"]
    );
}

#[test]
fn with_a_non_zero_exit_code_expected_the_not_oks_are_recorded_not_failed() {
    let yaml =
        "description: d\nsteps:\n  - exec: {path: selftests/luo_kexec_simple, exit_code: 1}\n";
    let (ran, _) = run(
        yaml,
        printing("TAP version 13\n1..2\nok 1 a\nnot ok 2 b\n", 1),
    );
    assert_eq!(ran.outcome, Outcome::Pass);
    assert_eq!(
        ran.report.steps,
        ["L3 exec selftests/luo_kexec_simple: exit 1, 2 subtests: 1 ok, 1 not ok"]
    );
}

#[test]
fn programs_beside_the_scenario_and_their_files_are_staged_into_programs() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog");
    // A static program, as `check` demands (gcc is a build dependency: ci/install-deps).
    let c = dir.path().join("prog.c");
    std::fs::write(&c, "int main(void){return 0;}\n").unwrap();
    let built = std::process::Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&prog)
        .arg(&c)
        .status()
        .unwrap();
    assert!(built.success());
    std::fs::write(dir.path().join("data.bin"), b"x").unwrap();
    let file = dir.path().join("t.yaml");
    let yaml = "description: d\nsteps:\n  - exec: {path: ./prog, files: [./data.bin], env: {A: b}, stdin: \"in\"}\n";
    std::fs::write(&file, yaml).unwrap();
    let (scenario, _) =
        super::load(&file).unwrap_or_else(|e| panic!("{:?}", miette::Report::new(e)));
    let guest = FakeGuest::agreeable();
    let seen = guest.seen.clone();
    let plan = fake::plan();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ran = rt.block_on(drive(&scenario, &plan, guest)).unwrap();
    assert_eq!(ran.outcome, Outcome::Pass, "{:?}", ran.report.failures);
    let seen = seen.lock().unwrap();
    let staged: Vec<&str> = seen.staged.iter().map(|(_, rel)| rel.as_str()).collect();
    assert_eq!(staged, ["programs/prog", "programs/data.bin"]);
    let Some((
        Request::Exec {
            path, env, stdin, ..
        },
        _,
    )) = seen
        .requests
        .iter()
        .find(|(r, _)| matches!(r, Request::Exec { .. }))
    else {
        panic!("no exec")
    };
    assert_eq!(path, "programs/prog");
    assert_eq!(env, &[("A".to_string(), "b".to_string())]);
    assert_eq!(stdin.as_deref(), Some("in"));
}

/// A systemd guest: every `unit` request answers with `state`, every `journal` with `lines`.
fn under_systemd(state: luo_protocol::UnitState, lines: &'static [&'static str]) -> FakeGuest {
    let script: Script = Box::new(move |req| match req {
        Request::Unit { .. } => Some(Ok(Reply::Unit(state.clone()))),
        Request::Journal { .. } => Some(Ok(Reply::Log {
            lines: lines.iter().map(|l| l.to_string()).collect(),
        })),
        _ => None,
    });
    FakeGuest::new(script)
}

fn unit_state(active: &str, fd_store: u32) -> luo_protocol::UnitState {
    luo_protocol::UnitState {
        unit: "a.service".into(),
        active: active.into(),
        sub: "dead".into(),
        result: "success".into(),
        fd_store,
        exit_status: 0,
    }
}

const JOURNAL_TAP: &[&str] = &[
    "Starting a.service...",
    "TAP version 13",
    "ok 1 stored",
    "not ok 2 lost",
    "1..2",
];

#[test]
fn a_unit_step_asks_systemctl_and_checks_only_what_it_names() {
    let yaml = "description: d\nimage: systemd\nsteps:\n  - unit: {name: a.service, action: start, fd_store: 1}\n  - unit: {name: a.service, fd_store: 2}\n";
    let (ran, seen) = run(yaml, under_systemd(unit_state("inactive", 1), &[]));
    let reqs: Vec<_> = seen
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|(r, _)| r.clone())
        .collect();
    assert_eq!(
        reqs,
        [
            Request::Unit {
                unit: "a.service".into(),
                action: luo_protocol::UnitAction::Start
            },
            Request::Unit {
                unit: "a.service".into(),
                action: luo_protocol::UnitAction::Show
            },
            // The engine's read of the kernel log at the end.
            Request::KernelRecords { from: 0 },
        ]
    );
    assert_eq!(
        ran.report.steps[0],
        "L4 unit start a.service: inactive (dead), result success, fd store 1, exit 0"
    );
    assert_eq!(
        ran.report.failures,
        ["L5 unit: unit show a.service: fd store 1, expected 2"]
    );
}

#[test]
fn a_journals_not_ok_fails_the_step_unless_it_is_only_recorded() {
    let strict = "description: d\nimage: systemd\nsteps:\n  - journal: {unit: a.service, contains: [stored]}\n";
    let (ran, _) = run(
        strict,
        under_systemd(unit_state("inactive", 1), JOURNAL_TAP),
    );
    assert!(
        matches!(ran.outcome, Outcome::Fail { .. }),
        "{:?}",
        ran.outcome
    );
    assert!(
        ran.report.failures[0].contains("not ok 2 lost"),
        "{:?}",
        ran.report.failures
    );
    let recorded = strict.replace("contains: [stored]", "not_ok: record");
    let (ran, _) = run(
        &recorded,
        under_systemd(unit_state("inactive", 1), JOURNAL_TAP),
    );
    assert_eq!(ran.outcome, Outcome::Pass);
    assert_eq!(
        ran.report.steps,
        ["L4 journal a.service: not ok 2 lost (recorded)"]
    );
    assert_eq!(ran.report.subtests[0].parsed.cases.len(), 2);
    let missing = strict.replace("[stored]", "[absent]");
    let (ran, _) = run(
        &missing,
        under_systemd(unit_state("inactive", 1), JOURNAL_TAP),
    );
    assert!(
        ran.report.failures[0].contains("no line contains [\"absent\"]"),
        "{:?}",
        ran.report.failures
    );
}
