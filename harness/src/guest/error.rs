//! How talking to a guest can fail, and what kind of failure each is.

use crate::outcome::{Classify, Kind};
use crate::vm::{EndCause, VmError};
use luo_protocol::AgentError;
use std::time::Duration;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GuestError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Vm(#[from] VmError),
    #[error(
        "{failure} (boot {boot}, step `{step}`)\n{}--- console, last lines ---\n{console}\n--- artifacts kept in {artifacts} ---",
        reports.iter().map(|r| format!("--- what the kernel reported, symbolized ---\n{r}")).collect::<String>()
    )]
    Failed {
        failure: Failure,
        boot: u32,
        step: String,
        console: String,
        artifacts: String,
        /// The kernel's own reports of what went wrong (an oops, KASAN), rendered: found on the
        /// console by the scenario engine, which knows the boot's kernel. Boxed: rarely there,
        /// and every `Result<_, GuestError>` carries the variant's size.
        reports: Box<[String]>,
    },
    #[error("boot {boot}, step `{step}`: {error}")]
    Agent {
        boot: u32,
        step: String,
        error: AgentError,
    },
    #[error("{what}: {source} (boot {boot}, step `{step}`)\n--- artifacts kept in {artifacts} ---")]
    Stage {
        what: String,
        boot: u32,
        step: String,
        source: std::io::Error,
        artifacts: String,
    },
    /// A scenario with `shell: true` or `image: systemd` was given a plan made without its image.
    #[error("scenario {scenario} needs the {image} image, but the run plan has none")]
    NoImage { scenario: String, image: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("the guest kernel panicked")]
    Panic,
    #[error("{0}")]
    Ended(EndCause),
    #[error("no hello from the agent within {0:?}")]
    BootTimeout(Duration),
    #[error("no reply from the agent within {0:?}")]
    Timeout(Duration),
    #[error("agent protocol: {0}")]
    Protocol(String),
}

impl GuestError {
    /// The same failure with the kernel's reports of it added (a panic's oops, symbolized).
    pub fn with_reports(mut self, rendered: Vec<String>) -> GuestError {
        if let GuestError::Failed { reports, .. } = &mut self {
            *reports = std::mem::take(reports)
                .into_iter()
                .chain(rendered)
                .collect();
        }
        self
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            GuestError::Failed { failure, .. } => Some(failure),
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
    /// The artifacts directory kept for this failure, if the message names one.
    pub fn artifacts(&self) -> Option<&str> {
        match self {
            GuestError::Failed { artifacts, .. } => Some(artifacts),
            GuestError::Stage { artifacts, .. }
            | GuestError::Vm(VmError::Start { artifacts, .. })
            | GuestError::Vm(VmError::Setup { artifacts, .. }) => Some(artifacts),
            _ => None,
        }
    }
}

impl Classify for GuestError {
    /// The kernel under test is blamed for what it does while QEMU is fine: panicking, stopping the
    /// VM, not saying hello, not answering. QEMU dying, the protocol and the host are the harness's.
    fn kind(&self) -> Kind {
        match self {
            GuestError::Failed { failure, .. } => match failure {
                Failure::Panic | Failure::BootTimeout(_) | Failure::Timeout(_) => {
                    Kind::KernelFailure
                }
                Failure::Ended(
                    EndCause::GuestPanic
                    | EndCause::GuestStopped { .. }
                    | EndCause::ConsoleFlood { .. },
                ) => Kind::KernelFailure,
                Failure::Ended(_) | Failure::Protocol(_) => Kind::InfraFailure,
            },
            GuestError::Agent { .. } => Kind::Fail,
            GuestError::Vm(_) | GuestError::Stage { .. } | GuestError::NoImage { .. } => {
                Kind::InfraFailure
            }
        }
    }
}
