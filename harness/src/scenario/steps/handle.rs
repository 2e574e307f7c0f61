//! Steps on handles as such: `close` any handle, `open_path` any file (e.g. /dev/null, a file type
//! LUO cannot preserve).

use super::kind::StepKind;
use crate::scenario::context::{StepContext, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Kind, Site, Validator};
use crate::scenario::values::Expect;
use luo_protocol::Request;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Close {
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for Close {
    const KEYWORD: &'static str = "close";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Close {
            handle: t.text(&self.handle),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.handle, None, self.expect.is_some());
        if self.expect.is_none() {
            v.close(at, &self.handle);
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::Close {
            handle: self.handle.clone(),
        };
        let r = cx.call(req, self.expect()).await?;
        cx.session_handles.remove(&self.handle);
        Ok(done(Self::KEYWORD, &self.handle, &r, self.expect()))
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPath {
    pub path: String,
    #[serde(rename = "as")]
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for OpenPath {
    const KEYWORD: &'static str = "open_path";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        OpenPath {
            path: t.text(&self.path),
            handle: t.text(&self.handle),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        if !self.path.starts_with('/') || self.path.len() > 4096 {
            v.problem(
                at,
                format!(
                    "`{}` is not a path in the guest: an absolute path, at most 4096 bytes",
                    self.path
                ),
                None,
            );
        }
        v.define(at, &self.handle, Kind::File, self.expect.is_some());
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::OpenPath {
            handle: self.handle.clone(),
            path: self.path.clone(),
            write: false,
        };
        let r = cx.call(req, self.expect()).await?;
        let what = format!("{} {}", self.handle, self.path);
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}
