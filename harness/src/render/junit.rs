//! JUnit XML after the run (quick-junit, as nextest writes it): one test case per scenario, named
//! by its file so every machine names it the same, and one per KTAP/TAP sub-result of its programs
//! (`scenario: case`).

use super::format::{Render, first_line};
use crate::events::Event;
use crate::outcome::Kind;
use crate::result::ScenarioResult;
use crate::scenario::snapshot::SnapshotStatus;
use crate::scenario::subtests::Verdict;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::io::Write;

#[derive(Default)]
pub struct Junit {
    results: Vec<ScenarioResult>,
}

fn case(r: &ScenarioResult) -> TestCase {
    let status = match r.outcome.kind() {
        Kind::Pass => TestCaseStatus::success(),
        Kind::Skip => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(r.outcome.reason());
            s
        }
        kind => {
            // A failed expectation is a failure; anything that kept the scenario from a verdict
            // (kernel, VM, build, host) is an error.
            let mut s = TestCaseStatus::non_success(if kind == Kind::Fail {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            });
            s.set_message(first_line(r.outcome.reason()));
            s.set_type(r.outcome.label());
            let mut description = r.outcome.reason().to_string();
            if let SnapshotStatus::Differs { diff, .. } = &r.snapshot {
                description.push('\n');
                description.push_str(diff);
            }
            s.set_description(description);
            s
        }
    };
    let mut c = TestCase::new(r.name.as_str(), status);
    c.set_classname(r.file.display().to_string());
    c.set_time(r.duration);
    if let Some(a) = &r.artifacts {
        c.set_system_err(format!("artifacts: {}", a.display()));
    }
    c
}

/// A test case per sub-result: a `not ok` a failure, a skip or TODO skipped with its reason.
fn subcases(r: &ScenarioResult) -> Vec<TestCase> {
    let several = r.subtests().len() > 1;
    let mut v = vec![];
    for g in r.subtests() {
        for (i, c) in g.parsed.cases.iter().enumerate() {
            let status = match c.result {
                Verdict::Ok | Verdict::Xfail => TestCaseStatus::success(),
                Verdict::Skip | Verdict::Todo => {
                    let mut s = TestCaseStatus::skipped();
                    if let Some(why) = &c.reason {
                        s.set_message(why.as_str());
                    }
                    s
                }
                Verdict::NotOk => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(format!("not ok {} {} ({})", i + 1, c.name, g.step));
                    s
                }
            };
            let name = if several {
                format!("{}: {}: {}", r.name, g.step, c.name)
            } else {
                format!("{}: {}", r.name, c.name)
            };
            let mut t = TestCase::new(name, status);
            t.set_classname(r.file.display().to_string());
            v.push(t);
        }
    }
    v
}

impl Render for Junit {
    fn event(&mut self, e: &Event, out: &mut dyn Write) -> std::io::Result<()> {
        if let Event::RunFinished = e {
            let mut suite = TestSuite::new("scenarios");
            for r in &self.results {
                suite.add_test_case(case(r));
                suite.add_test_cases(subcases(r));
            }
            let mut report = Report::new("luo-harness");
            report.add_test_suite(suite);
            let xml = report
                .to_string()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            writeln!(out, "{xml}")?;
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
    fn a_case_per_scenario_with_failures_errors_and_skips() {
        let xml = fixtures::render(&mut Junit::default());
        assert!(
            xml.contains(r#"<testsuites name="luo-harness" tests="14" failures="4" errors="2">"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="needs-7.4" classname="scenarios/needs-7.4.yaml""#),
            "{xml}"
        );
        assert!(
            xml.contains("<skipped message=\"boot 0: requires kernel &gt;= 7.4, running 7.3.4\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="nested &lt;&amp;&gt; &quot;quotes&quot;""#),
            "escaped by the crate: {xml}"
        );
        assert!(
            xml.contains("+  - &quot;L9 verify m: EIO as expected&quot;")
                || xml.contains("+  - \"L9 verify m: EIO as expected\""),
            "the diff travels with the failure: {xml}"
        );
        for case in [
            r#"<testcase name="kselftest: dev.open" classname="scenarios/kselftest.yaml">"#,
            "<testcase name=\"kselftest: dev.huge\" classname=\"scenarios/kselftest.yaml\">\n            <skipped message=\"no hugetlb\"/>",
            r#"<testcase name="own-tests: L4 exec ./s: setup""#,
            "<testcase name=\"own-tests: L5 exec ./t: foo\" classname=\"scenarios/own-tests.yaml\">\n            <failure message=\"not ok 2 foo (L5 exec ./t)\"/>",
        ] {
            assert!(xml.contains(case), "a case per sub-result: {case}\n{xml}");
        }
    }
}
