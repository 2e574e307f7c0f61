//! Every file in scenarios/invalid/ is rejected by `luo-harness check` with exit code 2 and a
//! diagnostic at the line and column its first line declares (`# error-at: LINE:COL text`).
//! (Files that are not `*.yaml` are what the scenarios refer to, such as a dynamic program.)

mod common;

use std::path::PathBuf;
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let dir = common::project("scenarios/invalid");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn each_invalid_scenario_points_at_its_error() {
    let cases = cases();
    assert!(
        cases.len() >= 10,
        "expected at least ten malformed scenarios, found {}",
        cases.len()
    );
    for path in cases {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let header = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# error-at: ")
            .expect("first line: # error-at: L:C text");
        let (pos, words) = header.split_once(' ').unwrap_or((header, ""));
        let out = Command::new(common::bin())
            .env("COLUMNS", "500")
            .arg("check")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let flat = stderr
            .replace('│', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: exit code\n{stderr}",
            path.display()
        );
        let located = format!("{}:{pos}:", path.display());
        assert!(
            flat.contains(&located),
            "{}: expected a diagnostic at {pos}\n{stderr}",
            path.display()
        );
        assert!(
            flat.contains(words.trim()),
            "{}: expected {words:?} in\n{stderr}",
            path.display()
        );
        assert!(stderr.contains("no VM was started"), "{stderr}");
    }
}

#[test]
fn the_scenario_set_is_valid() {
    let dir = common::project("scenarios");
    let out = Command::new(common::bin())
        .arg("check")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
