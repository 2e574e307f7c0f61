//! What the scenario engine needs of a guest, as a small trait: the real [`Guest`] implements it,
//! and the engine's unit tests drive a scripted fake agent through the same steps.

use crate::guest::{Guest, GuestError, KexecTarget};
use crate::vm::Timeouts;
use luo_protocol::{AgentError, Hello, Reply, Request};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub type RequestResult = Result<Result<Reply, AgentError>, GuestError>;

pub trait GuestDriver: Send {
    /// One request; `within` overrides the plain request timeout (for steps the guest bounds
    /// itself, with the host's grace added by the caller).
    fn try_request(
        &mut self,
        req: Request,
        within: Option<Duration>,
    ) -> impl Future<Output = RequestResult> + Send;
    /// Stages and loads the next kernel (kexec_file_load); the running one goes on.
    fn kexec_load(
        &mut self,
        target: &KexecTarget,
    ) -> impl Future<Output = Result<(), GuestError>> + Send;
    /// reboot(KEXEC) into what was loaded, and the next kernel's hello; returns the blackout.
    fn kexec_reboot(&mut self) -> impl Future<Output = Result<Duration, GuestError>> + Send;
    /// The id the next request carries (the agent marks each request in the kernel log).
    fn next_request_id(&self) -> u64;
    fn power_off(self) -> impl Future<Output = Result<(), GuestError>> + Send;
    fn hello(&self) -> &Hello;
    fn boot_index(&self) -> u32;
    /// From the start of the VM to the first hello.
    fn first_boot(&self) -> Duration;
    /// How the first boot came about (booted, or restored from a saved VM).
    fn start(&self) -> String;
    fn timeouts(&self) -> Timeouts;
    /// Puts a host file into the guest's share at `rel`.
    fn stage(&mut self, src: &Path, rel: &str) -> Result<(), GuestError>;
    fn keep_artifacts(&mut self);
    fn artifacts(&self) -> Option<PathBuf>;
}

impl GuestDriver for Guest {
    async fn try_request(&mut self, req: Request, within: Option<Duration>) -> RequestResult {
        match within {
            Some(t) => self.try_request_within(req, t).await,
            None => Guest::try_request(self, req).await,
        }
    }
    async fn kexec_load(&mut self, target: &KexecTarget) -> Result<(), GuestError> {
        Guest::kexec_load(self, target).await
    }
    async fn kexec_reboot(&mut self) -> Result<Duration, GuestError> {
        Guest::kexec_reboot(self).await
    }
    fn next_request_id(&self) -> u64 {
        Guest::next_request_id(self)
    }
    async fn power_off(self) -> Result<(), GuestError> {
        Guest::power_off(self).await
    }
    fn hello(&self) -> &Hello {
        Guest::hello(self)
    }
    fn boot_index(&self) -> u32 {
        Guest::boot_index(self)
    }
    fn first_boot(&self) -> Duration {
        self.boots()[0].to_hello
    }
    fn start(&self) -> String {
        Guest::start(self).to_string()
    }
    fn timeouts(&self) -> Timeouts {
        self.vm().config().timeouts
    }
    fn stage(&mut self, src: &Path, rel: &str) -> Result<(), GuestError> {
        Guest::stage(self, src, rel)
    }
    fn keep_artifacts(&mut self) {
        Guest::keep_artifacts(self)
    }
    fn artifacts(&self) -> Option<PathBuf> {
        Some(Guest::artifacts(self).to_path_buf())
    }
}
