//! The summary table for people, after the run: a row per scenario, then what failed in detail (the
//! snapshot diff, where the artifacts are, the command that reruns it alone).

use super::format::{Render, first_line};
use crate::events::Event;
use crate::outcome::Kind;
use crate::result::ScenarioResult;
use crate::scenario::snapshot::SnapshotStatus;
use std::io::Write;

/// How to rerun one scenario alone with its artifacts kept (the CLI knows its own arguments).
pub type Rerun = Box<dyn Fn(&ScenarioResult) -> String + Send>;

pub struct Human {
    results: Vec<ScenarioResult>,
    rerun: Option<Rerun>,
}

impl Human {
    pub fn new(rerun: Option<Rerun>) -> Human {
        Human {
            results: vec![],
            rerun,
        }
    }

    fn table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let w = self
            .results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        writeln!(out, "{:<w$}  {:<8}  detail", "scenario", "result")?;
        for r in &self.results {
            let detail = match (&r.snapshot, r.outcome.passed()) {
                (SnapshotStatus::Missing { path }, true) => {
                    format!("no snapshot yet ({})", path.display())
                }
                (_, true) if !r.subtests().is_empty() => r
                    .subtests()
                    .iter()
                    .map(|g| g.parsed.counts())
                    .collect::<Vec<_>>()
                    .join("; "),
                _ => first_line(r.outcome.reason()).to_string(),
            };
            let row = format!("{:<w$}  {:<8}  {detail}", r.name, r.outcome.label());
            writeln!(out, "{}", row.trim_end())?;
        }
        let count = |k: Kind| {
            self.results
                .iter()
                .filter(|r| r.outcome.kind() == k)
                .count()
        };
        let mut summary = format!("{} passed, {} failed", count(Kind::Pass), count(Kind::Fail));
        for (k, one, many) in [
            (Kind::Skip, "skipped", "skipped"),
            (Kind::KernelFailure, "kernel failure", "kernel failures"),
            (Kind::BuildFailure, "build failure", "build failures"),
            (Kind::InfraFailure, "error", "errors"),
        ] {
            match count(k) {
                0 => {}
                1 => summary.push_str(&format!(", 1 {one}")),
                n => summary.push_str(&format!(", {n} {many}")),
            }
        }
        writeln!(out, "{summary}")?;
        let unsnapped = self
            .results
            .iter()
            .filter(|r| matches!(r.snapshot, SnapshotStatus::Missing { .. }))
            .count();
        if unsnapped > 0 {
            writeln!(
                out,
                "{unsnapped} report(s) have no snapshot: --update-snapshots writes them as .snap.new to review"
            )?;
        }
        Ok(())
    }

    fn details(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for r in self
            .results
            .iter()
            .filter(|r| !matches!(r.outcome.kind(), Kind::Pass | Kind::Skip))
        {
            writeln!(out, "\n--- {}: {}", r.name, r.outcome.label())?;
            let reason = r.outcome.reason();
            if reason.lines().count() > 1 {
                writeln!(out, "{reason}")?;
            }
            for f in r.report.iter().flat_map(|rep| &rep.findings) {
                write!(out, "{}", f.render())?;
            }
            if let SnapshotStatus::Differs { diff, .. } = &r.snapshot {
                write!(out, "{diff}")?;
            }
            if let Some(a) = &r.artifacts {
                writeln!(out, "artifacts: {}", a.display())?;
            }
            if let Some(rerun) = &self.rerun {
                writeln!(out, "rerun:     {}", rerun(r))?;
            }
        }
        Ok(())
    }
}

impl Render for Human {
    fn event(&mut self, e: &Event, out: &mut dyn Write) -> std::io::Result<()> {
        if let Event::RunFinished = e {
            self.table(out)?;
            self.details(out)?;
        }
        Ok(())
    }

    fn finished(&mut self, r: &ScenarioResult, _: &mut dyn Write) -> std::io::Result<()> {
        self.results.push(r.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn a_row_per_scenario_then_what_failed() {
        let rerun: Rerun = Box::new(|r| format!("luo-harness run {} --keep", r.file.display()));
        let text = fixtures::render(&mut Human::new(Some(rerun)));
        insta::assert_snapshot!(text, @r#"
        scenario             result    detail
        multi-session        pass
        memfd-roundtrip      FAIL      the report differs from snapshots/stock/memfd-roundtrip.snap
        errno-contract       FAIL      L7 create_session: expected EEXIST, but the call succeeded
        needs-7.4            skip      boot 0: requires kernel >= 7.4, running 7.3.4
        panics               KERNEL    the guest kernel panicked (boot 1, step `kexec into boot 1`)
        kselftest            pass      3 subtests: 1 ok, 1 skip, 1 xfail
        own-tests            FAIL      L5 exec: ./t: not ok 2 foo (exit 1)
        nested <&> "quotes"  ERROR     internal error: the scenario's task panicked: boom
        2 passed, 3 failed, 1 skipped, 1 kernel failure, 1 error

        --- memfd-roundtrip: FAIL
        --- a
        +++ b
        @@ -1 +1 @@
        -  - "L9 verify m: ok"
        +  - "L9 verify m: EIO as expected"
        artifacts: /tmp/luo-harness/memfd-roundtrip-1-0
        rerun:     luo-harness run scenarios/memfd-roundtrip.yaml --keep

        --- errno-contract: FAIL
        rerun:     luo-harness run scenarios/errno-contract.yaml --keep

        --- panics: KERNEL
        the guest kernel panicked (boot 1, step `kexec into boot 1`)
        --- console ---
        Kernel panic - not syncing
        rerun:     luo-harness run scenarios/panics.yaml --keep

        --- own-tests: FAIL
        rerun:     luo-harness run scenarios/own-tests.yaml --keep

        --- nested <&> "quotes": ERROR
        rerun:     luo-harness run scenarios/nested <&> "quotes".yaml --keep
        "#);
    }
}
