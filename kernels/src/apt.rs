//! Fetching a Debian package from a suite the machine does not have configured, without touching the
//! system's apt state: a private sources list, parts dir and lists dir passed with `-o` options, built
//! from the mirror URI the machine already uses.

use crate::error::{IoContext, KernelError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first Debian archive URI among the configured sources (one-line `.list` and deb822 `.sources`),
/// skipping security suites (they live on another path).
pub fn mirror_from_sources(files: &[(PathBuf, String)]) -> Option<String> {
    for (path, text) in files {
        let uri = if path.extension().is_some_and(|e| e == "sources") {
            deb822_uri(text)
        } else {
            one_line_uri(text)
        };
        if let Some(u) = uri {
            return Some(u.trim_end_matches('/').to_string());
        }
    }
    None
}

fn is_debian_archive(uri: &str) -> bool {
    uri.trim_end_matches('/').ends_with("/debian")
}

fn deb822_uri(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let types = field("Types").unwrap_or_default();
        let suites = field("Suites").unwrap_or_default();
        if !enabled || !types.split_whitespace().any(|t| t == "deb") || suites.contains("security")
        {
            continue;
        }
        if let Some(u) = field("URIs").and_then(|u| {
            u.split_whitespace()
                .find(|u| is_debian_archive(u))
                .map(String::from)
        }) {
            return Some(u);
        }
    }
    None
}

fn one_line_uri(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options: skip to the word after the one ending in ']'.
            let mut w = uri;
            while !w.ends_with(']') {
                w = words.next()?;
            }
            uri = words.next()?;
        }
        let suite = words.next()?;
        (is_debian_archive(uri) && !suite.contains("security")).then(|| uri.to_string())
    })
}

/// Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}.
pub fn system_mirror() -> Result<String, KernelError> {
    let mut files = Vec::new();
    let main = PathBuf::from("/etc/apt/sources.list");
    if let Ok(t) = std::fs::read_to_string(&main) {
        files.push((main, t));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "list" || e == "sources")
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                files.push((p, t));
            }
        }
    }
    mirror_from_sources(&files).ok_or_else(|| {
        KernelError::NoMirror(
            files
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })
}

/// A private apt state in `dir` that sees only `suite` of `mirror`.
pub struct PrivateApt {
    dir: PathBuf,
    /// Another Debian architecture than the host's, whose packages this state sees instead.
    arch: Option<String>,
}

impl PrivateApt {
    pub fn new(dir: &Path, mirror: &str, suite: &str) -> Result<Self, KernelError> {
        Self::with_suites(dir, mirror, &[suite])
    }

    pub fn with_suites(dir: &Path, mirror: &str, suites: &[&str]) -> Result<Self, KernelError> {
        std::fs::create_dir_all(dir.join("lists/partial")).at(dir)?;
        std::fs::create_dir_all(dir.join("parts")).at(dir)?;
        std::fs::create_dir_all(dir.join("archives/partial")).at(dir)?;
        let list: String = suites
            .iter()
            .map(|suite| {
                format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} main\n")
            })
            .collect();
        // Rewritten only when it changes, and by a rename: an apt command of another process
        // reading it meanwhile must never see it empty (it then finds no package at all).
        let path = dir.join("sources.list");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(list.as_str()) {
            let tmp = dir.join(format!("sources.list.{}", std::process::id()));
            std::fs::write(&tmp, list).at(&tmp)?;
            std::fs::rename(&tmp, &path).at(&path)?;
        }
        Ok(PrivateApt {
            dir: dir.to_path_buf(),
            arch: None,
        })
    }

    /// The same state seeing the packages of Debian architecture `arch` (`arm64`), for
    /// downloading them: nothing is installed through it.
    pub fn for_architecture(mut self, arch: &str) -> Self {
        self.arch = Some(arch.to_string());
        self
    }

    /// The `-o` options that redirect every piece of apt state apt-get would read or write.
    pub fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        let mut o = vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            format!("-oDir::Etc::SourceParts={d}/parts"),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache::Archives={d}/archives"),
            "-oDir::Cache::pkgcache=".into(),
            "-oDir::Cache::srcpkgcache=".into(),
            // Downloads land in a root-owned private dir; the _apt sandbox user could not write there.
            "-oAPT::Sandbox::User=root".into(),
            // sid's Release on the mirror is past its Valid-Until; the signature is still checked.
            "-oAcquire::Check-Valid-Until=false".into(),
            "-qq".into(),
        ];
        if let Some(a) = &self.arch {
            o.push(format!("-oAPT::Architecture={a}"));
            o.push(format!("-oAPT::Architectures={a}"));
        }
        o
    }

    /// `apt-cache madison PACKAGE`: every version the suites have, with its suite.
    pub fn madison(&self, package: &str) -> Result<String, KernelError> {
        let mut cmd = Command::new("apt-cache");
        cmd.args(self.options()).arg("madison").arg(package);
        let out = cmd.output().map_err(|e| KernelError::Command {
            command: format!("{cmd:?}"),
            status: e.to_string(),
            output: String::new(),
        })?;
        // madison exits 0 for an unknown package; anything else is apt failing, not an answer.
        if !out.status.success() {
            return Err(KernelError::Command {
                command: format!("{cmd:?}"),
                status: out.status.to_string(),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn update(&self) -> Result<(), KernelError> {
        run(Command::new("apt-get").args(self.options()).arg("update"))
    }

    /// Downloads `package=version` into `dest` and returns the .deb path.
    pub fn download(
        &self,
        package: &str,
        version: &str,
        dest: &Path,
    ) -> Result<PathBuf, KernelError> {
        std::fs::create_dir_all(dest).at(dest)?;
        run(Command::new("apt-get")
            .current_dir(dest)
            .args(self.options())
            .arg("download")
            .arg(format!("{package}={version}")))?;
        let found = std::fs::read_dir(dest)
            .at(dest)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "deb")
                    && p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(package)
            });
        found.ok_or_else(|| KernelError::Command {
            command: format!("apt-get download {package}={version}"),
            status: "no .deb produced".into(),
            output: String::new(),
        })
    }
}

pub(crate) fn run(cmd: &mut Command) -> Result<(), KernelError> {
    tracing::debug!(?cmd, "running");
    let out = cmd.output().map_err(|e| KernelError::Command {
        command: format!("{cmd:?}"),
        status: e.to_string(),
        output: String::new(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(KernelError::Command {
        command: format!("{cmd:?}"),
        status: out.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    #[test]
    fn deb822_skips_security_and_disabled_stanzas() {
        let text = "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                    Types: deb\nURIs: http://old.example/debian\nSuites: bookworm\nEnabled: no\n\n\
                    Types: deb deb-src\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n";
        let f = files(&[("/etc/apt/sources.list.d/debian.sources", text)]);
        assert_eq!(
            mirror_from_sources(&f).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn one_line_format_with_options_and_comments() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb http://sec.example/debian bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] https://m.example/debian bookworm main contrib\n";
        let f = files(&[("/etc/apt/sources.list", text)]);
        assert_eq!(
            mirror_from_sources(&f).as_deref(),
            Some("https://m.example/debian")
        );
    }

    #[test]
    fn non_debian_repositories_are_ignored() {
        let f = files(&[
            (
                "/etc/apt/sources.list.d/node.sources",
                "Types: deb\nURIs: https://deb.nodes.example/node_20.x\nSuites: nodistro\n",
            ),
            (
                "/etc/apt/sources.list.d/x.list",
                "deb https://packages.example/apt cloud-sdk main\n",
            ),
        ]);
        assert_eq!(mirror_from_sources(&f), None);
    }

    #[test]
    fn first_matching_file_wins() {
        let f = files(&[
            (
                "/etc/apt/sources.list",
                "deb http://a.example/debian bookworm main\n",
            ),
            (
                "/etc/apt/sources.list.d/b.sources",
                "Types: deb\nURIs: http://b.example/debian\nSuites: bookworm\n",
            ),
        ]);
        assert_eq!(
            mirror_from_sources(&f).as_deref(),
            Some("http://a.example/debian")
        );
    }
}
