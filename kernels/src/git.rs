//! Commits of a user's git repository as kernel sources. The repository is only read: commits are
//! checked out in a clone in the cache made with `git clone --shared` (its objects are the user's,
//! reached through alternates), so nothing in the user's repository, `.git` included, is written.

use crate::cache::Cache;
use crate::error::{IoContext, KernelError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a git run by another git (`git bisect run`, a hook) inherits and must not follow: it
/// names that git's repository, not the one `-C` names.
pub const INHERITED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_PREFIX",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
];

/// `git` for `repo` alone, whatever the environment says.
pub fn command() -> Command {
    let mut c = Command::new("git");
    for v in INHERITED {
        c.env_remove(v);
    }
    // No opportunistic index refresh: a user's repository is only read.
    c.env("GIT_OPTIONAL_LOCKS", "0");
    c
}

fn git(repo: &Path, args: &[&str]) -> Result<String, KernelError> {
    let out = command()
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| KernelError::Git {
            repo: repo.into(),
            message: format!("running git: {e}"),
        })?;
    if !out.status.success() {
        return Err(KernelError::Git {
            repo: repo.into(),
            message: format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The full hash of the commit `rev` names in `repo`.
pub fn resolve(repo: &Path, rev: &str) -> Result<String, KernelError> {
    git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| KernelError::Git {
        repo: repo.into(),
        message: format!("no commit {rev:?} in this repository"),
    })
}

/// The hash of `commit`'s tree: what the commit holds, whatever it is called.
pub fn tree_of(repo: &Path, commit: &str) -> Result<String, KernelError> {
    git(repo, &["rev-parse", &format!("{commit}^{{tree}}")])
}

/// `git show -s` of a commit: hash, subject, author, date.
pub fn describe(repo: &Path, commit: &str) -> Result<String, KernelError> {
    git(
        repo,
        &[
            "show",
            "-s",
            "--format=%H %s%nAuthor: %an <%ae>%nDate:   %ad",
            commit,
        ],
    )
}

/// The repository's own directory (the one holding `.git`, or a bare repository).
fn top(repo: &Path) -> PathBuf {
    std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf())
}

fn clones_dir(cache: &Cache) -> PathBuf {
    cache.root().join("git")
}

fn clone_shared(repo: &Path, dir: &Path, bare: bool) -> Result<(), KernelError> {
    std::fs::create_dir_all(dir.parent().unwrap()).at(dir)?;
    let mut c = command();
    c.args(["clone", "--quiet", "--shared", "--no-checkout"]);
    if bare {
        c.arg("--bare");
    }
    let out = c.arg(repo).arg(dir).output().at(dir)?;
    if !out.status.success() {
        return Err(KernelError::Git {
            repo: repo.into(),
            message: format!(
                "git clone --shared: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// The working-tree clone of `repo` in the cache, created once and kept for the next commit of
/// the same repository.
fn source_clone(cache: &Cache, repo: &Path) -> Result<PathBuf, KernelError> {
    let top = top(repo);
    let id = hex::encode(&Sha256::digest(top.display().to_string().as_bytes())[..8]);
    let dir = clones_dir(cache).join(format!("{SOURCE}-{id}"));
    if !dir.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        clone_shared(&top, &dir, false)?;
    }
    Ok(dir)
}

const SOURCE: &str = "src";
const SCRATCH: &str = "bisect";

/// Removes the clones nobody can use again, so that the cache does not grow by a kernel tree for
/// every repository ever named (a test's repository in a temporary directory is one per run):
/// a source clone whose repository's objects are gone (its alternates name a path that no longer
/// exists), and a scratch clone whose process has ended without removing it (killed).
fn sweep(cache: &Cache) {
    let Ok(entries) = std::fs::read_dir(clones_dir(cache)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let dir = e.path();
        let dead = if name.starts_with(&format!("{SOURCE}-")) {
            match std::fs::read_to_string(dir.join(".git/objects/info/alternates")) {
                Ok(a) => a
                    .lines()
                    .any(|l| !l.trim().is_empty() && !Path::new(l.trim()).exists()),
                // A clone interrupted before git wrote its alternates is redone anyway.
                Err(_) => true,
            }
        } else if let Some(pid) = name.strip_prefix(&format!("{SCRATCH}-")) {
            pid.parse::<u32>()
                .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        } else {
            false
        };
        if dead {
            tracing::debug!(clone = %dir.display(), "removing a clone nobody can use");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// [`sweep`] under the lock the clones are made under: for `setup`, so that a cache grown by
/// earlier runs is tidied before anything is built into it.
pub fn sweep_clones(cache: &Cache) -> Result<(), KernelError> {
    let _lock = cache.lock("git-checkout")?;
    sweep(cache);
    Ok(())
}

/// A bare clone of a repository for one process's use (a `git bisect` that must not touch the
/// user's refs), removed when dropped; one left by a killed process is removed by the next sweep.
pub struct ScratchClone {
    dir: PathBuf,
}

impl ScratchClone {
    pub fn new(cache: &Cache, repo: &Path) -> Result<ScratchClone, KernelError> {
        {
            let _lock = cache.lock("git-checkout")?;
            sweep(cache);
        }
        let dir = clones_dir(cache).join(format!("{SCRATCH}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        clone_shared(&top(repo), &dir, true)?;
        Ok(ScratchClone { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchClone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A working tree of `commit`: the cache's clone of `repo`, checked out there (only the files
/// that differ from what it held are rewritten).
pub fn checkout(cache: &Cache, repo: &Path, commit: &str) -> Result<PathBuf, KernelError> {
    let _lock = cache.lock("git-checkout")?;
    sweep(cache);
    let dir = source_clone(cache, repo)?;
    git(
        &dir,
        &["checkout", "--quiet", "--force", "--detach", commit],
    )?;
    git(&dir, &["clean", "--quiet", "-fdx"])?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with_two_commits() -> (tempfile::TempDir, String, String) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().to_path_buf();
        let g = |args: &[&str]| {
            let o = Command::new("git")
                .arg("-C")
                .arg(&r)
                .args(args)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        g(&["init", "-q"]);
        std::fs::write(r.join("Makefile"), "VERSION = 7\nPATCHLEVEL = 3\n").unwrap();
        g(&["add", "."]);
        g(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "one",
        ]);
        let first = g(&["rev-parse", "HEAD"]);
        std::fs::write(r.join("f.c"), "int x;\n").unwrap();
        g(&["add", "."]);
        g(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "two",
        ]);
        let second = g(&["rev-parse", "HEAD"]);
        (d, first, second)
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        for e in walkdir(dir) {
            v.push((
                e.display().to_string(),
                std::fs::read(&e).unwrap_or_default(),
            ));
        }
        v.sort();
        v
    }

    fn walkdir(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn commits_are_checked_out_in_the_cache_and_the_repository_is_left_as_it_was() {
        let (repo, first, second) = repo_with_two_commits();
        let before = snapshot(repo.path());
        assert_eq!(resolve(repo.path(), "HEAD~1").unwrap(), first);
        assert!(resolve(repo.path(), "no-such-rev").is_err());
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(cache_dir.path());
        let tree = checkout(&cache, repo.path(), &first).unwrap();
        assert!(!tree.join("f.c").exists());
        let tree2 = checkout(&cache, repo.path(), &second).unwrap();
        assert_eq!(tree, tree2, "one clone per repository");
        assert!(tree.join("f.c").is_file());
        assert_ne!(
            tree_of(repo.path(), &first).unwrap(),
            tree_of(repo.path(), &second).unwrap()
        );
        assert_eq!(
            snapshot(repo.path()),
            before,
            "nothing in the repository, .git included, changed"
        );
    }

    #[test]
    fn clones_of_vanished_repositories_and_of_ended_processes_are_swept_and_live_ones_kept() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(cache_dir.path());
        let (gone, first, _) = repo_with_two_commits();
        let gone_clone = checkout(&cache, gone.path(), &first).unwrap();
        drop(gone);
        let ended = clones_dir(&cache).join(format!("{SCRATCH}-{}", u32::MAX));
        std::fs::create_dir_all(&ended).unwrap();
        let (live, first, _) = repo_with_two_commits();
        let scratch = ScratchClone::new(&cache, live.path()).unwrap();
        assert!(scratch.path().join("HEAD").is_file());
        assert!(!gone_clone.exists(), "its repository's objects are gone");
        assert!(!ended.exists(), "no process has that id");
        let live_clone = checkout(&cache, live.path(), &first).unwrap();
        assert!(scratch.path().exists(), "this process is alive");
        let kept = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!kept.exists(), "dropping removes it");
        checkout(&cache, live.path(), &first).unwrap();
        assert!(
            live_clone.join(".git").exists(),
            "a live repository's clone stays"
        );
    }
}
