//! One boot as the host saw it, and where its time went.

use luo_protocol::Hello;
use std::time::Duration;

/// One boot of the guest as the host saw it.
#[derive(Debug, Clone)]
pub struct BootRecord {
    pub hello: Hello,
    /// From QEMU start (first boot) or from the reboot call (kexec boots) to the hello.
    pub to_hello: Duration,
    pub phases: BootPhases,
}

/// Where the time to a hello went, from the host's clock and the guest's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootPhases {
    /// Until the kernel's clock started: QEMU's start, firmware and decompression (first boot), or
    /// the old kernel's shutdown, purgatory and decompression (kexec boots).
    pub before_kernel: Duration,
    /// Of `before_kernel`, QEMU's own start before the guest CPU ran (first boot, from the TSC).
    pub qemu_start: Option<Duration>,
    /// From the kernel's clock starting to the agent's `main` (the exec of /init included).
    pub kernel: Duration,
    /// From the agent's `main` to its hello: mounts, finding the port, gathering the facts.
    pub agent: Duration,
    /// The VM was restored from a saved one: all of the time was QEMU's start, loading the state
    /// and the agent's answer to the resume (no kernel booted).
    pub restored: bool,
}

impl std::fmt::Display for BootPhases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_millis();
        if self.restored {
            return write!(
                f,
                "restored from a saved VM in {} ms",
                ms(self.before_kernel)
            );
        }
        match self.qemu_start {
            Some(q) => write!(
                f,
                "QEMU start-up {} ms, firmware and kernel loading {} ms",
                ms(q),
                ms(self.before_kernel.saturating_sub(q))
            )?,
            None => write!(f, "before the kernel {} ms", ms(self.before_kernel))?,
        }
        write!(
            f,
            ", kernel {} ms, agent {} ms",
            ms(self.kernel),
            ms(self.agent)
        )
    }
}

impl BootPhases {
    pub(crate) fn restored(to_hello: Duration) -> BootPhases {
        BootPhases {
            before_kernel: to_hello,
            restored: true,
            ..BootPhases::default()
        }
    }

    /// `tsc_khz` is the guest TSC's rate, known only for a first boot (the TSC counts from the VM's
    /// start, which for later boots is not when the host started timing).
    pub(crate) fn new(
        to_hello: Duration,
        facts: &luo_protocol::BootFacts,
        tsc_khz: Option<u64>,
    ) -> BootPhases {
        let us = Duration::from_micros;
        let uptime = us(facts.uptime_us);
        let vm_ran = match (facts.tsc, tsc_khz) {
            (Some(tsc), Some(khz)) if khz > 0 => {
                Some(us(tsc / khz * 1000 + tsc % khz * 1000 / khz))
            }
            _ => None,
        };
        BootPhases {
            before_kernel: to_hello.saturating_sub(uptime),
            qemu_start: vm_ran.map(|ran| to_hello.saturating_sub(ran)),
            kernel: us(facts.agent_start_us),
            agent: us(facts.uptime_us.saturating_sub(facts.agent_start_us)),
            restored: false,
        }
    }

    /// The phases one after another, as (name, from the start of the wait, duration): what the
    /// timeline (`run --trace`) shows on the guest's track.
    pub fn slices(&self, boot: u32) -> Vec<(String, Duration, Duration)> {
        if self.restored {
            return vec![(
                "restore a saved VM".into(),
                Duration::ZERO,
                self.before_kernel,
            )];
        }
        let mut out = Vec::new();
        let mut at = Duration::ZERO;
        let mut next = |name: String, dur: Duration| {
            out.push((name, at, dur));
            at += dur;
        };
        match self.qemu_start {
            Some(q) => {
                next("QEMU start-up".into(), q);
                next(
                    "firmware and kernel loading".into(),
                    self.before_kernel.saturating_sub(q),
                );
            }
            None if boot == 0 => next("before the kernel".into(), self.before_kernel),
            None => next(
                "old kernel down, purgatory, decompression".into(),
                self.before_kernel,
            ),
        }
        next(format!("kernel (boot {boot})"), self.kernel);
        next(format!("agent (boot {boot})"), self.agent);
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn boot_phases_split_the_host_time_by_the_guest_clocks() {
        use super::{BootPhases, Duration};
        let facts = luo_protocol::BootFacts {
            release: "7.3.4".into(),
            cmdline: String::new(),
            boot_index: Some(0),
            liveupdate_number: None,
            kho_exec_from: None,
            liveupdate_device: true,
            kho_enabled: true,
            uptime_us: 450_000,
            agent_start_us: 400_000,
            // 650 ms of a 2 GHz TSC: the VM ran 650 of the 700 ms the host waited.
            tsc: Some(1_300_000_000),
        };
        let ms = Duration::from_millis;
        let p = BootPhases::new(ms(700), &facts, Some(2_000_000));
        assert_eq!(p.qemu_start, Some(ms(50)));
        assert_eq!(p.before_kernel, ms(250));
        assert_eq!((p.kernel, p.agent), (ms(400), ms(50)));
        assert_eq!(
            p.to_string(),
            "QEMU start-up 50 ms, firmware and kernel loading 200 ms, kernel 400 ms, agent 50 ms"
        );
        // A kexec boot: the TSC did not start with the host's timing, so no QEMU share is claimed.
        let k = BootPhases::new(ms(600), &facts, None);
        assert_eq!((k.qemu_start, k.before_kernel), (None, ms(150)));
        // A restored VM ran no kernel: the guest's clocks are an earlier boot's and say nothing.
        let r = BootPhases::restored(ms(80));
        assert_eq!((r.kernel, r.agent, r.qemu_start), (ms(0), ms(0), None));
        assert_eq!(r.to_string(), "restored from a saved VM in 80 ms");
        assert_eq!(r.slices(0), [("restore a saved VM".into(), ms(0), ms(80))]);
        let names = |p: &BootPhases, b| {
            p.slices(b)
                .into_iter()
                .map(|(n, at, d)| format!("{n} {}+{}", at.as_millis(), d.as_millis()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&p, 0),
            [
                "QEMU start-up 0+50",
                "firmware and kernel loading 50+200",
                "kernel (boot 0) 250+400",
                "agent (boot 0) 650+50"
            ]
        );
        assert_eq!(
            names(&k, 1),
            [
                "old kernel down, purgatory, decompression 0+150",
                "kernel (boot 1) 150+400",
                "agent (boot 1) 550+50"
            ]
        );
    }
}
