//! Debian kernel sources by name: `debian:7.3` (the newest 7.3.x release the archive has),
//! `debian:7.3~rc` (the newest release candidate), `debian:7.2.13` (that upstream release, the
//! newest Debian revision of it) or an exact `debian:7.2.13-1`. The archive keeps only current
//! versions, so a name is resolved against it (through a private apt state, as the default source
//! always was) and the exact version that resolved is what the cache key and the report record.

use crate::apt::{self, PrivateApt};
use crate::cache::{Cache, Lock};
use crate::error::{IoContext, KernelError};
use crate::source::KernelSource;
use std::cmp::Ordering;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Where each series' `linux-source-<series>` package is published: the suites searched.
/// sid's Release file on the reachable mirror is past its Valid-Until date, so the private state
/// does not check it (it only ever downloads a source tarball, never installs anything).
pub const SUITES: &[&str] = &["trixie-backports", "sid", "experimental"];

/// Lists older than this are fetched again before a name is resolved.
const LISTS_FRESH: Duration = Duration::from_secs(24 * 3600);

/// A Debian source name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianName {
    /// `7.3`: the package is `linux-source-7.3`.
    pub series: String,
    pub select: Select,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// The newest release (no `~rc`).
    NewestRelease,
    /// The newest release candidate.
    NewestRc,
    /// This upstream version (`7.2.13`), its newest Debian revision.
    Upstream(String),
    /// This exact Debian version (`7.2.13-1`).
    Exact(String),
}

impl DebianName {
    /// `7.3`, `7.3~rc`, `7.2.13`, `7.2.13-1`, `7.3~rc7-1~exp1`.
    pub fn parse(s: &str) -> Option<DebianName> {
        let (head, rest) = match s.find(['.']) {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => return None,
        };
        let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if head.is_empty() || !head.chars().all(|c| c.is_ascii_digit()) || minor.is_empty() {
            return None;
        }
        let series = format!("{head}.{minor}");
        let tail = &rest[minor.len()..];
        let select = match tail {
            "" => Select::NewestRelease,
            "~rc" => Select::NewestRc,
            _ if s.contains('-') => Select::Exact(s.to_string()),
            t if t.starts_with('.') || t.starts_with("~rc") => Select::Upstream(s.to_string()),
            _ => return None,
        };
        Some(DebianName { series, select })
    }

    pub fn package(&self) -> String {
        format!("linux-source-{}", self.series)
    }

    /// Whether `version` (a Debian version of the package) is one this name accepts.
    fn accepts(&self, version: &str) -> bool {
        let upstream = version.split('-').next().unwrap_or(version);
        let in_series = upstream == self.series
            || upstream.starts_with(&format!("{}.", self.series))
            || upstream.starts_with(&format!("{}~", self.series));
        if !in_series {
            return false;
        }
        match &self.select {
            Select::NewestRelease => !upstream.contains('~'),
            Select::NewestRc => upstream.contains("~rc"),
            Select::Upstream(u) => upstream == u,
            Select::Exact(v) => version == v,
        }
    }
}

impl std::fmt::Display for DebianName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.select {
            Select::NewestRelease => write!(f, "debian:{}", self.series),
            Select::NewestRc => write!(f, "debian:{}~rc", self.series),
            Select::Upstream(v) | Select::Exact(v) => write!(f, "debian:{v}"),
        }
    }
}

/// (version, suite) pairs from `apt-cache madison` output.
pub fn parse_madison(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut cols = l.split('|').map(str::trim);
            let _pkg = cols.next()?;
            let version = cols.next()?.to_string();
            let origin = cols.next()?;
            let suite = origin
                .split_whitespace()
                .nth(1)?
                .split('/')
                .next()?
                .to_string();
            Some((version, suite))
        })
        .collect()
}

/// Picks the newest version `name` accepts from what the archive has.
pub fn pick(
    name: &DebianName,
    available: &[(String, String)],
) -> Result<(String, String), KernelError> {
    available
        .iter()
        .filter(|(v, _)| name.accepts(v))
        .max_by(|a, b| compare_versions(&a.0, &b.0))
        .cloned()
        .ok_or_else(|| KernelError::NoSuchVersion {
            name: name.to_string(),
            available: available
                .iter()
                .map(|(v, s)| format!("{v} ({s})"))
                .collect(),
        })
}

/// The private apt state that sees every suite in [`SUITES`], its lists fetched at most daily,
/// and the lock that keeps it to this process while it is used: two setups at once share it, and
/// one's apt-get must not read what the other is rewriting.
fn apt_state(cache: &Cache) -> Result<(PrivateApt, Lock), KernelError> {
    let dir = cache.root().join("apt").join("kernels");
    let lock = cache.lock("apt-kernels")?;
    let apt = PrivateApt::with_suites(&dir, &apt::system_mirror()?, SUITES)?;
    let stamp = dir.join("updated");
    let fresh = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < LISTS_FRESH);
    if !fresh {
        apt.update()?;
        std::fs::write(&stamp, b"").at(&stamp)?;
    }
    Ok((apt, lock))
}

/// The exact source `name` names today.
pub fn resolve(name: &DebianName, cache: &Cache) -> Result<KernelSource, KernelError> {
    crate::hosttools::require(crate::hosttools::DEBIAN_SOURCE)?;
    let (apt, _lock) = apt_state(cache)?;
    let package = name.package();
    let available = parse_madison(&apt.madison(&package)?);
    let (version, suite) = pick(name, &available)?;
    Ok(KernelSource::Debian {
        package,
        version,
        suite,
    })
}

/// Downloads `package=version` through the same private state (any of its suites).
pub(crate) fn download(
    cache: &Cache,
    package: &str,
    version: &str,
    dest: &Path,
) -> Result<std::path::PathBuf, KernelError> {
    let (apt, _lock) = apt_state(cache)?;
    apt.download(package, version, dest)
}

/// Debian version ordering (deb-version(7)): epoch, then upstream and revision compared part by
/// part, digits numerically, other characters with `~` before everything, letters before others.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<char>) -> i32 {
        match c {
            Some('~') => -1,
            None => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    fn part(mut a: &str, mut b: &str) -> Ordering {
        while !a.is_empty() || !b.is_empty() {
            let (na, ra) = a.split_at(a.find(|c: char| c.is_ascii_digit()).unwrap_or(a.len()));
            let (nb, rb) = b.split_at(b.find(|c: char| c.is_ascii_digit()).unwrap_or(b.len()));
            let (mut ca, mut cb) = (na.chars(), nb.chars());
            loop {
                let (x, y) = (ca.next(), cb.next());
                if x.is_none() && y.is_none() {
                    break;
                }
                match order(x).cmp(&order(y)) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            let (da, ra2) = ra.split_at(ra.find(|c: char| !c.is_ascii_digit()).unwrap_or(ra.len()));
            let (db, rb2) = rb.split_at(rb.find(|c: char| !c.is_ascii_digit()).unwrap_or(rb.len()));
            let (x, y) = (
                da.parse::<u128>().unwrap_or(0),
                db.parse::<u128>().unwrap_or(0),
            );
            match x.cmp(&y) {
                Ordering::Equal => {}
                o => return o,
            }
            a = ra2;
            b = rb2;
        }
        Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| part(ua, ub))
        .then_with(|| part(ra, rb))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADISON: &str = "\
linux-source-7.2 |   7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages
linux-source-7.2 | 7.2.12-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-source-7.2 | 7.2.9-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-source-7.3 | 7.3.4-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-source-7.3 | 7.3~rc7-1~exp1 | http://deb.debian.org/debian experimental/main amd64 Packages
";

    fn name(s: &str) -> DebianName {
        DebianName::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn names_parse_to_a_series_and_a_choice() {
        assert_eq!(name("7.3").select, Select::NewestRelease);
        assert_eq!(name("7.3~rc").select, Select::NewestRc);
        assert_eq!(name("7.2.13").select, Select::Upstream("7.2.13".into()));
        assert_eq!(name("7.2.13-1").select, Select::Exact("7.2.13-1".into()));
        assert_eq!(name("7.3~rc7").select, Select::Upstream("7.3~rc7".into()));
        assert_eq!(name("7.2.13").package(), "linux-source-7.2");
        for bad in ["7", "banana", "7.x", ".3", "7.3rc"] {
            assert!(DebianName::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(name("7.3~rc").to_string(), "debian:7.3~rc");
    }

    #[test]
    fn the_newest_matching_version_is_picked_and_a_vanished_one_names_what_is_there() {
        let all = parse_madison(MADISON);
        assert_eq!(all[0], ("7.2.13-1".into(), "sid".into()));
        assert_eq!(pick(&name("7.2"), &all).unwrap().0, "7.2.13-1");
        assert_eq!(
            pick(&name("7.3"), &all).unwrap(),
            ("7.3.4-1~bpo13+1".into(), "trixie-backports".into())
        );
        assert_eq!(pick(&name("7.3~rc"), &all).unwrap().0, "7.3~rc7-1~exp1");
        assert_eq!(pick(&name("7.2.9"), &all).unwrap().0, "7.2.9-1~bpo13+1");
        let gone = pick(&name("7.2.5"), &all).unwrap_err().to_string();
        assert!(
            gone.contains("debian:7.2.5") && gone.contains("7.2.13-1 (sid)"),
            "{gone}"
        );
    }

    #[test]
    fn debian_versions_order_as_dpkg_orders_them() {
        use Ordering::*;
        for (a, b, o) in [
            ("7.3~rc7-1~exp1", "7.3.4-1~bpo13+1", Less),
            ("7.2.13-1", "7.2.12-1~bpo13+1", Greater),
            ("7.2.9-1", "7.2.12-1", Less),
            ("1.0-1~bpo1", "1.0-1", Less),
            ("1:0.1", "2.0", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0", Equal),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
        }
    }
}
