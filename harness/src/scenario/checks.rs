//! What the guest reports, turned into the report's observations, session-identity verdicts,
//! memory deltas, suspicious kernel-log lines and unmet requirements.

use super::context::{StepContext, StepFailure};
use super::driver::GuestDriver;
use super::report::*;
use super::slab_cost::SlabCost;
use luo_protocol::{MemorySnapshot, Observation, Reply, Request};
use std::collections::BTreeMap;

/// A kernel log line that says the handed-over state was refused, and how to call it.
fn refused(line: &str) -> Option<&'static str> {
    if line.contains("incompatible") {
        Some("incompatible")
    } else if line.contains("Failed to deserialize") || line.contains("Failed to reserve scratch") {
        Some("state lost")
    } else {
        None
    }
}

/// How many reads of the log one checkpoint makes at most (each carries 4 MiB of it).
const MAX_LOG_READS: usize = 16;

impl<G: GuestDriver> StepContext<'_, G> {
    pub(crate) fn observed(&mut self, o: &Observation, handle: &str) -> Observed {
        let boot = self.guest.boot_index();
        let n = self.inodes.len() + 1;
        let inode = self
            .inodes
            .entry((boot, o.st_dev, o.st_ino))
            .or_insert_with(|| format!("inode-{n}"))
            .clone();
        if self.session_handles.contains(handle) {
            self.session_inodes
                .entry(boot)
                .or_default()
                .push(inode.clone());
        }
        let is_regular = o.st_mode & 0o170000 == 0o100000;
        Observed {
            boot,
            inode,
            fs: magic_name(o.fs_magic),
            mode: mode_text(o.st_mode),
            link: o.link.clone(),
            size: is_regular.then_some(o.st_size),
            seals: o.seals.clone(),
            position: if is_regular { o.position } else { None },
            cloexec: o.cloexec,
        }
    }

    pub(crate) fn summarise_identity(&mut self) {
        for (boot, labels) in &self.session_inodes {
            let distinct: std::collections::BTreeSet<_> = labels.iter().collect();
            let verdict = match (labels.len(), distinct.len()) {
                (1, _) => "one session fd observed".to_string(),
                (n, 1) => format!("{n} session fds share one inode"),
                (n, d) if n == d => format!("{n} session fds, each with its own inode"),
                (n, d) => format!("{n} session fds, {d} distinct inodes"),
            };
            self.report
                .session_identity
                .push(format!("boot {boot}: {verdict}"));
        }
    }

    pub(crate) fn record_memory(
        &mut self,
        label: &str,
        objects: Option<u64>,
        snap: MemorySnapshot,
    ) {
        let meminfo: BTreeMap<String, u64> = snap.meminfo.iter().cloned().collect();
        let slab_bytes: BTreeMap<String, u64> = snap
            .slabs
            .iter()
            .map(|c| (c.name.clone(), c.num_slabs * c.pages_per_slab * 4096))
            .collect();
        self.metrics.memory.push(RawMemory {
            label: label.into(),
            meminfo_kb: meminfo.clone(),
            slab_bytes,
        });
        if let Some((prev_label, prev)) = &self.last_memory {
            // From the objects SLUB counts in use (exact: the agent shrinks the caches before
            // reading them), not from the Slab pages of /proc/meminfo, whose growth over 100
            // objects depends on how full the boot left the last slab of each cache.
            let cost = SlabCost::between(&prev.slabs, &snap.slabs, objects);
            tracing::debug!(
                label,
                ?objects,
                object_bytes = cost.all_bytes,
                per_object_bytes = cost.per_object_bytes,
                "slab objects allocated"
            );
            self.report.memory.push(MemoryDelta {
                from: prev_label.clone(),
                to: label.into(),
                objects,
                slab_bytes_per_object: cost.per_object_rounded(),
                grown_caches: cost.grown,
            });
        }
        self.last_memory = Some((label.to_string(), snap));
    }

    /// Reads what the running kernel says about itself (scenario/watch.rs): its log since the last
    /// read, whose refused-state lines the report gets at once; kmemleak's suspects where the kernel
    /// has kmemleak; the counters of a gcov kernel. `check` names the checkpoint (`before L11
    /// kexec`, `end`) for the leaks it finds and for what cannot be read.
    pub(crate) async fn checkpoint(&mut self, check: &str) -> Result<(), StepFailure> {
        let boot = self.guest.boot_index();
        for _ in 0..MAX_LOG_READS {
            let from = self.watching().next_seq();
            let Some(Reply::Records(r)) = self.call(Request::KernelRecords { from }, None).await?
            else {
                return Err(StepFailure::Check(
                    "kernel_records: unexpected reply".into(),
                ));
            };
            let more = r.truncated;
            for l in self.watching().records(r) {
                let text = l.split_once("] ").map_or(l.as_str(), |(_, t)| t);
                if let Some(what) = refused(text) {
                    self.report.kernel_log.push(format!("boot {boot}: {text}"));
                    self.report
                        .handover
                        .push(format!("boot {boot}: {what}: {text}"));
                }
            }
            if !more {
                break;
            }
        }
        let kernel = &self.watching().kernel;
        let kmemleak = kernel.has("DEBUG_KMEMLEAK");
        let profiled = kernel.gcov.as_ref().map(|g| g.files.len());
        if kmemleak {
            let req = Request::Kmemleak {
                min_age_ms: super::watch::KMEMLEAK_MIN_AGE_MS,
            };
            match self.guest.try_request(req, None).await? {
                Ok(Reply::Leaks { report, .. }) => self.watching().leaks(check.into(), report),
                Ok(other) => {
                    return Err(StepFailure::Check(format!(
                        "kmemleak: unexpected reply {other:?}"
                    )));
                }
                // A debug kernel whose leak check cannot run must not pass as leak-free.
                Err(e) => self
                    .report
                    .failures
                    .push(format!("boot {boot}, {check}: kmemleak: {e}")),
            }
        }
        if let Some(profiled) = profiled {
            match self.guest.try_request(Request::GcovData, None).await? {
                Ok(Reply::Gcov { files }) if !files.is_empty() => {
                    self.watching().gcov = Some(files)
                }
                Ok(Reply::Gcov { .. }) => self.report.failures.push(format!(
                    "boot {boot}, {check}: no gcov data in /sys/kernel/debug/gcov although the kernel was built to profile {profiled} file{}",
                    if profiled == 1 { "" } else { "s" }
                )),
                Ok(other) => {
                    return Err(StepFailure::Check(format!("gcov_data: unexpected reply {other:?}")));
                }
                Err(e) => self
                    .report
                    .failures
                    .push(format!("boot {boot}, {check}: gcov data: {e}")),
            }
        }
        Ok(())
    }

    /// Every boot's findings into the report (at most [`crate::findings::MAX_FINDINGS`]), and the
    /// suspicious lines no report holds into its kernel log.
    pub(crate) fn conclude_findings(&mut self) {
        let mut all = Vec::new();
        for w in &self.watch {
            let (findings, stray) = w.findings();
            all.extend(findings);
            self.report
                .kernel_log
                .extend(stray.into_iter().map(|l| format!("boot {}: {l}", w.boot)));
        }
        let max = crate::findings::MAX_FINDINGS;
        if all.len() > max {
            self.report.kernel_log.push(format!(
                "{} more findings after the first {max} (all in the console and agent.jsonl)",
                all.len() - max
            ));
            all.truncate(max);
        }
        self.report.findings = all;
    }

    /// After a kexec: whether the new kernel found the state the old one handed over.
    pub(crate) fn check_handover(&mut self) {
        let facts = &self.guest.hello().boot;
        let boot = self.guest.boot_index();
        if facts.liveupdate_number.is_none() {
            let why = if facts.kho_exec_from.is_none() {
                "no KHO data found (no `KHO: exec from`), no liveupdate number"
            } else {
                "KHO came through but LUO reports no liveupdate number"
            };
            self.report
                .handover
                .push(format!("boot {boot}: state lost: {why}"));
        }
    }

    /// Why the running kernel does not qualify for the scenario, if it does not.
    pub(crate) async fn unmet_requirements(&mut self) -> Result<Option<String>, StepFailure> {
        let release = self.guest.hello().boot.release.clone();
        if let Some(why) = self.requires.release_unmet(&release) {
            return Ok(Some(why));
        }
        if self.requires.config.is_empty() {
            return Ok(None);
        }
        let config = match self.guest.try_request(Request::KernelConfig, None).await? {
            Ok(Reply::Text { text, .. }) => text,
            Ok(other) => {
                return Err(StepFailure::Check(format!(
                    "unexpected reply to kernel_config: {other:?}"
                )));
            }
            Err(e) => {
                return Ok(Some(format!(
                    "requires {} but the kernel's own config cannot be read ({e}; it needs CONFIG_IKCONFIG_PROC)",
                    self.requires
                        .config
                        .iter()
                        .map(|c| c.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let unmet = self.requires.config_unmet(&config);
        Ok((!unmet.is_empty()).then(|| unmet.join("; ")))
    }
}
