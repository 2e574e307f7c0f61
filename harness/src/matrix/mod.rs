//! `luo-harness matrix`: live update between kernels. For each ordered pair (from, to) of the
//! kernels given, the same pair included, boot `from` and run each scenario with every `kexec` that
//! names no kernel going into `to`. Each cell says what happened: pass, the first failing step, or
//! live-update state lost or refused (from the boot facts and the next kernel's log).

mod grid;

pub use grid::{svg, table};

use crate::events::EventSink;
use crate::outcome::Kind;
use crate::plan::{self, Needs, PlanError, PlanRequest};
use crate::result::ScenarioResult;
use crate::run::{Loaded, RunOptions, run_all};
use luo_kernels::BuildRequest;
use luo_kernels::spec::KernelSpec;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct MatrixOptions {
    pub kernels: Vec<KernelSpec>,
    /// Recipe, fragments and variant for every kernel.
    pub build: BuildRequest,
    pub accel: crate::vm::accel::AccelChoice,
    pub parallel: usize,
}

/// What one (from, to) cell shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cell", rename_all = "snake_case")]
pub enum Cell {
    /// The scenario has no kexec into the run's next kernel.
    NotApplicable,
    Pass,
    Skip {
        reason: String,
    },
    /// An expectation failed; `step` is the first failing step's line.
    Fail {
        step: String,
    },
    /// The next kernel did not find the state the old one handed over.
    StateLost {
        detail: String,
    },
    /// The next kernel refused it (a format it does not read).
    Incompatible {
        detail: String,
    },
    /// The kernel under test panicked or stopped answering.
    Kernel {
        reason: String,
    },
    /// The cell could not be decided (QEMU, the host, a build).
    Error {
        reason: String,
    },
}

impl Cell {
    /// The short word a table shows.
    pub fn word(&self) -> String {
        match self {
            Cell::NotApplicable => "n/a".into(),
            Cell::Pass => "pass".into(),
            Cell::Skip { .. } => "skip".into(),
            Cell::Fail { step } => format!("FAIL {}", step.split(':').next().unwrap_or(step)),
            Cell::StateLost { .. } => "STATE LOST".into(),
            Cell::Incompatible { .. } => "INCOMPATIBLE".into(),
            Cell::Kernel { .. } => "KERNEL".into(),
            Cell::Error { .. } => "ERROR".into(),
        }
    }

    /// Whether the cell says something about the kernels (every cell but an error does).
    pub fn decided(&self) -> bool {
        !matches!(self, Cell::Error { .. })
    }

    fn of(r: &ScenarioResult) -> Cell {
        let reason = crate::render::first_line(r.outcome.reason()).to_string();
        let handover = r
            .report
            .as_ref()
            .and_then(|rep| rep.handover.first().cloned());
        let refused_in_console = r.outcome.reason().contains("incompatible");
        match r.outcome.kind() {
            Kind::Pass => Cell::Pass,
            Kind::Skip => Cell::Skip { reason },
            _ if handover
                .as_deref()
                .is_some_and(|h| h.contains(": incompatible:"))
                || refused_in_console =>
            {
                Cell::Incompatible {
                    detail: handover.unwrap_or(reason),
                }
            }
            _ if handover.is_some() => Cell::StateLost {
                detail: handover.unwrap_or_default(),
            },
            Kind::Fail => Cell::Fail {
                step: r
                    .report
                    .as_ref()
                    .and_then(|rep| rep.failures.first().or(rep.kernel_log.first()).cloned())
                    .unwrap_or(reason),
            },
            Kind::KernelFailure => Cell::Kernel { reason },
            _ => Cell::Error { reason },
        }
    }
}

/// A kernel as the matrix names it: the spec, and the exact version that ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Axis {
    pub spec: String,
    pub source: String,
    pub release: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioGrid {
    pub scenario: String,
    /// `cells[from][to]`.
    pub cells: Vec<Vec<Cell>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matrix {
    pub kernels: Vec<Axis>,
    pub scenarios: Vec<ScenarioGrid>,
}

pub async fn run(
    o: &MatrixOptions,
    scenarios: Vec<Loaded>,
    sink: Arc<dyn EventSink>,
) -> Result<Matrix, PlanError> {
    let applicable: Vec<Loaded> = scenarios
        .iter()
        .filter(|l| l.scenario.kexecs_unnamed())
        .cloned()
        .collect();
    let mut needs = Needs::default();
    for l in &applicable {
        l.scenario.needs(o.build.arch, &mut needs);
    }
    let mut axes = Vec::new();
    let n = o.kernels.len();
    let mut grids: Vec<ScenarioGrid> = scenarios
        .iter()
        .map(|l| ScenarioGrid {
            scenario: l.scenario.name().to_string(),
            cells: vec![vec![Cell::NotApplicable; n]; n],
        })
        .collect();
    for (i, from) in o.kernels.iter().enumerate() {
        for (j, to) in o.kernels.iter().enumerate() {
            let req = PlanRequest {
                kernel: from.clone(),
                build: o.build.clone(),
                next: Some(to.clone()),
                accel: Some(o.accel),
                ..Default::default()
            };
            let p = plan::resolve(&req, &needs, &*sink).await?;
            if axes.len() < n && i == 0 {
                let k = p.next.clone().unwrap_or_else(|| p.boot.clone());
                axes.push(Axis {
                    spec: to.to_string(),
                    source: k.source.clone(),
                    release: k.release.clone().unwrap_or_default(),
                });
            }
            if applicable.is_empty() {
                continue;
            }
            let opts = RunOptions {
                parallel: o.parallel,
                snapshots: None,
                out: None,
                results: None,
            };
            let results = run_all(Arc::new(p), applicable.clone(), opts, sink.clone()).await;
            for r in results {
                if let Some(g) = grids.iter_mut().find(|g| g.scenario == r.name) {
                    g.cells[i][j] = Cell::of(&r);
                }
            }
        }
    }
    Ok(Matrix {
        kernels: axes,
        scenarios: grids,
    })
}
