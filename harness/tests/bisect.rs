//! `luo-harness bisect` on a real history: the Debian 7.3.4 source as a first commit, then eight
//! commits: harmless ones (documentation, comments in kernel/liveupdate), one that does not build,
//! one that breaks retrieving a session after kexec. The bisect must skip the one that does not
//! build, name the breaking one, and leave the repository exactly as it was. And `bisect --metric`
//! on a short history where one commit costs a kilobyte more per session: it names that commit
//! with both distributions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const SESSION: &str = "kernel/liveupdate/luo_session.c";
const CORE: &str = "kernel/liveupdate/luo_core.c";
const DOC: &str = "Documentation/core-api/liveupdate.rst";

fn debian_source() -> PathBuf {
    common::debian_7_3_source(SESSION)
}

fn git(repo: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.org",
            "-c",
            "core.compression=1",
            "-c",
            "gc.auto=0",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Replaces `rel` with new content: a new file, never a write through the link to the Debian tree.
fn rewrite(repo: &Path, rel: &str, edit: impl FnOnce(String) -> String) {
    let p = repo.join(rel);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, edit(text)).unwrap();
}

fn commit(repo: &Path, message: &str) -> String {
    git(repo, &["commit", "-qam", message]);
    git(repo, &["rev-parse", "HEAD"])
}

/// Every file's content and the repository's own state, to compare before and after.
fn fingerprint(repo: &Path) -> String {
    let status = git(repo, &["status", "--porcelain", "--ignored"]);
    let head = git(repo, &["rev-parse", "HEAD"]);
    let refs = git(repo, &["for-each-ref"]);
    let index = std::fs::metadata(repo.join(".git/index"))
        .map(|m| m.len())
        .unwrap_or(0);
    let bisect = repo.join(".git/BISECT_LOG").exists();
    format!("{status}\n{head}\n{refs}\n{index}\n{bisect}")
}

#[test]
fn bisect_skips_the_commit_that_does_not_build_and_names_the_one_that_breaks_live_update() {
    let original = std::fs::read_to_string(debian_source().join(SESSION)).unwrap();
    let base = tempfile::tempdir_in(luo_kernels::Cache::from_env().root()).unwrap();
    let (repo, good) = debian_repo(base.path());
    let mut commits = vec![];
    rewrite(&repo, DOC, |t| t + "\nA harmless line of documentation.\n");
    commits.push(commit(&repo, "docs: liveupdate: a harmless line"));
    rewrite(&repo, CORE, |t| t + "\n/* A harmless comment. */\n");
    commits.push(commit(
        &repo,
        "liveupdate: a harmless comment in luo_core.c",
    ));
    rewrite(&repo, DOC, |t| t + "\nAnother harmless line.\n");
    commits.push(commit(&repo, "docs: liveupdate: another harmless line"));
    rewrite(&repo, SESSION, |t| t + "\nthis does not compile;\n");
    commits.push(commit(&repo, "liveupdate: a change that does not build"));
    rewrite(&repo, SESSION, |_| original.clone());
    commits.push(commit(&repo, "liveupdate: build again"));
    let needle = "if (!strncmp(it->name, name, sizeof(it->name))) {";
    assert!(
        original.contains(needle),
        "the retrieve lookup this test breaks"
    );
    rewrite(&repo, SESSION, |t| {
        t.replace(
            needle,
            "if (!strncmp(it->name + 1, name, sizeof(it->name) - 1)) {",
        )
    });
    commits.push(commit(
        &repo,
        "liveupdate: compare session names from the second byte",
    ));
    rewrite(&repo, DOC, |t| t + "\nA third harmless line.\n");
    commits.push(commit(&repo, "docs: liveupdate: a third harmless line"));
    rewrite(&repo, CORE, |t| t + "\n/* Another harmless comment. */\n");
    commits.push(commit(&repo, "liveupdate: another harmless comment"));
    let (broken_build, breaking) = (&commits[3], &commits[5]);
    let before = fingerprint(&repo);

    let out = base.path().join("bisect");
    let o = common::building()
        .env("COLUMNS", "200")
        .args(["bisect", "--good", &good, "--bad", "HEAD", "--tree"])
        .arg(&repo)
        .arg("--out")
        .arg(&out)
        .arg(common::project("scenarios/memfd-roundtrip.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let run_log = std::fs::read_to_string(out.join("bisect-run.log")).unwrap_or_default();
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}\nrun log:\n{run_log}"
    );
    assert!(
        stdout.contains(&format!(
            "first bad commit: {breaking} liveupdate: compare session names from the second byte"
        )),
        "{stdout}\n{run_log}"
    );
    assert!(
        stdout.contains("Author: Tester <tester@example.org>"),
        "{stdout}"
    );
    assert!(
        stdout.contains("memfd-roundtrip: FAIL") && stdout.contains("retrieve_session"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(out.join("bisect.log")).unwrap();
    assert!(
        log.contains(&format!("# skip: [{broken_build}]")),
        "the commit that does not build is skipped:\n{log}"
    );
    assert!(
        stdout.contains(&format!("skipped (could not be tested): {broken_build}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("--- the report, last good commit against the first bad ---"),
        "{stdout}"
    );
    assert_eq!(
        fingerprint(&repo),
        before,
        "the repository must be exactly as it was"
    );
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), commits[7]);
}

/// The Debian source as a git repository of one commit, in a directory removed with `base`.
fn debian_repo(base: &Path) -> (PathBuf, String) {
    let repo = base.join("linux");
    assert!(
        Command::new("cp")
            .arg("-al")
            .arg(debian_source())
            .arg(&repo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::remove_file(repo.join(".luo-harness-unpacked")).ok();
    git(&repo, &["init", "-q"]);
    // Debian's tree ignores everything at its top level (its .gitignore ends in `/*`).
    git(&repo, &["add", "--force", "-A"]);
    git(&repo, &["commit", "-qm", "Linux 7.3.4 (Debian)"]);
    let good = git(&repo, &["rev-parse", "HEAD"]);
    (repo, good)
}

#[test]
fn bisect_on_a_figure_names_the_commit_that_made_sessions_bigger() {
    let base = tempfile::tempdir_in(luo_kernels::Cache::from_env().root()).unwrap();
    let (repo, good) = debian_repo(base.path());
    rewrite(&repo, DOC, |t| t + "\nA harmless line of documentation.\n");
    commit(&repo, "docs: liveupdate: a harmless line");
    let alloc = "struct luo_session *session = kzalloc_obj(*session);";
    rewrite(&repo, SESSION, |t| {
        assert!(t.contains(alloc), "the allocation this test enlarges");
        t.replace(
            alloc,
            "struct luo_session *session = kzalloc(sizeof(*session) + 1024, GFP_KERNEL);",
        )
    });
    let fat = commit(&repo, "liveupdate: a kilobyte more for every session");
    rewrite(&repo, CORE, |t| t + "\n/* A harmless comment. */\n");
    commit(&repo, "liveupdate: a harmless comment in luo_core.c");

    let out = base.path().join("bisect");
    let o = common::building()
        .env("COLUMNS", "200")
        .args(["bisect", "--good", &good, "--bad", "HEAD", "--tree"])
        .arg(&repo)
        .arg("--out")
        .arg(&out)
        .args(["--metric", "slab_bytes_per_session", "--threshold", "20"])
        .args(["--sessions", "100", "--runs", "6"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let run_log = std::fs::read_to_string(out.join("bisect-run.log")).unwrap_or_default();
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}\nrun log:\n{run_log}");
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(
        stdout.contains(&format!(
            "first bad commit: {fat} liveupdate: a kilobyte more for every session"
        )),
        "{all}"
    );
    // Both distributions: six runs of each, the first bad's median at least a kilobyte above.
    let medians: Vec<f64> = stdout
        .lines()
        .filter(|l| l.starts_with("slab_bytes_per_session at N=100 (B)"))
        .map(|l| {
            let m = l.split("median ").nth(1).unwrap();
            assert_eq!(
                l.split('[').nth(1).unwrap().split_whitespace().count(),
                6,
                "{l}"
            );
            m.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(medians.len(), 2, "{all}");
    assert!(medians[1] - medians[0] >= 1024.0, "{medians:?}");
}
