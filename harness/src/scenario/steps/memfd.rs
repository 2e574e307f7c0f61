//! memfd steps: `create_memfd` (memfd_create + ftruncate, optionally filled with a pattern),
//! `write_pattern` / `verify` (the seeded, position-dependent pattern), `seal`, `truncate`, `seek`.

use super::kind::StepKind;
use crate::scenario::context::{StepContext, StepFailure, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Kind, Site, Validator};
use crate::scenario::values::{Expect, Size};
use luo_protocol::{Reply, Request};
use schemars::JsonSchema;
use serde::Deserialize;
use std::marker::PhantomData;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemfd {
    #[serde(rename = "as")]
    pub handle: String,
    /// Bytes; suffixes K, M (KiB, MiB) allowed: "4M".
    pub size: Size,
    /// Fill [0, size) with the pattern of this seed.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub hugetlb: bool,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for CreateMemfd {
    const KEYWORD: &'static str = "create_memfd";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        CreateMemfd {
            handle: t.text(&self.handle),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.size(at, "a memfd", self.size.0, self.seed.is_some());
        v.define(at, &self.handle, Kind::File, self.expect.is_some());
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let size = self.size.0;
        let req = Request::CreateMemfd {
            handle: self.handle.clone(),
            name: self.handle.clone(),
            size,
            hugetlb: self.hugetlb,
        };
        let r = cx.call(req, self.expect()).await?;
        if r.is_some()
            && let Some(seed) = self.seed
        {
            let fill = Request::WritePattern {
                handle: self.handle.clone(),
                seed,
                offset: 0,
                len: size,
            };
            cx.call(fill, None).await?;
        }
        let seeded = self.seed.map(|x| format!(" seed {x}")).unwrap_or_default();
        let what = format!("{} {size} bytes{seeded}", self.handle);
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}

/// Writes or compares the pattern of `seed` over a range of a file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, bound = "")]
pub struct Pattern<K> {
    pub fd: String,
    pub seed: u64,
    #[serde(default)]
    pub offset: Option<Size>,
    /// Default: the rest of the file (from offset to its size).
    #[serde(default)]
    pub len: Option<Size>,
    #[serde(default)]
    pub expect: Expect,
    #[serde(skip)]
    #[schemars(skip)]
    op: PhantomData<K>,
}

pub trait PatternOp: std::fmt::Debug + Clone + Send + Sync + 'static {
    const KEYWORD: &'static str;
    /// Whether it writes the range (which must then fit in the guest).
    const WRITES: bool;
    fn request(handle: String, seed: u64, offset: u64, len: u64) -> Request;
}

#[derive(Debug, Clone, JsonSchema)]
pub struct Write;
#[derive(Debug, Clone, JsonSchema)]
pub struct Verify;

impl PatternOp for Write {
    const KEYWORD: &'static str = "write_pattern";
    const WRITES: bool = true;
    fn request(handle: String, seed: u64, offset: u64, len: u64) -> Request {
        Request::WritePattern {
            handle,
            seed,
            offset,
            len,
        }
    }
}

impl PatternOp for Verify {
    const KEYWORD: &'static str = "verify";
    const WRITES: bool = false;
    fn request(handle: String, seed: u64, offset: u64, len: u64) -> Request {
        Request::VerifyPattern {
            handle,
            seed,
            offset,
            len,
        }
    }
}

impl<K: PatternOp> StepKind for Pattern<K> {
    const KEYWORD: &'static str = K::KEYWORD;
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Pattern {
            fd: t.text(&self.fd),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.fd, None, self.expect.is_some());
        let end = self
            .offset
            .map_or(0, |o| o.0)
            .saturating_add(self.len.map_or(0, |l| l.0));
        v.size(at, "a pattern range", end, K::WRITES);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let offset = self.offset.map_or(0, |o| o.0);
        let len = match self.len {
            Some(l) => l.0,
            None => file_size(cx, &self.fd).await?.saturating_sub(offset),
        };
        let req = K::request(self.fd.clone(), self.seed, offset, len);
        let r = cx.call(req, self.expect()).await?;
        let what = format!(
            "{} seed {} [{offset}, {})",
            self.fd,
            self.seed,
            offset + len
        );
        Ok(done(K::KEYWORD, &what, &r, self.expect()))
    }
}

/// The size of a file now, asked of the guest: a truncate, through this handle or another of the
/// same file (a dup, a second retrieve), may have changed it since it was created.
async fn file_size<G: GuestDriver>(
    cx: &mut StepContext<'_, G>,
    fd: &str,
) -> Result<u64, StepFailure> {
    match cx
        .call(Request::Observe { handle: fd.into() }, None)
        .await?
    {
        Some(Reply::Observation(o)) => Ok(o.st_size.max(0) as u64),
        _ => Err(StepFailure::Check(format!("cannot learn the size of {fd}"))),
    }
}

/// The seals F_ADD_SEALS knows, by the names scenario files use.
pub const SEAL_NAMES: &[&str] = &["seal", "shrink", "grow", "write", "future_write"];

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub fd: String,
    /// Any of: seal, shrink, grow, write, future_write.
    pub seals: Vec<String>,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for Seal {
    const KEYWORD: &'static str = "seal";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Seal {
            fd: t.text(&self.fd),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.fd, None, self.expect.is_some());
        for s in &self.seals {
            if !SEAL_NAMES.contains(&s.as_str()) {
                v.problem(
                    at,
                    format!("unknown seal `{s}`"),
                    Some(format!("seals are: {}", SEAL_NAMES.join(", "))),
                );
            }
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::AddSeals {
            handle: self.fd.clone(),
            seals: self.seals.clone(),
        };
        let r = cx.call(req, self.expect()).await?;
        let what = format!("{} {}", self.fd, self.seals.join(","));
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    pub fd: String,
    pub size: Size,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for Truncate {
    const KEYWORD: &'static str = "truncate";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Truncate {
            fd: t.text(&self.fd),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.fd, None, self.expect.is_some());
        v.size(at, "truncating to a size", self.size.0, false);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::Truncate {
            handle: self.fd.clone(),
            size: self.size.0,
        };
        let r = cx.call(req, self.expect()).await?;
        let what = format!("{} to {}", self.fd, self.size.0);
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Seek {
    pub fd: String,
    pub offset: Size,
    #[serde(default)]
    pub expect: Expect,
}

impl StepKind for Seek {
    const KEYWORD: &'static str = "seek";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Seek {
            fd: t.text(&self.fd),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.fd, None, self.expect.is_some());
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let req = Request::Seek {
            handle: self.fd.clone(),
            offset: self.offset.0,
        };
        let r = cx.call(req, self.expect()).await?;
        let what = format!("{} to {}", self.fd, self.offset.0);
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}
