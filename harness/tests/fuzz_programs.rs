//! `luo-harness fuzz` on real kernels: a short run with a fixed seed finds nothing on stock, and a
//! planted break of the errno contract (kernels/variants/test-retrieve-twice: EBUSY instead of
//! EINVAL for a session retrieved twice) is found, shrunk to a scenario of a few steps, and that
//! scenario fails on the variant and passes on stock when `run` runs it.

mod common;

use std::path::{Path, PathBuf};

#[test]
fn a_fixed_seed_finds_nothing_on_stock() {
    let out = tempfile::tempdir().unwrap();
    let (o, text) = common::harness_in(
        out.path(),
        &[
            "fuzz",
            "--seed",
            "1",
            "--runs",
            "25",
            "--max-kexecs",
            "2",
            "--out",
            ".",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("25 programs") && text.contains("0 findings"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("fuzz.json")).unwrap()).unwrap();
    assert!(report["kexecs"].as_u64().unwrap() >= 10, "{report}");
    assert!(report["operations"].as_u64().unwrap() >= 200, "{report}");
}

/// The shrunk scenario's steps (lines starting with `  - `).
fn steps(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  - "))
        .map(String::from)
        .collect()
}

#[test]
fn a_planted_wrong_errno_is_found_and_shrunk_to_a_scenario_that_fails_only_there() {
    let out = tempfile::tempdir().unwrap();
    let (o, text) = common::harness_in(
        out.path(),
        &[
            "fuzz",
            "--variant",
            "test-retrieve-twice",
            "--seed",
            "7",
            "--runs",
            "30",
            "--max-kexecs",
            "1",
            "--out",
            ".",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "a finding is exit 1: {text}");
    let found: Vec<PathBuf> = std::fs::read_dir(out.path().join("findings"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(".original.yaml"))
        .collect();
    assert_eq!(found.len(), 1, "one way to fail, one finding: {text}");
    let scenario = &found[0];
    let body = std::fs::read_to_string(scenario).unwrap();
    assert!(
        body.contains("expected EINVAL, got EBUSY"),
        "the header says what the kernel did:\n{body}"
    );
    let s = steps(scenario);
    // open, create, kexec, open, retrieve, retrieve again: nothing more is needed.
    assert!(s.len() <= 7, "shrunk to {} steps:\n{body}", s.len());
    assert!(
        s.iter().filter(|l| l.contains("retrieve_session")).count() >= 2
            && s.iter().any(|l| l.contains("kexec")),
        "{body}"
    );
    let path = scenario.to_str().unwrap();
    let (bad, t) = common::harness_in(
        out.path(),
        &["run", "--variant", "test-retrieve-twice", path],
    );
    assert_eq!(bad.status.code(), Some(1), "fails on the variant: {t}");
    let (good, t) = common::harness_in(out.path(), &["run", path]);
    assert_eq!(good.status.code(), Some(0), "passes on stock: {t}");
}
