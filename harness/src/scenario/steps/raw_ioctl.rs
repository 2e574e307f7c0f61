//! `raw_ioctl`: a LUO ioctl with a hand-made argument, for the errno contract (short size,
//! non-zero reserved fields, unknown command numbers).

use super::kind::StepKind;
use crate::scenario::context::{StepContext, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use crate::scenario::values::Expect;
use luo_protocol::Request;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIoctl {
    pub handle: String,
    /// The command number (0x00..0xff), e.g. 0x40 for PRESERVE_FD.
    pub nr: u8,
    /// The value put in the leading `size` field.
    pub size: u32,
    /// Bytes of the argument buffer (at least 4); the rest is zero unless `words` say otherwise.
    pub len: u32,
    /// (offset, value) pairs of u32 written into the buffer after the size.
    #[serde(default)]
    pub words: Vec<(u32, u32)>,
    #[serde(default)]
    pub expect: Expect,
}

impl RawIoctl {
    /// The argument bytes: `size` first, then each word at its offset.
    fn argument(&self) -> Result<Vec<u8>, String> {
        let mut arg = vec![0u8; self.len.max(4) as usize];
        arg[..4].copy_from_slice(&self.size.to_ne_bytes());
        for (off, val) in &self.words {
            let o = *off as usize;
            if o + 4 > arg.len() {
                return Err(format!(
                    "word offset {o} is outside the {}-byte argument",
                    arg.len()
                ));
            }
            arg[o..o + 4].copy_from_slice(&val.to_ne_bytes());
        }
        Ok(arg)
    }
}

impl StepKind for RawIoctl {
    const KEYWORD: &'static str = "raw_ioctl";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        RawIoctl {
            handle: t.text(&self.handle),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.handle, None, self.expect.is_some());
        let range = crate::scenario::limits::RAW_IOCTL_BYTES;
        if !range.contains(&self.len) {
            v.problem(
                at,
                format!(
                    "len {} is not a buffer size: {} to {} bytes",
                    self.len,
                    range.start(),
                    range.end()
                ),
                None,
            );
        } else if let Err(e) = self.argument() {
            v.problem(at, e, Some("`len` is the argument's size in bytes".into()));
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let arg = self
            .argument()
            .map_err(crate::scenario::context::StepFailure::Check)?;
        let req = Request::RawIoctl {
            handle: self.handle.clone(),
            nr: self.nr,
            arg,
        };
        let r = cx.call(req, self.expect()).await?;
        let what = format!(
            "{} nr 0x{:02x} size {} len {}",
            self.handle, self.nr, self.size, self.len
        );
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}
