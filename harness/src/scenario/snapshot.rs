//! Reports against reviewed snapshots (`snapshots/<variant>/<name>.snap`, insta's file format), for
//! `luo-harness run` and the nextest tests alike.
//!
//! The comparison is of what the kernel did, not of which build did it: the release string, the
//! release a kexec came from, the kernel's source and flavour, and each finding's addresses and
//! file:line are redacted on both sides, so a user's tree that behaves like stock matches stock's
//! snapshots (the report itself keeps them). An instrumented kernel is compared with the same
//! snapshots, less its memory figures: slab sizes and memory per object grow with KASAN's
//! redzones, and the gcov flavour's per-cache object counts differ from the plain kernel's, so a
//! memory delta keeps only its labels and object count (snapshots/README.md).
//! Both sides are compared as YAML values and shown, when they differ, as a unified diff of the
//! same rendering. A changed or missing snapshot can be written as `<name>.snap.new` beside it,
//! which `cargo insta review` accepts or rejects.

use super::report::Report;
use serde_json::Value;
use std::path::{Path, PathBuf};

const REDACTED: &str = "[redacted]";

/// How a report compared with its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "snapshot", rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// Nothing to compare with: no snapshot directory, or a scenario that did not run to a report
    /// worth comparing (skipped, or the VM failed).
    NotCompared,
    /// There is no snapshot for this scenario and kernel variant.
    Missing {
        path: PathBuf,
    },
    Matched {
        path: PathBuf,
    },
    /// The report differs: `diff` is the unified diff from the snapshot to the report.
    Differs {
        path: PathBuf,
        diff: String,
    },
}

impl SnapshotStatus {
    pub fn failed(&self) -> bool {
        matches!(self, SnapshotStatus::Differs { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a snapshot ({why})")]
    Malformed { path: PathBuf, why: String },
}

/// A directory of snapshots, one subdirectory per kernel variant.
#[derive(Debug, Clone)]
pub struct Snapshots {
    pub root: PathBuf,
    /// Write `<name>.snap.new` for a snapshot that differs or is missing.
    pub write_new: bool,
}

/// The report as compared: what identifies the build rather than its behaviour replaced.
pub fn redacted(report: &Report) -> Value {
    let mut v = serde_json::to_value(report).expect("reports serialise");
    redact(&mut v, report.kernel.is_instrumented());
    v
}

/// `instrumented`: the report compared is a debug or gcov kernel's, whose memory figures are not
/// the plain kernel's.
fn redact(v: &mut Value, instrumented: bool) {
    if let Some(k) = v.get_mut("kernel").and_then(Value::as_object_mut) {
        k.remove("source");
        k.remove("flavour");
        k.remove("arch");
        if k.contains_key("release") {
            k.insert("release".into(), REDACTED.into());
        }
    }
    if let Some(findings) = v.get_mut("findings").and_then(Value::as_array_mut) {
        for f in findings.iter_mut().filter_map(Value::as_object_mut) {
            f.remove("detail");
        }
    }
    if instrumented && let Some(deltas) = v.get_mut("memory").and_then(Value::as_array_mut) {
        for d in deltas.iter_mut().filter_map(Value::as_object_mut) {
            d.remove("slab_bytes_per_object");
            d.remove("grown_caches");
        }
    }
    if let Some(boots) = v.get_mut("boots").and_then(Value::as_array_mut) {
        for b in boots {
            if let Some(o) = b.as_object_mut() {
                o.remove("release");
            }
            if let Some(from) = b.get_mut("kho_exec_from")
                && !from.is_null()
            {
                *from = REDACTED.into();
            }
        }
    }
}

/// The YAML a snapshot body holds for `value`.
pub fn render(value: &Value) -> String {
    let mut s = serde_saphyr::to_string(value).expect("YAML of a JSON value");
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The body of a snapshot file (after insta's metadata header).
fn body(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("---\n")?;
    let end = rest.find("\n---\n")?;
    Some(&rest[end + 5..])
}

/// Reads a snapshot's body as a YAML value, redacted like a plain kernel's report.
pub fn read(path: &Path) -> Result<Value, SnapshotError> {
    read_as(path, false)
}

/// Reads a snapshot's body, redacted like the report it is compared with (`instrumented`: a debug
/// or gcov kernel's).
fn read_as(path: &Path, instrumented: bool) -> Result<Value, SnapshotError> {
    let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Io {
        path: path.into(),
        source,
    })?;
    let malformed = |why: String| SnapshotError::Malformed {
        path: path.into(),
        why,
    };
    let b = body(&text).ok_or_else(|| malformed("no `---` header".into()))?;
    let mut v: Value = serde_saphyr::from_str(b).map_err(|e| malformed(e.to_string()))?;
    redact(&mut v, instrumented);
    Ok(v)
}

impl Snapshots {
    pub fn path(&self, variant: &str, name: &str) -> PathBuf {
        self.root.join(variant).join(format!("{name}.snap"))
    }

    /// The snapshot a report of `arch` (None: x86_64) is compared with: the architecture's own
    /// (`<arch>/<variant>/<name>.snap`) where the architecture makes the report differ, else the
    /// shared one. A missing or changed one is written as the architecture's own only when the
    /// shared one does not exist either.
    pub fn path_for(&self, arch: Option<&str>, variant: &str, name: &str) -> PathBuf {
        let shared = self.path(variant, name);
        match arch {
            Some(a) => {
                let own = self.root.join(a).join(variant).join(format!("{name}.snap"));
                if own.is_file() || !shared.is_file() {
                    own
                } else {
                    shared
                }
            }
            None => shared,
        }
    }

    /// Compares `report` with its snapshot; `input_file` is the scenario file, recorded in a
    /// `.snap.new` for the reviewer.
    pub fn check(
        &self,
        report: &Report,
        input_file: &Path,
    ) -> Result<SnapshotStatus, SnapshotError> {
        let path = self.path_for(
            report.kernel.arch.as_deref(),
            &report.kernel.variant,
            &report.scenario,
        );
        let got = redacted(report);
        if !path.is_file() {
            if self.write_new {
                write_new(&path, &got, input_file)?;
            }
            return Ok(SnapshotStatus::Missing { path });
        }
        let want = read_as(&path, report.kernel.is_instrumented())?;
        if want == got {
            let stale = path.with_extension("snap.new");
            let _ = std::fs::remove_file(stale);
            return Ok(SnapshotStatus::Matched { path });
        }
        let diff = diff(
            &render(&want),
            &render(&got),
            &path.display().to_string(),
            "this run's report",
        );
        if self.write_new {
            // A report of another architecture that differs from the shared snapshot is proposed
            // as that architecture's own, never over the shared one.
            let own = match &report.kernel.arch {
                Some(a) => self
                    .root
                    .join(a)
                    .join(&report.kernel.variant)
                    .join(format!("{}.snap", report.scenario)),
                None => path.clone(),
            };
            write_new(&own, &got, input_file)?;
        }
        Ok(SnapshotStatus::Differs { path, diff })
    }
}

/// A unified diff from one rendered report to another (3 lines of context), empty when they
/// agree: what `run` shows for a snapshot, `bisect` between the last good and the first bad
/// commit, `delta` between the base and the patched kernel.
pub fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// `<snap>.new` in insta's format: a metadata header, then the body.
fn write_new(snap: &Path, value: &Value, input_file: &Path) -> Result<(), SnapshotError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { path, source }
    };
    let new = snap.with_extension("snap.new");
    if let Some(d) = new.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let text = format!(
        "---\nsource: {}\nexpression: report\n---\n{}",
        input_file.display(),
        render(value)
    );
    std::fs::write(&new, text).map_err(io(&new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::report::{BootFacts, KernelFacts};

    fn report(release: &str, steps: &[&str]) -> Report {
        Report {
            scenario: "t".into(),
            description: "d".into(),
            kernel: KernelFacts {
                release: release.into(),
                variant: "stock".into(),
                source: format!("tree:/src/{release}"),
                flavour: None,
                arch: None,
            },
            boots: vec![
                BootFacts {
                    boot: 0,
                    release: release.into(),
                    liveupdate_number: None,
                    kho_exec_from: None,
                    system: None,
                    shutdown: vec![],
                },
                BootFacts {
                    boot: 1,
                    release: release.into(),
                    liveupdate_number: Some(1),
                    kho_exec_from: Some(release.into()),
                    system: None,
                    shutdown: vec![],
                },
            ],
            steps: steps.iter().map(|s| s.to_string()).collect(),
            observations: Default::default(),
            session_identity: vec![],
            memory: vec![],
            kernel_log: vec![],
            findings: vec![],
            handover: vec![],
            subtests: vec![],
            failures: vec![],
            skipped: None,
            passed: true,
        }
    }

    #[test]
    fn the_build_is_redacted_and_the_behaviour_compared() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots {
            root: dir.path().into(),
            write_new: true,
        };
        let stock = report("7.3.4", &["L1 open_device dev: ok"]);
        assert!(matches!(
            snaps.check(&stock, Path::new("t.yaml")).unwrap(),
            SnapshotStatus::Missing { .. }
        ));
        let new = snaps.path("stock", "t").with_extension("snap.new");
        std::fs::rename(&new, snaps.path("stock", "t")).unwrap();
        // Another build of the same behaviour matches.
        let tree = report("7.3.4-dirty", &["L1 open_device dev: ok"]);
        assert!(matches!(
            snaps.check(&tree, Path::new("t.yaml")).unwrap(),
            SnapshotStatus::Matched { .. }
        ));
        // Another behaviour does not, and says how.
        let changed = report("7.3.4", &["L1 open_device dev: ENOENT as expected"]);
        let SnapshotStatus::Differs { diff, .. } =
            snaps.check(&changed, Path::new("t.yaml")).unwrap()
        else {
            panic!("a changed step must differ")
        };
        let removed: Vec<_> = diff
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .collect();
        let added: Vec<_> = diff
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .collect();
        assert!(
            removed.len() == 1 && removed[0].contains("L1 open_device dev: ok"),
            "{diff}"
        );
        assert!(
            added.len() == 1 && added[0].contains("ENOENT as expected"),
            "{diff}"
        );
        assert!(!diff.contains("7.3.4"), "the release is redacted: {diff}");
        let written = std::fs::read_to_string(&new).unwrap();
        assert!(written.starts_with("---\nsource: t.yaml\n"), "{written}");
        assert_eq!(
            read(&new).unwrap(),
            redacted(&changed),
            "the .snap.new holds the new report"
        );
    }

    #[test]
    fn an_instrumented_kernel_is_compared_without_memory_figures_and_findings_without_detail() {
        use crate::findings::{Detail, Finding};
        use crate::scenario::report::MemoryDelta;
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots {
            root: dir.path().into(),
            write_new: true,
        };
        let delta = |per: u64, grown: &str| MemoryDelta {
            from: "empty".into(),
            to: "+1000 sessions".into(),
            objects: Some(1000),
            slab_bytes_per_object: Some(per),
            grown_caches: vec![grown.into()],
        };
        let mut plain = report("7.3.4", &["L1 open_device dev: ok"]);
        plain.memory = vec![delta(640, "dentry: +1.2 per object (192 B each)")];
        snaps.check(&plain, Path::new("t.yaml")).unwrap();
        let new = snaps.path("stock", "t").with_extension("snap.new");
        std::fs::rename(&new, snaps.path("stock", "t")).unwrap();
        let mut debug = plain.clone();
        debug.kernel.flavour = Some("debug".into());
        debug.memory = vec![delta(1152, "dentry: +1.0 per object (320 B each)")];
        assert!(matches!(
            snaps.check(&debug, Path::new("t.yaml")).unwrap(),
            SnapshotStatus::Matched { .. }
        ));
        let mut plain_changed = plain.clone();
        plain_changed.memory = debug.memory.clone();
        assert!(
            snaps
                .check(&plain_changed, Path::new("t.yaml"))
                .unwrap()
                .failed(),
            "on a plain kernel the memory figures are compared"
        );
        let mut other_objects = debug.clone();
        other_objects.memory[0].objects = Some(999);
        assert!(
            snaps
                .check(&other_objects, Path::new("t.yaml"))
                .unwrap()
                .failed()
        );
        // A finding is compared by what it is, not by where this build put it.
        let finding = |line: &str| Finding {
            kind: "WARNING".into(),
            title: "WARNING in luo_file_finish".into(),
            signature: "0123456789abcdef".into(),
            boot: 1,
            step: "L12 finish".into(),
            count: 1,
            detail: Detail {
                lines: vec![format!(
                    "WARNING: kernel/liveupdate/luo_file.c:{line} at ..."
                )],
                ..Detail::default()
            },
        };
        let (mut a, mut b) = (plain.clone(), plain.clone());
        a.findings = vec![finding("100")];
        b.findings = vec![finding("107")];
        assert_eq!(redacted(&a), redacted(&b));
        b.findings[0].signature = "fedcba9876543210".into();
        assert_ne!(redacted(&a), redacted(&b));
    }

    #[test]
    fn insta_written_snapshots_read_as_the_same_values() {
        // The layout insta's own serializer wrote (before the runner compared snapshots itself).
        let insta = "---\nsource: harness/tests/scenarios.rs\nassertion_line: 42\n---\nscenario: t\ndescription: d\nkernel:\n  release: 7.3.4\n  variant: stock\nboots:\n  - boot: 0\n    liveupdate_number: ~\n    kho_exec_from: ~\n  - boot: 1\n    liveupdate_number: 1\n    kho_exec_from: 7.3.4\nsteps:\n  - \"L1 open_device dev: ok\"\nkernel_log: []\nfailures: []\npassed: true\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.snap");
        std::fs::write(&p, insta).unwrap();
        assert_eq!(
            read(&p).unwrap(),
            redacted(&report("7.3.4", &["L1 open_device dev: ok"]))
        );
    }
}
