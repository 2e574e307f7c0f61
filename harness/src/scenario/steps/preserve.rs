//! `preserve` (LIVEUPDATE_SESSION_PRESERVE_FD) before a kexec and `retrieve_fd`
//! (LIVEUPDATE_SESSION_RETRIEVE_FD) after it. Inside a repeat, tokens are offset by the iteration.

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
pub struct Preserve {
    pub session: String,
    pub fd: String,
    pub token: u64,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for Preserve {
    const KEYWORD: &'static str = "preserve";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Preserve {
            session: t.text(&self.session),
            fd: t.text(&self.fd),
            token: t.token(self.token),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        let fails = self.expect.is_some();
        v.need(at, &self.session, Some(Kind::Session), fails);
        v.need(at, &self.fd, None, fails);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::PreserveFd {
            session: self.session.clone(),
            fd: self.fd.clone(),
            token: self.token,
        };
        let r = cx.call(req, self.expect()).await?;
        let what = format!("{} in {} token {}", self.fd, self.session, self.token);
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrieveFd {
    pub session: String,
    pub token: u64,
    #[serde(rename = "as")]
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for RetrieveFd {
    const KEYWORD: &'static str = "retrieve_fd";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        RetrieveFd {
            session: t.text(&self.session),
            handle: t.text(&self.handle),
            token: t.token(self.token),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        let fails = self.expect.is_some();
        v.need(at, &self.session, Some(Kind::Session), fails);
        if !fails {
            v.after_a_kexec(at, "retrieve_fd");
        }
        v.define(at, &self.handle, Kind::File, fails);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::RetrieveFd {
            session: self.session.clone(),
            handle: self.handle.clone(),
            token: self.token,
        };
        let r = cx.call(req, self.expect()).await?;
        let what = format!(
            "token {} from {} as {}",
            self.token, self.session, self.handle
        );
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}
