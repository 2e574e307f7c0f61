//! KTAP (Documentation/dev-tools/ktap.rst), streamed: the plan when the run starts, a result line
//! per scenario as it finishes, with the reason of a failure as diagnostic lines before it. A skip
//! is `ok N name # SKIP reason`, as kselftest writes it. The sub-results of a scenario's programs
//! come before its line as a nested block (`# Subtest: name`, indented by four spaces); several
//! programs in one scenario nest one level more, a block per program.

use super::format::{Render, first_line};
use crate::events::Event;
use crate::outcome::Kind;
use crate::result::ScenarioResult;
use crate::scenario::report::SubtestGroup;
use crate::scenario::subtests::Verdict;
use std::io::Write;

#[derive(Default)]
pub struct Ktap {
    n: usize,
}

/// KTAP gives `#` a meaning on a result line and newlines end it.
fn clean(s: &str) -> String {
    first_line(s).replace('#', "")
}

impl Render for Ktap {
    fn event(&mut self, e: &Event, out: &mut dyn Write) -> std::io::Result<()> {
        if let Event::RunStarted { scenarios } = e {
            writeln!(out, "KTAP version 1")?;
            writeln!(out, "1..{}", scenarios.len())?;
        }
        Ok(())
    }

    fn finished(&mut self, r: &ScenarioResult, out: &mut dyn Write) -> std::io::Result<()> {
        self.n += 1;
        let name = clean(&r.name);
        nested(out, 1, &name, r.subtests())?;
        let reason = r.outcome.reason();
        match r.outcome.kind() {
            Kind::Pass => writeln!(out, "ok {} {name}", self.n)?,
            Kind::Skip => writeln!(out, "ok {} {name} # SKIP {}", self.n, clean(reason))?,
            _ => {
                for line in reason.lines() {
                    writeln!(out, "# {name}: {line}")?;
                }
                writeln!(out, "not ok {} {name} # {}", self.n, clean(reason))?;
            }
        }
        Ok(())
    }
}

/// A nested KTAP block at `depth` for `groups`: the cases themselves for one program, a block per
/// program for several.
fn nested(
    out: &mut dyn Write,
    depth: usize,
    name: &str,
    groups: &[SubtestGroup],
) -> std::io::Result<()> {
    let pad = "    ".repeat(depth);
    match groups {
        [] => Ok(()),
        [one] => {
            writeln!(out, "{pad}KTAP version 1")?;
            writeln!(out, "{pad}# Subtest: {name}")?;
            for p in &one.parsed.problems {
                writeln!(out, "{pad}# {}: {}", clean(&one.step), clean(p))?;
            }
            writeln!(out, "{pad}1..{}", one.parsed.cases.len())?;
            for (i, c) in one.parsed.cases.iter().enumerate() {
                let n = i + 1;
                let case = clean(&c.name);
                let why = c.reason.as_deref().map(clean).unwrap_or_default();
                match c.result {
                    Verdict::Ok => writeln!(out, "{pad}ok {n} {case}")?,
                    Verdict::NotOk => writeln!(out, "{pad}not ok {n} {case}")?,
                    Verdict::Skip => writeln!(out, "{pad}ok {n} {case} # SKIP {why}")?,
                    Verdict::Xfail => writeln!(out, "{pad}ok {n} {case} # XFAIL {why}")?,
                    Verdict::Todo => writeln!(out, "{pad}not ok {n} {case} # TODO {why}")?,
                }
            }
            Ok(())
        }
        many => {
            writeln!(out, "{pad}KTAP version 1")?;
            writeln!(out, "{pad}# Subtest: {name}")?;
            writeln!(out, "{pad}1..{}", many.len())?;
            for (i, g) in many.iter().enumerate() {
                let step = clean(&g.step);
                nested(out, depth + 1, &step, std::slice::from_ref(g))?;
                let ok = if g.parsed.failed().next().is_some() {
                    "not ok"
                } else {
                    "ok"
                };
                writeln!(out, "{pad}{ok} {} {step}", i + 1)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn a_plan_then_a_line_per_scenario() {
        insta::assert_snapshot!(fixtures::render(&mut Ktap::default()), @r#"
        KTAP version 1
        1..8
        ok 1 multi-session
        # memfd-roundtrip: the report differs from snapshots/stock/memfd-roundtrip.snap
        not ok 2 memfd-roundtrip # the report differs from snapshots/stock/memfd-roundtrip.snap
        # errno-contract: L7 create_session: expected EEXIST, but the call succeeded
        not ok 3 errno-contract # L7 create_session: expected EEXIST, but the call succeeded
        ok 4 needs-7.4 # SKIP boot 0: requires kernel >= 7.4, running 7.3.4
        # panics: the guest kernel panicked (boot 1, step `kexec into boot 1`)
        # panics: --- console ---
        # panics: Kernel panic - not syncing
        not ok 5 panics # the guest kernel panicked (boot 1, step `kexec into boot 1`)
            KTAP version 1
            # Subtest: kselftest
            1..3
            ok 1 dev.open
            ok 2 dev.huge # SKIP no hugetlb
            ok 3 dev.old # XFAIL known
        ok 6 kselftest
            KTAP version 1
            # Subtest: own-tests
            1..2
                KTAP version 1
                # Subtest: L4 exec ./s
                1..1
                ok 1 setup
            ok 1 L4 exec ./s
                KTAP version 1
                # Subtest: L5 exec ./t
                # L5 exec ./t: the plan (line 2) announces 3 tests, the output has 2
                1..2
                ok 1 bar
                not ok 2 foo
            not ok 2 L5 exec ./t
        # own-tests: L5 exec: ./t: not ok 2 foo (exit 1)
        not ok 7 own-tests # L5 exec: ./t: not ok 2 foo (exit 1)
        # nested <&> "quotes": internal error: the scenario's task panicked: boom
        not ok 8 nested <&> "quotes" # internal error: the scenario's task panicked: boom
        "#);
    }
}
