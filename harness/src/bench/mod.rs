//! Benchmarks: figures returned to the CLI to print, never asserted in tests.

pub mod bare;
pub mod roundtrip;
pub mod scenarios;
pub mod upstream;

use crate::guest::GuestError;
use crate::plan::PlanError;
use std::time::Duration;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BenchError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Guest(#[from] GuestError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Vm(#[from] crate::vm::VmError),
    #[error("{0}")]
    Flow(String),
}

impl crate::outcome::Classify for BenchError {
    fn kind(&self) -> crate::outcome::Kind {
        match self {
            BenchError::Plan(e) => e.kind(),
            BenchError::Guest(e) => e.kind(),
            BenchError::Vm(e) => e.kind(),
            BenchError::Flow(_) => crate::outcome::Kind::Fail,
        }
    }
}

/// The median (the upper one of an even count); zero for no samples. Sorts `v`.
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn median_of_nothing_is_zero_and_of_something_the_middle() {
        assert_eq!(median(&mut []), Duration::ZERO);
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(3), ms(1), ms(2)]), ms(2));
    }
}
