//! One syntax for a kernel everywhere (`--kernel`, `kernel build`, scenarios, `--kernel-as`,
//! matrix, bisect): `debian:7.3`, `debian:7.2.13`, `debian:7.3~rc`, `tree:PATH`, `git:PATH@REV`,
//! `file:BZIMAGE` (a plain path to a file means `file:`).

use crate::cache::Cache;
use crate::debian::DebianName;
use crate::error::KernelError;
use crate::source::KernelSource;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    Debian(DebianName),
    Tree(PathBuf),
    Git { repo: PathBuf, rev: String },
    File(PathBuf),
}

/// What a spec names once resolved: a source to build, or a kernel built elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Source(KernelSource),
    File(PathBuf),
}

impl KernelSpec {
    /// Whether `s` is written as a spec (a prefix this syntax knows).
    pub fn looks_like(s: &str) -> bool {
        ["debian:", "tree:", "git:", "file:"]
            .iter()
            .any(|p| s.starts_with(p))
    }

    pub fn parse(s: &str) -> Result<KernelSpec, KernelError> {
        let bad = || KernelError::BadSpec(s.to_string());
        if let Some(name) = s.strip_prefix("debian:") {
            return DebianName::parse(name)
                .map(KernelSpec::Debian)
                .ok_or_else(bad);
        }
        if let Some(p) = s.strip_prefix("tree:") {
            return (!p.is_empty())
                .then(|| KernelSpec::Tree(p.into()))
                .ok_or_else(bad);
        }
        if let Some(rest) = s.strip_prefix("git:") {
            let (repo, rev) = match rest.rsplit_once('@') {
                Some((r, v)) if !v.is_empty() => (r, v),
                _ => (rest, "HEAD"),
            };
            return (!repo.is_empty())
                .then(|| KernelSpec::Git {
                    repo: repo.into(),
                    rev: rev.into(),
                })
                .ok_or_else(bad);
        }
        if let Some(p) = s.strip_prefix("file:") {
            return (!p.is_empty())
                .then(|| KernelSpec::File(p.into()))
                .ok_or_else(bad);
        }
        if std::path::Path::new(s).is_file() {
            return Ok(KernelSpec::File(s.into()));
        }
        Err(bad())
    }

    /// The source or file this names now: a Debian name resolved against the archive, a git
    /// revision to its commit.
    pub fn resolve(&self, cache: &Cache) -> Result<Resolved, KernelError> {
        Ok(match self {
            KernelSpec::Debian(n) => Resolved::Source(crate::debian::resolve(n, cache)?),
            KernelSpec::Tree(p) => Resolved::Source(KernelSource::Tree(p.clone())),
            KernelSpec::Git { repo, rev } => Resolved::Source(KernelSource::Git {
                repo: repo.clone(),
                commit: crate::git::resolve(repo, rev)?,
            }),
            KernelSpec::File(p) => Resolved::File(p.clone()),
        })
    }
}

impl std::str::FromStr for KernelSpec {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KernelSpec::parse(s)
    }
}

impl std::fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelSpec::Debian(n) => write!(f, "{n}"),
            KernelSpec::Tree(p) => write!(f, "tree:{}", p.display()),
            KernelSpec::Git { repo, rev } => write!(f, "git:{}@{rev}", repo.display()),
            KernelSpec::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in [
            "debian:7.3",
            "debian:7.2.13",
            "debian:7.3~rc",
            "tree:/src/linux",
            "git:/src/linux@v7.3",
            "file:/k/bzImage",
        ] {
            assert_eq!(KernelSpec::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            KernelSpec::parse("git:/src/linux").unwrap(),
            KernelSpec::Git {
                repo: "/src/linux".into(),
                rev: "HEAD".into()
            }
        );
        for bad in [
            "debian:banana",
            "tree:",
            "nope:x",
            "/no/such/file",
            "git:@x",
        ] {
            assert!(
                matches!(KernelSpec::parse(bad), Err(KernelError::BadSpec(_))),
                "{bad}"
            );
        }
        assert!(KernelSpec::looks_like("debian:7.2") && !KernelSpec::looks_like("magic-unique"));
    }
}
