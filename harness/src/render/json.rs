//! One JSON document after the run: an array with every scenario's outcome, report, snapshot
//! comparison and artifacts.

use super::format::Render;
use crate::events::Event;
use crate::result::ScenarioResult;
use std::io::Write;

#[derive(Default)]
pub struct Json {
    results: Vec<serde_json::Value>,
}

pub fn value(r: &ScenarioResult) -> serde_json::Value {
    serde_json::json!({
        "file": r.file,
        "name": r.name,
        "outcome": r.outcome,
        "report": r.report,
        "snapshot": r.snapshot,
        "artifacts": r.artifacts,
        "duration_ms": r.duration.as_millis() as u64,
    })
}

impl Render for Json {
    fn event(&mut self, e: &Event, out: &mut dyn Write) -> std::io::Result<()> {
        if let Event::RunFinished = e {
            let doc = serde_json::Value::Array(std::mem::take(&mut self.results));
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).expect("JSON values serialise")
            )?;
        }
        Ok(())
    }

    fn finished(&mut self, r: &ScenarioResult, _: &mut dyn Write) -> std::io::Result<()> {
        self.results.push(value(r));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn every_result_with_its_outcome_and_snapshot() {
        let text = fixtures::render(&mut Json::default());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let all = v.as_array().unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(
            all[5]["report"]["subtests"][0]["cases"][1],
            serde_json::json!({"name": "dev.huge", "result": "skip", "reason": "no hugetlb"}),
            "sub-results travel in the report"
        );
        insta::assert_snapshot!(serde_json::to_string_pretty(&all[..2]).unwrap(), @r#"
        [
          {
            "file": "scenarios/multi-session.yaml",
            "name": "multi-session",
            "outcome": {
              "outcome": "pass"
            },
            "report": null,
            "snapshot": {
              "snapshot": "not_compared"
            },
            "artifacts": null,
            "duration_ms": 1500
          },
          {
            "file": "scenarios/memfd-roundtrip.yaml",
            "name": "memfd-roundtrip",
            "outcome": {
              "outcome": "fail",
              "reason": "the report differs from snapshots/stock/memfd-roundtrip.snap"
            },
            "report": null,
            "snapshot": {
              "snapshot": "differs",
              "path": "snapshots/stock/memfd-roundtrip.snap",
              "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-  - \"L9 verify m: ok\"\n+  - \"L9 verify m: EIO as expected\"\n"
            },
            "artifacts": "/tmp/luo-harness/memfd-roundtrip-1-0",
            "duration_ms": 1500
          }
        ]
        "#);
    }
}
