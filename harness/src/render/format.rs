//! What every format implements.

use crate::events::Event;
use crate::result::ScenarioResult;
use std::io::Write;

pub trait Render: Send {
    /// Takes one event; writes whatever the format shows for it.
    fn event(&mut self, e: &Event, out: &mut dyn Write) -> std::io::Result<()>;
    /// Takes a scenario's result as it ends (before its `ScenarioFinished` event).
    fn finished(&mut self, r: &ScenarioResult, out: &mut dyn Write) -> std::io::Result<()>;
}

/// The first line of a reason, for one-line displays.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
