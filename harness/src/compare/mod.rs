//! `luo-harness compare`: what each session-inode design costs, measured on real kernels.
//!
//! For every variant, session count N and repetition, one VM measured as [`crate::measure`] does,
//! the variants alternated; the table gives medians and ranges per design.

mod plot;
mod summary;

pub use crate::measure::Sample;
pub use plot::svg;
pub use summary::{Point, summarise, table};

use crate::events::EventSink;
use crate::measure::{self, MeasureError, Side};
use crate::plan::{self, Needs, PlanError, PlanRequest};
use crate::vm::accel::AccelChoice;
use luo_kernels::BuildRequest;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The source every variant is built from.
    pub kernel: luo_kernels::spec::KernelSpec,
    /// The recipe and fragments.
    pub base: BuildRequest,
    pub variants: Vec<String>,
    /// Session counts (each at least 1).
    pub sessions: Vec<u32>,
    /// Repetitions per point (at least 1).
    pub reps: u32,
    pub accel: AccelChoice,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CompareError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Measure(#[from] MeasureError),
}

impl crate::outcome::Classify for CompareError {
    fn kind(&self) -> crate::outcome::Kind {
        match self {
            CompareError::Plan(e) => e.kind(),
            CompareError::Measure(e) => e.kind(),
        }
    }
}

/// What `compare` measured, as compare.json holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub points: Vec<Point>,
}

/// Boots one VM per variant, session count and repetition, and measures each.
pub async fn measure(
    o: &CompareOptions,
    sink: &dyn EventSink,
) -> Result<Vec<Sample>, CompareError> {
    let mut plans = Vec::new();
    for v in &o.variants {
        let req = PlanRequest {
            kernel: o.kernel.clone(),
            build: o.base.with_variant(v),
            accel: Some(o.accel),
            ..Default::default()
        };
        plans.push((
            v.clone(),
            plan::resolve(&req, &Needs::default(), sink).await?,
        ));
    }
    let sides: Vec<Side> = plans
        .iter()
        .map(|(label, plan)| Side {
            label: label.clone(),
            plan,
        })
        .collect();
    Ok(measure::alternate(&sides, &o.sessions, 0, o.reps, "compare", sink).await?)
}
