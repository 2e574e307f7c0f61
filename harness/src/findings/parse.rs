//! A boot's kernel log split into reports: where each starts (its header), what kind it is, its
//! message and its stacks, and the request that was running when it was printed.
//!
//! The log is the lines as the kernel printed them, without timestamps, in order, with the
//! agent's request marks (luo_protocol::REQUEST_MARK) among them. A report ends at its own end
//! marker (KASAN, KFENCE and UBSAN close with a line of `=`, a WARN or an oops with
//! `---[ end trace`), at the end of its last stack (lockdep, sleeping in atomic context), at the
//! next report's header or request mark, or after [`MAX_REPORT_LINES`].

use luo_protocol::REQUEST_MARK;

/// A report longer than this is cut (a stack of runaway recursion, a flood).
pub const MAX_REPORT_LINES: usize = 400;

/// One frame as the kernel printed it: `func+0x5e/0x120 [module]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub function: String,
    pub offset: u64,
    pub size: u64,
    pub module: Option<String>,
    /// Printed with `? `: a stale value the unwinder found on the stack, not a caller.
    pub unreliable: bool,
    /// The address itself (a RIP, a WARN's `at`), not a return address: symbolized as is rather
    /// than one byte back into the call.
    pub exact: bool,
}

/// One named stack of a report: `Call Trace`, `Allocated by task 1`, `Freed by task 1`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStack {
    pub title: String,
    pub frames: Vec<RawFrame>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReport {
    /// `KASAN: slab-use-after-free`, `WARNING`, `possible circular locking dependency`, ...
    pub kind: String,
    /// Where the report says it happened (KASAN's `in`, a WARN's `at`, an oops' RIP).
    pub at: Option<RawFrame>,
    /// Every line of the report, as printed.
    pub lines: Vec<String>,
    pub stacks: Vec<RawStack>,
    /// The id of the agent's request that was running (None: before the first one).
    pub request: Option<u64>,
}

/// How a kind of report ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A closing line of `=` (KASAN, KFENCE, UBSAN print one before and after).
    Separator,
    /// `---[ end trace` (WARN, BUG, oops); or the end of its call trace.
    EndTrace,
}

/// What a header line starts: the report's kind, where it says it happened, and how it ends.
struct Header {
    kind: String,
    at: Option<RawFrame>,
    ending: Ending,
    /// An `Oops:` line, which follows the fault that caused it.
    oops: bool,
}

/// The reports in `lines`.
pub fn reports(lines: &[String]) -> Vec<RawReport> {
    let mut out: Vec<RawReport> = Vec::new();
    let mut open: Option<(RawReport, Ending)> = None;
    let mut request = None;
    // A WARN prints its message between `[ cut here ]` and its header: held until the header.
    let mut cut: Option<Vec<String>> = None;
    let close = |open: &mut Option<(RawReport, Ending)>, out: &mut Vec<RawReport>| {
        if let Some((r, _)) = open.take() {
            out.push(r);
        }
    };
    for line in lines {
        let text = line.trim_end();
        if let Some(id) = text.strip_prefix(REQUEST_MARK) {
            close(&mut open, &mut out);
            cut = None;
            request = id.split_whitespace().next().and_then(|n| n.parse().ok());
            continue;
        }
        if text.contains("[ cut here ]") {
            close(&mut open, &mut out);
            cut = Some(vec![]);
            continue;
        }
        if let Some(h) = header(text).filter(|h| !continues(&open, h)) {
            close(&mut open, &mut out);
            let message = cut.take().unwrap_or_default();
            let kind = match h.kind.as_str() {
                "WARNING" => warning_kind(&message).unwrap_or(h.kind),
                _ => h.kind,
            };
            let mut lines = message;
            lines.push(text.to_string());
            open = Some((
                RawReport {
                    kind,
                    at: h.at,
                    lines,
                    stacks: vec![],
                    request,
                },
                h.ending,
            ));
            continue;
        }
        if let Some(m) = cut.as_mut() {
            if m.len() < 8 {
                m.push(text.to_string());
            }
            continue;
        }
        let Some((report, ending)) = open.as_mut() else {
            // A panic with no report before it in this boot is a report of its own (after one,
            // it is that report's consequence).
            if text.starts_with("Kernel panic - not syncing: ") && out.is_empty() {
                out.push(RawReport {
                    kind: "Kernel panic".into(),
                    at: None,
                    lines: vec![text.to_string()],
                    stacks: vec![],
                    request,
                });
            }
            continue;
        };
        report.lines.push(text.to_string());
        let ends = match ending {
            Ending::Separator => is_separator(text) && report.lines.len() > 2,
            Ending::EndTrace => {
                text.starts_with("---[ end trace")
                    || (text.trim() == "</TASK>" && !report.stacks.is_empty())
            }
        };
        if !ends {
            body_line(report, text);
        }
        if ends || report.lines.len() >= MAX_REPORT_LINES {
            close(&mut open, &mut out);
        }
    }
    close(&mut open, &mut out);
    out
}

/// Whether header `h` goes on the report that is open instead of starting one: an oops line
/// after the fault that caused it (`BUG: kernel NULL pointer dereference`, `kernel BUG at`).
fn continues(open: &Option<(RawReport, Ending)>, h: &Header) -> bool {
    matches!(open, Some((r, _)) if r.stacks.is_empty()
        && (r.kind.starts_with("BUG: ") || r.kind == "kernel BUG")
        && h.oops)
}

/// A stack title or a frame, into the report's stacks.
fn body_line(report: &mut RawReport, text: &str) {
    if let Some(rip) = text.trim().strip_prefix("RIP: ") {
        // `RIP: 0010:func+0x5e/0x120`: the faulting instruction of an oops or a WARN.
        if report.at.is_none()
            && let Some(f) = rip.split_once(':').and_then(|(_, f)| frame(f))
        {
            report.at = Some(RawFrame { exact: true, ..f });
        }
        return;
    }
    if let Some(title) = stack_title(text) {
        report.stacks.push(RawStack {
            title,
            frames: vec![],
        });
        return;
    }
    if let Some(f) = frame(text)
        && let Some(stack) = report.stacks.last_mut()
    {
        stack.frames.push(f);
    }
}

/// A line that starts a stack in a report.
fn stack_title(text: &str) -> Option<String> {
    let t = text.trim();
    if t == "Call Trace:" || t == "stack backtrace:" {
        return Some("call trace".into());
    }
    // KASAN: `Allocated by task 1:`, `Freed by task 1:`, `Last potentially related work
    // creation:`; KFENCE: `allocated by task 1 on cpu 0 at 2.65s (3.21s ago):`; lockdep's chain:
    // `-> #1 (&sh->rwsem){++++}-{4:4}:`; kmemleak: `backtrace (crc 1234abcd):`.
    // KFENCE: `Use-after-free read at 0x... (in kfence-#82):`, `Out-of-bounds write at ...`.
    if t.ends_with(':') && t.contains(" at 0x") && t.contains("(in kfence-#") {
        return Some("access".into());
    }
    let lower = t.to_ascii_lowercase();
    let named = lower.starts_with("allocated by")
        || lower.starts_with("freed by")
        || lower.contains("potentially related work creation")
        || t.starts_with("-> #")
        || lower.starts_with("backtrace");
    if named && t.ends_with(':') {
        let title = t.trim_end_matches(':');
        let title = title.split(" on cpu ").next().unwrap_or(title);
        let title = title.split(" (crc ").next().unwrap_or(title);
        return Some(title.to_string());
    }
    None
}

/// `  ? func+0x5e/0x120 [mod]`, `[<ffffffff81234567>] func+0x5e/0x120`: a frame.
pub fn frame(text: &str) -> Option<RawFrame> {
    let mut t = text.trim();
    let unreliable = t.starts_with("? ");
    if unreliable {
        t = &t[2..];
    }
    if t.starts_with("[<")
        && let Some(end) = t.find(">]")
    {
        t = t[end + 2..].trim_start();
    }
    let (sym, module) = match t.split_once(' ') {
        Some((s, m)) if m.starts_with('[') && m.ends_with(']') => {
            (s, Some(m[1..m.len() - 1].to_string()))
        }
        Some(_) => return None,
        None => (t, None),
    };
    let (function, rest) = sym.rsplit_once('+')?;
    let (off, size) = rest.split_once('/')?;
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let valid = !function.is_empty()
        && function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'));
    valid.then_some(())?;
    Some(RawFrame {
        function: function.to_string(),
        offset: hex(off)?,
        size: hex(size)?,
        module,
        unreliable,
        exact: false,
    })
}

fn is_separator(text: &str) -> bool {
    let t = text.trim();
    t.len() >= 20 && t.chars().all(|c| c == '=')
}

/// The report a line starts, if it is a header.
fn header(text: &str) -> Option<Header> {
    let t = text.trim();
    // `watchdog: BUG: soft lockup ...`: a subsystem's prefix before the header.
    let t = match t.split_once(": BUG: ") {
        Some((prefix, rest)) if !prefix.contains(' ') => {
            return header(&format!("BUG: {rest}"));
        }
        _ => t,
    };
    let sep = |kind: String, at| {
        Some(Header {
            kind,
            at,
            ending: Ending::Separator,
            oops: false,
        })
    };
    let trace = |kind: String, at| {
        Some(Header {
            kind,
            at,
            ending: Ending::EndTrace,
            oops: false,
        })
    };
    for tool in ["KASAN", "KFENCE"] {
        if let Some(rest) = t.strip_prefix(&format!("BUG: {tool}: ")) {
            let (what, at) = split_in(rest);
            return sep(format!("{tool}: {what}"), at);
        }
    }
    if let Some(rest) = t.strip_prefix("UBSAN: ") {
        let what = rest.split(" in ").next().unwrap_or(rest);
        return sep(format!("UBSAN: {what}"), None);
    }
    if let Some(rest) = t.strip_prefix("WARNING: ") {
        // `WARNING: kernel/x.c:12 at func+0x1/0x2, CPU#0: comm/1` (7.x), `WARNING: CPU: 0 PID: 1
        // at kernel/x.c:12 func+0x1/0x2` (before), `WARNING: at func+0x1/0x2, CPU#0: comm/1`.
        if rest.starts_with("CPU: ") || rest.starts_with("at ") || rest.contains(" at ") {
            return trace("WARNING".into(), warn_location(rest));
        }
        // Everything else that says WARNING is lockdep's or RCU's: `possible circular locking
        // dependency detected`, `suspicious RCU usage`, `bad unlock balance detected!`.
        let kind = rest
            .trim_end_matches('!')
            .trim_end_matches(" detected")
            .trim()
            .to_string();
        return trace(kind, None);
    }
    if t.starts_with("kernel BUG at ") {
        return trace("kernel BUG".into(), None);
    }
    if let Some(rest) = t.strip_prefix("BUG: ") {
        // `BUG: kernel NULL pointer dereference, address: 0000000000000008`, `BUG: sleeping
        // function called from invalid context at kernel/locking/mutex.c:580`.
        let what = rest
            .split([',', ':'])
            .next()
            .unwrap_or(rest)
            .split(" at ")
            .next()
            .unwrap_or(rest)
            .trim();
        return trace(format!("BUG: {what}"), None);
    }
    if let Some(rest) = t.strip_prefix("Oops: ") {
        // `Oops: general protection fault, probably for ...`, `Oops: Oops: 0000 [#1] NOPTI`.
        let what = rest.split(',').next().unwrap_or(rest).trim();
        let what = what.split(": ").next().unwrap_or(what);
        return Some(Header {
            kind: what.to_string(),
            at: None,
            ending: Ending::EndTrace,
            oops: true,
        });
    }
    None
}

/// `slab-use-after-free in func+0x8e/0x120`: the kind and where.
fn split_in(rest: &str) -> (String, Option<RawFrame>) {
    match rest.rsplit_once(" in ") {
        Some((what, at)) => (what.trim().to_string(), frame(at)),
        None => (rest.trim().to_string(), None),
    }
}

/// A WARN header's location, in any of the formats kernels print.
fn warn_location(rest: &str) -> Option<RawFrame> {
    let exact = |f: RawFrame| RawFrame { exact: true, ..f };
    if let Some((_, after)) = rest
        .split_once(" at ")
        .or_else(|| rest.strip_prefix("at ").map(|a| ("", a)))
    {
        // 7.x: `FILE:LINE at FUNC+OFF/SIZE, CPU#0: ...`; `at FUNC+OFF/SIZE, CPU#0: ...`; before
        // 6.x: `CPU: 0 PID: 1 at FILE:LINE FUNC+OFF/SIZE`.
        let candidates = after
            .split([',', ' '])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>();
        return candidates.iter().find_map(|w| frame(w)).map(exact);
    }
    None
}

/// What kind of WARN a message before its header makes it: the checks that report through WARN.
fn warning_kind(message: &[String]) -> Option<String> {
    let first = message.iter().map(|m| m.trim()).find(|m| !m.is_empty())?;
    for (prefix, cut) in [
        ("refcount_t: ", ';'),
        ("list_add corruption", '.'),
        ("list_del corruption", '.'),
        ("list_add double add", ':'),
    ] {
        if first.starts_with(prefix) {
            let kind = first
                .split(cut)
                .next()
                .unwrap_or(first)
                .trim_end_matches(['.', ',']);
            return Some(kind.to_string());
        }
    }
    if let Some(rest) = first.strip_prefix("ODEBUG: ") {
        // `ODEBUG: free active (active state 0) object: 0000 object type: timer_list hint: f`
        let action = rest.split(" (").next().unwrap_or(rest);
        let action = action.split(" object").next().unwrap_or(action);
        let ty = rest
            .split("object type: ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or("?");
        return Some(format!("ODEBUG: {action} ({ty})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn frames_in_every_form_the_kernel_prints() {
        let f = frame(" luo_session_release+0x8e/0x120").unwrap();
        assert_eq!(
            (f.function.as_str(), f.offset, f.size, f.unreliable),
            ("luo_session_release", 0x8e, 0x120, false)
        );
        let f = frame("  ? kasan_report+0xd1/0x110 [kasan_test]").unwrap();
        assert!(f.unreliable && f.module.as_deref() == Some("kasan_test"));
        let f = frame("    [<ffffffff8123abcd>] __kmalloc_noprof+0x2d7/0x3c0").unwrap();
        assert_eq!(f.function, "__kmalloc_noprof");
        assert!(frame(" <TASK>").is_none());
        assert!(frame("Read of size 8 at addr ffff888003e4c010 by task luo-agent/1").is_none());
        assert!(frame("CPU: 0 UID: 0 PID: 1 Comm: luo-agent").is_none());
    }

    const KASAN: &str = "luo-agent: request 11
==================================================================
BUG: KASAN: slab-use-after-free in luo_session_release+0x8e/0x120
Read of size 1 at addr ffff888003e4c010 by task luo-agent/1

CPU: 0 UID: 0 PID: 1 Comm: luo-agent Not tainted 7.3.4 #1 PREEMPT(none)
Call Trace:
 <TASK>
 dump_stack_lvl+0x4b/0x70
 print_report+0xce/0x5f0
 kasan_report+0xbe/0xf0
 luo_session_release+0x8e/0x120
 __fput+0x1e8/0x4d0
 </TASK>

Allocated by task 1:
 kasan_save_stack+0x1c/0x40
 __kasan_kmalloc+0x8f/0xa0
 luo_session_create+0x3b/0x1c0

Freed by task 1:
 kasan_save_stack+0x1c/0x40
 kfree+0x13c/0x3f0
 luo_session_release+0x7a/0x120

The buggy address belongs to the object at ffff888003e4c000
==================================================================
luo-agent: request 12
";

    #[test]
    fn a_kasan_report_with_its_three_stacks_and_its_request() {
        let r = reports(&lines(KASAN));
        assert_eq!(r.len(), 1, "{r:#?}");
        let r = &r[0];
        assert_eq!(r.kind, "KASAN: slab-use-after-free");
        assert_eq!(r.at.as_ref().unwrap().function, "luo_session_release");
        assert!(
            !r.at.as_ref().unwrap().exact,
            "KASAN names a return address"
        );
        assert_eq!(r.request, Some(11));
        let titles: Vec<_> = r.stacks.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            ["call trace", "Allocated by task 1", "Freed by task 1"]
        );
        assert_eq!(r.stacks[0].frames.len(), 5);
        assert!(r.lines.last().unwrap().starts_with("====="));
    }

    #[test]
    fn a_warn_in_the_7x_format_with_its_message_and_rip() {
        let log = "------------[ cut here ]------------
refcount_t: underflow; use-after-free.
WARNING: lib/refcount.c:28 at refcount_warn_saturate+0xf5/0x110, CPU#0: luo-agent/1
Modules linked in:
RIP: 0010:refcount_warn_saturate+0xf5/0x110
Call Trace:
 <TASK>
 luo_file_put+0x33/0x50
 luo_session_release+0x99/0x120
 </TASK>
irq event stamp: 1234
---[ end trace 0000000000000000 ]---
";
        let r = reports(&lines(log));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].kind, "refcount_t: underflow");
        let at = r[0].at.as_ref().unwrap();
        assert!(at.exact && at.function == "refcount_warn_saturate");
        assert_eq!(r[0].stacks[0].frames[0].function, "luo_file_put");
        assert_eq!(r[0].lines[0], "refcount_t: underflow; use-after-free.");
    }

    #[test]
    fn the_older_warn_format_and_odebug() {
        let log = "------------[ cut here ]------------
ODEBUG: free active (active state 0) object: ffff88800 object type: timer_list hint: f+0x0/0x10
WARNING: CPU: 0 PID: 1 at lib/debugobjects.c:612 debug_print_object+0xd0/0x100
Call Trace:
 debug_check_no_obj_freed+0x20/0x90
 </TASK>
";
        let r = reports(&lines(log));
        assert_eq!(r[0].kind, "ODEBUG: free active (timer_list)");
        assert_eq!(r[0].at.as_ref().unwrap().function, "debug_print_object");
    }

    #[test]
    fn lockdep_ends_with_its_backtrace() {
        let log = "======================================================
WARNING: possible circular locking dependency detected
7.3.4 #1 Not tainted
------------------------------------------------------
luo-agent/1 is trying to acquire lock:
ffff8880 (&session->mutex){+.+.}-{4:4}, at: luo_session_finish+0x2a/0x90

-> #1 (&sh->rwsem){++++}-{4:4}:
       lock_acquire+0x10/0x20
       down_write+0x30/0x40
       luo_session_insert+0x50/0x60

stack backtrace:
CPU: 0 UID: 0 PID: 1 Comm: luo-agent Not tainted 7.3.4 #1
Call Trace:
 <TASK>
 dump_stack_lvl+0x4b/0x70
 print_circular_bug+0x1/0x2
 lock_acquire+0x10/0x20
 luo_session_finish+0x2a/0x90
 </TASK>
luo: something after it
BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580
in_atomic(): 1, irqs_disabled(): 0
Call Trace:
 <TASK>
 __might_resched+0x1/0x2
 luo_file_freeze+0x3/0x4
 </TASK>
";
        let r = reports(&lines(log));
        let kinds: Vec<_> = r.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "possible circular locking dependency",
                "BUG: sleeping function called from invalid context"
            ]
        );
        assert_eq!(r[0].stacks[0].title, "-> #1 (&sh->rwsem){++++}-{4:4}");
        assert_eq!(r[0].stacks.last().unwrap().frames.len(), 4);
        assert!(
            !r[0].lines.iter().any(|l| l.contains("something after")),
            "the report ended with its backtrace"
        );
    }

    #[test]
    fn an_oops_takes_its_rip_and_the_panic_after_it_is_part_of_it() {
        let log = "BUG: kernel NULL pointer dereference, address: 0000000000000008
#PF: supervisor read access in kernel mode
Oops: Oops: 0000 [#1] NOPTI
RIP: 0010:luo_file_finish+0x12/0x80
Call Trace:
 <TASK>
 luo_session_finish+0x2a/0x90
 </TASK>
Kernel panic - not syncing: Fatal exception
";
        let r = reports(&lines(log));
        let kinds: Vec<_> = r.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["BUG: kernel NULL pointer dereference"]);
        assert_eq!(r[0].at.as_ref().unwrap().function, "luo_file_finish");
        assert_eq!(r[0].stacks[0].frames[0].function, "luo_session_finish");
        assert!(
            reports(&lines(
                "Kernel panic - not syncing: Attempted to kill init!"
            ))[0]
                .kind
                == "Kernel panic",
            "a panic on its own is a report"
        );
    }

    #[test]
    fn ubsan_and_kfence_close_with_their_separator() {
        let log = "================================================================================
UBSAN: array-index-out-of-bounds in kernel/liveupdate/luo_file.c:210:9
index 16 is out of range for type 'u64 [16]'
Call Trace:
 <TASK>
 __ubsan_handle_out_of_bounds+0x1/0x2
 luo_file_preserve+0x3/0x4
 </TASK>
---[ end trace ]---
================================================================================
==================================================================
BUG: KFENCE: use-after-free read in luo_flb_put+0x30/0x80

Use-after-free read at 0x000000001 (in kfence-#12):
 luo_flb_put+0x30/0x80
kfence-#12: 0x00000000-0x0000001f, size=32, cache=kmalloc-32

allocated by task 1 on cpu 0 at 2.650000s (0.100000s ago):
 luo_flb_get+0x1/0x2

==================================================================
";
        let r = reports(&lines(log));
        let kinds: Vec<_> = r.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "UBSAN: array-index-out-of-bounds",
                "KFENCE: use-after-free read"
            ]
        );
        assert_eq!(r[1].stacks[0].title, "access");
        assert_eq!(r[1].stacks[0].frames[0].function, "luo_flb_put");
        assert_eq!(r[1].stacks[1].title, "allocated by task 1");
    }

    #[test]
    fn ordinary_lines_and_requests_make_no_report() {
        let log =
            "luo-agent: request 1\nluo: Retrieved live update data\nCall Trace:\n foo+0x1/0x2\n";
        assert!(reports(&lines(log)).is_empty());
    }
}
