//! The scenario file format: the top level. Steps are in steps/; every struct denies unknown keys.

use super::requires::Requires;
use super::steps::Step;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier; defaults to the file name.
    #[serde(default)]
    pub name: Option<String>,
    pub description: String,
    #[serde(default)]
    pub requires: Requires,
    /// Guest memory in MiB (default 256).
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Request timeout in seconds for every step (default 30).
    #[serde(default)]
    pub step_timeout_s: Option<u64>,
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
}

impl Scenario {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// What the run must build for this scenario besides the boot kernel.
    pub fn needs(&self, needs: &mut crate::plan::Needs) {
        super::steps::needs_of(&self.steps, needs);
    }
}
