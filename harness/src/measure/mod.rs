//! The one place that measures what a kernel's live update costs, for `compare`, `delta` and
//! `bisect --metric`: a [`Sample`] taken in the guest, the [`metric`]s read from it, the kernels
//! measured [`alternate`]ly, and the [`stats`] that say whether a change is more than noise.

pub mod alternate;
pub mod metric;
pub mod sample;
pub mod stats;

pub use alternate::{Side, alternate};
pub use metric::{Metric, UnknownMetric};
pub use sample::{FILE_BYTES, Sample, Workload, old_kernel_split};

use crate::guest::GuestError;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum MeasureError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Guest(#[from] GuestError),
    #[error("unexpected reply to {what}: {got}")]
    Reply { what: &'static str, got: String },
}

impl crate::outcome::Classify for MeasureError {
    fn kind(&self) -> crate::outcome::Kind {
        match self {
            MeasureError::Guest(e) => e.kind(),
            MeasureError::Reply { .. } => crate::outcome::Kind::InfraFailure,
        }
    }
}
