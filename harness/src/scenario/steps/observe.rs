//! `observe`: fstat, fstatfs, readlink, seals and position of a handle, recorded in the report under
//! a label (the inode as a stable label, the magic by name).

use super::kind::StepKind;
use crate::scenario::context::{StepContext, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use crate::scenario::values::Expect;
use luo_protocol::{Reply, Request};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    pub handle: String,
    /// Name in the report (default: the handle).
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for Observe {
    const KEYWORD: &'static str = "observe";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Observe {
            handle: t.text(&self.handle),
            label: t.opt(&self.label),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.handle, None, self.expect.is_some());
        if let Some(l) = &self.label {
            v.handle_name(at, "the label", l);
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::Observe {
            handle: self.handle.clone(),
        };
        let r = cx.call(req, self.expect()).await?;
        let label = self.label.clone().unwrap_or_else(|| self.handle.clone());
        Ok(match &r {
            Some(Reply::Observation(o)) => {
                let obs = cx.observed(o, &self.handle);
                let summary = format!("{} {} {}", obs.inode, obs.fs, obs.link);
                cx.report.observations.insert(label.clone(), obs);
                format!("{} {} as {label}: {summary}", Self::KEYWORD, self.handle)
            }
            _ => done(Self::KEYWORD, &self.handle, &r, self.expect()),
        })
    }
}
