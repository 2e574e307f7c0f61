//! Child processes (QEMU, virtiofsd) that can never outlive the runner.
//!
//! - Each child gets `PR_SET_PDEATHSIG(SIGKILL)`: the kernel kills it if the runner dies, even by
//!   SIGKILL. The signal fires when the *thread* that forked exits, so every child is forked from one
//!   thread that lives as long as the process.
//! - Each child gets its own process group, so a terminal's Ctrl-C reaches only the runner, whose
//!   handler then kills every registered child ([`kill_all_children`]) and names the artifacts of
//!   the VMs that were running ([`live_artifact_dirs`]).
//! - [`Child`] kills its process on drop, which covers errors and panics.
//! - Exit is awaited through a pidfd, so waiting needs no thread and no polling.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use tokio::io::unix::AsyncFd;

type SpawnJob = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("luo-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the process-spawner thread");
        Mutex::new(tx)
    })
}

/// Live children by pid, with what the signal handler should say about them.
fn registry() -> &'static Mutex<BTreeMap<i32, String>> {
    static REG: OnceLock<Mutex<BTreeMap<i32, String>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// Artifact directories of runs in progress, with the phase each is in (boot and step), printed if
/// the runner is interrupted.
fn live_artifacts() -> &'static Mutex<BTreeMap<PathBuf, String>> {
    static A: OnceLock<Mutex<BTreeMap<PathBuf, String>>> = OnceLock::new();
    A.get_or_init(Default::default)
}

pub fn register_artifacts(dir: PathBuf) {
    live_artifacts()
        .lock()
        .unwrap()
        .insert(dir, "starting the VM".into());
}
/// Records what the run using `dir` is doing now (`boot 1, step `retrieve_fd``).
pub fn note_phase(dir: &std::path::Path, phase: String) {
    if let Some(p) = live_artifacts().lock().unwrap().get_mut(dir) {
        *p = phase;
    }
}
pub fn unregister_artifacts(dir: &PathBuf) {
    live_artifacts().lock().unwrap().remove(dir);
}

pub struct Child {
    pid: i32,
    name: String,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<std::process::ExitStatus>,
}

impl Child {
    /// Spawns `cmd` with the protections above. `name` is used in errors and logs.
    pub fn spawn(cmd: Command, name: &str) -> std::io::Result<Child> {
        Child::spawn_with(cmd, name, true)
    }

    /// The same, but in the runner's own process group, so a terminal's Ctrl-C reaches it too:
    /// for a child that runs luo-harness again (git bisect run) and must stop its own VMs.
    pub fn spawn_in_group(cmd: Command, name: &str) -> std::io::Result<Child> {
        Child::spawn_with(cmd, name, false)
    }

    fn spawn_with(mut cmd: Command, name: &str, own_group: bool) -> std::io::Result<Child> {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || (own_group && libc::setpgid(0, 0) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() == 1 {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner()
            .lock()
            .unwrap()
            .send((cmd, tx))
            .expect("spawner thread is alive");
        let child = rx.recv().expect("spawner thread replies")?;
        let pid = child.id() as i32;
        // std's Child would not reap on drop anyway; from here the pidfd and waitpid do the work.
        std::mem::forget(child);
        registry().lock().unwrap().insert(pid, name.to_string());
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            kill_pid(pid);
            return Err(e);
        }
        // SAFETY: fd is a fresh pidfd that we own and that lives exactly as long as the AsyncFd.
        let pidfd = unsafe {
            AsyncFd::register_with_interest(
                OwnedFd::from_raw_fd(fd as i32),
                tokio::io::Interest::READABLE,
            )
        }?;
        tracing::debug!(pid, name, "spawned");
        Ok(Child {
            pid,
            name: name.to_string(),
            pidfd,
            status: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the process exits and reaps it.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        loop {
            let mut guard = self.pidfd.readable().await?;
            if let Some(raw) = reap(self.pid)? {
                drop(guard);
                return Ok(self.record(raw));
            }
            guard.clear_ready();
        }
    }

    /// Reaps the process if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        Ok(reap(self.pid)?.map(|raw| self.record(raw)))
    }

    fn record(&mut self, raw: i32) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        let s = std::process::ExitStatus::from_raw(raw);
        self.status = Some(s);
        registry().lock().unwrap().remove(&self.pid);
        tracing::debug!(pid = self.pid, name = self.name, status = %s, "exited");
        s
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        kill_pid(self.pid);
        // SAFETY: reaping our own killed child; it exits promptly after SIGKILL.
        let mut raw = 0;
        unsafe { libc::waitpid(self.pid, &mut raw, 0) };
        use std::os::unix::process::ExitStatusExt;
        self.status = Some(std::process::ExitStatus::from_raw(raw));
        registry().lock().unwrap().remove(&self.pid);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// waitpid(WNOHANG): the raw status if the child has exited.
fn reap(pid: i32) -> std::io::Result<Option<i32>> {
    let mut raw = 0;
    // SAFETY: plain syscall on our own child.
    match unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) } {
        r if r < 0 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some(raw)),
    }
}

fn kill_pid(pid: i32) {
    // SAFETY: plain syscall.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Whether `pid` is a child of ours that has not been reaped.
pub fn is_live(pid: i32) -> bool {
    registry()
        .lock()
        .map(|r| r.contains_key(&pid))
        .unwrap_or(false)
}

/// SIGKILL to a child of ours, if it is still one (never to a recycled pid).
pub fn kill_live(pid: i32) {
    if is_live(pid) {
        kill_pid(pid);
    }
}

/// Kills every registered child. Used by the signal handler and the panic hook.
pub fn kill_all_children() {
    let pids: Vec<i32> = registry()
        .lock()
        .map(|r| r.keys().copied().collect())
        .unwrap_or_default();
    for pid in pids {
        kill_pid(pid);
    }
}

/// Artifact directories of VMs that are running now with their phases (what an interrupted run
/// should name).
pub fn live_artifact_dirs() -> Vec<(PathBuf, String)> {
    live_artifacts()
        .lock()
        .map(|a| a.iter().map(|(d, p)| (d.clone(), p.clone())).collect())
        .unwrap_or_default()
}
