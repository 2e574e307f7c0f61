//! `open_device`: open("/dev/liveupdate").

use super::kind::StepKind;
use crate::scenario::context::{StepContext, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Kind, Site, Validator};
use crate::scenario::values::Expect;
use luo_protocol::Request;
use schemars::JsonSchema;
use serde::Deserialize;

/// The handle the opened device goes by unless a step names another (`as:`).
pub const DEVICE: &str = "dev";

pub(super) fn dev() -> String {
    DEVICE.into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDevice {
    #[serde(default = "dev", rename = "as")]
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for OpenDevice {
    const KEYWORD: &'static str = "open_device";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        OpenDevice {
            handle: t.text(&self.handle),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.define(at, &self.handle, Kind::Device, self.expect.is_some());
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::OpenDevice {
            handle: self.handle.clone(),
        };
        let r = cx.call(req, self.expect()).await?;
        Ok(done(Self::KEYWORD, &self.handle, &r, self.expect()))
    }
}
