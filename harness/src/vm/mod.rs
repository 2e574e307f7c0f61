//! The VM as processes: virtiofsd + QEMU + QMP for one guest, their artifacts, and why they ended.
//! Nothing here speaks the agent protocol: [`Vm::start`] hands the agent's connection to whoever
//! does (the guest layer, or the bare benchmark).

pub mod accel;
pub mod artifacts;
mod config;
mod end;
mod error;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod saved;
pub mod timeouts;
pub mod virtiofsd;

pub use config::{DEFAULT_MEMORY_MIB, VmConfig};
pub use end::{EndCause, VmEnd};
pub use error::VmError;
pub use qemu::qemu_binary;
pub use timeouts::Timeouts;

use artifacts::Artifacts;
use process::Child;
use qmp::{Qmp, QmpEvent};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};

/// A failure to set a VM up inside its artifacts directory: the directory is kept and named.
fn setup<'a>(
    what: &'static str,
    artifacts: &'a mut Artifacts,
) -> impl FnOnce(std::io::Error) -> VmError + 'a {
    move |source| {
        artifacts.fail();
        VmError::Setup {
            what,
            source,
            artifacts: artifacts.dir().display().to_string(),
        }
    }
}

/// The most console output a VM may write by default: a kernel that floods its serial port is
/// stopped, not allowed to fill the disk. `LUO_HARNESS_CONSOLE_MIB` sets another limit.
pub const MAX_CONSOLE_BYTES: u64 = 64 << 20;

pub fn console_limit() -> u64 {
    std::env::var("LUO_HARNESS_CONSOLE_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|m| *m > 0)
        .map_or(MAX_CONSOLE_BYTES, |m| m << 20)
}

/// A running VM: its processes and artifacts. Dropping it kills QEMU and virtiofsd.
pub struct Vm {
    config: VmConfig,
    artifacts: Artifacts,
    qemu: Child,
    virtiofsd: Option<Child>,
    qmp: Qmp,
    agent: Option<UnixStream>,
    started: Instant,
    guest_panicked: bool,
    shutdown: Option<(bool, String)>,
    /// Set by the console watcher when it stopped QEMU for flooding.
    flooded: Arc<AtomicBool>,
}

/// Watches the console's size while QEMU runs, whatever the runner is doing meanwhile (waiting for
/// a reply, or for a person at `drive`), and stops QEMU when it passes the limit.
fn watch_console(pid: i32, console: PathBuf) -> Arc<AtomicBool> {
    let flooded = Arc::new(AtomicBool::new(false));
    let flag = flooded.clone();
    let limit = console_limit();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // The Vm holds the other reference: when it is gone, so is this watch.
        while Arc::strong_count(&flag) > 1 {
            tick.tick().await;
            let size = std::fs::metadata(&console).map_or(0, |m| m.len());
            if size > limit && process::is_live(pid) {
                tracing::warn!(size, "console flood: stopping the VM");
                flag.store(true, Ordering::Relaxed);
                process::kill_live(pid);
                break;
            }
        }
    });
    flooded
}

impl Vm {
    /// Starts virtiofsd and QEMU and waits until QEMU has connected its agent port and QMP.
    #[tracing::instrument(name = "vm", skip_all, fields(name = %cfg.name, accel = %cfg.accel))]
    pub async fn start(cfg: VmConfig) -> Result<Vm, VmError> {
        Vm::launch(cfg, None).await
    }

    /// Starts the VM from `state` (saved by [`Vm::save`] from a VM with the same configuration)
    /// and waits until the guest runs again. The agent then sits where it was when saved, reading
    /// its port, and has no hello to send: it is asked to resume.
    #[tracing::instrument(name = "vm", skip_all, fields(name = %cfg.name, accel = %cfg.accel, restore = true))]
    pub async fn restore(cfg: VmConfig, state: &Path) -> Result<Vm, VmError> {
        Vm::launch(cfg, Some(state)).await
    }

    /// Saves the whole VM to `file` and leaves it paused (a VM saved is done with: drop it).
    pub async fn save(&self, file: &Path) -> Result<(), qmp::QmpError> {
        self.qmp.save_to(file).await
    }

    async fn launch(cfg: VmConfig, state: Option<&Path>) -> Result<Vm, VmError> {
        let mut artifacts =
            Artifacts::create(&cfg.name, cfg.keep).map_err(|source| VmError::NoArtifacts {
                base: artifacts::base().display().to_string(),
                source,
            })?;
        if cfg.discard_artifacts {
            artifacts.discard();
        }
        let started = Instant::now();
        let mut spec = cfg.qemu_spec(artifacts.dir())?;
        spec.incoming = state.is_some();
        let agent_listener = UnixListener::bind(&spec.agent_socket)
            .map_err(setup("binding the agent socket", &mut artifacts))?;
        let qmp_listener = UnixListener::bind(&spec.qmp_socket)
            .map_err(setup("binding the QMP socket", &mut artifacts))?;
        for (src, rel) in &cfg.share_seed {
            stage_into(&artifacts.share(), src, rel)
                .map_err(setup("staging files into the share", &mut artifacts))?;
        }
        let virtiofsd = match &spec.virtiofs {
            Some((vfs_sock, _)) => {
                let l = std::os::unix::net::UnixListener::bind(vfs_sock)
                    .map_err(setup("binding the virtiofs socket", &mut artifacts))?;
                let log = artifacts.path("virtiofsd.log");
                Some(
                    virtiofsd::spawn(&l, &artifacts.share(), &log)
                        .map_err(setup("starting virtiofsd", &mut artifacts))?,
                )
            }
            None => None,
        };
        let args = spec.args();
        std::fs::write(
            artifacts.path("qemu.cmdline"),
            format!("{} {}\n", spec.binary.display(), shell_words(&args)),
        )
        .map_err(setup("writing qemu.cmdline", &mut artifacts))?;
        let mut cmd = std::process::Command::new(&spec.binary);
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(artifacts.path("qemu.stderr"))
                    .map_err(setup("creating qemu.stderr", &mut artifacts))?,
            );
        let mut qemu = Child::spawn(cmd, "qemu").map_err(setup("starting QEMU", &mut artifacts))?;
        tracing::debug!(pid = qemu.pid(), "qemu started");
        let timeout = cfg.timeouts.boot;
        let accepted = tokio::select! {
            r = async { tokio::try_join!(agent_listener.accept(), qmp_listener.accept()) } => r.map_err(|e| e.to_string()),
            s = qemu.wait() => Err(format!("QEMU exited before connecting: {}", s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))),
            _ = tokio::time::sleep(timeout) => Err(format!("QEMU did not connect to its sockets within {timeout:?}")),
        };
        let fail = |artifacts: &mut Artifacts, message: String| {
            let (stderr, artifacts) = kept(artifacts);
            VmError::Start {
                message,
                stderr,
                artifacts,
            }
        };
        let ((agent, _), (qmp_stream, _)) = match accepted {
            Ok(x) => x,
            Err(msg) => return Err(fail(&mut artifacts, msg)),
        };
        let qmp = match Qmp::negotiate(qmp_stream, &artifacts.path("qmp.jsonl")).await {
            Ok(q) => q,
            Err(e) => return Err(fail(&mut artifacts, format!("QMP: {e}"))),
        };
        if let Some(state) = state
            && let Err(message) = load(&qmp, state, timeout).await
        {
            let (stderr, artifacts) = kept(&mut artifacts);
            return Err(VmError::Restore {
                state: state.display().to_string(),
                message,
                stderr,
                artifacts,
            });
        }
        let flooded = watch_console(qemu.pid(), artifacts.console());
        Ok(Vm {
            config: cfg,
            artifacts,
            flooded,
            qemu,
            virtiofsd,
            qmp,
            agent: Some(agent),
            started,
            guest_panicked: false,
            shutdown: None,
        })
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }
    pub fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }
    /// Keeps the artifacts when the VM is dropped (a failure worth looking at).
    pub fn keep_artifacts(&mut self) {
        self.artifacts.fail();
    }
    /// When the runner began starting this VM (before any process).
    pub fn started(&self) -> Instant {
        self.started
    }
    pub fn qmp(&self) -> &Qmp {
        &self.qmp
    }
    /// The agent's end of the virtio-serial port, once.
    pub fn take_agent(&mut self) -> Option<UnixStream> {
        self.agent.take()
    }

    pub fn console_tail(&self, lines: usize) -> String {
        artifacts::tail(&self.artifacts.console(), lines)
    }

    /// Puts a host file into the guest's share at `rel` (a hard link where it can, else a copy).
    pub fn stage(&self, src: &Path, rel: &str) -> std::io::Result<PathBuf> {
        stage_into(&self.artifacts.share(), src, rel)
    }

    fn note(&mut self, ev: QmpEvent) {
        match ev {
            QmpEvent::GuestPanicked { .. } => self.guest_panicked = true,
            QmpEvent::Shutdown { guest, reason } => self.shutdown = Some((guest, reason)),
            _ => {}
        }
    }

    /// Waits until QEMU has exited and says why. Meanwhile watches virtiofsd: its death ends the
    /// VM (the console's size has a watcher of its own). Cancel-safe: what QMP said so far is kept.
    pub async fn ended(&mut self) -> VmEnd {
        let mut virtiofsd_died = None;
        loop {
            let virtiofsd_exit = async {
                match self.virtiofsd.as_mut() {
                    Some(v) => v.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                s = self.qemu.wait() => {
                    while let Ok(ev) = self.qmp.events.try_recv() {
                        self.note(ev);
                    }
                    let status = s.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(0));
                    return VmEnd {
                        status,
                        guest_panicked: self.guest_panicked,
                        shutdown: self.shutdown.clone(),
                        console_panic: self.console_tail(200).contains("Kernel panic"),
                        console_flood: self.flooded.load(Ordering::Relaxed),
                        virtiofsd_died: virtiofsd_died.clone(),
                    };
                }
                Some(ev) = self.qmp.events.recv() => self.note(ev),
                s = virtiofsd_exit, if virtiofsd_died.is_none() => {
                    // virtiofsd also ends when QEMU goes: only a virtiofsd that dies first is news.
                    let status = s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    if tokio::time::timeout(Duration::from_millis(300), self.qemu.wait()).await.is_err() {
                        tracing::warn!(%status, "virtiofsd died under the VM");
                        virtiofsd_died = Some(status);
                        self.qemu.kill();
                    }
                }
            }
        }
    }

    /// [`Vm::ended`] with a deadline.
    pub async fn ended_within(&mut self, d: Duration) -> Option<VmEnd> {
        tokio::time::timeout(d, self.ended()).await.ok()
    }
}

/// Keeps the artifacts of a VM that did not start, and says what QEMU wrote and where they are.
fn kept(artifacts: &mut Artifacts) -> (String, String) {
    artifacts.fail();
    (
        std::fs::read_to_string(artifacts.path("qemu.stderr")).unwrap_or_default(),
        artifacts.dir().display().to_string(),
    )
}

/// Loads a saved state into a QEMU waiting for one and waits until the guest runs.
async fn load(qmp: &Qmp, state: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    tokio::time::timeout(timeout, qmp.load_from(state))
        .await
        .map_err(|_| format!("not loaded within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    loop {
        match qmp.status().await.map_err(|e| e.to_string())?.as_str() {
            "running" => return Ok(()),
            "inmigrate" | "paused" | "finish-migrate" => {}
            other => return Err(format!("the VM is {other} after loading")),
        }
        if Instant::now() > deadline {
            return Err(format!("not running within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn stage_into(share: &Path, src: &Path, rel: &str) -> std::io::Result<PathBuf> {
    let dst = share.join(rel);
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(&dst);
    std::fs::hard_link(src, &dst).or_else(|_| std::fs::copy(src, &dst).map(|_| ()))?;
    Ok(dst)
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:".contains(c))
            {
                a.clone()
            } else {
                format!("'{a}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
