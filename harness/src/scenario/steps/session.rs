//! Steps on sessions: `create_session`, `retrieve_session` (LIVEUPDATE_IOCTL_CREATE/RETRIEVE_SESSION
//! on the device), `get_name` (LIVEUPDATE_SESSION_GET_NAME) and `finish` (LIVEUPDATE_SESSION_FINISH).

use super::device::dev;
use super::kind::StepKind;
use crate::scenario::context::{StepContext, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Kind, Site, Validator};
use crate::scenario::values::Expect;
use luo_protocol::{Reply, Request};
use schemars::JsonSchema;
use serde::Deserialize;
use std::marker::PhantomData;

/// A session opened on the device: created, or retrieved after a kexec.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, bound = "")]
pub struct SessionStep<K> {
    pub name: String,
    /// Handle for the session fd (default: the name).
    #[serde(default, rename = "as")]
    pub handle: Option<String>,
    #[serde(default = "dev")]
    pub device: String,
    #[serde(default)]
    pub expect: Expect,
    #[serde(skip)]
    #[schemars(skip)]
    op: PhantomData<K>,
}

impl<K> SessionStep<K> {
    pub fn handle(&self) -> &str {
        self.handle.as_deref().unwrap_or(&self.name)
    }
}

/// What differs between creating and retrieving a session.
pub trait SessionOp: std::fmt::Debug + Clone + Send + Sync + 'static {
    const KEYWORD: &'static str;
    /// What a name outside 1..63 bytes gets: create checks it (EINVAL); retrieve only looks it
    /// up, and no session can have it (ENOENT).
    const BAD_NAME: &'static str;
    fn request(device: String, handle: String, name: String) -> Request;
    /// Besides needing the device and defining the handle.
    fn check(step: &SessionStep<Self>, v: &mut Validator, at: &Site);
}

#[derive(Debug, Clone, JsonSchema)]
pub struct Create;
#[derive(Debug, Clone, JsonSchema)]
pub struct Retrieve;

impl SessionOp for Create {
    const KEYWORD: &'static str = "create_session";
    const BAD_NAME: &'static str = "EINVAL";
    fn request(device: String, handle: String, name: String) -> Request {
        Request::CreateSession {
            device,
            handle,
            name,
        }
    }
    fn check(step: &SessionStep<Self>, v: &mut Validator, _: &Site) {
        if step.expect.is_none() {
            v.session_created(&step.name, step.handle());
        }
    }
}

impl SessionOp for Retrieve {
    const KEYWORD: &'static str = "retrieve_session";
    const BAD_NAME: &'static str = "ENOENT";
    fn request(device: String, handle: String, name: String) -> Request {
        Request::RetrieveSession {
            device,
            handle,
            name,
        }
    }
    fn check(step: &SessionStep<Self>, v: &mut Validator, at: &Site) {
        if step.expect.is_none() {
            v.retrievable(at, &step.name);
        }
    }
}

impl<K: SessionOp> StepKind for SessionStep<K> {
    const KEYWORD: &'static str = K::KEYWORD;
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        SessionStep {
            name: t.text(&self.name),
            handle: t.opt(&self.handle),
            device: t.text(&self.device),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        let fails = self.expect.is_some();
        v.session_name(at, &self.name, self.expect(), K::BAD_NAME);
        v.need(at, &self.device, Some(Kind::Device), fails);
        K::check(self, v, at);
        v.define(at, self.handle(), Kind::Session, fails);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = K::request(self.device.clone(), self.handle().into(), self.name.clone());
        let r = cx.call(req, self.expect()).await?;
        if r.is_some() {
            cx.session_handles.insert(self.handle().to_string());
        }
        Ok(done(
            K::KEYWORD,
            &format!("{:?}", self.name),
            &r,
            self.expect(),
        ))
    }
}

/// A call on a session fd.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, bound = "")]
pub struct OnSession<K> {
    pub session: String,
    #[serde(default)]
    pub expect: Expect,
    #[serde(skip)]
    #[schemars(skip)]
    op: PhantomData<K>,
}

pub trait SessionCall: std::fmt::Debug + Clone + Send + Sync + 'static {
    const KEYWORD: &'static str;
    fn request(session: String) -> Request;
}

#[derive(Debug, Clone, JsonSchema)]
pub struct GetName;
#[derive(Debug, Clone, JsonSchema)]
pub struct Finish;

impl SessionCall for GetName {
    const KEYWORD: &'static str = "get_name";
    fn request(session: String) -> Request {
        Request::GetSessionName { session }
    }
}

impl SessionCall for Finish {
    const KEYWORD: &'static str = "finish";
    fn request(session: String) -> Request {
        Request::FinishSession { session }
    }
}

impl<K: SessionCall> StepKind for OnSession<K> {
    const KEYWORD: &'static str = K::KEYWORD;
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        OnSession {
            session: t.text(&self.session),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(
            at,
            &self.session,
            Some(Kind::Session),
            self.expect.is_some(),
        );
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let r = cx
            .call(K::request(self.session.clone()), self.expect())
            .await?;
        Ok(match &r {
            // The name the kernel gives back is the point of get_name: it goes in the report.
            Some(Reply::Name { name }) => format!("{} {}: {name:?}", K::KEYWORD, self.session),
            _ => done(K::KEYWORD, &self.session, &r, self.expect()),
        })
    }
}
