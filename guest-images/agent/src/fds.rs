//! Host-named handles for guest file descriptors.

use luo_protocol::{AgentError, ErrorKind};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Fds {
    by_name: BTreeMap<String, i32>,
}

impl Fds {
    pub fn get(&self, handle: &str, call: &str) -> Result<i32, AgentError> {
        self.by_name.get(handle).copied().ok_or_else(|| {
            AgentError::new(
                ErrorKind::Handle,
                call,
                format!("unknown handle {handle:?}"),
            )
        })
    }

    /// Checks that `handle` is free before the fd it will name is created.
    pub fn ensure_free(&self, handle: &str, call: &str) -> Result<(), AgentError> {
        if self.by_name.contains_key(handle) {
            return Err(AgentError::new(
                ErrorKind::Handle,
                call,
                format!("handle {handle:?} is already in use"),
            ));
        }
        Ok(())
    }

    pub fn insert(&mut self, handle: &str, fd: i32) {
        self.by_name.insert(handle.to_string(), fd);
    }

    pub fn remove(&mut self, handle: &str, call: &str) -> Result<i32, AgentError> {
        self.by_name.remove(handle).ok_or_else(|| {
            AgentError::new(
                ErrorKind::Handle,
                call,
                format!("unknown handle {handle:?}"),
            )
        })
    }
}
