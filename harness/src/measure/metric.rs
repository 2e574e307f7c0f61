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
    pub per: Per,
    value: fn(&Sample) -> Option<f64>,
    /// The smallest change a sample can show, in the figure's unit; None where the rank test
    /// alone decides (times).
    resolution: Option<fn(&Sample) -> Option<f64>>,
}

/// What a figure is a cost of, which says which samples it is compared over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// The N sessions (or the kexec carrying them): compared at each session count.
    Session,
    /// The preserved files, whose number is the same in every VM: compared over all of them.
    File,
}

impl Metric {
    pub fn of(&self, s: &Sample) -> Option<f64> {
        (self.value)(s).filter(|v| v.is_finite())
    }
}

/// A memory figure's resolution over samples: the largest slack of any of them, so a step that
/// one boot's slabs can make is never called a change.
pub fn resolution(m: &Metric, samples: &[Sample], sessions: u32) -> f64 {
    let Some(of) = m.resolution else { return 0.0 };
    compared(m, samples, sessions)
        .filter_map(of)
        .fold(0.0, f64::max)
}

/// The samples a figure is compared over: those at one session count for a [`Per::Session`]
/// figure, all of them for a [`Per::File`] one.
fn compared<'a>(
    m: &Metric,
    samples: &'a [Sample],
    sessions: u32,
) -> impl Iterator<Item = &'a Sample> {
    let per = m.per;
    samples
        .iter()
        .filter(move |s| per == Per::File || s.sessions == sessions)
}

/// A slab of each cache the sessions touched, per session: the step the session figures can make.
fn session_slack(s: &Sample) -> Option<f64> {
    Some(per_session(s, s.slab_slack_bytes as f64))
}

/// The same over preserving the files, per file.
fn file_slack(s: &Sample) -> Option<f64> {
    per_file(s, s.files_slab_slack_bytes as f64)
}

fn per_session(s: &Sample, v: f64) -> f64 {
    v / s.sessions.max(1) as f64
}

/// None for a sample that preserved no file.
fn per_file(s: &Sample, v: f64) -> Option<f64> {
    (s.files > 0).then(|| v / s.files as f64)
}

/// Every figure, in the order tables show them.
pub const ALL: &[Metric] = &[
    Metric {
        name: "slab_bytes_per_session",
        short: "slab B/sess",
        unit: "B",
        better: Better::Lower,
        what: "growth of Slab in /proc/meminfo over creating the sessions, per session",
        per: Per::Session,
        value: |s| Some(per_session(s, s.slab_bytes as f64)),
        resolution: Some(session_slack),
    },
    Metric {
        name: "memfree_bytes_per_session",
        short: "memfree B/sess",
        unit: "B",
        better: Better::Lower,
        what: "drop of free memory (MemFree and the per-cpu free lists) over creating the sessions, per session (slab and pages)",
        per: Per::Session,
        value: |s| Some(per_session(s, s.memfree_drop_bytes as f64)),
        resolution: Some(session_slack),
    },
    Metric {
        name: "create_us_per_session",
        short: "create us/sess",
        unit: "us",
        better: Better::Lower,
        what: "LIVEUPDATE_IOCTL_CREATE_SESSION, timed in the guest, per session",
        per: Per::Session,
        value: |s| Some(per_session(s, s.create_ns as f64 / 1000.0)),
        resolution: None,
    },
    Metric {
        name: "retrieve_us_per_session",
        short: "retrieve us/s",
        unit: "us",
        better: Better::Lower,
        what: "LIVEUPDATE_IOCTL_RETRIEVE_SESSION in the next kernel, timed in the guest, per session",
        per: Per::Session,
        value: |s| s.retrieve_ns.map(|ns| per_session(s, ns as f64 / 1000.0)),
        resolution: None,
    },
    Metric {
        name: "finish_us_per_session",
        short: "finish us/s",
        unit: "us",
        better: Better::Lower,
        what: "LIVEUPDATE_SESSION_FINISH of the retrieved sessions, timed in the guest, per session",
        per: Per::Session,
        value: |s| s.finish_ns.map(|ns| per_session(s, ns as f64 / 1000.0)),
        resolution: None,
    },
    Metric {
        name: "slab_bytes_per_file",
        short: "slab B/file",
        unit: "B",
        better: Better::Lower,
        what: "growth of Slab over preserving one-page memfds, per file",
        per: Per::File,
        value: |s| per_file(s, s.files_slab_bytes as f64),
        resolution: Some(file_slack),
    },
    Metric {
        name: "memfree_bytes_per_file",
        short: "memfree B/file",
        unit: "B",
        better: Better::Lower,
        what: "drop of free memory (MemFree and the per-cpu free lists) over preserving them (contents already written), per file",
        per: Per::File,
        value: |s| per_file(s, s.files_memfree_drop_bytes as f64),
        resolution: Some(file_slack),
    },
    Metric {
        name: "preserve_us_per_file",
        short: "preserve us/f",
        unit: "us",
        better: Better::Lower,
        what: "LIVEUPDATE_SESSION_PRESERVE_FD, timed in the guest, per file",
        per: Per::File,
        value: |s| per_file(s, s.preserve_ns as f64 / 1000.0),
        resolution: None,
    },
    Metric {
        name: "retrieve_us_per_file",
        short: "retrieve us/f",
        unit: "us",
        better: Better::Lower,
        what: "LIVEUPDATE_SESSION_RETRIEVE_FD in the next kernel, timed in the guest, per file",
        per: Per::File,
        value: |s| per_file(s, s.retrieve_files_ns as f64 / 1000.0),
        resolution: None,
    },
    Metric {
        name: "blackout_ms",
        short: "blackout ms",
        unit: "ms",
        better: Better::Lower,
        what: "reboot(KEXEC) asked to the next kernel's agent answering, seen from the host",
        per: Per::Session,
        value: |s| Some(s.blackout_host_ms),
        resolution: None,
    },
    Metric {
        name: "old_kernel_ms",
        short: "old kernel ms",
        unit: "ms",
        better: Better::Lower,
        what: "blackout, old kernel: the agent's reboot mark to \"Starting new kernel\"",
        per: Per::Session,
        value: |s| s.old_kernel_ms,
        resolution: None,
    },
    Metric {
        name: "new_kernel_ms",
        short: "new kernel ms",
        unit: "ms",
        better: Better::Lower,
        what: "blackout, new kernel: its boot to its agent's hello (CLOCK_BOOTTIME)",
        per: Per::Session,
        value: |s| Some(s.new_kernel_ms),
        resolution: None,
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

/// A metric's values over the samples of one kernel (`label`) that it is compared over.
pub fn values(m: &Metric, samples: &[Sample], label: &str, sessions: u32) -> Vec<f64> {
    compared(m, samples, sessions)
        .filter(|s| s.label == label)
        .filter_map(|s| m.of(s))
        .collect()
}

/// The slab caches that grew, in objects per session or per file: each cache's median over
/// `samples` (a cache missing from a sample grew by 0 there), those of at least 0.5, as
/// `kmalloc-256 x1.0, dentry x1.0`.
pub fn grown_caches<'a>(samples: impl IntoIterator<Item = &'a Sample>, per: Per) -> String {
    // The caches that grew over the sessions or the files, and how many there were.
    let of = |s: &'a Sample| match per {
        Per::Session => (&s.grown_caches, s.sessions),
        Per::File => (&s.files_grown_caches, s.files),
    };
    let samples: Vec<_> = samples
        .into_iter()
        .map(of)
        .filter(|(_, n)| *n > 0)
        .collect();
    let names: std::collections::BTreeSet<&String> =
        samples.iter().flat_map(|(c, _)| c.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let v: Vec<f64> = samples
            .iter()
            .map(|(c, n)| *c.get(name).unwrap_or(&0) as f64 / *n as f64)
            .collect();
        let m = super::stats::median(&v);
        if m >= 0.5 {
            out.push(format!("{name} x{m:.1}"));
        }
    }
    out.join(", ")
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

    fn sample(
        sessions: u32,
        files: u32,
        caches: &[(&str, i64)],
        file_caches: &[(&str, i64)],
    ) -> Sample {
        let map = |c: &[(&str, i64)]| c.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Sample {
            label: "x".into(),
            sessions,
            rep: 0,
            slab_bytes: 0,
            sunreclaim_bytes: 0,
            memfree_drop_bytes: 0,
            grown_caches: map(caches),
            slab_slack_bytes: 0,
            create_ns: 0,
            blackout_host_ms: 0.0,
            old_kernel_ms: None,
            new_kernel_ms: 0.0,
            retrieve_finish_ns: 0,
            retrieve_ns: Some(0),
            finish_ns: Some(0),
            files,
            files_slab_bytes: 0,
            files_memfree_drop_bytes: 0,
            files_grown_caches: map(file_caches),
            files_slab_slack_bytes: 0,
            preserve_ns: 0,
            retrieve_files_ns: 0,
        }
    }

    #[test]
    fn grown_caches_are_medians_per_unit_and_a_cache_seen_once_is_not_one() {
        let s = [
            sample(
                100,
                10,
                &[("kmalloc-256", 100), ("dentry", 100)],
                &[("kmalloc-96", 24)],
            ),
            sample(
                100,
                10,
                &[("kmalloc-256", 100)],
                &[("kmalloc-96", 24), ("vmap_area", 6)],
            ),
            sample(
                100,
                10,
                &[("kmalloc-256", 102), ("dentry", 100)],
                &[("kmalloc-96", 25)],
            ),
        ];
        assert_eq!(
            grown_caches(&s, Per::Session),
            "dentry x1.0, kmalloc-256 x1.0"
        );
        assert_eq!(grown_caches(&s, Per::File), "kmalloc-96 x2.4");
        let no_files = [sample(1, 0, &[], &[])];
        assert_eq!(grown_caches(&no_files, Per::File), "");
    }

    #[test]
    fn per_file_figures_exist_only_where_files_were_preserved() {
        let m = find("preserve_us_per_file").unwrap();
        let mut s = sample(1, 0, &[], &[]);
        assert_eq!(m.of(&s), None);
        s.files = 4;
        s.preserve_ns = 8_000;
        assert_eq!(m.of(&s), Some(2.0));
        assert_eq!(m.per, Per::File);
        assert_eq!(find("blackout_ms").unwrap().per, Per::Session);
    }

    #[test]
    fn samples_from_before_finish_was_timed_apart_still_read_without_the_split() {
        let mut v = serde_json::to_value(sample(10, 0, &[], &[])).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("retrieve_ns");
        o.remove("finish_ns");
        o.insert("retrieve_finish_ns".into(), 50_000.into());
        let old: Sample = serde_json::from_value(v).unwrap();
        assert_eq!(find("retrieve_us_per_session").unwrap().of(&old), None);
        assert_eq!(find("finish_us_per_session").unwrap().of(&old), None);
        let mut new = old.clone();
        (new.retrieve_ns, new.finish_ns) = (Some(30_000), Some(20_000));
        assert_eq!(find("retrieve_us_per_session").unwrap().of(&new), Some(3.0));
        assert_eq!(find("finish_us_per_session").unwrap().of(&new), Some(2.0));
    }
}
