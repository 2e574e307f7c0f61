//! luo-harness: boots LUO-capable kernels under QEMU, drives /dev/liveupdate through a guest agent
//! across kexec, and reports what the kernel did.
//!
//! Data path: [`plan`] (every kernel, program and image, before any VM) -> [`vm`] (QEMU,
//! virtiofsd, QMP: processes) -> [`guest`] (the agent protocol) -> [`scenario`] (steps, checks,
//! reports, snapshots) -> [`run`] (scenarios in parallel) -> [`render`] (human, JSON, KTAP, JUnit).
//! The library never prints: it emits [`events`], and the command line shows them. [`outcome`]
//! says how anything ended and which exit code that is.

pub mod bench;
pub mod bisect;
pub mod compare;
pub mod coverage;
pub mod events;
pub mod findings;
pub mod guest;
pub mod matrix;
pub mod outcome;
pub mod plan;
pub mod profile;
pub mod render;
pub mod result;
pub mod run;
pub mod scenario;
pub mod timeouts;
pub mod upstream;
pub mod vm;

pub use guest::{Guest, GuestError, KexecTarget};
pub use plan::{Plan, PlanRequest};
pub use vm::{Vm, VmConfig};
