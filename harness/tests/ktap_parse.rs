//! `--format ktap` as the kernel's own parser reads it: tools/testing/kunit/kunit.py from the
//! Debian source `setup` unpacked (or the stage, from an archive), on results of every kind.

use luo_harness::events::Event;
use luo_harness::outcome::Outcome;
use luo_harness::render::{Ktap, Render};
use luo_harness::result::ScenarioResult;
use std::process::Command;

mod common;

fn result(name: &str, outcome: Outcome) -> ScenarioResult {
    ScenarioResult::new(
        format!("scenarios/{name}.yaml").into(),
        name.into(),
        outcome,
    )
}

#[test]
fn kunit_parses_every_kind_of_result() {
    let results = [
        result("memfd-roundtrip", Outcome::Pass),
        result("errno-contract", Outcome::Fail { reason: "L7 create_session: expected EEXIST, but the call succeeded".into() }),
        result("needs-7.4", Outcome::Skip { reason: "boot 0: requires kernel >= 7.4, running 7.3.4".into() }),
        result("panics", Outcome::KernelFailure { reason: "the guest kernel panicked (boot 1)\n--- console ---\nKernel panic # not syncing".into() }),
        result("no-qemu", Outcome::InfraFailure { reason: "QEMU did not start".into() }),
    ];
    let mut ktap = Ktap::default();
    let mut out = Vec::new();
    let start = Event::RunStarted {
        scenarios: results.iter().map(|r| r.name.clone()).collect(),
    };
    ktap.event(&start, &mut out).unwrap();
    for r in &results {
        ktap.finished(r, &mut out).unwrap();
    }
    ktap.event(&Event::RunFinished, &mut out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.ktap");
    std::fs::write(&file, &out).unwrap();
    let json = dir.path().join("run.json");
    let o = Command::new("python3")
        .arg(common::kunit_py())
        .arg("parse")
        .arg(format!("--json={}", json.display()))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stdout.contains("Testing complete. Ran 5 tests: passed: 1, failed: 3, skipped: 1"),
        "kunit.py:\n{stdout}\n{stderr}\n--- input ---\n{}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        !stdout.contains("[ERROR]") && !stderr.contains("Traceback"),
        "{stdout}\n{stderr}"
    );
    let parsed: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let cases: Vec<(String, String)> = parsed["test_cases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").into(),
                c["status"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let want = [
        ("memfd-roundtrip", "PASS"),
        ("errno-contract", "FAIL"),
        ("needs-7.4", "SKIP"),
        ("panics", "FAIL"),
        ("no-qemu", "FAIL"),
    ];
    assert_eq!(
        cases,
        want.map(|(n, s)| (n.to_string(), s.to_string())),
        "{parsed}"
    );
    assert_eq!(parsed["misc"]["errors"], 0, "{parsed}");
}
