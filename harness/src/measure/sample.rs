//! One measurement in the guest: memory before and after creating N sessions, and after preserving
//! F memfds in one more session (each batch timed inside the guest), a kexec (the blackout seen
//! from the host, and the guest's own split from kernel log timestamps), then retrieving and
//! finishing the N sessions, and retrieving the F files, in the new kernel.

use super::MeasureError;
use crate::guest::Guest;
use luo_protocol::{KEXEC_MARK, MemorySnapshot, Reply, Request};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one VM does: N sessions, and F memfds preserved in one session of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub sessions: u32,
    pub files: u32,
}

/// Each preserved memfd's size: one page, written, so the figures are what preserving a file
/// costs beyond its contents (and the smallest file a user preserves).
pub const FILE_BYTES: u64 = 4096;

/// One VM run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Which kernel: a design's name in `compare`, `base` or `patched` in `delta`.
    #[serde(alias = "variant")]
    pub label: String,
    pub sessions: u32,
    pub rep: u32,
    /// Growth of Slab (meminfo) over creating the sessions, bytes.
    pub slab_bytes: i64,
    /// Growth of SUnreclaim, bytes.
    pub sunreclaim_bytes: i64,
    /// Drop of free memory (MemFree and the per-cpu free lists), bytes: all kernel memory the
    /// sessions took, slab or pages.
    pub memfree_drop_bytes: i64,
    /// Slab caches whose active objects grew, by objects.
    pub grown_caches: BTreeMap<String, i64>,
    /// A slab of each cache the sessions touched, bytes: where the first new slab of a cache
    /// comes depends on how full the boot left its partial slab, so the memory figures can move
    /// by this much from one boot to another, and not at all between VMs restored from one.
    #[serde(default)]
    pub slab_slack_bytes: i64,
    pub create_ns: u64,
    pub blackout_host_ms: f64,
    /// Old kernel: agent's reboot(KEXEC) mark -> "Starting new kernel" (kernel log timestamps).
    pub old_kernel_ms: Option<f64>,
    /// New kernel: boot -> agent hello (CLOCK_BOOTTIME in the new kernel).
    pub new_kernel_ms: f64,
    /// RETRIEVE_SESSION and FINISH of the N sessions together (the two below, added; kept apart
    /// from them so that samples from before they were timed apart still read).
    pub retrieve_finish_ns: u64,
    /// RETRIEVE_SESSION of the N sessions (None in samples from before it was timed alone).
    #[serde(default)]
    pub retrieve_ns: Option<u64>,
    /// FINISH of the N retrieved sessions.
    #[serde(default)]
    pub finish_ns: Option<u64>,
    /// Memfds preserved (0: none; samples from before files were measured).
    #[serde(default)]
    pub files: u32,
    /// Growth of Slab over preserving the files, bytes.
    #[serde(default)]
    pub files_slab_bytes: i64,
    /// Drop of free memory over preserving the files (their pages were written before), bytes.
    #[serde(default)]
    pub files_memfree_drop_bytes: i64,
    /// Slab caches whose active objects grew over preserving the files, by objects.
    #[serde(default)]
    pub files_grown_caches: BTreeMap<String, i64>,
    /// The same slack over preserving the files.
    #[serde(default)]
    pub files_slab_slack_bytes: i64,
    #[serde(default)]
    pub preserve_ns: u64,
    /// RETRIEVE_FD of every file in the next kernel.
    #[serde(default)]
    pub retrieve_files_ns: u64,
}

fn unexpected(what: &'static str, got: Reply) -> MeasureError {
    MeasureError::Reply {
        what,
        got: format!("{got:?}"),
    }
}

fn meminfo(s: &MemorySnapshot, k: &str) -> i64 {
    s.meminfo
        .iter()
        .find(|(n, _)| n == k)
        .map_or(0, |(_, v)| *v as i64 * 1024)
}

/// Free memory as the allocator has it: MemFree and the pages the cpus keep in their free lists.
fn free(s: &MemorySnapshot) -> i64 {
    meminfo(s, "MemFree") + s.pcp_free_bytes as i64
}

async fn snapshot(guest: &mut Guest) -> Result<MemorySnapshot, MeasureError> {
    match guest.request(Request::MemorySnapshot).await? {
        Reply::Memory(m) => Ok(m),
        other => Err(unexpected("memory_snapshot", other)),
    }
}

/// The guest's page (x86_64's, and arm64's 4K configurations).
const PAGE_BYTES: i64 = 4096;

/// One slab of every cache whose active objects changed from `before` to `after`, in bytes.
fn slab_slack(before: &MemorySnapshot, after: &MemorySnapshot) -> i64 {
    after
        .slabs
        .iter()
        .filter(|c| {
            let was = before.slabs.iter().find(|p| p.name == c.name);
            was.is_none_or(|p| p.active_objs != c.active_objs)
        })
        .map(|c| c.pages_per_slab as i64 * PAGE_BYTES)
        .sum()
}

/// Caches whose active objects grew by at least half of `n` from `before` to `after`.
fn grown(before: &MemorySnapshot, after: &MemorySnapshot, n: u32) -> BTreeMap<String, i64> {
    let mut grown = BTreeMap::new();
    for c in &after.slabs {
        let b = before
            .slabs
            .iter()
            .find(|p| p.name == c.name)
            .map_or(0, |p| p.active_objs as i64);
        let d = c.active_objs as i64 - b;
        if d >= (n as i64 / 2).max(1) {
            grown.insert(c.name.clone(), d);
        }
    }
    grown
}

async fn timed(guest: &mut Guest, what: &'static str, req: Request) -> Result<u64, MeasureError> {
    match guest.request(req).await? {
        Reply::Timed { ns, .. } => Ok(ns),
        other => Err(unexpected(what, other)),
    }
}

/// The session the files are preserved in, beside the measured ones (`s0`, `s1`, ...).
const FILES_SESSION: &str = "files";

/// Measures a workload on a booted guest, which it leaves in the next kernel.
pub async fn take(
    guest: &mut Guest,
    label: &str,
    w: Workload,
    rep: u32,
) -> Result<Sample, MeasureError> {
    let (n, f) = (w.sessions, w.files);
    let dev = "dev".to_string();
    let open = Request::OpenDevice {
        handle: dev.clone(),
    };
    guest.request(open.clone()).await?;
    if f > 0 {
        guest
            .request(Request::CreateSession {
                device: dev.clone(),
                handle: FILES_SESSION.into(),
                name: FILES_SESSION.into(),
            })
            .await?;
        let memfds = Request::CreateMemfds {
            prefix: "m".into(),
            count: f,
            size: FILE_BYTES,
        };
        timed(guest, "create_memfds", memfds).await?;
    }
    let before = snapshot(guest).await?;
    let create = Request::CreateSessions {
        device: dev.clone(),
        prefix: "s".into(),
        count: n,
    };
    let create_ns = timed(guest, "create_sessions", create).await?;
    let after = snapshot(guest).await?;
    let (mut preserve_ns, mut after_files) = (0, None);
    if f > 0 {
        let preserve = Request::PreserveFds {
            session: FILES_SESSION.into(),
            prefix: "m".into(),
            count: f,
        };
        preserve_ns = timed(guest, "preserve_fds", preserve).await?;
        after_files = Some(snapshot(guest).await?);
    }
    let console_before = std::fs::read_to_string(guest.vm().artifacts().console())
        .unwrap_or_default()
        .len();
    let blackout = guest.kexec_same().await?;
    let console = std::fs::read(guest.vm().artifacts().console())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let old_kernel_ms = old_kernel_split(&console[console_before.min(console.len())..]);
    let new_kernel_ms = guest.hello().boot.uptime_us as f64 / 1000.0;
    guest.request(open).await?;
    let retrieve = Request::RetrieveSessions {
        device: dev.clone(),
        prefix: "s".into(),
        count: n,
    };
    let retrieve_ns = timed(guest, "retrieve_sessions", retrieve).await?;
    let finish = Request::FinishSessions {
        prefix: "s".into(),
        count: n,
    };
    let finish_ns = timed(guest, "finish_sessions", finish).await?;
    let mut retrieve_files_ns = 0;
    if f > 0 {
        guest
            .request(Request::RetrieveSession {
                device: dev,
                handle: FILES_SESSION.into(),
                name: FILES_SESSION.into(),
            })
            .await?;
        let retrieve = Request::RetrieveFds {
            session: FILES_SESSION.into(),
            prefix: "r".into(),
            count: f,
        };
        retrieve_files_ns = timed(guest, "retrieve_fds", retrieve).await?;
        guest
            .request(Request::FinishSession {
                session: FILES_SESSION.into(),
            })
            .await?;
    }
    let files = after_files.as_ref();
    Ok(Sample {
        label: label.into(),
        sessions: n,
        rep,
        slab_bytes: meminfo(&after, "Slab") - meminfo(&before, "Slab"),
        sunreclaim_bytes: meminfo(&after, "SUnreclaim") - meminfo(&before, "SUnreclaim"),
        memfree_drop_bytes: free(&before) - free(&after),
        grown_caches: grown(&before, &after, n),
        slab_slack_bytes: slab_slack(&before, &after),
        create_ns,
        blackout_host_ms: blackout.as_secs_f64() * 1000.0,
        old_kernel_ms,
        new_kernel_ms,
        retrieve_finish_ns: retrieve_ns + finish_ns,
        retrieve_ns: Some(retrieve_ns),
        finish_ns: Some(finish_ns),
        files: f,
        files_slab_bytes: files.map_or(0, |a| meminfo(a, "Slab") - meminfo(&after, "Slab")),
        files_memfree_drop_bytes: files.map_or(0, |a| free(&after) - free(a)),
        files_grown_caches: files.map_or_else(BTreeMap::new, |a| grown(&after, a, f)),
        files_slab_slack_bytes: files.map_or(0, |a| slab_slack(&after, a)),
        preserve_ns,
        retrieve_files_ns,
    })
}

/// From the old kernel's console: the agent's mark to "Starting new kernel", in ms.
pub fn old_kernel_split(console: &str) -> Option<f64> {
    let ts = |needle: &str| {
        console.lines().rfind(|l| l.contains(needle)).and_then(|l| {
            let inner = l.split_once('[')?.1.split_once(']')?.0.trim();
            inner.parse::<f64>().ok()
        })
    };
    Some((ts("Starting new kernel")? - ts(KEXEC_MARK)?) * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn old_kernel_split_reads_the_last_kexec() {
        let c = "[    1.000000] luo-agent: reboot(KEXEC)\n[    1.250000] kexec_core: Starting new kernel\n[    0.000000] Linux version\n";
        assert_eq!(old_kernel_split(c), Some(250.0));
        assert_eq!(old_kernel_split("[ 1.0] other\n"), None);
    }
}
