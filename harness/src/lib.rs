//! luo-harness: boots LUO-capable kernels under QEMU, drives /dev/liveupdate through a guest agent
//! across kexec, and reports what the kernel did.
//!
//! Data path: `luo_kernels` (kernel) -> [`image`] -> [`vm`] -> [`guest`] (agent protocol) ->
//! [`bench`] and the CLI. Everything the runner wants to tell the user goes through [`output`].

pub mod bench;
pub mod compare;
pub mod guest;
pub mod image;
pub mod output;
pub mod plot;
pub mod prepare;
pub mod profile;
pub mod scenario;
pub mod upstream;
pub mod vm;

pub use guest::{Guest, GuestError, KexecTarget};
pub use prepare::{KernelChoice, Prepared, prepare};
pub use vm::{Vm, VmConfig};
