//! Where kernel source comes from: Debian's `linux-source-*` package (default) or a user's tree.

use crate::apt;
use crate::cache::Cache;
use crate::error::{IoContext, KernelError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_PACKAGE: &str = "linux-source-7.3";
pub const DEFAULT_VERSION: &str = "7.3.4-1~bpo13+1";
pub const DEFAULT_SUITE: &str = "trixie-backports";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    Debian {
        package: String,
        version: String,
        suite: String,
    },
    /// A user's tree as it is, built out of tree (O=) so it stays clean.
    Tree(PathBuf),
    /// A commit of a git repository, checked out in a clone in the cache (the repository itself,
    /// `.git` included, is only read).
    Git { repo: PathBuf, commit: String },
}

impl Default for KernelSource {
    fn default() -> Self {
        KernelSource::Debian {
            package: DEFAULT_PACKAGE.into(),
            version: DEFAULT_VERSION.into(),
            suite: DEFAULT_SUITE.into(),
        }
    }
}

impl KernelSource {
    /// Names the place the source lives; one build directory per location and variant.
    pub fn location(&self) -> String {
        match self {
            KernelSource::Debian {
                package, version, ..
            } => format!("debian:{package}={version}"),
            KernelSource::Tree(p) => format!("tree:{}", canonical(p).display()),
            KernelSource::Git { repo, commit } => {
                format!("git:{}@{commit}", canonical(repo).display())
            }
        }
    }

    /// The content identity for cache keys: the package version; for a tree, git HEAD plus the
    /// uncommitted change, or (outside git) the name, size and mtime of every file that is staged.
    pub fn identity(&self) -> Result<String, KernelError> {
        match self {
            KernelSource::Debian { .. } => Ok(self.location()),
            KernelSource::Tree(p) => match git_identity(p) {
                Some(id) => Ok(id),
                None => stat_identity(p),
            },
            // The commit's content, not its name: the same tree is the same kernel.
            KernelSource::Git { repo, commit } => {
                Ok(format!("git-tree:{}", crate::git::tree_of(repo, commit)?))
            }
        }
    }

    /// Whether the harness owns the files (an unpacked package in the cache): only then may the
    /// staged tree hard-link them.
    pub fn is_owned(&self) -> bool {
        matches!(self, KernelSource::Debian { .. })
    }

    /// A directory holding the pristine source, fetching and unpacking it first where needed.
    pub fn fetch(&self, cache: &Cache) -> Result<PathBuf, KernelError> {
        match self {
            KernelSource::Tree(p) => {
                let p = canonical(p);
                if !p.join("Makefile").is_file() || !p.join("Kconfig").is_file() {
                    return Err(KernelError::NotATree(p));
                }
                Ok(p)
            }
            KernelSource::Debian {
                package,
                version,
                suite,
            } => unpack_debian(cache, package, version, suite),
            KernelSource::Git { repo, commit } => crate::git::checkout(cache, repo, commit),
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// HEAD plus a hash of the uncommitted change (tracked diff and untracked files' contents).
fn git_identity(tree: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<Vec<u8>> {
        let out = crate::git::command()
            .arg("-C")
            .arg(tree)
            .args(args)
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let mut h = Sha256::new();
    h.update(&head);
    h.update(git(&["diff", "HEAD", "--binary"]).unwrap_or_default());
    let untracked = git(&["ls-files", "--others", "--exclude-standard", "-z"]).unwrap_or_default();
    for name in untracked.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let path = tree.join(String::from_utf8_lossy(name).as_ref());
        h.update(name);
        h.update(std::fs::read(&path).unwrap_or_default());
    }
    Some(format!(
        "tree:{}@{}",
        canonical(tree).display(),
        hex::encode(h.finalize())
    ))
}

/// For a tree outside git: every staged file's path, size and mtime (a stat of each, no reads).
fn stat_identity(tree: &Path) -> Result<String, KernelError> {
    use std::os::unix::fs::MetadataExt;
    let tree = canonical(tree);
    let mut h = Sha256::new();
    crate::staging::walk(&tree, &mut |rel, _, m| {
        h.update(rel.as_bytes());
        h.update(m.size().to_le_bytes());
        h.update(m.mtime().to_le_bytes());
        h.update(m.mtime_nsec().to_le_bytes());
        Ok(())
    })?;
    Ok(format!(
        "tree:{}#{}",
        tree.display(),
        hex::encode(h.finalize())
    ))
}

/// Downloads the package through a private apt state and unpacks its tarball once into the cache.
fn unpack_debian(
    cache: &Cache,
    package: &str,
    version: &str,
    suite: &str,
) -> Result<PathBuf, KernelError> {
    let dest = cache.sources_dir().join(format!("{package}_{version}"));
    let done = dest.join(".luo-harness-unpacked");
    let ready = || done.exists().then(|| dest.clone());
    cache.get_or_make(&format!("source-{package}_{version}"), ready, || {
        fetch_debian(cache, package, version, suite, &dest)?;
        Ok(dest.clone())
    })
}

/// Downloads and unpacks the package's tarball into `dest`, through a directory of its own
/// renamed into place.
fn fetch_debian(
    cache: &Cache,
    package: &str,
    version: &str,
    suite: &str,
    dest: &Path,
) -> Result<(), KernelError> {
    crate::hosttools::require(crate::hosttools::DEBIAN_SOURCE)?;
    tracing::info!(package, version, suite, "fetching kernel source");
    let tmp = cache
        .sources_dir()
        .join(format!(".tmp-{package}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    let deb = crate::debian::download(cache, package, version, &tmp.join("deb"))?;
    // The .deb carries usr/src/<package>.tar.xz; unpack that without installing anything.
    let sh = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards '*.tar.*' && tar -x -C '{}' -f '{}'/usr/src/*.tar.*",
        deb.display(),
        tmp.display(),
        tmp.display(),
        tmp.display()
    );
    apt::run(Command::new("sh").arg("-c").arg(sh))?;
    let unpacked = std::fs::read_dir(&tmp)
        .at(&tmp)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("Makefile").is_file())
        .ok_or_else(|| KernelError::NotATree(tmp.clone()))?;
    std::fs::write(
        unpacked.join(".luo-harness-unpacked"),
        format!("{package}={version}\n"),
    )
    .at(&unpacked)?;
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&unpacked, dest).at(dest)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
