//! What a scenario run produced, in a form free of addresses, times, pids and fd numbers, so it can
//! be an insta snapshot. Raw figures (timings, byte counts) go to [`Metrics`] instead.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub kernel: KernelFacts,
    pub boots: Vec<BootFacts>,
    /// One line per step: `L12 create_session a: ok`.
    pub steps: Vec<String>,
    /// Labelled observations of handles.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observations: BTreeMap<String, Observed>,
    /// Per boot: how many session fds were observed and how many distinct inodes they have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_identity: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryDelta>,
    /// Kernel log lines that say handed-over state was refused, and suspicious lines (a `Call
    /// Trace:`, a WARNING) that belong to no report; empty when clean.
    pub kernel_log: Vec<String>,
    /// What the kernels reported about themselves (sanitizers, lockdep, WARN, BUG, oops,
    /// kmemleak), one per report: any fails the scenario.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::findings::Finding>,
    /// Live-update state a kexec lost or the next kernel refused: `boot 1: state lost: ...`,
    /// `boot 1: incompatible: ...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handover: Vec<String>,
    /// The KTAP/TAP sub-results of the programs `exec` ran, a group per program run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtests: Vec<SubtestGroup>,
    pub failures: Vec<String>,
    /// Why the scenario did not run to the end on this kernel: a requirement it lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub passed: bool,
}

/// The sub-results one program printed: `step` is `L12 exec selftests/liveupdate`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubtestGroup {
    pub step: String,
    #[serde(flatten)]
    pub parsed: crate::scenario::subtests::Parsed,
}

/// The kernel the scenario booted first. `release` and `source` say which build it was; snapshot
/// comparisons leave them out (see snapshot.rs), so a tree that behaves like stock matches stock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelFacts {
    pub release: String,
    pub variant: String,
    pub source: String,
    /// Its instrumentation when it has some (`debug`, `gcov`): left out of snapshot comparisons,
    /// with what the sanitizers change by design (snapshot.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavour: Option<String>,
    /// The machine, when it is not x86_64: left out of snapshot comparisons, which pick the
    /// architecture's own snapshot where it keeps one (snapshot.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

impl KernelFacts {
    /// Whether the kernel is instrumented (a debug or gcov flavour), so that its memory figures
    /// are not the plain kernel's.
    pub fn is_instrumented(&self) -> bool {
        self.flavour.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BootFacts {
    pub boot: u32,
    /// The release this boot ran (left out of snapshot comparisons, like the kernel's).
    #[serde(default)]
    pub release: String,
    pub liveupdate_number: Option<u64>,
    pub kho_exec_from: Option<String>,
    /// What systemd reported once this boot started up (`image: systemd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<luo_protocol::SystemFacts>,
    /// systemd-shutdown's lines about LUO on the console of the boot before, on its way into the
    /// kexec that started this one (`image: systemd`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shutdown: Vec<String>,
}

impl BootFacts {
    /// Boot `boot` as its agent's hello describes it.
    pub fn from_hello(boot: u32, hello: &luo_protocol::Hello) -> BootFacts {
        BootFacts {
            boot,
            release: hello.boot.release.clone(),
            liveupdate_number: hello.boot.liveupdate_number,
            kho_exec_from: hello.boot.kho_exec_from.clone(),
            system: hello.system.clone(),
            shutdown: vec![],
        }
    }
}

/// systemd-shutdown's LUO lines in the last shutdown a console shows (between the agent's
/// [`luo_protocol::KEXEC_MARK`] and the kernel's "Starting new kernel"), without timestamps, with
/// fd numbers and tokens as `N` (they follow the order systemd walks its units in, which varies
/// from run to run), sorted.
pub fn shutdown_luo_lines(console: &str) -> Vec<String> {
    let Some(start) = console.rfind(luo_protocol::KEXEC_MARK) else {
        return vec![];
    };
    let mut lines: Vec<String> = console[start..]
        .lines()
        .take_while(|l| !l.contains("kexec_core: Starting new kernel"))
        .filter_map(|l| {
            let msg = l.split_once("] ").map_or(l, |(_, m)| m).trim();
            (msg.starts_with("systemd-shutdown[") && msg.contains("LUO"))
                .then(|| numbers_after(&numbers_after(msg, "LUO fd "), "with token "))
        })
        .collect();
    lines.sort();
    lines
}

/// `text` with the number after each `marker` written `N`.
fn numbers_after(text: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[test]
fn only_the_last_shutdowns_luo_lines_are_taken() {
    let console = "[ 1.0] systemd-shutdown[1]: old LUO line\n\
        [ 5.0] luo-agent: reboot(KEXEC)\n\
        [ 5.5] systemd-shutdown[1]: Syncing filesystems and block devices.\n\
        [ 5.8] systemd-shutdown[1]: Preserved fd stores in LUO session 'systemd' for kexec.\n\
        [ 5.9] kexec_core: Starting new kernel\n\
        [ 0.1] systemd-shutdown[1]: not this boot's LUO\n";
    assert_eq!(
        shutdown_luo_lines(console),
        ["systemd-shutdown[1]: Preserved fd stores in LUO session 'systemd' for kexec."]
    );
    assert!(shutdown_luo_lines("no mark").is_empty());
    let lost = "luo-agent: reboot(KEXEC)\n\
        [ 9.1] systemd-shutdown[1]: Failed to preserve LUO fd 32 (name 'session') with token 2, will be lost\n\
        [ 9.2] systemd-shutdown[1]: Failed to preserve LUO fd 28 (name 'a') with token 1, will be lost\n";
    assert_eq!(
        shutdown_luo_lines(lost),
        [
            "systemd-shutdown[1]: Failed to preserve LUO fd N (name 'a') with token N, will be lost",
            "systemd-shutdown[1]: Failed to preserve LUO fd N (name 'session') with token N, will be lost"
        ]
    );
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Observed {
    pub boot: u32,
    /// Stable label of (st_dev, st_ino) within the run: inode-1, inode-2, ... in order of appearance.
    pub inode: String,
    pub fs: String,
    pub mode: String,
    pub link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seals: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    pub cloexec: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryDelta {
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// The bytes of the slab objects allocated (SLUB's in-use objects times their size) per
    /// object, rounded to 64 bytes, over the caches that moved by a tenth of an object per object
    /// or more; only for 100 objects or more: below that the rest of the system's allocations
    /// dominate. The Slab pages behind them are in the metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slab_bytes_per_object: Option<u64>,
    /// Caches that grew by at least half an object per object, with their growth per object
    /// rounded to a tenth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grown_caches: Vec<String>,
}

/// Raw figures, written next to the report: these vary from run to run and never go in snapshots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub scenario: String,
    /// `cold (why)` or `restored <key>` (vm/saved.rs): how the first boot came about.
    #[serde(default)]
    pub first_boot: String,
    pub boots_ms: Vec<f64>,
    pub blackouts_ms: Vec<f64>,
    pub steps_ms: Vec<(String, f64)>,
    pub memory: Vec<RawMemory>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawMemory {
    pub label: String,
    pub meminfo_kb: BTreeMap<String, u64>,
    pub slab_bytes: BTreeMap<String, u64>,
}

/// Magic numbers by name (include/uapi/linux/magic.h; LUO_SESSION_MAGIC is the proposed one).
pub fn magic_name(m: u64) -> String {
    match m {
        0x0904_1934 => "ANON_INODE_FS_MAGIC".into(),
        0x4c55_4f53 => "LUO_SESSION_MAGIC".into(),
        0x0102_1994 => "TMPFS_MAGIC".into(),
        0x6265_6572 => "SYSFS_MAGIC".into(),
        0x9fa0 => "PROC_SUPER_MAGIC".into(),
        0x6573_5546 => "FUSE_SUPER_MAGIC".into(),
        0x6462_6720 => "DEBUGFS_MAGIC".into(),
        0x858458f6 => "RAMFS_MAGIC".into(),
        other => format!("0x{other:08x}"),
    }
}

/// `0600 regular file`, `0600 (no file type)`, ...
pub fn mode_text(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o100000 => "regular file",
        0o020000 => "character device",
        0o040000 => "directory",
        0o010000 => "fifo",
        0o140000 => "socket",
        0o120000 => "symlink",
        0o060000 => "block device",
        _ => "(no file type)",
    };
    format!("{:04o} {kind}", mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_magics_and_modes() {
        assert_eq!(magic_name(0x09041934), "ANON_INODE_FS_MAGIC");
        assert_eq!(magic_name(0x4c554f53), "LUO_SESSION_MAGIC");
        assert_eq!(magic_name(0x1234), "0x00001234");
        assert_eq!(mode_text(0o600), "0600 (no file type)");
        assert_eq!(mode_text(0o100777), "0777 regular file");
    }
}
