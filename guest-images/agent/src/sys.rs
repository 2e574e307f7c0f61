//! Thin safe wrappers over the few raw system calls the agent needs.

use std::ffi::CString;
use std::io;

pub fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

pub fn cstring(s: &str) -> Result<CString, i32> {
    CString::new(s).map_err(|_| libc::EINVAL)
}

/// A syscall result: Ok(value) or Err(errno).
pub fn check(ret: i64) -> Result<i64, i32> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

pub fn mount(source: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<(), i32> {
    mount_with(source, target, fstype, 0, data)
}

pub fn mount_with(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), i32> {
    let _ = std::fs::create_dir_all(target);
    let (s, t, f) = (cstring(source)?, cstring(target)?, cstring(fstype)?);
    let d = data.map(cstring).transpose()?;
    let dp = d
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr() as *const libc::c_void);
    // SAFETY: all pointers are valid NUL-terminated strings or null.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, dp) } as i64).map(|_| ())
}

pub fn umount(target: &str) -> Result<(), i32> {
    let t = cstring(target)?;
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::umount(t.as_ptr()) } as i64).map(|_| ())
}

pub fn power_off() -> ! {
    // Without ACPI the kernel turns POWER_OFF into HALT and QEMU would never exit; a restart is
    // what QEMU's -no-reboot turns into a clean exit.
    let cmd = if std::path::Path::new("/sys/firmware/acpi").exists() {
        libc::LINUX_REBOOT_CMD_POWER_OFF
    } else {
        libc::LINUX_REBOOT_CMD_RESTART
    };
    // SAFETY: plain syscalls; PID 1 may reboot.
    unsafe {
        libc::sync();
        libc::reboot(cmd);
        libc::reboot(libc::LINUX_REBOOT_CMD_RESTART);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// reboot(LINUX_REBOOT_CMD_KEXEC). Returns only on failure, with the errno.
pub fn kexec_reboot() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    errno()
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Marks the kernel log and lets the old kernel's last messages reach the console, then kexecs.
pub fn mark_and_kexec() -> i32 {
    let _ = std::fs::write("/proc/sys/kernel/printk", "7");
    let _ = std::fs::write("/dev/kmsg", format!("{}\n", luo_protocol::KEXEC_MARK));
    kexec_reboot()
}

/// The time-stamp counter, where the CPU has one the agent knows how to read.
pub fn tsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

pub fn boottime_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
