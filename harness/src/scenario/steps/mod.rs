//! Every scenario step, each defined once: its arguments (the file format), keyword, `expect`,
//! template expansion, what it uses and creates (for the validator), what the run must build for
//! it, and the requests it makes. A new step is one file here and one line in the list (list.rs), plus its
//! request in the protocol and the agent.

pub mod device;
mod exec;
mod handle;
mod kexec;
mod kind;
mod list;
pub(crate) mod memfd;
mod memory;
mod observe;
mod preserve;
mod raw_ioctl;
pub(crate) mod session;
mod unit;

pub use device::OpenDevice;
pub use exec::Exec;
pub(crate) use exec::{base_name, tail};
pub use handle::{Close, Dup, OpenPath, ReadFile};
pub use kexec::Kexec;
pub use kind::StepKind;
pub use list::{
    MAX_DEPTH, MAX_UNROLLED_STEPS, Repeat, Step, check_all, needs_of, site, unnamed_kexec,
};
pub use memfd::{CreateMemfd, Pattern, SEAL_NAMES, Seal, Seek, Truncate};
pub use memory::MeasureMemory;
pub use observe::Observe;
pub use preserve::{Preserve, RetrieveFd};
pub use raw_ioctl::RawIoctl;
pub use session::{OnSession, SessionStep};
pub use unit::{Journal, Unit};
