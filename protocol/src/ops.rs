//! Requests the host can make and the replies they produce.

use serde::{Deserialize, Serialize};

/// Handles are host-chosen names for guest file descriptors ("dev", "s1", "m0").
pub type Handle = String;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; answered with [`Reply::Done`].
    Ping,
    /// The VM was restored from a saved state (its memory is that of an earlier boot at its
    /// hello): set the wall clock to the host's `unix_time_ns` and answer with this boot's facts as
    /// they are now, in [`Reply::Resumed`]. Stands in for the hello a restored guest never sends.
    Resume { unix_time_ns: u64 },
    /// open("/dev/liveupdate", O_RDWR).
    OpenDevice { handle: Handle },
    /// LIVEUPDATE_IOCTL_CREATE_SESSION on `device`.
    CreateSession {
        device: Handle,
        handle: Handle,
        name: String,
    },
    /// LIVEUPDATE_IOCTL_RETRIEVE_SESSION on `device`.
    RetrieveSession {
        device: Handle,
        handle: Handle,
        name: String,
    },
    /// LIVEUPDATE_SESSION_GET_NAME.
    GetSessionName { session: Handle },
    /// LIVEUPDATE_SESSION_FINISH.
    FinishSession { session: Handle },
    /// Preserve `fd` in `session` under `token` (LIVEUPDATE_SESSION_PRESERVE_FD).
    PreserveFd {
        session: Handle,
        fd: Handle,
        token: u64,
    },
    /// LIVEUPDATE_SESSION_RETRIEVE_FD; the new fd becomes `handle`.
    RetrieveFd {
        session: Handle,
        handle: Handle,
        token: u64,
    },
    /// A raw LUO ioctl with a hand-made argument, for the errno contract (short size, non-zero
    /// reserved fields, unknown command numbers). `arg` is the struct's bytes; the reply carries
    /// them back as the kernel left them.
    RawIoctl {
        handle: Handle,
        nr: u8,
        arg: Vec<u8>,
        /// Where the argument lies: ordinary memory, a read-only page (the kernel reads the
        /// request but cannot write its answer) or an unmapped one (it cannot read the size).
        #[serde(default)]
        memory: ArgMemory,
        /// (offset, handle): the handle's fd number written into `arg` at that offset as a u32.
        #[serde(default)]
        fds: Vec<(u32, Handle)>,
    },
    /// `count` sessions named `{prefix}{i}` (handles the same), timed inside the guest.
    CreateSessions {
        device: Handle,
        prefix: String,
        count: u32,
    },
    /// Retrieve `count` sessions `{prefix}{i}` (handles the same); timed inside the guest.
    RetrieveSessions {
        device: Handle,
        prefix: String,
        count: u32,
    },
    /// FINISH the sessions held as handles `{prefix}{i}`; timed inside the guest.
    FinishSessions { prefix: String, count: u32 },
    /// `count` memfds `{prefix}{i}` (handles the same) of `size` bytes, every page written, so that
    /// what preserving them costs is not confused with their contents; timed inside the guest.
    CreateMemfds {
        prefix: String,
        count: u32,
        size: u64,
    },
    /// Preserve the handles `{prefix}{i}` in `session` under tokens `i`; timed inside the guest.
    PreserveFds {
        session: Handle,
        prefix: String,
        count: u32,
    },
    /// Retrieve tokens `0..count` of `session` as handles `{prefix}{i}`; timed inside the guest.
    RetrieveFds {
        session: Handle,
        prefix: String,
        count: u32,
    },
    /// close(fd) and forget the handle.
    Close { handle: Handle },
    /// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB]) + ftruncate(size).
    CreateMemfd {
        handle: Handle,
        name: String,
        size: u64,
        #[serde(default)]
        hugetlb: bool,
    },
    /// Open any path (O_RDONLY unless `write`), e.g. /dev/null for an unsupported fd.
    OpenPath {
        handle: Handle,
        path: String,
        #[serde(default)]
        write: bool,
    },
    /// Duplicate a handle (dup(2)).
    Dup { handle: Handle, new_handle: Handle },
    /// Write the deterministic pattern for `seed` at [offset, offset+len).
    WritePattern {
        handle: Handle,
        seed: u64,
        offset: u64,
        len: u64,
    },
    /// Compare [offset, offset+len) with the pattern for `seed`.
    VerifyPattern {
        handle: Handle,
        seed: u64,
        offset: u64,
        len: u64,
    },
    /// SHA-256 of the whole file contents (read with pread, position untouched).
    HashContents { handle: Handle },
    /// F_ADD_SEALS with the named seals ("seal", "shrink", "grow", "write", "future_write").
    AddSeals { handle: Handle, seals: Vec<String> },
    /// ftruncate(size).
    Truncate { handle: Handle, size: u64 },
    /// lseek(offset, SEEK_SET).
    Seek { handle: Handle, offset: u64 },
    /// fstat + fstatfs + readlink(/proc/self/fd/N) + seals + position in one go.
    Observe { handle: Handle },
    /// Read a file (proc, sys, debugfs) as text, at most `max_bytes`.
    ReadFile {
        path: String,
        #[serde(default = "default_read_max")]
        max_bytes: u64,
    },
    /// /proc/meminfo and /proc/slabinfo, parsed.
    MemorySnapshot,
    /// The kernel log (klogctl READ_ALL), as lines.
    KernelLog,
    /// The kernel log's records from sequence number `from` on (0: all the ring buffer holds),
    /// with their levels, as [`Reply::Records`]: what the host reads for reports (sanitizers,
    /// lockdep, WARN, BUG) before every kexec and at the end.
    KernelRecords { from: u64 },
    /// kmemleak's leak check (the debug flavour): scan twice, read the suspects and `clear` them,
    /// so the next check reports only new ones. kmemleak reports an object only once it is older
    /// than its minimum age and a scan finds it unreferenced with the contents the scan before
    /// it saw. Where the kernel lets the age be set (`kmemleak.min_age_ms`, the debug flavour's
    /// patch) it is set to `min_age_ms`; elsewhere the agent waits out kmemleak's own 5 s between
    /// the scans. Answered with [`Reply::Leaks`].
    Kmemleak { min_age_ms: u64 },
    /// The gcov counters of every profiled object (/sys/kernel/debug/gcov/**/*.gcda), as
    /// [`Reply::Gcov`]: read before every kexec (which discards them) and at the end.
    GcovData,
    /// The running kernel's own configuration (/proc/config.gz, decompressed), as [`Reply::Text`].
    KernelConfig,
    /// Run a program (from the share or the initramfs). With `background`, do not wait; the child is
    /// then named `handle` and can be waited for with [`Request::Wait`].
    Exec {
        path: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: Vec<(String, String)>,
        /// Written to the program's standard input, which is then closed (None: /dev/null).
        #[serde(default)]
        stdin: Option<String>,
        #[serde(default)]
        background: Option<Handle>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Wait for a background child started by [`Request::Exec`].
    Wait {
        handle: Handle,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// kexec_file_load(kernel, initrd, cmdline) with paths relative to the share.
    KexecLoad {
        kernel: String,
        initrd: String,
        cmdline: String,
    },
    /// reboot(LINUX_REBOOT_CMD_KEXEC). The agent answers first, writes [`KEXEC_MARK`] to the kernel
    /// log, raises the console loglevel (so the old kernel's last lines reach the console with their
    /// timestamps), then reboots while holding every fd.
    KexecReboot,
    /// Power the machine off (the host sees QEMU exit).
    PowerOff,
    /// `systemctl start|stop|restart UNIT` (waits for the job), then the unit's state.
    Unit { unit: String, action: UnitAction },
    /// This boot's journal (`journalctl -b -o cat`), of one unit if named.
    Journal {
        #[serde(default)]
        unit: Option<String>,
    },
    /// End the agent (PID 1) with `code` after replying: the kernel panics with "Attempted to kill
    /// init". Exists to test that the host reports guest panics.
    Exit { code: i32 },
}

fn default_read_max() -> u64 {
    1 << 20
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Done,
    /// The hello of a restored VM, after a [`Request::Resume`].
    Resumed(crate::Hello),
    /// A new handle; `fd` is informational only (never put it in a snapshot).
    Opened {
        fd: i32,
    },
    Name {
        name: String,
    },
    Raw {
        ret: i64,
        arg: Vec<u8>,
    },
    Verified {
        bytes: u64,
    },
    Hash {
        sha256: String,
        size: u64,
    },
    Observation(Observation),
    Text {
        text: String,
        truncated: bool,
    },
    Memory(MemorySnapshot),
    Log {
        lines: Vec<String>,
    },
    /// Kernel log records in sequence order, after a [`Request::KernelRecords`].
    Records(KernelRecords),
    /// What kmemleak suspects, after a [`Request::Kmemleak`]: /sys/kernel/debug/kmemleak's text
    /// (empty: no new leak), at most [`MAX_LOG_BYTES`].
    Leaks {
        report: String,
        truncated: bool,
        /// How long the check took in the guest, waiting included.
        scan_ms: u64,
        /// How long of it was waiting for kmemleak's own minimum age (0 where it could be set).
        waited_ms: u64,
    },
    /// The gcov data files, after a [`Request::GcovData`].
    Gcov {
        files: Vec<GcovFile>,
    },
    Exited(ExitStatus),
    Started {
        pid: i32,
    },
    /// A batch of `count` operations took `ns` nanoseconds (CLOCK_MONOTONIC in the guest).
    Timed {
        count: u32,
        ns: u64,
    },
    /// A systemd unit's state after a [`Request::Unit`].
    Unit(crate::UnitState),
}

/// A stretch of the kernel log, as /dev/kmsg gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecords {
    pub records: Vec<LogRecord>,
    /// The sequence number to ask from next time.
    pub next: u64,
    /// Records the ring buffer dropped before they were read (it wrapped).
    pub lost: u64,
    /// The reply stopped at [`MAX_LOG_BYTES`] of text; `next` says where to go on.
    pub truncated: bool,
}

/// One kernel log record (/dev/kmsg): its first line; continuation lines are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub seq: u64,
    /// The syslog level, 0 (emerg) to 7 (debug).
    pub level: u8,
    /// Microseconds since boot, as printk stamped it.
    pub usec: u64,
    pub text: String,
}

impl LogRecord {
    /// The record as the console shows it: `[    1.234567] text`.
    pub fn line(&self) -> String {
        format!(
            "[{:5}.{:06}] {}",
            self.usec / 1_000_000,
            self.usec % 1_000_000,
            self.text
        )
    }
}

/// How much kernel log text one reply carries at most (the host accepts lines of 16 MiB).
pub const MAX_LOG_BYTES: usize = 4 << 20;

/// One gcov data file of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcovFile {
    /// Its path under /sys/kernel/debug/gcov: the build directory's absolute path, then the
    /// object's (`.../kernel/liveupdate/luo_session.gcda`).
    pub path: String,
    /// Its bytes, hex-encoded.
    pub hex: String,
}

/// The memory a [`Request::RawIoctl`]'s argument is passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgMemory {
    #[default]
    Writable,
    ReadOnly,
    Unmapped,
}

/// What [`Request::Unit`] asks systemd to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitAction {
    Start,
    Stop,
    Restart,
    /// Nothing: only read the state.
    Show,
}

impl UnitAction {
    /// The systemctl verb, None for [`UnitAction::Show`].
    pub fn verb(self) -> Option<&'static str> {
        match self {
            UnitAction::Start => Some("start"),
            UnitAction::Stop => Some("stop"),
            UnitAction::Restart => Some("restart"),
            UnitAction::Show => None,
        }
    }
}

/// What userspace can see of one file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_mode: u32,
    pub st_nlink: u64,
    pub st_size: i64,
    pub st_rdev: u64,
    /// fstatfs f_type.
    pub fs_magic: u64,
    /// readlink(/proc/self/fd/N).
    pub link: String,
    /// F_GET_SEALS, or None where the file does not support seals.
    pub seals: Option<Vec<String>>,
    /// lseek(fd, 0, SEEK_CUR), or None where the file is not seekable.
    pub position: Option<i64>,
    /// FD_CLOEXEC.
    pub cloexec: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySnapshot {
    /// /proc/meminfo in kB, by field name.
    pub meminfo: Vec<(String, u64)>,
    pub slabs: Vec<SlabCache>,
    /// Free pages held in the per-cpu lists (/proc/zoneinfo's pagesets), in bytes: free memory
    /// that MemFree does not count. A figure that leaves them out moves by a batch of pages with
    /// the state the allocator booted into, not with what was allocated.
    #[serde(default)]
    pub pcp_free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlabCache {
    pub name: String,
    pub active_objs: u64,
    pub num_objs: u64,
    pub objsize: u64,
    pub pages_per_slab: u64,
    pub num_slabs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, or None when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// At most [`MAX_PROGRAM_OUTPUT`] bytes of each; the rest is read and dropped.
    pub stdout: String,
    pub stderr: String,
    #[serde(default)]
    pub stdout_truncated: bool,
    #[serde(default)]
    pub stderr_truncated: bool,
    pub duration_us: u64,
}

/// How much of a program's standard output, and of its standard error, the agent sends back: room
/// for a kselftest's KTAP, far below what the host accepts in one line.
pub const MAX_PROGRAM_OUTPUT: usize = 1 << 20;
