//! How luo-harness gets a kernel: the source (Debian's package, a user's tree, or a prebuilt image),
//! the configuration (embedded fragments on top of `allnoconfig`, verified), the build (make, out of
//! tree, with progress) and the content-addressed cache that makes a second build free.

pub mod apt;
pub mod cache;
pub mod config;
pub mod error;
pub mod hosttools;
pub mod make;
pub mod selftests;
pub mod source;
pub mod variant;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use cache::{BuiltKernel, Cache};
pub use error::KernelError;
pub use make::{BuildEvent, BuildRequest, Recipe, build};
pub use source::{DEFAULT_PACKAGE, DEFAULT_VERSION, KernelSource};
