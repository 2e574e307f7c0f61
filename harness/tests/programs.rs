//! Scenario authors' own programs on the real kernel: a `not ok` in a program's TAP fails the
//! scenario naming the case; `--format ktap` nests a program's sub-results under its scenario the
//! way the kernel's own kunit.py parses them; a C source that does not compile is bad input (exit
//! 2, before any VM) with gcc's message and the step's place; `libc: nolibc` builds with the
//! tree's nolibc.

mod common;

use std::process::{Command, Output};

fn run(args: &[&str]) -> (Output, String) {
    let reports = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(reports.path())
        .env("COLUMNS", "400")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, all)
}

#[test]
fn a_not_ok_case_fails_the_scenario_and_is_named() {
    let f = common::project("harness/tests/fixtures/not-ok-foo.yaml");
    let (out, all) = run(&[f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("L6 exec: /bin/sh: not ok 3 foo (exit 0)"),
        "the failing case is named: {all}"
    );
}

#[test]
fn ktap_of_the_liveupdate_selftest_parses_in_kunit_as_15_nested_passes() {
    let f = common::project("scenarios/upstream-liveupdate.yaml");
    let (out, all) = run(&[f.to_str().unwrap(), "--format", "ktap"]);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let kunit = common::kunit_py();
    let mut parse = Command::new("python3")
        .arg(&kunit)
        .arg("parse")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    parse.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = parse.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&parsed.stdout);
    assert!(parsed.status.success(), "kunit.py parse:\n{text}");
    assert!(text.contains("upstream-liveupdate (15 subtests)"), "{text}");
    assert!(
        text.contains("[PASSED] liveupdate_device.preserve_many_files"),
        "{text}"
    );
    assert!(text.contains("Ran 15 tests: passed: 15"), "{text}");
}

/// These build a program that no stage holds (nextest's `builds-here` set: the `partitioned`
/// profile leaves them out).
mod builds_here {
    use super::*;

    #[test]
    fn a_c_source_that_does_not_compile_is_bad_input_before_any_vm() {
        let f = common::project("harness/tests/fixtures/broken-c.yaml");
        let (out, all) = run(&[f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(
            all.contains("broken-c.yaml:4:15: building broken"),
            "the step's place: {all}"
        );
        assert!(
            all.contains("broken.c:4:16: error:") && all.contains("undeclared_identifier"),
            "gcc's message: {all}"
        );
        assert!(!all.contains("scenario broken-c:"), "no VM ran: {all}");
    }

    #[test]
    fn libc_nolibc_builds_against_the_trees_nolibc_and_libliveupdate() {
        let f = common::project("harness/tests/fixtures/nolibc-program.yaml");
        let (out, all) = run(&[f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{all}");
        assert!(all.contains("2 subtests: 2 ok"), "{all}");
        // Static glibc makes a program of most of a megabyte; nolibc one of tens of kilobytes.
        let programs = luo_kernels::Cache::from_env().root().join("programs");
        let built: Vec<u64> = std::fs::read_dir(programs)
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::metadata(e.path().join("nolibc-tap")).ok())
            .map(|m| m.len())
            .collect();
        assert!(
            !built.is_empty() && built.iter().all(|&n| n < 200_000),
            "{built:?}"
        );
    }
}
