//! The host side of the agent protocol: a booted guest that answers requests and survives kexec.

mod phases;

pub use phases::{BootPhases, BootRecord};

use crate::vm::Vm;
use crate::vm::qmp::{Qmp, QmpEvent};
use luo_protocol::{
    AgentError, Envelope, Hello, Outcome, PROTOCOL_VERSION, Reply, Request, Response, to_line,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GuestError {
    #[error("{what}: {message}")]
    Setup { what: String, message: String },
    #[error(
        "{failure} (boot {boot}, step `{step}`)\n--- console, last lines ---\n{console}\n--- artifacts kept in {artifacts} ---"
    )]
    Vm {
        failure: Failure,
        boot: u32,
        step: String,
        console: String,
        artifacts: String,
    },
    #[error("boot {boot}, step `{step}`: {error}")]
    Agent {
        boot: u32,
        step: String,
        error: AgentError,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("the guest kernel panicked")]
    Panic,
    #[error("QEMU exited unexpectedly ({0})")]
    Exited(String),
    #[error("no hello from the agent within {0:?}")]
    BootTimeout(Duration),
    #[error("no reply from the agent within {0:?}")]
    Timeout(Duration),
    #[error("agent protocol: {0}")]
    Protocol(String),
}

impl GuestError {
    pub fn setup(what: &str, e: impl std::fmt::Display) -> GuestError {
        GuestError::Setup {
            what: what.to_string(),
            message: e.to_string(),
        }
    }
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            GuestError::Vm { failure, .. } => Some(failure),
            _ => None,
        }
    }
    /// The errno name when the agent reported a failed system call.
    pub fn errno(&self) -> Option<&str> {
        match self {
            GuestError::Agent { error, .. } => error.errno.as_deref(),
            _ => None,
        }
    }
}

/// Where to kexec to; paths on the host, staged into the share.
#[derive(Debug, Clone)]
pub struct KexecTarget {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Replaces the VM's extra command line for the new kernel, if set.
    pub extra_cmdline: Option<String>,
}

pub struct Guest {
    pub vm: Vm,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    transcript: std::fs::File,
    next_id: u64,
    boots: Vec<BootRecord>,
    step: String,
    /// The boot in progress: the one being waited for, or the one answering requests.
    current_boot: u32,
    panicked: bool,
    line: String,
}

impl Guest {
    /// Accepts QEMU's connections and waits for the first hello.
    pub(crate) async fn connect(
        vm: Vm,
        agent: UnixListener,
        qmp: UnixListener,
    ) -> Result<Guest, GuestError> {
        let transcript = std::fs::File::create(vm.artifacts.path("agent.jsonl"))
            .map_err(|e| GuestError::setup("agent transcript", e))?;
        let timeout = vm.config.boot_timeout;
        let mut vm = vm;
        let accepted = tokio::select! {
            r = async { tokio::try_join!(agent.accept(), qmp.accept()) } => r.map_err(|e| e.to_string()),
            s = vm.qemu.wait() => Err(format!("QEMU exited before connecting: {}", s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))),
            _ = tokio::time::sleep(timeout) => Err("QEMU did not connect to its sockets".into()),
        };
        let ((agent_stream, _), (qmp_stream, _)) = match accepted {
            Ok(x) => x,
            Err(msg) => {
                vm.artifacts.fail();
                let stderr = artifact_text(&vm.artifacts.path("qemu.stderr"));
                return Err(GuestError::Setup {
                    what: "starting QEMU".into(),
                    message: format!("{msg}\n{stderr}"),
                });
            }
        };
        let (r, w) = agent_stream.into_split();
        let mut guest = Guest {
            vm,
            reader: BufReader::new(r),
            writer: w,
            transcript,
            next_id: 1,
            boots: vec![],
            step: "boot".into(),
            current_boot: 0,
            panicked: false,
            line: String::new(),
        };
        match Qmp::negotiate(qmp_stream, &guest.vm.artifacts.path("qmp.jsonl")).await {
            Ok(q) => guest.vm.qmp = Some(q),
            Err(e) => return Err(guest.fail(Failure::Protocol(format!("QMP: {e}")))),
        }
        let started = guest.vm.started;
        guest.await_hello(0, started).await?;
        Ok(guest)
    }

    pub fn boots(&self) -> &[BootRecord] {
        &self.boots
    }

    pub fn hello(&self) -> &Hello {
        &self
            .boots
            .last()
            .expect("a connected guest has said hello")
            .hello
    }

    pub fn boot_index(&self) -> u32 {
        self.current_boot
    }

    pub fn artifacts(&self) -> &Path {
        self.vm.artifacts.dir()
    }

    /// Sends one request; an agent-side failure (errno) is `GuestError::Agent`.
    pub async fn request(&mut self, req: Request) -> Result<Reply, GuestError> {
        match self.try_request(req).await? {
            Ok(r) => Ok(r),
            Err(error) => Err(GuestError::Agent {
                boot: self.boot_index(),
                step: self.step.clone(),
                error,
            }),
        }
    }

    /// Sends one request; the outer error is the VM's, the inner the agent's (for expected errnos).
    #[tracing::instrument(name = "request", skip_all, fields(op = op_name(&req)))]
    pub async fn try_request(
        &mut self,
        req: Request,
    ) -> Result<Result<Reply, AgentError>, GuestError> {
        let timeout = self.vm.config.request_timeout;
        self.try_request_within(req, timeout).await
    }

    pub async fn try_request_within(
        &mut self,
        req: Request,
        timeout: Duration,
    ) -> Result<Result<Reply, AgentError>, GuestError> {
        self.step = op_name(&req).to_string();
        let id = self.next_id;
        self.next_id += 1;
        let line = to_line(&Envelope { id, request: req });
        self.log('>', &line);
        if let Err(e) = self.writer.write_all(line.as_bytes()).await {
            return Err(self.fail(Failure::Protocol(format!("writing to the agent: {e}"))));
        }
        let sent = Instant::now();
        let deadline = sent + timeout;
        loop {
            let line = self.next_line(deadline, Failure::Timeout(timeout)).await?;
            match serde_json::from_str::<Response>(&line) {
                Ok(r) if r.id == id => {
                    tracing::debug!(
                        us = sent.elapsed().as_micros() as u64,
                        ok = matches!(r.outcome, Outcome::Ok(_)),
                        "reply"
                    );
                    return Ok(match r.outcome {
                        Outcome::Ok(reply) => Ok(reply),
                        Outcome::Err(e) => Err(e),
                    });
                }
                Ok(r) => {
                    tracing::warn!(id = r.id, expected = id, "reply to another request ignored")
                }
                Err(e) => {
                    return Err(self.fail(Failure::Protocol(format!(
                        "unexpected line from the agent ({e}): {line}"
                    ))));
                }
            }
        }
    }

    /// Loads `target` with kexec_file_load, reboots into it holding every fd, and waits for the new
    /// kernel's hello (whose boot index must be the next one). Returns the blackout as the host saw
    /// it: from the reboot call's reply to the new hello.
    #[tracing::instrument(name = "kexec", skip_all, fields(from_boot = self.boot_index()))]
    pub async fn kexec(&mut self, target: &KexecTarget) -> Result<Duration, GuestError> {
        let next = self.boot_index() + 1;
        let dir = self.vm.artifacts.share().join("kexec");
        let stage = |src: &Path, name: &str| -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let dst = dir.join(name);
            let _ = std::fs::remove_file(&dst);
            std::fs::hard_link(src, &dst).or_else(|_| std::fs::copy(src, &dst).map(|_| ()))
        };
        stage(&target.kernel, "bzImage")
            .map_err(|e| GuestError::setup("staging the kexec kernel", e))?;
        stage(&target.initrd, "initrd")
            .map_err(|e| GuestError::setup("staging the kexec initrd", e))?;
        let mut cfg = self.vm.config.clone();
        if let Some(extra) = &target.extra_cmdline {
            cfg.extra_cmdline = extra.clone();
        }
        let mut cmdline = cfg.cmdline(next);
        for device in machine_device_params(&self.hello().boot.cmdline) {
            cmdline.push(' ');
            cmdline.push_str(device);
        }
        self.request(Request::KexecLoad {
            kernel: "kexec/bzImage".into(),
            initrd: "kexec/initrd".into(),
            cmdline,
        })
        .await?;
        self.request(Request::KexecReboot).await?;
        let t0 = Instant::now();
        self.await_hello(next, t0).await?;
        Ok(t0.elapsed())
    }

    /// Kexec into the kernel and initrd this VM booted with.
    pub async fn kexec_same(&mut self) -> Result<Duration, GuestError> {
        let t = KexecTarget {
            kernel: self.vm.config.kernel.clone(),
            initrd: self.vm.config.initrd.clone(),
            extra_cmdline: None,
        };
        self.kexec(&t).await
    }

    /// Asks the agent to power off and waits for QEMU to exit.
    pub async fn power_off(mut self) -> Result<(), GuestError> {
        self.request(Request::PowerOff).await?;
        let timeout = self.vm.config.boot_timeout;
        tokio::select! {
            s = self.vm.qemu.wait() => match s {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(self.fail(Failure::Exited(s.to_string()))),
                Err(e) => Err(self.fail(Failure::Exited(e.to_string()))),
            },
            _ = tokio::time::sleep(timeout) => Err(self.fail(Failure::Timeout(timeout))),
        }
    }

    async fn await_hello(&mut self, expected: u32, since: Instant) -> Result<(), GuestError> {
        self.step = if expected == 0 {
            "boot".into()
        } else {
            format!("kexec into boot {expected}")
        };
        self.current_boot = expected;
        let timeout = self.vm.config.boot_timeout;
        let line = self
            .next_line(Instant::now() + timeout, Failure::BootTimeout(timeout))
            .await?;
        let hello: Hello = match serde_json::from_str(&line) {
            Ok(h) => h,
            Err(e) => {
                return Err(self.fail(Failure::Protocol(format!(
                    "expected the agent's hello ({e}): {line}"
                ))));
            }
        };
        if hello.protocol != PROTOCOL_VERSION {
            let msg = format!(
                "agent speaks protocol {} but the host speaks {PROTOCOL_VERSION}: rebuild the agent",
                hello.protocol
            );
            return Err(self.fail(Failure::Protocol(msg)));
        }
        if hello.boot.boot_index != Some(expected) {
            let msg = format!(
                "expected boot {expected} but the agent reports {:?} (did the kexec happen?)",
                hello.boot.boot_index
            );
            return Err(self.fail(Failure::Protocol(msg)));
        }
        let to_hello = since.elapsed();
        let tsc_khz = (expected == 0)
            .then(crate::vm::qemu::host_tsc_khz)
            .flatten();
        let phases = BootPhases::new(to_hello, &hello.boot, tsc_khz);
        tracing::info!(
            boot = expected,
            ms = to_hello.as_millis() as u64,
            before_kernel_ms = phases.before_kernel.as_millis() as u64,
            kernel_ms = phases.kernel.as_millis() as u64,
            agent_ms = phases.agent.as_millis() as u64,
            release = %hello.boot.release,
            "agent hello"
        );
        self.boots.push(BootRecord {
            hello,
            to_hello,
            phases,
        });
        Ok(())
    }

    /// The next line from the agent, watching QEMU and QMP meanwhile.
    async fn next_line(
        &mut self,
        deadline: Instant,
        on_timeout: Failure,
    ) -> Result<String, GuestError> {
        self.line.clear();
        loop {
            let qmp_event = async {
                match self.vm.qmp.as_mut() {
                    Some(q) => q.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.reader.read_line(&mut self.line) => match r {
                    Ok(0) => {
                        // The agent's connection closed: QEMU is going away. Say why.
                        let status = tokio::time::timeout(Duration::from_secs(5), self.vm.qemu.wait()).await;
                        let why = match status {
                            Ok(Ok(s)) => self.exit_failure(s),
                            _ => Failure::Protocol("the agent connection closed".into()),
                        };
                        return Err(self.fail(why));
                    }
                    Ok(_) => {
                        let line = std::mem::take(&mut self.line);
                        self.log('<', &line);
                        return Ok(line.trim_end().to_string());
                    }
                    Err(e) => return Err(self.fail(Failure::Protocol(format!("reading from the agent: {e}")))),
                },
                s = self.vm.qemu.wait() => {
                    let why = match s {
                        Ok(s) => self.exit_failure(s),
                        Err(e) => Failure::Exited(e.to_string()),
                    };
                    return Err(self.fail(why));
                }
                ev = qmp_event => {
                    if let Some(QmpEvent::GuestPanicked { .. }) = ev {
                        self.panicked = true;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline.into()) => return Err(self.fail(on_timeout)),
            }
        }
    }

    fn exit_failure(&mut self, status: std::process::ExitStatus) -> Failure {
        // Drain QMP events that arrived with the exit.
        if let Some(q) = self.vm.qmp.as_mut() {
            while let Ok(ev) = q.events.try_recv() {
                if matches!(ev, QmpEvent::GuestPanicked { .. }) {
                    self.panicked = true;
                }
            }
        }
        let console = self.vm.console_tail(200);
        if self.panicked || console.contains("Kernel panic") {
            Failure::Panic
        } else {
            Failure::Exited(status.to_string())
        }
    }

    fn fail(&mut self, failure: Failure) -> GuestError {
        self.vm.artifacts.fail();
        tracing::debug!(%failure, step = %self.step, "guest failure");
        GuestError::Vm {
            failure,
            boot: self.current_boot,
            step: self.step.clone(),
            console: self.vm.console_tail(30),
            artifacts: self.vm.artifacts.dir().display().to_string(),
        }
    }

    /// Marks the run failed so its artifacts are kept (a check failed after a clean run).
    pub fn keep_artifacts(&mut self) {
        self.vm.artifacts.fail();
    }

    fn log(&mut self, dir: char, line: &str) {
        let ms = self.vm.started.elapsed().as_secs_f64() * 1000.0;
        let _ = write!(self.transcript, "{ms:10.3} {dir} {line}");
        if !line.ends_with('\n') {
            let _ = writeln!(self.transcript);
        }
    }
}

fn artifact_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The protocol's own name for the operation (its serde tag), interned.
pub fn op_name(req: &Request) -> &'static str {
    use std::collections::BTreeSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let Some(name) = serde_json::to_value(req)
        .ok()
        .and_then(|v| v.get("op")?.as_str().map(String::from))
    else {
        return "request";
    };
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap();
    if let Some(n) = names.get(name.as_str()) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The parameters QEMU added to the first kernel's command line to announce microvm's virtio-mmio
/// devices. The devices are still there after a kexec, so the next kernel needs them too.
pub fn machine_device_params(cmdline: &str) -> impl Iterator<Item = &str> {
    cmdline
        .split_whitespace()
        .filter(|w| w.starts_with("virtio_mmio.device="))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_virtio_mmio_devices_are_carried_to_the_next_kernel() {
        let first = "console=ttyS0 quiet luo_harness.boot=0 virtio_mmio.device=512@0xfeb00e00:12 \
                     virtio_mmio.device=512@0xfeb00c00:11 foo=bar";
        let carried: Vec<_> = super::machine_device_params(first).collect();
        assert_eq!(
            carried,
            [
                "virtio_mmio.device=512@0xfeb00e00:12",
                "virtio_mmio.device=512@0xfeb00c00:11"
            ]
        );
        assert_eq!(super::machine_device_params("console=ttyS0").count(), 0);
    }
}
