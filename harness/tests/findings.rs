//! Reports as failures, on real debug kernels: a use-after-free and a leak planted in session
//! teardown (kernels/variants/test-uaf-session, test-leak-session) are found by KASAN and by the
//! leak check before the kexec, each symbolized to file:line in luo_session.c; the same scenario
//! on the debug kernel without them passes.

mod common;

use std::process::Output;

const FIXTURE: &str = "harness/tests/fixtures/close-a-session.yaml";

fn run(extra: &[&str]) -> (Output, String) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let fixture = common::project(FIXTURE);
    let mut args = vec!["run", "--debug", "--out", dir];
    args.extend_from_slice(extra);
    args.push(fixture.to_str().unwrap());
    common::harness_in(out.path(), &args)
}

/// The line of luo_session.c that a variant's patch adds `needle` on, read from the patch's hunk.
fn patched_line(variant: &str, needle: &str) -> u32 {
    let dir = common::project(&format!("kernels/variants/{variant}"));
    let patch = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|t| t.contains("@@"))
        .unwrap();
    let mut line = 0;
    for l in patch.lines().skip_while(|l| !l.starts_with("@@")) {
        if let Some(h) = l.strip_prefix("@@ ") {
            // `@@ -256,6 +256,9 @@`: the new side starts at 256.
            let new = h.split(' ').nth(1).unwrap();
            line = new[1..].split(',').next().unwrap().parse::<u32>().unwrap();
            continue;
        }
        if l.contains(needle) {
            return line;
        }
        if !l.starts_with('-') {
            line += 1;
        }
    }
    panic!("{needle} is not in {variant}'s patch");
}

#[test]
fn a_use_after_free_in_session_teardown_is_reported_at_the_patched_line() {
    let line = patched_line("test-uaf-session", "READ_ONCE(session->retrieved)");
    let (o, text) = run(&["--variant", "test-uaf-session"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("close-a-session  FAIL      boot 0, L8 close: KASAN: slab-use-after-free in luo_session_release"),
        "the row names the kind, the boot, the step and the function:\n{text}"
    );
    assert!(
        text.contains("  Read of size "),
        "what the access was:\n{text}"
    );
    let at = "  at luo_session_release+";
    let loc = format!("(kernel/liveupdate/luo_session.c:{line})");
    assert!(
        text.lines().any(|l| l.starts_with(at) && l.contains(&loc)),
        "the access is symbolized to the patched line {line}:\n{text}"
    );
    // The free that preceded it, with the function it was inlined from.
    assert!(
        text.contains("inlined luo_session_free (kernel/liveupdate/luo_session.c:"),
        "{text}"
    );
}

#[test]
fn the_same_scenario_on_the_debug_kernel_without_the_bug_passes() {
    let (o, text) = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("close-a-session  pass"), "{text}");
}

#[test]
fn a_leak_in_session_teardown_is_reported_by_the_check_before_the_kexec() {
    let (o, text) = run(&["--variant", "test-leak-session"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "boot 0, before L10 kexec: kmemleak: suspected memory leak in luo_session_alloc"
        ),
        "found by the check before the kexec:\n{text}"
    );
    assert!(text.contains("  1 unreferenced object of size "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("luo_session_alloc+")
                && l.contains("(kernel/liveupdate/luo_session.c:")),
        "the allocation is symbolized:\n{text}"
    );
}
