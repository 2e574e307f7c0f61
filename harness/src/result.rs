//! One scenario's result as a run reports it: the outcome, the report and metrics when it ran, how
//! the report compared with its snapshot, and where its artifacts were kept.

use crate::outcome::Outcome;
use crate::scenario::snapshot::SnapshotStatus;
use crate::scenario::{Metrics, Report};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub file: PathBuf,
    pub name: String,
    pub outcome: Outcome,
    pub report: Option<Report>,
    pub metrics: Option<Metrics>,
    pub snapshot: SnapshotStatus,
    /// Kept when the scenario did not pass.
    pub artifacts: Option<PathBuf>,
    pub duration: Duration,
    /// The gcov counters of its boots, on a gcov kernel (`coverage`).
    pub gcov: Vec<crate::scenario::watch::GcovCapture>,
}

/// Takes each scenario's whole result the moment it ends (a renderer); the run's [`Event`]s carry
/// only its name and outcome.
///
/// [`Event`]: crate::events::Event
pub trait ResultSink: Send + Sync {
    fn finished(&self, r: &ScenarioResult);
}

impl std::fmt::Debug for dyn ResultSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultSink")
    }
}

impl ScenarioResult {
    /// The KTAP/TAP sub-results of its programs (none when it did not run).
    pub fn subtests(&self) -> &[crate::scenario::report::SubtestGroup] {
        self.report.as_ref().map_or(&[], |r| &r.subtests)
    }

    /// A result with nothing but its outcome (no report, snapshot not compared).
    pub fn new(file: PathBuf, name: String, outcome: Outcome) -> ScenarioResult {
        ScenarioResult {
            file,
            name,
            outcome,
            report: None,
            metrics: None,
            snapshot: SnapshotStatus::NotCompared,
            artifacts: None,
            duration: Duration::ZERO,
            gcov: vec![],
        }
    }

    /// The result of a scenario the engine ran to its end (snapshot not compared yet).
    pub fn from_ran(file: PathBuf, name: String, ran: crate::scenario::Ran) -> ScenarioResult {
        ScenarioResult {
            report: Some(ran.report),
            metrics: Some(ran.metrics),
            artifacts: ran.artifacts,
            gcov: ran.gcov,
            ..ScenarioResult::new(file, name, ran.outcome)
        }
    }
}
