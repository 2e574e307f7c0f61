//! The delta as a terminal table and as the plain text of a reply on a kernel mailing list
//! (72 columns, the kernels named exactly, how it was measured, the table).

use super::{DeltaReport, Row};
use crate::measure::metric;
use crate::measure::stats::Verdict;

/// The width of a mail's lines.
pub const EMAIL_COLUMNS: usize = 72;

fn pct(x: f64) -> String {
    if !x.is_finite() {
        return if x > 0.0 {
            "+inf".into()
        } else {
            "-inf".into()
        };
    }
    let p = x * 100.0;
    if p.abs() < 9.95 {
        format!("{p:+.1}%")
    } else {
        format!("{p:+.0}%")
    }
}

fn num(x: f64) -> String {
    match x.abs() {
        v if !v.is_finite() => "-".into(),
        v if v >= 1000.0 => format!("{x:.0}"),
        v if v >= 10.0 => format!("{x:.1}"),
        _ => format!("{x:.2}"),
    }
}

fn short(name: &str) -> &str {
    metric::find(name).map_or(name, |m| m.short)
}

/// One table line, at most 68 columns.
fn line(r: &Row) -> String {
    let Some(c) = &r.change else {
        return format!(
            "{:<14} {:>8} {:>8}  (no values)",
            short(&r.metric),
            "-",
            "-"
        );
    };
    let (change, interval) = match (c.relative, c.relative_interval) {
        (Some(rel), Some((lo, hi))) => (pct(rel), format!("[{}, {}]", pct(lo), pct(hi))),
        _ => (
            num(c.shift),
            format!("[{}, {}]", num(c.shift_interval.0), num(c.shift_interval.1)),
        ),
    };
    let verdict = match c.verdict {
        Verdict::NoChange => "no change".to_string(),
        v => v.label().to_uppercase(),
    };
    format!(
        "{:<14} {:>8} {:>8} {:>7} {:<17} {}",
        short(&r.metric),
        num(c.base_median),
        num(c.patched_median),
        change,
        interval,
        verdict
    )
}

fn header(title: &str) -> String {
    format!(
        "\n{title}:\n{:<14} {:>8} {:>8} {:>7} {:<17} {}\n",
        "metric", "base", "patched", "change", "interval", "verdict"
    )
}

/// The table's blocks: one per session count, then the per-file one; each with its slab caches.
fn rows_text(d: &DeltaReport) -> String {
    let mut blocks: Vec<(String, String)> = d
        .sessions
        .iter()
        .map(|n| {
            let title = format!("N = {n} session{}", if *n == 1 { "" } else { "s" });
            (title, format!("N={n}"))
        })
        .collect();
    if d.files > 0 {
        let title = format!(
            "F = {} one-page memfds preserved in one more session, every run",
            d.files
        );
        blocks.push((title, format!("F={}", d.files)));
    }
    let mut s = String::new();
    for (title, at) in blocks {
        s.push_str(&header(&title));
        for r in d.rows.iter().filter(|r| r.at() == at) {
            s.push_str(&line(r));
            s.push('\n');
        }
        if let Some(c) = d.caches.iter().find(|c| c.at == at) {
            let unit = if at.starts_with('F') {
                "file"
            } else {
                "session"
            };
            let none = |v: &str| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.to_string()
                }
            };
            let text = if c.base == c.patched {
                format!("both {}", none(&c.base))
            } else {
                format!("base {}; patched {}", none(&c.base), none(&c.patched))
            };
            s.push_str(&wrap(&text, &format!("slab caches per {unit}: "), "  "));
        }
    }
    s
}

fn kernel(k: &super::KernelInfo) -> String {
    format!(
        "{} = {}, variant {}{}",
        k.spec,
        k.source,
        k.variant,
        k.release
            .as_deref()
            .map(|r| format!(", release {r}"))
            .unwrap_or_default()
    )
}

fn level_text(d: &DeltaReport) -> String {
    format!(
        "{:.0}% confidence for the whole table: each of its {} figures tested at {:.2}%",
        d.level.confidence * 100.0,
        d.level.comparisons,
        (1.0 - d.level.per_figure_alpha()) * 100.0
    )
}

/// The terminal's table.
pub fn table(d: &DeltaReport) -> String {
    let mut s = format!(
        "base:    {}\npatched: {}\n",
        kernel(&d.base),
        kernel(&d.patched)
    );
    if d.same_build {
        s.push_str("(the same build on both sides: these are the noise's figures)\n");
    }
    s.push_str(&format!(
        "{} runs a kernel and session count, alternated; {}\n{}\n",
        d.runs,
        level_text(d),
        d.method
    ));
    s.push_str(&rows_text(d));
    for b in &d.behaviour {
        s.push_str(&behaviour_line(b));
        if !b.diff.is_empty() {
            s.push_str(&b.diff);
        }
    }
    s.push_str(&format!(
        "\ntime: {:.0} s building and booting, {:.0} s scenarios, {:.0} s measuring\n",
        d.prepare_s, d.scenarios_s, d.measure_s
    ));
    s
}

fn behaviour_line(b: &super::Behaviour) -> String {
    let same = if b.diff.is_empty() {
        "same report"
    } else {
        "reports differ"
    };
    format!(
        "\nscenario {}: base {}, patched {}: {same}\n",
        b.scenario, b.base_outcome, b.patched_outcome
    )
}

fn wrap(text: &str, first: &str, rest: &str) -> String {
    let opts = textwrap::Options::new(EMAIL_COLUMNS)
        .initial_indent(first)
        .subsequent_indent(rest)
        .break_words(true);
    let mut s = textwrap::fill(text, opts);
    s.push('\n');
    s
}

/// Plain text for a reply on a kernel mailing list, every line at most 72 columns.
pub fn email(d: &DeltaReport) -> String {
    let label = "          ";
    let mut s = String::new();
    s.push_str(&wrap(
        &format!(
            "Measured with luo-harness delta: {} against {}.",
            d.patched.spec, d.base.spec
        ),
        "",
        "",
    ));
    s.push('\n');
    s.push_str(&wrap(&kernel(&d.base), "base:     ", label));
    s.push_str(&wrap(&kernel(&d.patched), "patched:  ", label));
    if d.same_build {
        s.push_str(&wrap(
            "the same build on both sides: the figures are the noise's",
            label,
            label,
        ));
    }
    s.push_str(&wrap(
        &format!("{}, QEMU accelerator {}", d.machine, d.accel),
        "machine:  ",
        label,
    ));
    s.push_str(&wrap(
        &format!(
            "{} a kernel and session count, one VM each (memory over creating N \
             sessions{}, a kexec, retrieving them), base and patched alternated",
            d.runs,
            if d.files > 0 {
                format!(" and preserving {} one-page memfds", d.files)
            } else {
                String::new()
            }
        ),
        "runs:     ",
        label,
    ));
    s.push_str(&wrap(
        &format!("{}; {}", d.method, level_text(d)),
        "method:   ",
        label,
    ));
    s.push_str(&rows_text(d));
    s.push('\n');
    s.push_str(&wrap(
        "change: the median of the differences patched - base, relative to the base's \
         median; interval: where the change lies at the table's confidence; a verdict other \
         than \"no change\" means the interval excludes zero.",
        "",
        "",
    ));
    for b in &d.behaviour {
        s.push('\n');
        s.push_str(&wrap(behaviour_line(b).trim(), "", "  "));
        for l in b.diff.lines() {
            if l.chars().count() <= EMAIL_COLUMNS {
                s.push_str(l);
                s.push('\n');
            } else {
                // A long line of a report stays one diff line per line: its continuation
                // keeps the sign.
                let (sign, rest) = l.split_at(1);
                s.push_str(&wrap(rest, sign, &format!("{sign}   ")));
            }
        }
    }
    s
}
