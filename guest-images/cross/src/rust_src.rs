//! The standard library's sources for `-Zbuild-std`: Debian's `rust-src` of the installed rustc's
//! version, fetched through a private apt state (the system's sources are never touched) and
//! placed where rustup's rust-src component would be.

use crate::{CrossError, io, run};
use luo_kernels::apt::{PrivateApt, system_mirror};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The suite that carries a rust-src for each stable rustc (bookworm's own is 1.63).
const SUITE: &str = "trixie-backports";

/// One Debian rust-src package: its upstream version (rustc's) and its Debian version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustSrc {
    pub upstream: String,
    pub debian: String,
}

/// The upstream version in `rustc --version`'s line (`rustc 1.95.0 (59807616e 2026-04-14)`).
pub fn upstream_of(rustc: &str) -> Option<&str> {
    rustc.split_whitespace().nth(1)
}

/// The Debian version of rust-src whose upstream part is `upstream`, from `apt-cache madison`.
pub fn pick(madison: &str, upstream: &str) -> Option<String> {
    madison
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .find(|v| {
            v.strip_prefix(upstream)
                .is_some_and(|rest| rest.starts_with('+') || rest.starts_with('-'))
        })
        .map(str::to_string)
}

impl RustSrc {
    /// The package matching `rustc` (its `--version` line), looked up in Debian.
    pub fn for_rustc(rustc: &str) -> Result<RustSrc, CrossError> {
        let upstream = upstream_of(rustc)
            .ok_or_else(|| CrossError::Command {
                what: "rustc --version".into(),
                detail: format!("no version in {rustc:?}"),
            })?
            .to_string();
        let apt = apt()?;
        let mut madison = apt.madison("rust-src")?;
        if madison.trim().is_empty() {
            apt.update()?;
            madison = apt.madison("rust-src")?;
        }
        let debian = pick(&madison, &upstream).ok_or_else(|| CrossError::NoRustSrc {
            rustc: upstream.clone(),
            available: madison
                .lines()
                .filter_map(|l| l.split('|').nth(1).map(str::trim))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        Ok(RustSrc { upstream, debian })
    }

    /// Makes `<sysroot>/lib/rustlib/src/rust/library` this package's, unless the toolchain
    /// already has its own rust-src (rustup's component matches its toolchain by construction).
    pub fn install(&self, cache: &luo_kernels::Cache) -> Result<(), CrossError> {
        let link = sysroot()?.join("lib/rustlib/src/rust");
        let ours = cache.root().join("rust-src").join(&self.upstream);
        match std::fs::read_link(&link) {
            Ok(target) if target == ours && ours.join("library/core").is_dir() => return Ok(()),
            Ok(_) => {}
            Err(_) if link.join("library/core").is_dir() => return Ok(()),
            Err(_) => {}
        }
        if !ours.join("library/core").is_dir() {
            self.unpack(cache, &ours)?;
        }
        let parent = link.parent().expect("a path under the sysroot");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&ours, &link).map_err(io(&link))?;
        tracing::info!(link = %link.display(), to = %ours.display(), "rust-src installed");
        Ok(())
    }

    /// Downloads the package and unpacks its `library/` (68 MB of its 432) into `dest/library`.
    fn unpack(&self, cache: &luo_kernels::Cache, dest: &Path) -> Result<(), CrossError> {
        let apt = apt()?;
        let debs = cache.root().join("apt-rust-src/debs");
        let deb = match apt.download("rust-src", &self.debian, &debs) {
            Ok(d) => d,
            Err(_) => {
                apt.update()?;
                apt.download("rust-src", &self.debian, &debs)?
            }
        };
        let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let member = format!("./usr/src/rustc-{}/library", self.upstream);
        let mut dpkg = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(io(&deb))?;
        let tar = Command::new("tar")
            .args(["-x", "--strip-components=4", "-C"])
            .arg(&tmp)
            .arg(&member)
            .stdin(dpkg.stdout.take().expect("piped"))
            .output()
            .map_err(io(&tmp))?;
        let dpkg_status = dpkg.wait().map_err(io(&deb))?;
        if !tar.status.success() || !dpkg_status.success() || !tmp.join("library/core").is_dir() {
            return Err(CrossError::Command {
                what: format!("unpacking {member} from {}", deb.display()),
                detail: String::from_utf8_lossy(&tar.stderr).into_owned(),
            });
        }
        let _ = std::fs::remove_dir_all(dest);
        std::fs::rename(&tmp, dest).map_err(io(dest))?;
        Ok(())
    }
}

fn apt() -> Result<PrivateApt, CrossError> {
    let cache = luo_kernels::Cache::from_env();
    let dir = cache.root().join("apt-rust-src");
    Ok(PrivateApt::new(&dir, &system_mirror()?, SUITE)?)
}

fn sysroot() -> Result<PathBuf, CrossError> {
    let out = run(
        "rustc --print sysroot",
        Command::new("rustc").args(["--print", "sysroot"]),
    )?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADISON: &str = "  rust-src | 1.96.1+dfsg1-2~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
  rust-src | 1.95.0+dfsg1-2~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
  rust-src | 1.9.0+dfsg1-1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
";

    #[test]
    fn the_package_of_exactly_rustcs_version_is_picked() {
        assert_eq!(
            upstream_of("rustc 1.95.0 (59807616e 2026-04-14)"),
            Some("1.95.0")
        );
        assert_eq!(
            pick(MADISON, "1.95.0").as_deref(),
            Some("1.95.0+dfsg1-2~bpo13+1")
        );
        assert_eq!(pick(MADISON, "1.9.0").as_deref(), Some("1.9.0+dfsg1-1"));
        assert_eq!(pick(MADISON, "1.95.1"), None);
        assert_eq!(
            pick(MADISON, "1.9"),
            None,
            "1.9 is not 1.95.0's prefix version"
        );
    }
}
