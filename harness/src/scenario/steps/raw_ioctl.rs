//! `raw_ioctl`: a LUO ioctl with a hand-made argument, for the errno contract (short size,
//! non-zero reserved fields, unknown command numbers, an argument the kernel cannot read or cannot
//! answer in).

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
    /// (offset, handle) pairs: the handle's fd number written there as a u32.
    #[serde(default)]
    pub fds: Vec<(u32, String)>,
    /// Where the argument lies: `writable` (the default), `read_only` (the kernel reads the
    /// request but cannot write its answer: EFAULT after the work is done) or `unmapped` (it
    /// cannot read the size: EFAULT before anything).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub memory: Memory,
    #[serde(default)]
    pub expect: Expect,
}

/// [`luo_protocol::ArgMemory`] as scenarios spell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Memory {
    #[default]
    Writable,
    ReadOnly,
    Unmapped,
}

impl Memory {
    fn protocol(self) -> luo_protocol::ArgMemory {
        match self {
            Memory::Writable => luo_protocol::ArgMemory::Writable,
            Memory::ReadOnly => luo_protocol::ArgMemory::ReadOnly,
            Memory::Unmapped => luo_protocol::ArgMemory::Unmapped,
        }
    }
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
            fds: self.fds.iter().map(|(o, h)| (*o, t.text(h))).collect(),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.need(at, &self.handle, None, self.expect.is_some());
        for (offset, h) in &self.fds {
            v.need(at, h, None, false);
            if offset.saturating_add(4) > self.len {
                v.problem(
                    at,
                    format!(
                        "{h}'s fd at offset {offset} is outside the {}-byte argument",
                        self.len
                    ),
                    None,
                );
            }
        }
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
            memory: self.memory.protocol(),
            fds: self.fds.clone(),
        };
        let r = cx.call(req, self.expect()).await?;
        let mut what = format!(
            "{} nr 0x{:02x} size {} len {}",
            self.handle, self.nr, self.size, self.len
        );
        match self.memory {
            Memory::Writable => {}
            Memory::ReadOnly => what.push_str(" in read-only memory"),
            Memory::Unmapped => what.push_str(" in unmapped memory"),
        }
        Ok(done(Self::KEYWORD, &what, &r, self.expect()))
    }
}
