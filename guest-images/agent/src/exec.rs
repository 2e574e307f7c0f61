//! Running programs from the share: foreground with a timeout, or in the background by name.

use luo_protocol::{AgentError, ErrorKind, ExitStatus};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program's output as sent back: at most MAX_PROGRAM_OUTPUT bytes, and whether there was more.
type Output = (String, bool);

pub struct Running {
    child: Child,
    /// The copy it runs from (removed once it is waited for: a script's shell opens it by name).
    copy: Option<String>,
    started: Instant,
    out: std::thread::JoinHandle<(Output, Output)>,
}

/// Everything `r` gives until EOF, of which the first MAX_PROGRAM_OUTPUT bytes are kept.
fn bounded(mut r: impl Read) -> Output {
    let limit = luo_protocol::MAX_PROGRAM_OUTPUT;
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut more = false;
    loop {
        match r.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
                more |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), more)
}

/// This boot's index (0 for the first, 1 after one kexec, ...), from the kernel command line.
fn boot_index() -> String {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    cmdline
        .split_whitespace()
        .find_map(|w| {
            w.strip_prefix(luo_protocol::BOOT_INDEX_PARAM)?
                .strip_prefix('=')
        })
        .unwrap_or("")
        .to_string()
}

/// Copies a program out of the share into the guest's own memory and returns the copy's path.
/// Under TCG, virtiofsd writes file data straight into guest RAM, behind QEMU's back: a page that
/// held code QEMU had translated keeps running the old translation (seen after a kexec: a static
/// glibc program jumping into the middle of an instruction). A copy written by the guest's CPU
/// invalidates those translations.
fn copy_out(path: &str) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = "/tmp/exec";
    std::fs::create_dir_all(dir)?;
    let name = path.rsplit('/').next().unwrap_or("program");
    let copy = format!("{dir}/{}-{name}", N.fetch_add(1, Ordering::Relaxed));
    let mut from = std::fs::File::open(path)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&copy)?;
    std::io::copy(&mut from, &mut to)?;
    Ok(copy)
}

#[derive(Default)]
pub struct Children {
    running: BTreeMap<String, Running>,
}

/// Starts `path` in its own directory (a program in the share finds its `files` beside it), or
/// in the share's programs/ for one of the image's, with PATH, LUO_HARNESS_SHARE and
/// LUO_HARNESS_BOOT set under the scenario's `env`, and `stdin` written to it.
pub fn spawn(
    path: &str,
    args: &[String],
    env: &[(String, String)],
    stdin: Option<String>,
) -> Result<Running, AgentError> {
    let call = format!("exec({path})");
    // A program in the share runs where it is; any other (/bin/sh) where the scenario's files
    // are, if it staged any.
    let programs = format!("{}/programs", luo_protocol::SHARE_MOUNT);
    let dir = match std::path::Path::new(path).parent() {
        Some(d) if path.starts_with(luo_protocol::SHARE_MOUNT) => d.to_path_buf(),
        _ if std::path::Path::new(&programs).is_dir() => programs.into(),
        _ => "/".into(),
    };
    // Not Command::current_dir (nor pre_exec): either makes std fork instead of posix_spawn, and
    // in the guest that spawn fails with ENOSYS. The agent serves one request at a time, so it
    // moves into the directory for the spawn and back.
    let _ = std::env::set_current_dir(dir);
    let copy = match path.starts_with(luo_protocol::SHARE_MOUNT) {
        true => Some(
            copy_out(path)
                .map_err(|e| AgentError::new(ErrorKind::Syscall, call.clone(), e.to_string()))?,
        ),
        false => None,
    };
    let spawned = Command::new(copy.as_deref().unwrap_or(path))
        .args(args)
        .env("PATH", "/bin:/sbin")
        .env("LUO_HARNESS_SHARE", luo_protocol::SHARE_MOUNT)
        .env("LUO_HARNESS_BOOT", boot_index())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let _ = std::env::set_current_dir("/");

    let mut child = spawned.map_err(|e| match e.raw_os_error() {
        Some(n) => AgentError::syscall(call.clone(), n),
        None => AgentError::new(ErrorKind::BadRequest, call.clone(), e.to_string()),
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // On a thread: a child that reads slowly (or never) must not stall the agent. Dropping
        // the pipe when done closes the child's stdin.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let (so, se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let err_thread = std::thread::spawn(move || bounded(se));
        (bounded(so), err_thread.join().unwrap_or_default())
    });
    Ok(Running {
        child,
        copy,
        started: Instant::now(),
        out,
    })
}

pub fn wait(
    mut r: Running,
    timeout: Option<Duration>,
    call: &str,
) -> Result<ExitStatus, AgentError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let status = loop {
        match r.child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(AgentError::new(ErrorKind::Syscall, call, e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = r.child.kill();
            let _ = r.child.wait();
            if let Some(c) = &r.copy {
                let _ = std::fs::remove_file(c);
            }
            return Err(AgentError::syscall(call, libc::ETIMEDOUT));
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let duration_us = r.started.elapsed().as_micros() as u64;
    if let Some(c) = &r.copy {
        let _ = std::fs::remove_file(c);
    }
    let ((stdout, stdout_truncated), (stderr, stderr_truncated)) = r.out.join().unwrap_or_default();
    Ok(ExitStatus {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        duration_us,
    })
}

impl Children {
    pub fn start(&mut self, name: &str, r: Running) -> Result<i32, AgentError> {
        if self.running.contains_key(name) {
            return Err(AgentError::new(
                ErrorKind::Handle,
                "exec",
                format!("background name {name:?} is in use"),
            ));
        }
        let pid = r.child.id() as i32;
        self.running.insert(name.to_string(), r);
        Ok(pid)
    }

    pub fn wait(
        &mut self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<ExitStatus, AgentError> {
        let call = format!("wait({name})");
        let r = self.running.remove(name).ok_or_else(|| {
            AgentError::new(
                ErrorKind::Handle,
                &call,
                format!("no background program {name:?}"),
            )
        })?;
        wait(r, timeout, &call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_kept_up_to_the_limit_and_marked_when_there_was_more() {
        let limit = luo_protocol::MAX_PROGRAM_OUTPUT;
        let (text, more) = bounded(std::io::Cursor::new(vec![b'k'; 3 * limit + 17]));
        assert_eq!((text.len(), more), (limit, true));
        let (text, more) = bounded(std::io::Cursor::new(vec![b'k'; limit]));
        assert_eq!(
            (text.len(), more),
            (limit, false),
            "exactly the limit is not truncated"
        );
        let (text, more) = bounded(&b"ok 1 - small\n"[..]);
        assert_eq!((text.as_str(), more), ("ok 1 - small\n", false));
    }
}
