//! Scenarios: YAML files of steps across boots, validated before any VM starts, run on the real
//! kernel, and turned into a report that is compared with a reviewed snapshot.

pub mod engine;
pub mod load;
pub mod model;
pub mod report;
pub mod subst;

pub use load::{InvalidScenario, load, parse};
pub use model::Scenario;
pub use report::{Metrics, Report};

use crate::Prepared;
use crate::guest::GuestError;

/// Runs one scenario on a prepared kernel and image.
pub async fn run(
    scenario: &Scenario,
    prepared: &Prepared,
    variant: &str,
) -> Result<(Report, Metrics), GuestError> {
    let engine = engine::Engine::start(scenario, prepared, variant).await?;
    engine.run(scenario).await
}

/// The JSON Schema of the scenario format, for editors (yaml-language-server).
pub fn json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Scenario)).expect("schema serialises")
}
