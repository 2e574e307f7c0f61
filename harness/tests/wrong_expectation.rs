//! A scenario whose expectation is wrong fails the run (exit 1) and says what differed.

use std::process::Command;

#[test]
fn wrong_expectation_fails_with_a_readable_reason() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wrong-expectation.yaml"
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_luo-harness"))
        .args(["run", "--format", "ktap", "--out"])
        .arg(out_dir.path())
        .arg(fixture)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.starts_with("KTAP version 1\n1..1\n"), "{stdout}");
    assert!(stdout.contains("not ok 1 wrong-expectation # L7 create_session: expected EEXIST, but the call succeeded"), "{stdout}");
    let report =
        std::fs::read_to_string(out_dir.path().join("wrong-expectation.report.yaml")).unwrap();
    assert!(report.contains("passed: false"), "{report}");
    assert!(
        out_dir
            .path()
            .join("wrong-expectation.metrics.json")
            .is_file()
    );
}
