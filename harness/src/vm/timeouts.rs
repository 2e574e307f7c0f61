//! Every time limit of a run, derived in one place, so that a limit the guest enforces is always
//! shorter than the host's wait for its answer: a program that runs out of its own time is a step
//! result, not a VM that stopped answering.

use super::qemu::Accel;
use std::time::Duration;

/// What the host adds to a limit the guest enforces itself before giving up on the reply: the
/// guest's kill, reaping and reply, on a loaded TCG host.
pub const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// QEMU start (or a kexec) to the agent's hello.
    pub boot: Duration,
    /// A request the agent answers without a limit of its own (every LUO call, memory, log).
    pub request: Duration,
    /// A program run by `exec` without its own `timeout_s`; the agent kills it then.
    pub exec: Duration,
    /// A whole scenario, boots included.
    pub scenario: Duration,
}

impl Timeouts {
    pub fn for_accel(accel: Accel) -> Timeouts {
        // Working KVM boots in well under a second; TCG in about one, several on a loaded host.
        // LUO_HARNESS_BOOT_TIMEOUT_S overrides it (a slow host, or a test of a guest that never
        // says hello).
        let boot = std::env::var("LUO_HARNESS_BOOT_TIMEOUT_S")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        Timeouts {
            boot: boot.unwrap_or(Duration::from_secs(if accel == Accel::Tcg {
                30
            } else {
                10
            })),
            request: Duration::from_secs(30),
            exec: Duration::from_secs(60),
            scenario: Duration::from_secs(20 * 60),
        }
    }

    /// Under a debugger (`--gdb`): a day for everything.
    pub fn debugging() -> Timeouts {
        let day = Duration::from_secs(24 * 3600);
        Timeouts {
            boot: day,
            request: day,
            exec: day,
            scenario: day,
        }
    }

    /// The same with another limit for each boot.
    pub fn with_boot(self, boot: Duration) -> Timeouts {
        Timeouts { boot, ..self }
    }

    /// The same with a scenario's own `step_timeout_s` for plain requests.
    pub fn with_request(self, request: Duration) -> Timeouts {
        Timeouts { request, ..self }
    }

    /// How long the host waits for the answer to a request that the guest bounds by `guest_limit`.
    pub fn host_wait(guest_limit: Duration) -> Duration {
        guest_limit + GRACE
    }

    /// The limit the guest gets for an exec step: its own, or the default.
    pub fn exec_limit(&self, own: Option<Duration>) -> Duration {
        own.unwrap_or(self.exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_always_waits_longer_than_the_guest_limit() {
        let t = Timeouts::for_accel(Accel::Tcg);
        for own in [
            None,
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(3600)),
        ] {
            let limit = t.exec_limit(own);
            assert!(Timeouts::host_wait(limit) > limit);
        }
        assert!(
            Timeouts::host_wait(t.exec) > t.request,
            "an exec outlasts a plain request"
        );
        assert!(t.scenario > t.boot * 4);
        assert!(Timeouts::for_accel(Accel::Kvm).boot < t.boot);
    }
}
