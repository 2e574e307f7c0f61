//! KTAP (Documentation/dev-tools/ktap.rst), streamed: the plan when the run starts, a result line
//! per scenario as it finishes, with the reason of a failure as diagnostic lines before it. A skip
//! is `ok N name # SKIP reason`, as kselftest writes it.

use super::format::{Render, first_line};
use crate::events::Event;
use crate::outcome::Kind;
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
        match e {
            Event::RunStarted { scenarios } => {
                writeln!(out, "KTAP version 1")?;
                writeln!(out, "1..{}", scenarios.len())?;
            }
            Event::ScenarioFinished(r) => {
                self.n += 1;
                let name = clean(&r.name);
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
            }
            _ => {}
        }
        Ok(())
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
        1..6
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
        # nested <&> "quotes": internal error: the scenario's task panicked: boom
        not ok 6 nested <&> "quotes" # internal error: the scenario's task panicked: boom
        "#);
    }
}
