//! Scenarios: YAML files of steps across boots, validated before any VM starts, run on the real
//! kernel, and turned into a report that is compared with a reviewed snapshot.
//!
//! Along the data path: [`load`] (decode, parse, [`validate`] through each step) → [`steps`] (each
//! step defined once) → [`engine`] (runs them through a [`driver::GuestDriver`]) → [`checks`] (what
//! the replies say) → [`report`] → [`snapshot`].

mod checks;
pub mod context;
pub mod diagnostic;
pub mod driver;
pub mod engine;
pub mod limits;
pub mod load;
pub mod model;
pub mod report;
pub mod requires;
mod slab_cost;
pub mod snapshot;
pub mod steps;
pub mod subtests;
pub mod template;
pub mod validate;
pub mod values;
pub mod watch;

#[cfg(test)]
mod fake;
#[cfg(test)]
pub(crate) use fake::{FakeGuest, plan as fake_plan};
/// A scripted guest that answers as the agent would (tests only).
#[cfg(test)]
pub(crate) fn fake_guest() -> FakeGuest {
    FakeGuest::agreeable()
}
#[cfg(test)]
mod tests;

pub use diagnostic::InvalidScenario;
pub use engine::Ran;
pub use load::{LoadError, from_bytes, load, load_for, parse};
pub use model::Scenario;
pub use report::{Metrics, Report};
pub use requires::Requires;

use crate::guest::{Guest, GuestError};
use crate::plan::{GuestImage, Plan};

/// systemd's start-up (and its shutdown before a kexec) takes several times the agent's boot.
const SYSTEMD_BOOT_FACTOR: u32 = 4;

/// Boots a VM for `scenario` on the plan's kernel (its debug flavour for `debug: true`) and runs
/// it.
pub async fn run(scenario: &Scenario, plan: &Plan) -> Result<Ran, GuestError> {
    let plan = plan.for_scenario(scenario.debug);
    if let Some(why) = scenario.unsupported_on(plan.boot.arch) {
        return Ok(engine::skipped_before_boot(scenario, plan, why));
    }
    let mut cfg = plan.vm_config(scenario.name());
    let missing = |image: &str| GuestError::NoImage {
        scenario: scenario.name().to_string(),
        image: image.to_string(),
    };
    cfg.initrd = plan
        .initrd_for(scenario.shell)
        .ok_or_else(|| missing("shell"))?
        .to_path_buf();
    if scenario.image == GuestImage::Systemd {
        cfg.root = Some(
            plan.systemd_root
                .clone()
                .ok_or_else(|| missing("systemd"))?,
        );
        cfg.share_seed = scenario
            .share_seed(plan)
            .map_err(|p| missing(&format!("program {p} of the systemd")))?;
        cfg.timeouts = cfg
            .timeouts
            .with_boot(cfg.timeouts.boot * SYSTEMD_BOOT_FACTOR);
    }
    // The scenario's own memory size wins over the run's; it is what its workload needs, so a
    // debug kernel's own need comes on top (`check` refuses `debug: true` with less).
    if let Some(m) = scenario.memory_mib() {
        cfg.memory_mib = m.max(plan.min_memory_mib().unwrap_or(0));
    }
    if let Some(t) = scenario.step_timeout() {
        cfg.timeouts = cfg.timeouts.with_request(t);
    }
    if scenario.cold_boot {
        cfg.from_saved = false;
    }
    let guest = Guest::boot(cfg).await?;
    engine::drive(scenario, plan, guest).await
}

/// The JSON Schema of the scenario format, for editors (yaml-language-server).
pub fn json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Scenario)).expect("schema serialises")
}
