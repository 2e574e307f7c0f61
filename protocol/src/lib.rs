//! The host <-> guest agent protocol.
//!
//! One JSON object per line in each direction over a virtio-serial port. The agent speaks first with a
//! [`Hello`] after every boot (so the host learns that a kexec landed; a VM restored from a saved
//! state gets a [`Request::Resume`] instead and answers with the hello), then answers each [`Envelope`]
//! with exactly one [`Response`] carrying the same `id`. Handles are names chosen by the host; the agent
//! maps them to file descriptors, so a transcript never depends on fd numbering.

use serde::{Deserialize, Serialize};

mod errno;
mod ops;

pub use errno::{errno_name, errno_value};
pub use ops::*;

/// Bumped whenever a message changes shape; the host refuses an agent that speaks another version.
pub const PROTOCOL_VERSION: u32 = 7;

/// Name of the virtio-serial port the agent looks for under /sys/class/virtio-ports.
pub const AGENT_PORT_NAME: &str = "org.luo-harness.agent";

/// virtiofs tag of the per-run share, mounted by the agent at [`SHARE_MOUNT`].
pub const SHARE_TAG: &str = "luoshare";
pub const SHARE_MOUNT: &str = "/share";

/// 9p tag of a read-only export holding a root filesystem (the systemd image) as a tree,
/// [`ROOT_TREE`], and as one archive, [`ROOT_ARCHIVE`]. With [`ROOT_PARAM`]`=<tag>` on the command
/// line the agent, as PID 1 of the initramfs, is only a first stage: it makes a writable root of
/// that image (the archive unpacked into a tmpfs on the first boot, a tmpfs over the tree after a
/// kexec), installs itself as a service and hands over to the root's /sbin/init.
pub const ROOT_TAG: &str = "luoroot";
pub const ROOT_PARAM: &str = "luo_harness.root";
pub const ROOT_TREE: &str = "root";
/// One uncompressed tar of the tree, numeric owners.
pub const ROOT_ARCHIVE: &str = "root.tar";
/// Where, in the share, the units of a scenario lie when the VM starts; the first stage installs
/// them into /etc/systemd/system on every boot.
pub const UNITS_DIR: &str = "units";
/// Where, in the share, programs are staged: `exec`'s, and a scenario's `programs:` that the
/// first stage installs.
pub const PROGRAMS_DIR: &str = "programs";

/// Written to the kernel log by the agent just before reboot(KEXEC).
pub const KEXEC_MARK: &str = "luo-agent: reboot(KEXEC)";

/// Written to the kernel log (at debug level: never on the console) as each request arrives,
/// followed by its id: what places a kernel report in the step that was running.
pub const REQUEST_MARK: &str = "luo-agent: request ";

/// Kernel command-line parameter through which the host numbers boots (0 = cold boot).
pub const BOOT_INDEX_PARAM: &str = "luo_harness.boot";

/// First line of every boot, sent unprompted by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub boot: BootFacts,
    /// Under systemd (the agent is a service, not PID 1): what the service manager reported once
    /// the boot finished.
    #[serde(default)]
    pub system: Option<SystemFacts>,
}

/// What systemd says about this boot, as the agent's hello carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemFacts {
    /// The first line of `systemctl --version` (`systemd 262 (262.1-1)`).
    pub version: String,
    /// `systemctl is-system-running` once start-up finished (`running`, `degraded`).
    pub state: String,
    /// Units that failed during start-up.
    pub failed: Vec<String>,
    /// The scenario's units (those the first stage installed).
    pub units: Vec<UnitState>,
    /// This boot's journal lines that mention LUO, as `unit: message`.
    pub luo_journal: Vec<String>,
}

/// One unit as `systemctl show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub unit: String,
    /// ActiveState (`active`, `inactive`, `failed`).
    pub active: String,
    /// SubState (`running`, `exited`, `dead`).
    pub sub: String,
    /// Result (`success`, `exit-code`, ...).
    pub result: String,
    /// NFileDescriptorStore: the fds in the unit's fd store.
    pub fd_store: u32,
    /// ExecMainStatus: the main process's exit status.
    pub exit_status: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFacts {
    /// `uname -r`.
    pub release: String,
    /// /proc/cmdline, trimmed.
    pub cmdline: String,
    /// The value of [`BOOT_INDEX_PARAM`], if present.
    pub boot_index: Option<u32>,
    /// From `luo: Retrieved live update data, liveupdate number: N`.
    pub liveupdate_number: Option<u64>,
    /// From `KHO: exec from: <release> (count N)`: the release we were kexec'd from.
    pub kho_exec_from: Option<String>,
    /// Whether /dev/liveupdate exists.
    pub liveupdate_device: bool,
    /// Whether KHO reports itself enabled (/sys/kernel/debug/kho exists, or the kho= parameter).
    pub kho_enabled: bool,
    /// Microseconds since boot when the agent sent the hello (CLOCK_BOOTTIME).
    pub uptime_us: u64,
    /// Microseconds since boot when the agent's `main` began: the kernel's part of the boot.
    #[serde(default)]
    pub agent_start_us: u64,
    /// The CPU's time-stamp counter when the hello was sent (x86_64 only). It counts from the VM's
    /// start and is not reset by kexec, so the host can tell how long the VM ran before the kernel.
    #[serde(default)]
    pub tsc: Option<u64>,
}

/// A request from the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    #[serde(flatten)]
    pub request: Request,
}

/// The agent's answer to one [`Envelope`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Reply),
    Err(AgentError),
}

/// A failed request: which call failed and how. `errno` is the symbolic name (`EEXIST`), so that
/// transcripts and snapshots read the same on every architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    pub kind: ErrorKind,
    /// The failing call, e.g. `ioctl(LIVEUPDATE_IOCTL_CREATE_SESSION)` or `open(/dev/liveupdate)`.
    pub call: String,
    pub errno: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A system call failed; `errno` is set.
    Syscall,
    /// The request could not be parsed or names an unknown operation.
    BadRequest,
    /// A handle was unknown, or already in use for a `create`-style request.
    Handle,
    /// Data did not match what was expected (pattern verification).
    Mismatch,
}

impl AgentError {
    pub fn syscall(call: impl Into<String>, errno: i32) -> Self {
        AgentError {
            kind: ErrorKind::Syscall,
            call: call.into(),
            errno: Some(errno_name(errno).to_string()),
            message: errno_description(errno),
        }
    }
    pub fn new(kind: ErrorKind, call: impl Into<String>, message: impl Into<String>) -> Self {
        AgentError {
            kind,
            call: call.into(),
            errno: None,
            message: message.into(),
        }
    }
}

fn errno_description(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.errno {
            Some(e) => write!(f, "{} failed: {} ({})", self.call, e, self.message),
            None => write!(f, "{}: {}", self.call, self.message),
        }
    }
}

impl std::error::Error for AgentError {}

/// Decodes one line (its newline optional) as a message: the one decoder both sides use, and the
/// one the fuzz tests feed (harness/tests/fuzz.rs).
pub fn from_line<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(line.strip_suffix('\n').unwrap_or(line))
}

/// Encodes a message as one line (no embedded newlines: serde_json escapes them).
pub fn to_line<T: Serialize>(msg: &T) -> String {
    let mut s = serde_json::to_string(msg).expect("protocol types always serialise");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
