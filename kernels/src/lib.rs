//! How luo-harness gets a kernel: the source (Debian's package or a user's tree), staged by content
//! into one tree per kernel family, the configuration (embedded fragments on top of `allnoconfig`,
//! verified), the build (make, out of tree, with progress) and the content-addressed cache that
//! makes a second build free.

pub mod apt;
pub mod arch;
pub mod cache;
pub mod config;
mod configure;
pub mod debian;
pub mod error;
pub mod executable;
pub mod flavour;
pub mod git;
pub mod hosttools;
mod make;
mod pipeline;
pub mod programs;
pub mod request;
pub mod selftests;
pub mod source;
pub mod spec;
pub mod staging;
pub mod variant;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use arch::Arch;
pub use cache::{BuiltKernel, Cache};
pub use error::KernelError;
pub use flavour::Flavour;
pub use pipeline::{BuildEvent, build};
pub use request::{BuildRequest, Recipe};
pub use source::{DEFAULT_PACKAGE, DEFAULT_VERSION, KernelSource};
