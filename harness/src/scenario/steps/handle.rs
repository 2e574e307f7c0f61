//! Steps on handles as such: `close` any handle, `dup` it, `open_path` any file (e.g. /dev/null, a
//! file type LUO cannot preserve), `read_file` a file of proc, sys or debugfs.

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

/// A path in the guest: absolute, at most PATH_MAX.
fn guest_path(v: &mut Validator, at: &Site, path: &str) {
    if !path.starts_with('/') || path.len() > 4096 {
        v.problem(
            at,
            format!("`{path}` is not a path in the guest: an absolute path, at most 4096 bytes"),
            None,
        );
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
        guest_path(v, at, &self.path);
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

/// dup(2): a second fd of the same open file. A session closes when its last fd does.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dup {
    pub handle: String,
    #[serde(rename = "as")]
    pub new_handle: String,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for Dup {
    const KEYWORD: &'static str = "dup";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Dup {
            handle: t.text(&self.handle),
            new_handle: t.text(&self.new_handle),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.dup(at, &self.handle, &self.new_handle, self.expect.is_some());
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::Dup {
            handle: self.handle.clone(),
            new_handle: self.new_handle.clone(),
        };
        let r = cx.call(req, self.expect()).await?;
        if cx.session_handles.contains(&self.handle) {
            cx.session_handles.insert(self.new_handle.clone());
        }
        let what = format!("{} as {}", self.handle, self.new_handle);
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}

/// Reads a file of proc, sys or debugfs as text; the step fails unless it has every line of
/// `contains`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFile {
    pub path: String,
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for ReadFile {
    const KEYWORD: &'static str = "read_file";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        ReadFile {
            path: t.text(&self.path),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        guest_path(v, at, &self.path);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::ReadFile {
            path: self.path.clone(),
            max_bytes: 1 << 20,
        };
        let r = cx.call(req, self.expect()).await?;
        if let Some(luo_protocol::Reply::Text { text, .. }) = &r
            && let Some(missing) = self.contains.iter().find(|c| !text.contains(c.as_str()))
        {
            return Err(crate::scenario::context::StepFailure::Check(format!(
                "{} has no `{missing}`: {}",
                self.path,
                text.trim()
            )));
        }
        Ok(done(Self::KEYWORD, &self.path, &r, self.expect()))
    }
}
