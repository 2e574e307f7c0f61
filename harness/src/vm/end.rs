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
}

impl VmEnd {
    pub fn cause(&self) -> EndCause {
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
}
