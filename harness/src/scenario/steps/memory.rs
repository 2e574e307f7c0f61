//! `measure_memory`: /proc/meminfo and /proc/slabinfo under a label; each measurement is compared
//! with the one before (checks.rs), per object when `objects` says how many were made in between.

use super::kind::StepKind;
use crate::scenario::context::{StepContext, StepFailure, StepResult};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use luo_protocol::{Reply, Request};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeasureMemory {
    pub label: String,
    /// Objects created since the previous measurement, for bytes-per-object figures.
    #[serde(default)]
    pub objects: Option<u64>,
}

impl StepKind for MeasureMemory {
    const KEYWORD: &'static str = "measure_memory";
    fn expand(&self, t: &Template) -> Self {
        MeasureMemory {
            label: t.text(&self.label),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        let l = &self.label;
        if l.trim().is_empty()
            || l.len() > crate::scenario::limits::MAX_NAME_BYTES
            || l.chars().any(char::is_control)
        {
            v.problem(
                at,
                format!("the label {l:?} is not a label: 1 to 128 bytes on one line"),
                None,
            );
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let Some(Reply::Memory(snap)) = cx.call(Request::MemorySnapshot, None).await? else {
            return Err(StepFailure::Check(
                "unexpected reply to memory_snapshot".into(),
            ));
        };
        cx.record_memory(&self.label, self.objects, snap);
        Ok(format!("{} {}: ok", Self::KEYWORD, self.label))
    }
}
