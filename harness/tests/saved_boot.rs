//! Starting from a saved booted VM (vm/saved.rs, guest/start.rs) on the real default kernel: a
//! scenario restored and the same scenario with `--cold-boot` give the same report, and a saved
//! VM that will not load is dropped and the run boots instead, passing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: Option<i32>,
    all: String,
    report: String,
    metrics: serde_json::Value,
}

/// `luo-harness run scenarios/memfd-roundtrip.yaml` with `extra` arguments, in `cache` when
/// given (a cache of its own, so this test's saved VMs are nobody else's).
fn run(extra: &[&str], env: &[(&str, &Path)]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(common::bin())
        .arg("run")
        .arg(common::project("scenarios/memfd-roundtrip.yaml"))
        .arg("--out")
        .arg(out.path())
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .env("RUST_LOG", "luo_harness=info")
        .output()
        .unwrap();
    let all = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap_or_default();
    Run {
        code: o.status.code(),
        report: read("memfd-roundtrip.report.yaml"),
        metrics: serde_json::from_str(&read("memfd-roundtrip.metrics.json"))
            .unwrap_or(serde_json::Value::Null),
        all,
    }
}

fn first_boot(r: &Run) -> &str {
    r.metrics["first_boot"].as_str().unwrap_or("")
}

/// The report without the kernel's release lines, which the snapshots leave out too.
fn comparable(report: &str) -> String {
    report
        .lines()
        .filter(|l| !l.trim_start().starts_with("release:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_restored_scenario_reports_what_a_cold_booted_one_does() {
    let restored_first = run(&[], &[]);
    assert_eq!(restored_first.code, Some(0), "{}", restored_first.all);
    let restored = run(&[], &[]);
    assert_eq!(restored.code, Some(0), "{}", restored.all);
    assert!(
        first_boot(&restored).starts_with("restored "),
        "the second run finds the saved VM: {}",
        restored.metrics
    );
    let cold = run(&["--cold-boot"], &[]);
    assert_eq!(cold.code, Some(0), "{}", cold.all);
    assert_eq!(
        first_boot(&cold),
        "cold (a cold boot was asked for)",
        "{}",
        cold.metrics
    );
    assert!(!restored.report.is_empty());
    assert_eq!(
        comparable(&restored.report),
        comparable(&cold.report),
        "the same scenario, restored and booted"
    );
}

#[test]
fn a_saved_vm_that_does_not_load_is_dropped_and_the_run_boots() {
    // A cache of its own that borrows the shared one's kernels and images: the saved VMs made
    // here are this test's alone.
    let shared = luo_kernels::Cache::from_env();
    let cache = tempfile::tempdir().unwrap();
    if let Ok(rd) = std::fs::read_dir(shared.root()) {
        for e in rd.flatten() {
            if !["booted", "locks"].contains(&e.file_name().to_string_lossy().as_ref()) {
                std::os::unix::fs::symlink(e.path(), cache.path().join(e.file_name())).unwrap();
            }
        }
    }
    let env = [("LUO_HARNESS_CACHE", cache.path())];
    let first = run(&[], &env);
    assert_eq!(first.code, Some(0), "{}", first.all);
    assert!(
        first.all.contains("saved a booted VM"),
        "an empty cache saves one: {}",
        first.all
    );
    let states = saved_states(&cache.path().join("booted"));
    assert_eq!(states.len(), 1, "{states:?}");
    let key = states[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(first_boot(&first), format!("restored {key}"));

    // Half a state: QEMU refuses it, the run boots and passes, and a good state replaces it.
    let f = std::fs::File::options()
        .write(true)
        .open(&states[0])
        .unwrap();
    f.set_len(4096).unwrap();
    drop(f);
    let damaged = run(&[], &env);
    assert_eq!(damaged.code, Some(0), "{}", damaged.all);
    assert!(
        damaged.all.contains("saved VM not loaded; booting cold"),
        "{}",
        damaged.all
    );
    assert_eq!(first_boot(&damaged), "cold (the saved VM did not load)");
    let again = run(&[], &env);
    assert_eq!(again.code, Some(0), "{}", again.all);
    assert!(again.all.contains("saved a booted VM"), "{}", again.all);
    assert_eq!(first_boot(&again), format!("restored {key}"));
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("booted"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no half-written state is left: {leftovers:?}"
    );
}

fn saved_states(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "vm"))
                .collect()
        })
        .unwrap_or_default()
}
