//! What each boot's kernel says about itself, read at every checkpoint (before each kexec, and
//! after the last step): its log from where the last read stopped, kmemleak's suspects where the
//! kernel has kmemleak, the gcov counters of a gcov kernel; and, once the boot is over, what the
//! console caught of its last moments (after the agent's kexec mark, which no read can reach).
//! After the scenario it all becomes findings (crate::findings) and coverage data.

use crate::findings::{self, Finding, kmemleak, symbolize::Symbolizer};
use crate::plan::PlannedKernel;
use luo_protocol::{GcovFile, KernelRecords, REQUEST_MARK};

/// kmemleak's minimum object age the checks ask for. The guest has one CPU and the agent waits for
/// the check, so no pointer to a live object sits in another CPU's registers, which is what the
/// stock 5 s protect against; an object allocated during the scan is younger than the scan and
/// never reported (docs/findings.md, "kmemleak").
pub const KMEMLEAK_MIN_AGE_MS: u64 = 0;

/// One boot's gcov counters with the kernel they count: what `coverage` turns into tracefiles.
#[derive(Debug, Clone)]
pub struct GcovCapture {
    pub boot: u32,
    pub kernel: PlannedKernel,
    pub files: Vec<GcovFile>,
}

impl GcovCapture {
    /// The counters a boot's last checkpoint read, if its kernel is a gcov one.
    pub fn of(w: &BootWatch) -> Option<GcovCapture> {
        Some(GcovCapture {
            boot: w.boot,
            kernel: w.kernel.clone(),
            files: w.gcov.clone()?,
        })
    }
}

/// One boot's kernel and what it said.
pub struct BootWatch {
    pub boot: u32,
    pub kernel: PlannedKernel,
    /// The log's lines without timestamps, in order, the agent's request marks among them.
    lines: Vec<String>,
    next_seq: u64,
    /// Records the ring buffer lost before they were read.
    lost: u64,
    /// The steps, by the id of the first request each sent: a report belongs to the step whose
    /// request was running.
    steps: Vec<(u64, String)>,
    /// kmemleak's suspects at each check, with the check's name.
    leaks: Vec<(String, String)>,
    /// The gcov counters at the last checkpoint of this boot.
    pub gcov: Option<Vec<GcovFile>>,
    /// The console's lines after the agent's kexec mark, and the step that kexec'd.
    last_words: Option<(String, Vec<String>)>,
}

impl BootWatch {
    pub fn new(boot: u32, kernel: PlannedKernel) -> BootWatch {
        BootWatch {
            boot,
            kernel,
            lines: vec![],
            next_seq: 0,
            lost: 0,
            steps: vec![],
            leaks: vec![],
            gcov: None,
            last_words: None,
        }
    }

    /// The step that sends requests from id `first_request` on.
    pub fn step(&mut self, first_request: u64, label: String) {
        self.steps.push((first_request, label));
    }

    /// Where the next read of the log starts.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Takes a read of the log; returns its lines (with timestamps) for the handover checks.
    pub fn records(&mut self, r: KernelRecords) -> Vec<String> {
        self.lost += r.lost;
        self.next_seq = r.next;
        let mut new = Vec::with_capacity(r.records.len());
        for rec in r.records {
            new.push(rec.line());
            self.lines.push(rec.text);
        }
        new
    }

    pub fn leaks(&mut self, check: String, report: String) {
        if !report.trim().is_empty() {
            self.leaks.push((check, report));
        }
    }

    /// The boot's end as the console shows it (`console` is the VM's whole console log, this
    /// boot's kexec the `n`th, from 0), attributed to `step`.
    pub fn last_words(&mut self, console: &str, n: usize, step: String) {
        self.last_words = Some((step, last_words(console, n)));
    }

    /// The step that request `id` belonged to.
    fn step_of(&self, id: Option<u64>) -> String {
        let Some(id) = id else {
            return "boot".into();
        };
        self.steps
            .iter()
            .rev()
            .find(|(first, _)| *first <= id)
            .map_or_else(|| "boot".into(), |(_, label)| label.clone())
    }

    /// This boot's findings, symbolized against its kernel, and lines that look like trouble
    /// but belong to no report (kept, so nothing the old line scan caught is lost).
    pub fn findings(&self) -> (Vec<Finding>, Vec<String>) {
        let reports = findings::parse::reports(&self.lines);
        let mut stray = stray_lines(&self.lines, &reports);
        let mut after = vec![];
        if let Some((_, lines)) = &self.last_words {
            let r = findings::parse::reports(lines);
            stray.extend(stray_lines(lines, &r));
            after = r;
        }
        let leaks: Vec<_> = self
            .leaks
            .iter()
            .map(|(check, text)| (check, kmemleak::reports(text)))
            .collect();
        if self.lost > 0 {
            stray.push(format!(
                "the kernel log lost {} records before they were read (a report may be among them)",
                self.lost
            ));
        }
        let mut out = Vec::new();
        if reports.is_empty() && after.is_empty() && leaks.iter().all(|(_, r)| r.is_empty()) {
            return (out, stray);
        }
        let symbolizer = Symbolizer::open(
            self.kernel.vmlinux.as_deref(),
            self.kernel.source_root.as_deref(),
        );
        let step_of = |id: Option<u64>| self.step_of(id);
        out.extend(findings::findings(
            self.boot,
            reports,
            &symbolizer,
            &step_of,
        ));
        if let Some((step, _)) = &self.last_words {
            let label = format!("{step} (after reboot)");
            out.extend(findings::findings(self.boot, after, &symbolizer, &|_| {
                label.clone()
            }));
        }
        for (check, r) in leaks {
            out.extend(findings::findings(self.boot, r, &symbolizer, &|_| {
                check.clone()
            }));
        }
        (out, stray)
    }
}

impl BootWatch {
    /// The reports of this boot on `console` (a VM's whole console log), rendered: what a boot
    /// that ended in a panic said, which no read of its log reached. This boot's part is what
    /// follows the last kernel start the console shows (`Starting new kernel`), or all of it.
    pub fn console_reports(&self, console: &str) -> Vec<String> {
        let start = match self.boot {
            0 => 0,
            _ => console
                .rfind("kexec_core: Starting new kernel")
                .map_or(0, |i| i + console[i..].find('\n').unwrap_or(0)),
        };
        let lines: Vec<String> = console[start..]
            .lines()
            .map(|l| {
                l.split_once("] ")
                    .map_or(l, |(_, t)| t)
                    .trim_end()
                    .to_string()
            })
            .collect();
        let reports = findings::parse::reports(&lines);
        if reports.is_empty() {
            return vec![];
        }
        let symbolizer = Symbolizer::open(
            self.kernel.vmlinux.as_deref(),
            self.kernel.source_root.as_deref(),
        );
        let label = "the boot's end".to_string();
        findings::findings(self.boot, reports, &symbolizer, &|_| label.clone())
            .iter()
            .map(Finding::render)
            .collect()
    }
}

/// Lines that the old scan called suspicious and that no report holds: a `Call Trace:` of a
/// dump_stack(), a panic after its cause was cut off.
fn stray_lines(lines: &[String], reports: &[findings::parse::RawReport]) -> Vec<String> {
    const SUSPICIOUS: &[&str] = &[
        "WARNING:",
        "BUG:",
        "Oops",
        "KASAN:",
        "Kernel panic",
        "Call Trace",
    ];
    let held: std::collections::HashSet<&str> = reports
        .iter()
        .flat_map(|r| r.lines.iter().map(String::as_str))
        .collect();
    lines
        .iter()
        .filter(|l| !l.starts_with(REQUEST_MARK) && !held.contains(l.trim_end()))
        .filter(|l| SUSPICIOUS.iter().any(|p| l.contains(p)))
        .cloned()
        .collect()
}

/// The console's lines, without timestamps, from the `n`th (from 0) kexec mark to the kernel's
/// last line before the next one starts (`kexec_core: Starting new kernel`), or to the end.
pub fn last_words(console: &str, n: usize) -> Vec<String> {
    let Some((start, _)) = console.match_indices(luo_protocol::KEXEC_MARK).nth(n) else {
        return vec![];
    };
    let mut out = Vec::new();
    for l in console[start..].lines().skip(1) {
        let text = l.split_once("] ").map_or(l, |(_, t)| t).trim_end();
        out.push(text.to_string());
        if text.contains("kexec_core: Starting new kernel") {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use luo_protocol::LogRecord;

    fn kernel() -> PlannedKernel {
        PlannedKernel::prebuilt(
            std::path::Path::new("/nonexistent/bzImage"),
            luo_kernels::Arch::X86_64,
        )
    }

    fn records(from: u64, texts: &[&str]) -> KernelRecords {
        KernelRecords {
            records: texts
                .iter()
                .enumerate()
                .map(|(i, t)| LogRecord {
                    seq: from + i as u64,
                    level: 4,
                    usec: 1_000_000 + i as u64,
                    text: t.to_string(),
                })
                .collect(),
            next: from + texts.len() as u64,
            lost: 0,
            truncated: false,
        }
    }

    #[test]
    fn reports_land_in_the_step_whose_request_was_running() {
        let mut w = BootWatch::new(0, kernel());
        w.step(2, "L6 open_device".into());
        w.step(3, "L7 close".into());
        let new = w.records(records(
            0,
            &[
                "luo-agent: request 1",
                "luo-agent: request 2",
                "luo-agent: request 3",
                "------------[ cut here ]------------",
                "WARNING: kernel/liveupdate/luo_session.c:262 at luo_session_release+0x8e/0x120, CPU#0: luo-agent/1",
                "Call Trace:",
                " <TASK>",
                " __fput+0x1e8/0x4d0",
                " </TASK>",
                "---[ end trace 0000000000000000 ]---",
            ],
        ));
        assert!(new[0].starts_with("[    1.000000] luo-agent: request 1"));
        assert_eq!(w.next_seq(), 10);
        let (f, stray) = w.findings();
        assert!(stray.is_empty(), "{stray:?}");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].title, "WARNING in luo_session_release");
        assert_eq!((f[0].boot, f[0].step.as_str()), (0, "L7 close"));
    }

    #[test]
    fn the_last_words_and_the_leaks_are_findings_of_the_boot_too() {
        let console = "[ 1.0] early\n[ 2.0] luo-agent: reboot(KEXEC)\n[ 2.1] BUG: sleeping function called from invalid context at kernel/x.c:1\n[ 2.2] Call Trace:\n[ 2.3]  luo_session_serialize+0x1/0x2\n[ 2.4]  </TASK>\n[ 2.5] kexec_core: Starting new kernel\n[ 0.0] Linux version of the next\n";
        assert_eq!(
            last_words(console, 0).last().unwrap(),
            "kexec_core: Starting new kernel"
        );
        assert!(last_words(console, 1).is_empty());
        let mut w = BootWatch::new(0, kernel());
        w.last_words(console, 0, "L11 kexec".into());
        w.leaks("end".into(), String::new());
        w.leaks(
            "end".into(),
            "unreferenced object 0xffff8880 (size 256):\n  backtrace (crc 1):\n    kmalloc_trace+0x1/0x2\n    luo_session_alloc+0x3/0x4\n".into(),
        );
        let (f, _) = w.findings();
        let titles: Vec<_> = f
            .iter()
            .map(|f| (f.title.as_str(), f.step.as_str()))
            .collect();
        assert_eq!(
            titles,
            [
                (
                    "BUG: sleeping function called from invalid context in luo_session_serialize",
                    "L11 kexec (after reboot)"
                ),
                (
                    "kmemleak: suspected memory leak in luo_session_alloc",
                    "end"
                ),
            ]
        );
    }

    #[test]
    fn a_panic_on_the_console_is_rendered_for_the_boot_that_ended_in_it() {
        let console = "[ 1.0] luo-agent: reboot(KEXEC)\n[ 1.1] kexec_core: Starting new kernel\n\
            [ 0.9] BUG: kernel NULL pointer dereference, address: 0000000000000008\n\
            [ 0.9] Oops: Oops: 0000 [#1] NOPTI\n[ 0.9] RIP: 0010:luo_session_deserialize+0x12/0x80\n\
            [ 0.9] Call Trace:\n[ 0.9]  <TASK>\n[ 0.9]  luo_init+0x2a/0x90\n[ 0.9]  </TASK>\n\
            [ 0.9] Kernel panic - not syncing: Fatal exception\n";
        let w = BootWatch::new(1, kernel());
        let r = w.console_reports(console);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with(
                "BUG: kernel NULL pointer dereference in luo_session_deserialize (boot 1"
            ),
            "{}",
            r[0]
        );
        assert!(r[0].contains("luo_init+0x2a/0x90"), "{}", r[0]);
        assert!(
            BootWatch::new(0, kernel())
                .console_reports("[ 1.0] all is well\n")
                .is_empty()
        );
    }

    #[test]
    fn a_suspicious_line_in_no_report_is_kept_and_lost_records_are_said() {
        let mut w = BootWatch::new(1, kernel());
        let mut r = records(0, &["Call Trace:", " foo+0x1/0x2"]);
        r.lost = 3;
        w.records(r);
        let (f, stray) = w.findings();
        assert!(f.is_empty());
        assert_eq!(stray[0], "Call Trace:");
        assert!(stray[1].contains("lost 3 records"));
    }
}
