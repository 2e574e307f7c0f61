//! One virtiofsd per VM, serving the run's share directory.

use super::process::Child;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The fd number the listening socket gets in virtiofsd (high, clear of anything std uses).
const LISTEN_FD: i32 = 100;

pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LUO_HARNESS_VIRTIOFSD") {
        return Some(PathBuf::from(p));
    }
    luo_kernels::hosttools::which("virtiofsd")
        .or_else(|| {
            ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cargo/bin/virtiofsd"))
                .filter(|p| p.is_file())
        })
}

/// Starts virtiofsd on an already-listening socket, so QEMU can connect the moment it starts.
pub fn spawn(
    listener: &std::os::unix::net::UnixListener,
    shared_dir: &Path,
    log: &Path,
) -> std::io::Result<Child> {
    let bin = binary().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "virtiofsd not found (cargo install --locked virtiofsd)",
        )
    })?;
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--fd={LISTEN_FD}"))
        .arg("--shared-dir")
        .arg(shared_dir)
        .args(["--cache=never", "--sandbox=none", "--log-level=error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    // SAFETY: dup2 is async-signal-safe; the duplicate is not close-on-exec, the original is.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Child::spawn(cmd, "virtiofsd")
}
