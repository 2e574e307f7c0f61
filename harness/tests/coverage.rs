//! `luo-harness coverage` on the real gcov kernel: counters read before the kexec and at the end,
//! tracefiles, genhtml's report and the summary, with what the scenarios reach of
//! kernel/liveupdate and what they do not.

mod common;

use serde_json::Value;
use std::process::Command;

#[test]
fn two_scenarios_give_tracefiles_html_and_a_summary_of_the_profiled_files() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("coverage");
    let o = Command::new(common::bin())
        .current_dir(out.path())
        .args(["coverage", "--format", "json", "--out"])
        .arg(&dir)
        .arg(common::project("scenarios/memfd-roundtrip.yaml"))
        .arg(common::project("scenarios/ioctl-faults.yaml"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(&stdout).expect("--format json prints summary.json");
    assert_eq!(
        summary,
        serde_json::from_str::<Value>(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
            .unwrap()
    );
    let kernels = summary["kernels"].as_array().unwrap();
    assert_eq!(
        kernels.len(),
        1,
        "both scenarios ran one gcov kernel: {summary}"
    );
    let files = kernels[0]["files"].as_array().unwrap();
    let file = |name: &str| {
        files
            .iter()
            .find(|f| f["file"] == name)
            .unwrap_or_else(|| panic!("{name} is not in {summary}"))
    };
    for f in [
        "kernel/liveupdate/luo_session.c",
        "kernel/liveupdate/luo_file.c",
        "kernel/liveupdate/luo_core.c",
        "kernel/liveupdate/kexec_handover.c",
        "mm/memfd_luo.c",
    ] {
        let lines = &file(f)["lines"];
        let (hit, total) = (
            lines["hit"].as_u64().unwrap(),
            lines["total"].as_u64().unwrap(),
        );
        assert!(hit > 0 && hit < total && total > 50, "{f}: {lines}");
    }
    // Boot 1's counters are in: retrieving ran only there. The serialization inside
    // reboot(KEXEC) runs after the last read of boot 0's counters: never counted.
    let unreached = |f: &str| -> Vec<String> {
        file(f)["unreached"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let session = unreached("kernel/liveupdate/luo_session.c");
    assert!(
        !session.contains(&"luo_session_retrieve".to_string()),
        "{session:?}"
    );
    assert!(
        session.contains(&"luo_session_serialize".to_string()),
        "{session:?}"
    );
    // ioctl-faults' read-only answers reach the error paths of the ioctls.
    let core = &file("kernel/liveupdate/luo_core.c")["lines"];
    assert!(
        core["hit"].as_u64().unwrap() * 10 > core["total"].as_u64().unwrap() * 7,
        "{core}"
    );
    let info = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "info"))
        .expect("a tracefile");
    let text = std::fs::read_to_string(&info).unwrap();
    let sources = text.lines().filter(|l| l.starts_with("SF:")).count();
    assert_eq!(
        sources,
        files.len(),
        "one record per profiled file, headers left out"
    );
    assert!(
        text.lines().any(|l| l.starts_with("FNDA:")
            && l.ends_with(",luo_session_create")
            && !l.starts_with("FNDA:0,")),
        "the tracefile counts what ran"
    );
    let html = std::fs::read_to_string(dir.join("html/index.html")).unwrap();
    assert!(
        html.contains("kernel/liveupdate"),
        "genhtml's index lists the directory"
    );
    assert!(
        dir.join("html/kernel/liveupdate/luo_session.c.gcov.html")
            .is_file()
    );
}
