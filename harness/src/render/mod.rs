//! The formats a run is shown in, each a consumer of the run's [`Event`]s in its own module: human
//! (a summary table), JSON, KTAP and JUnit. Each writes to what it is given and is tested on fixed
//! results.

mod format;
mod human;
mod json;
mod junit;
mod ktap;

pub use format::{Render, first_line};
pub use human::Human;
pub use json::Json;
pub use junit::Junit;
pub use ktap::Ktap;

#[cfg(test)]
pub(crate) mod fixtures {
    //! Fixed results for the renderers' tests: one of every kind.
    use crate::outcome::Outcome;
    use crate::result::ScenarioResult;
    use crate::scenario::snapshot::SnapshotStatus;
    use std::time::Duration;

    pub fn result(name: &str, outcome: Outcome) -> ScenarioResult {
        let mut r = ScenarioResult::new(
            format!("scenarios/{name}.yaml").into(),
            name.into(),
            outcome,
        );
        r.duration = Duration::from_millis(1500);
        r
    }

    /// A report with nothing in it but the KTAP groups, from `(step, output)`.
    fn with_subtests(mut r: ScenarioResult, groups: &[(&str, &str)]) -> ScenarioResult {
        use crate::scenario::report::{KernelFacts, Report, SubtestGroup};
        r.report = Some(Report {
            scenario: r.name.clone(),
            description: String::new(),
            kernel: KernelFacts {
                release: "7.3.4".into(),
                variant: "stock".into(),
                source: "debian:7.3".into(),
                flavour: None,
                arch: None,
            },
            boots: vec![],
            steps: vec![],
            observations: Default::default(),
            session_identity: vec![],
            memory: vec![],
            kernel_log: vec![],
            findings: vec![],
            handover: vec![],
            subtests: groups
                .iter()
                .map(|(step, out)| SubtestGroup {
                    step: step.to_string(),
                    parsed: crate::scenario::subtests::parse(out).expect("TAP"),
                })
                .collect(),
            failures: vec![],
            skipped: None,
            passed: r.outcome.passed(),
        });
        r
    }

    pub fn all() -> Vec<ScenarioResult> {
        let mut differs = result(
            "memfd-roundtrip",
            Outcome::Fail {
                reason: "the report differs from snapshots/stock/memfd-roundtrip.snap".into(),
            },
        );
        differs.snapshot = SnapshotStatus::Differs {
            path: "snapshots/stock/memfd-roundtrip.snap".into(),
            diff: "--- a\n+++ b\n@@ -1 +1 @@\n-  - \"L9 verify m: ok\"\n+  - \"L9 verify m: EIO as expected\"\n".into(),
        };
        differs.artifacts = Some("/tmp/luo-harness/memfd-roundtrip-1-0".into());
        vec![
            result("multi-session", Outcome::Pass),
            differs,
            result(
                "errno-contract",
                Outcome::Fail {
                    reason: "L7 create_session: expected EEXIST, but the call succeeded".into(),
                },
            ),
            result(
                "needs-7.4",
                Outcome::Skip {
                    reason: "boot 0: requires kernel >= 7.4, running 7.3.4".into(),
                },
            ),
            result(
                "panics",
                Outcome::KernelFailure {
                    reason: "the guest kernel panicked (boot 1, step `kexec into boot 1`)\n--- console ---\nKernel panic - not syncing".into(),
                },
            ),
            with_subtests(
                result("kselftest", Outcome::Pass),
                &[(
                    "L3 exec selftests/liveupdate",
                    "TAP version 13\n1..3\nok 1 dev.open\nok 2 dev.huge # SKIP no hugetlb\nok 3 dev.old # XFAIL known\n",
                )],
            ),
            with_subtests(
                result(
                    "own-tests",
                    Outcome::Fail {
                        reason: "L5 exec: ./t: not ok 2 foo (exit 1)".into(),
                    },
                ),
                &[
                    ("L4 exec ./s", "KTAP version 1\n1..1\nok 1 setup\n"),
                    ("L5 exec ./t", "TAP version 13\n1..3\nok 1 bar\nnot ok 2 foo\n"),
                ],
            ),
            result(
                "nested <&> \"quotes\"",
                Outcome::InfraFailure {
                    reason: "internal error: the scenario's task panicked: boom".into(),
                },
            ),
        ]
    }

    /// A run of [`all`] as a renderer sees it: its start, each result then its event, its end.
    pub fn show(
        r: &mut dyn super::format::Render,
        results: &[ScenarioResult],
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        use crate::events::Event;
        r.event(
            &Event::RunStarted {
                scenarios: results.iter().map(|r| r.name.clone()).collect(),
            },
            out,
        )?;
        for result in results {
            r.finished(result, out)?;
            let e = Event::ScenarioFinished {
                name: result.name.clone(),
                outcome: result.outcome.label().into(),
                duration: result.duration,
            };
            r.event(&e, out)?;
        }
        r.event(&Event::RunFinished, out)
    }

    pub fn render(r: &mut dyn super::format::Render) -> String {
        let mut out = Vec::new();
        show(r, &all(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}
