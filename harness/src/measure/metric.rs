//! The figures a measurement yields, by name: what `compare` tabulates, `delta` tests and
//! `bisect --metric` judges a commit by.

use super::sample::Sample;
use super::stats::Better;

/// One figure of a [`Sample`].
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name on the command line and in JSON: `blackout_ms`.
    pub name: &'static str,
    /// A column heading at most 14 characters wide.
    pub short: &'static str,
    pub unit: &'static str,
    pub better: Better,
    /// What it is, for `--help`-like listings and the email's legend.
    pub what: &'static str,
    value: fn(&Sample) -> Option<f64>,
}

impl Metric {
    pub fn of(&self, s: &Sample) -> Option<f64> {
        (self.value)(s).filter(|v| v.is_finite())
    }
}

fn per_session(s: &Sample, v: f64) -> f64 {
    v / s.sessions.max(1) as f64
}

/// Every figure, in the order tables show them.
pub const ALL: &[Metric] = &[
    Metric {
        name: "slab_bytes_per_session",
        short: "slab B/sess",
        unit: "B",
        better: Better::Lower,
        what: "growth of Slab in /proc/meminfo over creating the sessions, per session",
        value: |s| Some(per_session(s, s.slab_bytes as f64)),
    },
    Metric {
        name: "memfree_bytes_per_session",
        short: "memfree B/sess",
        unit: "B",
        better: Better::Lower,
        what: "drop of MemFree over creating the sessions, per session (slab and pages)",
        value: |s| Some(per_session(s, s.memfree_drop_bytes as f64)),
    },
    Metric {
        name: "create_us_per_session",
        short: "create us/sess",
        unit: "us",
        better: Better::Lower,
        what: "LIVEUPDATE_IOCTL_CREATE_SESSION, timed in the guest, per session",
        value: |s| Some(per_session(s, s.create_ns as f64 / 1000.0)),
    },
    Metric {
        name: "retrieve_finish_us_per_session",
        short: "retr+fin us/s",
        unit: "us",
        better: Better::Lower,
        what: "RETRIEVE_SESSION and FINISH in the next kernel, timed in the guest, per session",
        value: |s| Some(per_session(s, s.retrieve_finish_ns as f64 / 1000.0)),
    },
    Metric {
        name: "blackout_ms",
        short: "blackout ms",
        unit: "ms",
        better: Better::Lower,
        what: "reboot(KEXEC) asked to the next kernel's agent answering, seen from the host",
        value: |s| Some(s.blackout_host_ms),
    },
    Metric {
        name: "old_kernel_ms",
        short: "old kernel ms",
        unit: "ms",
        better: Better::Lower,
        what: "blackout, old kernel: the agent's reboot mark to \"Starting new kernel\"",
        value: |s| s.old_kernel_ms,
    },
    Metric {
        name: "new_kernel_ms",
        short: "new kernel ms",
        unit: "ms",
        better: Better::Lower,
        what: "blackout, new kernel: its boot to its agent's hello (CLOCK_BOOTTIME)",
        value: |s| Some(s.new_kernel_ms),
    },
];

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("no metric {name:?}; the metrics are: {}", names())]
pub struct UnknownMetric {
    pub name: String,
}

fn names() -> String {
    ALL.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

pub fn find(name: &str) -> Result<&'static Metric, UnknownMetric> {
    ALL.iter()
        .find(|m| m.name == name)
        .ok_or_else(|| UnknownMetric { name: name.into() })
}

/// A metric's values over the samples of one kernel (`label`) and session count.
pub fn values(m: &Metric, samples: &[Sample], label: &str, sessions: u32) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.label == label && s.sessions == sessions)
        .filter_map(|s| m.of(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_headings_fit_and_an_unknown_name_lists_them() {
        let mut n: Vec<_> = ALL.iter().map(|m| m.name).collect();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), ALL.len());
        assert!(ALL.iter().all(|m| m.short.len() <= 14));
        assert_eq!(find("blackout_ms").unwrap().unit, "ms");
        let e = find("blackout").unwrap_err().to_string();
        assert!(e.contains("no metric \"blackout\"") && e.contains("slab_bytes_per_session"));
    }
}
