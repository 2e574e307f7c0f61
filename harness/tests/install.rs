//! `cargo install --path harness` gives a binary that sets up and runs the scenarios from any
//! directory: the agent, fragments and variants are inside it, nothing is read from or built in the
//! checkout at run time. (Built with the dev profile in the workspace's target directory so the
//! test reuses what the test build compiled; `--release` differs only in optimisation.)

mod common;

use std::process::Command;

#[test]
fn an_installed_binary_runs_the_scenario_set_from_another_directory() {
    let root = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args(["install", "--offline", "--locked", "--debug", "--path"])
        .arg(common::project("harness"))
        .arg("--target-dir")
        .arg(common::project("target"))
        .arg("--root")
        .arg(root.path())
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo install:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let o = Command::new(root.path().join("bin/luo-harness"))
        .current_dir(elsewhere.path())
        .env_remove("LUO_HARNESS_AGENT")
        .env("COLUMNS", "200")
        .arg("run")
        .arg(common::project("scenarios"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let n = std::fs::read_dir(common::project("scenarios"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert!(
        stdout.contains(&format!("{n} passed, 0 failed")),
        "{stdout}"
    );
    assert!(
        elsewhere.path().join("luo-reports").is_dir(),
        "reports land in the working directory"
    );
}
