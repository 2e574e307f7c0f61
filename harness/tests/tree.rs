//! `run --tree T` builds everything from T: its kernel and the selftests its scenarios run. T here is
//! a hard-linked copy of the Debian source with one selftest replaced by a new file (never written
//! through a link), so its kernel comes from the objects the Debian build left (one staged tree per
//! kernel family: one file differs, nothing is compiled cold).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const SELFTEST: &str = "tools/testing/selftests/liveupdate/luo_kexec_simple.c";

fn debian_source() -> PathBuf {
    common::debian_7_3_source(SELFTEST)
}

fn run(args: &[&str], out: &Path) -> (Option<i32>, String, String) {
    let o = common::building()
        .env("COLUMNS", "200")
        .arg("run")
        .arg("--out")
        .arg(out)
        .args(args)
        .arg(common::project("harness/tests/fixtures/tree-selftest.yaml"))
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_tree_runs_its_own_selftest_and_builds_from_the_objects_at_hand() {
    let src = debian_source();
    let original = std::fs::read_to_string(src.join(SELFTEST)).unwrap();
    assert!(
        original.contains("SIMPLE KEXEC TEST PASSED"),
        "the Debian selftest's line"
    );
    // On the cache's filesystem, so the copy can be made of links.
    let base = tempfile::tempdir_in(luo_kernels::Cache::from_env().root()).unwrap();
    let tree = base.path().join("linux");
    let cp = Command::new("cp")
        .arg("-al")
        .arg(&src)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(cp.success(), "cp -al");
    let file = tree.join(SELFTEST);
    std::fs::remove_file(&file).unwrap(); // a new file, not a write through the link
    std::fs::write(
        &file,
        original.replace("SIMPLE KEXEC TEST PASSED", "TREE COPY KEXEC TEST PASSED"),
    )
    .unwrap();

    // What the family's staged tree holds is whatever was built last (a bisect's commit, say):
    // what differs from it, and only that, is staged and recompiled.
    let staged_src = luo_kernels::Cache::from_env()
        .staging_dir("linux-7.3")
        .join("src");
    let differing = Command::new("diff")
        .args(["-rq", "--no-dereference"])
        .arg(&tree)
        .arg(&staged_src)
        .output()
        .unwrap();
    let differing = String::from_utf8_lossy(&differing.stdout).lines().count();

    let out = base.path().join("reports");
    let (code, stdout, stderr) = run(&["--tree", tree.to_str().unwrap()], &out);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    let staged = stderr
        .lines()
        .find(|l| l.contains("files differ from what linux-7.3's tree held"))
        .unwrap_or_else(|| panic!("the tree was staged incrementally:\n{stderr}"));
    let changed: usize = staged
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        changed <= differing,
        "only the {differing} files that differ from the staged tree should be staged: {staged}"
    );
    assert_eq!(
        std::fs::read_to_string(src.join(SELFTEST)).unwrap(),
        original,
        "the Debian source must not change through the links"
    );
    let report = std::fs::read_to_string(out.join("tree-selftest.report.yaml")).unwrap();
    assert!(
        report.contains(&format!("source: \"tree:{}", tree.display()))
            || report.contains(&format!("source: tree:{}", tree.display())),
        "{report}"
    );

    // The same scenario on Debian's own source cannot pass: the check is real.
    let (code, stdout, _) = run(&[], &out);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("did not print \"TREE COPY KEXEC TEST PASSED\""),
        "{stdout}"
    );
    for d in stdout.lines().filter_map(|l| l.strip_prefix("artifacts: ")) {
        let _ = std::fs::remove_dir_all(d);
    }
}
