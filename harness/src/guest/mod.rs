//! The agent protocol on top of a running [`Vm`]: the hello of every boot, one reply per request,
//! kexec into the next kernel, power off. QEMU is watched through the VM layer while waiting, so
//! a guest that dies is reported with why, where, and its console.

mod error;
mod kexec;
pub mod link;
mod phases;
mod start;

pub use error::{Failure, GuestError};
pub use kexec::{KexecTarget, machine_device_params};
pub use link::MAX_LINE;
pub use phases::{BootPhases, BootRecord};
pub use start::Start;

use crate::vm::{EndCause, Vm, VmConfig};
use link::{AgentLink, LinkError};
use luo_protocol::{
    AgentError, Envelope, Hello, Outcome, PROTOCOL_VERSION, Reply, Request, Response, to_line,
};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Guest {
    vm: Vm,
    link: AgentLink,
    next_id: u64,
    boots: Vec<BootRecord>,
    step: String,
    /// The boot in progress: the one being waited for, or the one answering requests.
    current_boot: u32,
    start: Start,
}

impl Guest {
    /// Starts the VM, from a saved one where it can (guest/start.rs), and waits for the agent's
    /// first hello.
    pub async fn boot(cfg: VmConfig) -> Result<Guest, GuestError> {
        start::boot(cfg).await
    }

    /// Takes a cold-booted VM's agent connection and waits for the first hello.
    pub async fn connect(vm: Vm) -> Result<Guest, GuestError> {
        let mut guest = Guest::attach(vm)?;
        let started = guest.vm.started();
        guest.await_hello(0, started).await?;
        Ok(guest)
    }

    /// Takes a restored VM's agent connection and asks the agent to resume: it sets its clock to
    /// the host's and answers with the facts of its boot as they are now.
    async fn resume(vm: Vm, key: String) -> Result<Guest, GuestError> {
        let mut guest = Guest::attach(vm)?;
        guest.start = Start::Restored { key };
        let unix_time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let hello = match guest.request(Request::Resume { unix_time_ns }).await? {
            Reply::Resumed(hello) => hello,
            other => {
                let msg = format!("expected the resumed agent's hello, got {other:?}");
                return Err(guest.fail(Failure::Protocol(msg)));
            }
        };
        let to_hello = guest.vm.started().elapsed();
        guest.accept_hello(hello, 0, to_hello)?;
        Ok(guest)
    }

    fn attach(mut vm: Vm) -> Result<Guest, GuestError> {
        let transcript =
            std::fs::File::create(vm.artifacts().path("agent.jsonl")).map_err(|e| {
                GuestError::Stage {
                    what: "creating agent.jsonl".into(),
                    boot: 0,
                    step: "boot".into(),
                    source: e,
                    artifacts: vm.artifacts().dir().display().to_string(),
                }
            })?;
        let stream = vm
            .take_agent()
            .expect("a fresh VM has its agent connection");
        Ok(Guest {
            link: AgentLink::new(stream, transcript, vm.started()),
            vm,
            next_id: 1,
            boots: vec![],
            step: "boot".into(),
            current_boot: 0,
            start: Start::Cold {
                reason: "a cold boot was asked for",
            },
        })
    }

    /// How the first boot came about: booted, or restored from a saved VM.
    pub fn start(&self) -> &Start {
        &self.start
    }

    /// The step now in progress, for failures and for an interrupted run's message.
    fn enter(&mut self, step: String) {
        crate::vm::process::note_phase(
            self.vm.artifacts().dir(),
            format!("boot {}, step `{step}`", self.current_boot),
        );
        self.step = step;
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

    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    pub fn artifacts(&self) -> &Path {
        self.vm.artifacts().dir()
    }

    /// Marks the run failed so its artifacts are kept (a check failed after a clean run).
    pub fn keep_artifacts(&mut self) {
        self.vm.keep_artifacts();
    }

    /// Puts a host file into the share at `rel`, for the guest to read.
    pub fn stage(&self, src: &Path, rel: &str) -> Result<(), GuestError> {
        self.vm
            .stage(src, rel)
            .map(|_| ())
            .map_err(|source| GuestError::Stage {
                what: format!("staging {} into the share as {rel}", src.display()),
                boot: self.current_boot,
                // A host-side step between requests: the last request's name would mislead.
                step: format!("stage {rel}"),
                source,
                artifacts: self.artifacts().display().to_string(),
            })
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
    pub async fn try_request(
        &mut self,
        req: Request,
    ) -> Result<Result<Reply, AgentError>, GuestError> {
        let timeout = self.vm.config().timeouts.request;
        self.try_request_within(req, timeout).await
    }

    #[tracing::instrument(name = "request", skip_all, fields(op = op_name(&req), id = self.next_id))]
    pub async fn try_request_within(
        &mut self,
        req: Request,
        timeout: Duration,
    ) -> Result<Result<Reply, AgentError>, GuestError> {
        self.enter(op_name(&req).to_string());
        let id = self.next_id;
        self.next_id += 1;
        let line = to_line(&Envelope { id, request: req });
        if let Err(e) = self.link.send(&line).await {
            // A port that will not take a line is usually a VM that has gone: say why it went.
            let why = self
                .why_gone(Duration::from_secs(2), format!("writing to the agent: {e}"))
                .await;
            return Err(self.fail(why));
        }
        let sent = Instant::now();
        let deadline = sent + timeout;
        let line = self.next_line(deadline, Failure::Timeout(timeout)).await?;
        match luo_protocol::from_line::<Response>(&line) {
            Ok(r) if r.id == id => {
                tracing::debug!(
                    us = sent.elapsed().as_micros() as u64,
                    ok = matches!(r.outcome, Outcome::Ok(_)),
                    "reply"
                );
                Ok(match r.outcome {
                    Outcome::Ok(reply) => Ok(reply),
                    Outcome::Err(e) => Err(e),
                })
            }
            Ok(r) => Err(self.fail(Failure::Protocol(format!(
                "a reply to request {} while waiting for {id}",
                r.id
            )))),
            Err(e) => Err(self.fail(Failure::Protocol(format!(
                "unexpected line from the agent ({e}): {}",
                clip(&line)
            )))),
        }
    }

    /// Loads `target` with kexec_file_load, reboots into it holding every fd, and waits for the new
    /// kernel's hello (whose boot index must be the next one). Returns the blackout as the host saw
    /// it: from the reboot call's reply to the new hello.
    pub async fn kexec(&mut self, target: &KexecTarget) -> Result<Duration, GuestError> {
        self.kexec_load(target).await?;
        self.kexec_reboot().await
    }

    /// Stages `target` into the share and loads it with kexec_file_load, with the command line
    /// the next boot gets; the running kernel goes on until [`Guest::kexec_reboot`].
    pub async fn kexec_load(&mut self, target: &KexecTarget) -> Result<(), GuestError> {
        let next = self.boot_index() + 1;
        self.stage(&target.kernel, kexec::KERNEL)?;
        self.stage(&target.initrd, kexec::INITRD)?;
        let cmdline = target.cmdline(self.vm.config(), next, &self.hello().boot.cmdline);
        self.request(Request::KexecLoad {
            kernel: kexec::KERNEL.into(),
            initrd: kexec::INITRD.into(),
            cmdline,
        })
        .await?;
        Ok(())
    }

    /// reboot(KEXEC) into the loaded kernel and its hello; returns the blackout.
    #[tracing::instrument(name = "kexec", skip_all, fields(from_boot = self.boot_index()))]
    pub async fn kexec_reboot(&mut self) -> Result<Duration, GuestError> {
        let next = self.boot_index() + 1;
        self.request(Request::KexecReboot).await?;
        let t0 = Instant::now();
        self.await_hello(next, t0).await?;
        Ok(t0.elapsed())
    }

    /// The id the next request will carry (the agent marks each in the kernel log).
    pub fn next_request_id(&self) -> u64 {
        self.next_id
    }

    /// Kexec into the kernel and initrd this VM booted with.
    pub async fn kexec_same(&mut self) -> Result<Duration, GuestError> {
        let cfg = self.vm.config();
        let t = KexecTarget {
            kernel: cfg.kernel.clone(),
            initrd: cfg.initrd.clone(),
            extra_cmdline: None,
        };
        self.kexec(&t).await
    }

    /// Asks the agent to power off and waits for QEMU to exit.
    pub async fn power_off(mut self) -> Result<(), GuestError> {
        self.request(Request::PowerOff).await?;
        let timeout = self.vm.config().timeouts.boot;
        match self.vm.ended_within(timeout).await {
            Some(end) => match end.cause() {
                EndCause::GuestStopped { .. } => Ok(()),
                EndCause::GuestPanic => Err(self.fail(Failure::Panic)),
                other => Err(self.fail(Failure::Ended(other))),
            },
            None => Err(self.fail(Failure::Timeout(timeout))),
        }
    }

    #[tracing::instrument(name = "boot", skip(self, since), fields(vm = %self.vm.config().name))]
    async fn await_hello(&mut self, expected: u32, since: Instant) -> Result<(), GuestError> {
        self.current_boot = expected;
        self.enter(if expected == 0 {
            "boot".into()
        } else {
            format!("kexec into boot {expected}")
        });
        let timeout = self.vm.config().timeouts.boot;
        let line = self
            .next_line(Instant::now() + timeout, Failure::BootTimeout(timeout))
            .await?;
        let hello: Hello = match luo_protocol::from_line(&line) {
            Ok(h) => h,
            Err(e) => {
                return Err(self.fail(Failure::Protocol(format!(
                    "expected the agent's hello ({e}): {}",
                    clip(&line)
                ))));
            }
        };
        self.accept_hello(hello, expected, since.elapsed())
    }

    /// Checks a hello (sent at boot, or in answer to a resume) and records the boot.
    fn accept_hello(
        &mut self,
        hello: Hello,
        expected: u32,
        to_hello: Duration,
    ) -> Result<(), GuestError> {
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
        let restored = matches!(self.start, Start::Restored { .. }) && expected == 0;
        let phases = if restored {
            BootPhases::restored(to_hello)
        } else {
            let tsc_khz = (expected == 0)
                .then(crate::vm::qemu::host_tsc_khz)
                .flatten();
            BootPhases::new(to_hello, &hello.boot, tsc_khz)
        };
        tracing::info!(
            boot = expected,
            ms = to_hello.as_millis() as u64,
            before_kernel_ms = phases.before_kernel.as_millis() as u64,
            kernel_ms = phases.kernel.as_millis() as u64,
            agent_ms = phases.agent.as_millis() as u64,
            release = %hello.boot.release,
            "agent hello"
        );
        let began = Instant::now()
            .checked_sub(to_hello)
            .unwrap_or_else(Instant::now);
        for (name, at, dur) in phases.slices(expected) {
            crate::timeline::phase(&name, began + at, dur);
        }
        self.boots.push(BootRecord {
            hello,
            to_hello,
            phases,
        });
        Ok(())
    }

    /// The next line from the agent, watching QEMU meanwhile.
    async fn next_line(
        &mut self,
        deadline: Instant,
        on_timeout: Failure,
    ) -> Result<String, GuestError> {
        let failure = tokio::select! {
            r = self.link.read_line() => match r {
                Ok(Some(line)) => return Ok(line),
                // The agent's end closed: QEMU is going away. Say why.
                Ok(None) => self.why_gone(Duration::from_secs(5), "the agent connection closed".into()).await,
                Err(e @ (LinkError::TooLong | LinkError::NotUtf8(_))) => Failure::Protocol(e.to_string()),
                // So is a reset connection: a killed QEMU's socket can reset before its exit is
                // seen (CI once reported "Connection reset by peer" for a QEMU killed mid-kexec).
                Err(e) => self.why_gone(Duration::from_secs(5), e.to_string()).await,
            },
            end = self.vm.ended() => ended(end.cause()),
            _ = tokio::time::sleep_until(deadline.into()) => on_timeout,
        };
        Err(self.fail(failure))
    }

    /// Why the link to the agent broke: the VM's end if it comes within `wait`, else `what`.
    async fn why_gone(&mut self, wait: Duration, what: String) -> Failure {
        match self.vm.ended_within(wait).await {
            Some(end) => ended(end.cause()),
            None => Failure::Protocol(what),
        }
    }

    fn fail(&mut self, failure: Failure) -> GuestError {
        self.vm.keep_artifacts();
        tracing::debug!(%failure, step = %self.step, "guest failure");
        GuestError::Failed {
            failure,
            boot: self.current_boot,
            step: self.step.clone(),
            console: self.vm.console_tail(30),
            artifacts: self.artifacts().display().to_string(),
            reports: Box::default(),
        }
    }
}

fn ended(cause: EndCause) -> Failure {
    match cause {
        EndCause::GuestPanic => Failure::Panic,
        other => Failure::Ended(other),
    }
}

/// A line quoted in an error, cut to something a terminal can show.
fn clip(line: &str) -> String {
    const MAX: usize = 300;
    match line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}... ({} bytes)", &line[..i], line.len()),
        None => line.to_string(),
    }
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
