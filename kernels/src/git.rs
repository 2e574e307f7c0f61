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

/// A clone of `repo` in the cache sharing its objects, created once; `bare` for bisecting.
pub fn shared_clone(
    cache: &Cache,
    repo: &Path,
    purpose: &str,
    bare: bool,
) -> Result<PathBuf, KernelError> {
    let top = top(repo);
    let id = hex::encode(&Sha256::digest(top.display().to_string().as_bytes())[..8]);
    let dir = cache.root().join("git").join(format!("{purpose}-{id}"));
    if !dir.join(if bare { "HEAD" } else { ".git" }).exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.parent().unwrap()).at(&dir)?;
        let mut c = command();
        c.args(["clone", "--quiet", "--shared", "--no-checkout"]);
        if bare {
            c.arg("--bare");
        }
        let out = c.arg(&top).arg(&dir).output().at(&dir)?;
        if !out.status.success() {
            return Err(KernelError::Git {
                repo: top,
                message: format!(
                    "git clone --shared: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
    }
    Ok(dir)
}

/// A working tree of `commit`: the cache's clone of `repo`, checked out there (only the files
/// that differ from what it held are rewritten).
pub fn checkout(cache: &Cache, repo: &Path, commit: &str) -> Result<PathBuf, KernelError> {
    let _lock = cache.lock("git-checkout")?;
    let dir = shared_clone(cache, repo, "src", false)?;
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
}
