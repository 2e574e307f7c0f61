//! `luo-harness matrix` over two Debian series: every (from, to) cell of each scenario decided and
//! labelled with the exact version that ran.

mod common;

use std::process::Command;

#[test]
fn both_directions_between_two_debian_series_are_decided_and_labelled() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(common::bin())
        .env("COLUMNS", "200")
        .args(["matrix", "--kernels", "debian:7.2,debian:7.3", "--out"])
        .arg(out.path())
        .arg(common::project("scenarios/memfd-roundtrip.yaml"))
        .arg(common::project("scenarios/multi-session.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "every cell decided (pass or a finding):\n{stdout}\n{stderr}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("matrix.json")).unwrap()).unwrap();
    let kernels = m["kernels"].as_array().unwrap();
    assert_eq!(kernels.len(), 2);
    for (k, series) in kernels.iter().zip(["7.2", "7.3"]) {
        let source = k["source"].as_str().unwrap();
        assert!(
            source.starts_with(&format!("debian:linux-source-{series}=")),
            "the exact version that ran: {source}"
        );
        let version = source.rsplit('=').next().unwrap();
        assert!(
            stdout.contains(&format!("debian:{series} ({version})")),
            "labelled:\n{stdout}"
        );
    }
    let scenarios = m["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2);
    for g in scenarios {
        let cells: Vec<&str> = g["cells"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|c| c["cell"].as_str().unwrap())
            .collect();
        assert_eq!(cells.len(), 4, "{g}");
        for c in cells {
            assert!(
                !["error", "not_applicable"].contains(&c),
                "an undecided cell in {g}"
            );
        }
    }
    assert!(out.path().join("matrix.svg").is_file());
}
