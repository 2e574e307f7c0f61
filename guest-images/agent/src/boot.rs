//! What PID 1 does before serving: mounts, the agent port, and the facts of this boot.

use crate::sys;
use luo_protocol::{AGENT_PORT_NAME, BOOT_INDEX_PARAM, BootFacts, SHARE_MOUNT, SHARE_TAG};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

pub fn setup_pid1() -> Result<(), String> {
    let need = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ];
    for (src, dst, fs) in need {
        // EBUSY: already mounted (devtmpfs automount); anything else is fatal.
        match sys::mount(src, dst, fs, None) {
            Ok(()) | Err(libc::EBUSY) => {}
            Err(e) => {
                return Err(format!(
                    "mount {fs} on {dst}: {}",
                    luo_protocol::errno_name(e)
                ));
            }
        }
    }
    // Optional: debugfs (KHO state) and the share. Their absence is reported by the requests that
    // need them, so a kernel without them still comes up and says hello.
    let _ = sys::mount("debugfs", "/sys/kernel/debug", "debugfs", None);
    // /tmp is the initramfs's own directory: rootfs is already a writable tmpfs.
    raise_fd_limit();
    Ok(())
}

/// Mounts the virtiofs share the first time a request needs it: many boots (the one after a kexec,
/// typically) never touch it, and the FUSE handshake costs about 10 ms under TCG. A failed mount is
/// retried next time and shows up as the request's ENOENT/ENODEV.
pub fn ensure_share() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static MOUNTED: AtomicBool = AtomicBool::new(false);
    if !MOUNTED.load(Ordering::Relaxed)
        && sys::mount(SHARE_TAG, SHARE_MOUNT, "virtiofs", None).is_ok()
    {
        MOUNTED.store(true, Ordering::Relaxed);
    }
}

/// Scenarios hold thousands of session fds; the default 1024 would cap them before LUO does. The
/// kernel's default fs.nr_open (2^20) is tried first: reading the sysctl costs a boot more than the
/// call does.
fn raise_fd_limit() {
    let set = |n: u64| {
        let lim = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: plain syscall with a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
    };
    if !set(1 << 20)
        && let Some(nr_open) = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    {
        set(nr_open);
    }
}

/// The virtio-serial port named [`AGENT_PORT_NAME`]. The device node can lag its sysfs entry by a
/// moment on a fresh boot, so poll briefly.
pub fn open_agent_port() -> Result<File, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(dev) = find_port() {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&dev)
            {
                Ok(f) => return Ok(f),
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(format!("open {dev}: {e}"));
                }
                Err(_) => {}
            }
        } else if std::time::Instant::now() > deadline {
            return Err(format!(
                "no virtio-serial port named {AGENT_PORT_NAME} under /sys/class/virtio-ports"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn find_port() -> Option<String> {
    for e in std::fs::read_dir("/sys/class/virtio-ports").ok()?.flatten() {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == AGENT_PORT_NAME {
            return Some(format!("/dev/{}", e.file_name().to_string_lossy()));
        }
    }
    None
}

/// Which kernel of the VM this is (0: the one QEMU started), as the harness numbered it.
pub fn boot_index(cmdline: &str) -> Option<u32> {
    cmdline.split_whitespace().find_map(|w| {
        w.strip_prefix(BOOT_INDEX_PARAM)?
            .strip_prefix('=')?
            .parse()
            .ok()
    })
}

/// The facts of this boot; `agent_start_us` is CLOCK_BOOTTIME when `main` began.
pub fn facts(agent_start_us: u64) -> BootFacts {
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .trim()
        .to_string();
    let boot_index = boot_index(&cmdline);
    let log = kernel_log();
    let liveupdate_number = log
        .iter()
        .find_map(|l| l.split("liveupdate number: ").nth(1)?.trim().parse().ok());
    let kho_exec_from = log.iter().find_map(|l| {
        let rest = l.split("KHO: exec from: ").nth(1)?;
        Some(rest.split(" (count").next()?.trim().to_string())
    });
    let kho_disabled_on_cmdline = cmdline
        .split_whitespace()
        .any(|w| w == "kho=off" || w == "kho=0");
    let kho_failed = log.iter().any(|l| l.contains("disabling kexec handover"));
    BootFacts {
        release: uname_release(),
        cmdline,
        boot_index,
        liveupdate_number,
        kho_exec_from,
        liveupdate_device: std::path::Path::new("/dev/liveupdate").exists(),
        kho_enabled: std::path::Path::new("/sys/kernel/debug/kho").exists()
            && !kho_disabled_on_cmdline
            && !kho_failed,
        uptime_us: sys::boottime_us(),
        agent_start_us,
        tsc: sys::tsc(),
    }
}

fn uname_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut u) };
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The whole kernel log from /dev/kmsg, formatted like dmesg: `[    1.234567] message`.
pub fn kernel_log() -> Vec<String> {
    crate::kmsg::read_from(0, usize::MAX)
        .records
        .iter()
        .map(luo_protocol::LogRecord::line)
        .collect()
}
