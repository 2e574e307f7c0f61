//! Findings: what the kernel reported about itself while a scenario ran (KASAN, KFENCE, UBSAN,
//! lockdep, WARN, BUG, an oops, kmemleak's suspects), one per report, each with its kind, the boot
//! and step it happened in, its stacks symbolized to file:line against that boot's vmlinux, and a
//! signature that stays the same from run to run and build to build (kind and top frames, by
//! function name), so snapshots and matrix cells do not churn.
//!
//! [`parse`] finds the reports in a boot's log, [`kmemleak`] in kmemleak's suspects,
//! [`symbolize`] turns frames into file:line.

pub mod kmemleak;
pub mod parse;
pub mod symbolize;

use parse::{RawFrame, RawReport};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use symbolize::{Frame, Symbolizer};

/// Findings kept per scenario; the rest are counted (a flood is bounded like the console).
pub const MAX_FINDINGS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `KASAN: slab-use-after-free`, `possible circular locking dependency`, `WARNING`,
    /// `kmemleak: suspected memory leak`, ...
    pub kind: String,
    /// The kind and the first function of the stack that is not the reporting machinery:
    /// `KASAN: slab-use-after-free in luo_session_release`.
    pub title: String,
    /// A hash of the kind and the top three such functions: the same bug reached the same way has
    /// the same signature in every run and every build.
    pub signature: String,
    /// The boot whose kernel printed it (0: the first; N: after the Nth kexec).
    pub boot: u32,
    /// The step that was running: `L12 close`, `boot` (before the first step), `end` (the checks
    /// after the last step), `L11 kexec (after reboot)` (the old kernel's last words).
    pub step: String,
    /// How often the same report was printed in that boot.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// What identifies the build rather than the bug (addresses, file:line): left out of snapshot
    /// comparisons.
    #[serde(default, skip_serializing_if = "Detail::is_empty")]
    pub detail: Detail,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// Where the report says it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Frame>,
    /// The report's lines as the kernel printed them (the stacks' frames among them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<Stack>,
    /// Why the frames carry no file:line, when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsymbolized: Option<String>,
}

impl Detail {
    fn is_empty(&self) -> bool {
        *self == Detail::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub title: String,
    pub frames: Vec<Frame>,
}

fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Finding {
    /// The report's own one-line account of what happened, where it gives one: KASAN's and
    /// KFENCE's access (`Read of size 8 at addr ...`), kmemleak's objects, UBSAN's reason.
    pub fn gist(&self) -> Option<&str> {
        const OPENINGS: &[&str] = &[
            "Read of size",
            "Write of size",
            "Use-after-free",
            "Out-of-bounds",
            "Invalid",
            "Corrupted memory",
            "index ",
            "shift exponent",
        ];
        self.detail.lines.iter().map(String::as_str).find(|l| {
            OPENINGS.iter().any(|o| l.starts_with(o))
                || (self.kind == kmemleak::KIND && l.contains("unreferenced object"))
        })
    }

    /// The finding as a kernel developer reads it: title, where, and each stack symbolized.
    pub fn render(&self) -> String {
        let mut s = format!("{} (boot {}, {}", self.title, self.boot, self.step);
        if self.count > 1 {
            s.push_str(&format!(", {} times", self.count));
        }
        s.push_str(&format!(", signature {})\n", self.signature));
        if let Some(gist) = self.gist() {
            s.push_str(&format!("  {gist}\n"));
        }
        if let Some(at) = &self.detail.at {
            s.push_str(&format!("  at {}\n", at.render()));
        }
        for st in &self.detail.stacks {
            s.push_str(&format!("  {}:\n", st.title));
            for f in &st.frames {
                s.push_str(&format!("    {}\n", f.render()));
            }
        }
        if let Some(why) = &self.detail.unsymbolized {
            s.push_str(&format!("  ({why})\n"));
        }
        s
    }
}

/// Functions that are the reporting machinery, not where a bug is: a report's location is the
/// first frame not among them (a prefix match).
const MACHINERY: &[&str] = &[
    "dump_stack",
    "show_stack",
    "print_",
    "kasan_",
    "__kasan_",
    "__asan_",
    "kfence_",
    "__kfence_",
    "ubsan_",
    "__ubsan_",
    "report_bug",
    "handle_bug",
    "exc_invalid_op",
    "asm_exc_",
    "__warn",
    "warn_",
    "lock_acquire",
    "lock_release",
    "__lock_",
    "lockdep_",
    "check_",
    "validate_chain",
    "mark_lock",
    "debug_check_",
    "__might_",
    "might_",
    "refcount_warn_saturate",
    "__list_add_valid",
    "__list_del_entry_valid",
    "debug_print_object",
    "debug_object",
    "__debug_",
    "kmemleak_",
    "__kmemleak",
    "stack_trace_save",
    "stack_depot",
    "__stack_depot",
    "set_track",
    "kmem_cache_alloc",
    "kmem_cache_free",
    "__kmem_cache",
    "kmalloc",
    "__kmalloc",
    "__do_kmalloc",
    "kzalloc",
    "kvmalloc",
    "__kvmalloc",
    "kmemdup",
    "kstrdup",
    "krealloc",
    "kfree",
    "kvfree",
    "slab_",
    "__slab",
    "___slab",
    "alloc_pages",
    "__alloc_pages",
    "_raw_spin_",
    "mutex_lock",
    "__mutex_lock",
    "mutex_unlock",
    "down_read",
    "down_write",
    "up_read",
    "up_write",
];

fn is_machinery(f: &RawFrame) -> bool {
    f.unreliable || MACHINERY.iter().any(|m| f.function.starts_with(m))
}

/// The frames that say where: the report's own location first, then its first stack's.
fn telling_frames(r: &RawReport) -> Vec<&RawFrame> {
    r.at.iter()
        .chain(r.stacks.first().into_iter().flat_map(|s| s.frames.iter()))
        .filter(|f| !is_machinery(f))
        .collect()
}

/// What a memory-safety report says went wrong, whichever detector saw it: KASAN checks every
/// access, KFENCE the objects it sampled, so one bug can be reported by either from run to run
/// (a signature must not change with that).
fn bug_class(kind: &str) -> &str {
    let Some(what) = kind
        .strip_prefix("KASAN: ")
        .or_else(|| kind.strip_prefix("KFENCE: "))
    else {
        return kind;
    };
    if what.contains("use-after-free") {
        "memory: use-after-free"
    } else if what.contains("out-of-bounds") {
        "memory: out-of-bounds"
    } else if what.contains("double-free")
        || what.contains("invalid-free")
        || what.contains("invalid free")
    {
        "memory: invalid free"
    } else {
        kind
    }
}

/// A report's title and signature.
fn name(r: &RawReport) -> (String, String) {
    let frames = telling_frames(r);
    let title = match frames.first() {
        Some(f) => format!("{} in {}", r.kind, f.function),
        None => r.kind.clone(),
    };
    let mut h = Sha256::new();
    h.update(bug_class(&r.kind).as_bytes());
    let mut last = None;
    for f in frames
        .iter()
        .filter(|f| {
            // The location and the same function as a stack's first frame count once.
            let repeat = last == Some(f.function.as_str());
            last = Some(f.function.as_str());
            !repeat
        })
        .take(3)
    {
        h.update([0]);
        h.update(f.function.as_bytes());
    }
    (title, hex::encode(&h.finalize()[..8]))
}

/// The findings of one boot's reports; `step_of` names the step a request belonged to. The same
/// report twice in a boot is one finding with a count.
pub fn findings(
    boot: u32,
    reports: Vec<RawReport>,
    symbolizer: &Symbolizer,
    step_of: &dyn Fn(Option<u64>) -> String,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for r in reports {
        let (title, signature) = name(&r);
        if let Some(seen) = out.iter_mut().find(|f| f.signature == signature) {
            seen.count += 1;
            continue;
        }
        let detail = Detail {
            at: r.at.as_ref().map(|f| symbolizer.frame(f)),
            lines: r.lines.clone(),
            stacks: r
                .stacks
                .iter()
                .map(|s| Stack {
                    title: s.title.clone(),
                    frames: s.frames.iter().map(|f| symbolizer.frame(f)).collect(),
                })
                .collect(),
            unsymbolized: symbolizer.missing.clone(),
        };
        out.push(Finding {
            kind: r.kind.clone(),
            title,
            signature,
            boot,
            step: step_of(r.request),
            count: 1,
            detail,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: &str, at: Option<&str>, stack: &[&str]) -> RawReport {
        let f = |name: &str| RawFrame {
            function: name.into(),
            offset: 0x10,
            size: 0x100,
            module: None,
            unreliable: false,
            exact: false,
        };
        RawReport {
            kind: kind.into(),
            at: at.map(f),
            lines: vec![],
            stacks: vec![parse::RawStack {
                title: "call trace".into(),
                frames: stack.iter().map(|n| f(n)).collect(),
            }],
            request: Some(7),
        }
    }

    #[test]
    fn titles_skip_the_reporting_machinery_and_signatures_ignore_offsets() {
        let r = report(
            "KASAN: slab-use-after-free",
            Some("luo_session_release"),
            &[
                "dump_stack_lvl",
                "print_report",
                "kasan_report",
                "luo_session_release",
                "__fput",
            ],
        );
        let (title, sig) = name(&r);
        assert_eq!(title, "KASAN: slab-use-after-free in luo_session_release");
        let mut other_build = r.clone();
        for f in &mut other_build.stacks[0].frames {
            f.offset += 4;
        }
        assert_eq!(
            name(&other_build).1,
            sig,
            "offsets do not change the signature"
        );
        let elsewhere = report(
            "KASAN: slab-use-after-free",
            Some("luo_file_release"),
            &["luo_file_release", "__fput"],
        );
        assert_ne!(name(&elsewhere).1, sig);
        let kfence = report(
            "KFENCE: use-after-free read",
            Some("luo_session_release"),
            &["luo_session_release", "__fput"],
        );
        assert_eq!(
            name(&kfence).1,
            sig,
            "the same bug seen by KFENCE is the same finding"
        );
        let lockdep = report(
            "possible circular locking dependency",
            None,
            &[
                "dump_stack_lvl",
                "print_circular_bug",
                "check_noncircular",
                "lock_acquire",
                "down_write",
                "luo_session_insert",
            ],
        );
        assert_eq!(
            name(&lockdep).0,
            "possible circular locking dependency in luo_session_insert"
        );
    }

    #[test]
    fn the_same_report_twice_is_one_finding_with_a_count() {
        let r = report(
            "WARNING",
            Some("luo_file_finish"),
            &["luo_file_finish", "luo_session_finish"],
        );
        let s = Symbolizer::open(None, None);
        let step = |id: Option<u64>| format!("request {id:?}");
        let f = findings(1, vec![r.clone(), r], &s, &step);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].count, f[0].boot, f[0].step.as_str()),
            (2, 1, "request Some(7)")
        );
        assert!(
            f[0].detail
                .unsymbolized
                .as_deref()
                .unwrap()
                .contains("without a vmlinux")
        );
        let text = f[0].render();
        assert!(
            text.starts_with(
                "WARNING in luo_file_finish (boot 1, request Some(7), 2 times, signature "
            ),
            "{text}"
        );
        assert!(text.contains("    luo_session_finish+0x10/0x100"), "{text}");
    }
}
