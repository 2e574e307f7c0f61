//! `observe`: fstat, fstatfs, readlink, seals and position of a handle, recorded in the report under
//! a label (the inode as a stable label, the magic by name).

use super::kind::StepKind;
use crate::scenario::context::StepFailure;
use crate::scenario::context::{StepContext, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use crate::scenario::values::{Expect, Size};
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
    /// The size the file must have (fstat), e.g. `4K`; the step fails otherwise.
    #[serde(default)]
    pub size: Option<Size>,
    /// The seals the file must have, all and only these (`[]`: none); the step fails otherwise.
    #[serde(default)]
    pub seals: Option<Vec<String>>,
    /// The file position it must have (lseek(fd, 0, SEEK_CUR)); the step fails otherwise.
    #[serde(default)]
    pub position: Option<u64>,
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
        for s in self.seals.iter().flatten() {
            if !super::memfd::SEAL_NAMES.contains(&s.as_str()) {
                v.problem(
                    at,
                    format!("unknown seal `{s}`"),
                    Some(format!(
                        "seals are: {}",
                        super::memfd::SEAL_NAMES.join(", ")
                    )),
                );
            }
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
                self.assert(o)?;
                let obs = cx.observed(o, &self.handle);
                let summary = format!("{} {} {}", obs.inode, obs.fs, obs.link);
                cx.report.observations.insert(label.clone(), obs);
                format!("{} {} as {label}: {summary}", Self::KEYWORD, self.handle)
            }
            _ => done(Self::KEYWORD, &self.handle, &r, self.expect()),
        })
    }
}

impl Observe {
    /// The size, position and seals the step names, against what the kernel shows.
    fn assert(&self, o: &luo_protocol::Observation) -> Result<(), StepFailure> {
        if let Some(Size(want)) = self.size
            && o.st_size != want as i64
        {
            return Err(StepFailure::Check(format!(
                "{}: expected size {want}, got {}",
                self.handle, o.st_size
            )));
        }
        if let Some(want) = self.position
            && o.position != Some(want as i64)
        {
            return Err(StepFailure::Check(format!(
                "{}: expected position {want}, got {}",
                self.handle,
                o.position.map_or("none".into(), |p| p.to_string())
            )));
        }
        if let Some(want) = &self.seals {
            let mut want = want.clone();
            want.sort();
            let mut got = o.seals.clone().unwrap_or_default();
            got.sort();
            if want != got {
                return Err(StepFailure::Check(format!(
                    "{}: expected seals [{}], got [{}]",
                    self.handle,
                    want.join(" "),
                    got.join(" ")
                )));
            }
        }
        Ok(())
    }
}
