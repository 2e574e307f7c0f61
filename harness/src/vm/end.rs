//! Why a VM ended: QEMU's exit status, what QMP said on the way (GUEST_PANICKED, SHUTDOWN and its
//! reason) and whether the console shows a panic (microvm has no pvpanic device: there a panic is
//! the kernel's own reboot, `panic=-1`).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEnd {
    pub status: ExitStatus,
    pub guest_panicked: bool,
    /// The SHUTDOWN event's `guest` flag and reason (`guest-reset`, `guest-shutdown`,
    /// `host-signal`, `host-qmp-quit`, ...), if QEMU sent one.
    pub shutdown: Option<(bool, String)>,
    pub console_panic: bool,
    /// The runner stopped QEMU: the console passed its limit.
    pub console_flood: bool,
    /// virtiofsd died while QEMU ran (the runner then stopped QEMU).
    pub virtiofsd_died: Option<String>,
}

/// What ended the VM, as far as the host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    /// The guest kernel panicked.
    GuestPanic,
    /// The guest reset or powered off by itself (a planned power-off looks the same; only the
    /// guest layer knows whether it asked for one).
    GuestStopped { reason: String },
    /// QEMU was killed by a signal (someone's kill -9, the OOM killer).
    Killed { signal: i32 },
    /// QEMU exited with an error of its own.
    QemuFailed { status: String },
    /// The guest wrote more to its console than the runner keeps.
    ConsoleFlood { bytes: u64 },
    /// virtiofsd, which serves the share, died under the VM.
    VirtiofsdDied { status: String },
}

impl VmEnd {
    pub fn cause(&self) -> EndCause {
        if self.console_flood {
            return EndCause::ConsoleFlood {
                bytes: super::console_limit(),
            };
        }
        if let Some(status) = &self.virtiofsd_died {
            return EndCause::VirtiofsdDied {
                status: status.clone(),
            };
        }
        if self.guest_panicked || self.console_panic {
            return EndCause::GuestPanic;
        }
        if let Some(signal) = self.status.signal() {
            return EndCause::Killed { signal };
        }
        match &self.shutdown {
            Some((true, reason)) => EndCause::GuestStopped {
                reason: reason.clone(),
            },
            _ if self.status.success() => EndCause::GuestStopped {
                reason: "guest-reset".into(),
            },
            _ => EndCause::QemuFailed {
                status: self.status.to_string(),
            },
        }
    }
}

impl std::fmt::Display for EndCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndCause::GuestPanic => write!(f, "the guest kernel panicked"),
            EndCause::GuestStopped { reason } => {
                write!(f, "the guest stopped the VM unexpectedly ({reason})")
            }
            EndCause::Killed { signal } => write!(f, "QEMU was killed by signal {signal}"),
            EndCause::QemuFailed { status } => write!(f, "QEMU exited unexpectedly ({status})"),
            EndCause::ConsoleFlood { bytes } => write!(
                f,
                "the guest flooded its console (more than {} MiB); the VM was stopped",
                bytes >> 20
            ),
            EndCause::VirtiofsdDied { status } => {
                write!(
                    f,
                    "virtiofsd died under the VM ({status}); the VM was stopped"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(raw: i32) -> VmEnd {
        VmEnd {
            status: ExitStatus::from_raw(raw),
            guest_panicked: false,
            shutdown: None,
            console_panic: false,
            console_flood: false,
            virtiofsd_died: None,
        }
    }

    #[test]
    fn a_panic_wins_over_how_qemu_exited() {
        let mut e = end(1 << 8);
        e.guest_panicked = true;
        assert_eq!(e.cause(), EndCause::GuestPanic);
        let mut e = end(0);
        e.console_panic = true;
        e.shutdown = Some((true, "guest-reset".into()));
        assert_eq!(
            e.cause(),
            EndCause::GuestPanic,
            "microvm: the reboot after panic=-1"
        );
    }

    #[test]
    fn a_signal_is_the_host_and_a_reset_is_the_guest() {
        assert_eq!(end(9).cause(), EndCause::Killed { signal: 9 });
        let mut e = end(0);
        e.shutdown = Some((true, "guest-reset".into()));
        assert_eq!(
            e.cause(),
            EndCause::GuestStopped {
                reason: "guest-reset".into()
            }
        );
        assert!(matches!(end(1 << 8).cause(), EndCause::QemuFailed { .. }));
    }

    #[test]
    fn what_the_runner_stopped_the_vm_for_comes_first() {
        let mut e = end(9);
        e.virtiofsd_died = Some("signal 9".into());
        assert_eq!(
            e.cause(),
            EndCause::VirtiofsdDied {
                status: "signal 9".into()
            },
            "not QEMU's kill"
        );
        e.console_flood = true;
        assert!(matches!(e.cause(), EndCause::ConsoleFlood { .. }));
    }
}
