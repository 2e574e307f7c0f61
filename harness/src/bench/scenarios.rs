//! `bench scenarios`: the wall time of a scenario set on the default kernel, as many at once as
//! there are cores, and the slowest scenarios.

use super::BenchError;
use crate::events::{EventSink, Silent};
use crate::plan::{self, PlanRequest};
use crate::run::{Loaded, RunOptions, run_all};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ScenarioFigures {
    pub parallel: usize,
    pub preparation: Duration,
    pub wall: Duration,
    /// Slowest first.
    pub slowest: Vec<(String, Duration)>,
}

pub async fn scenarios(
    loaded: Vec<Loaded>,
    sink: &dyn EventSink,
) -> Result<ScenarioFigures, BenchError> {
    let t0 = Instant::now();
    let mut needs = plan::Needs::default();
    for l in &loaded {
        l.scenario.needs(&mut needs);
    }
    let p = Arc::new(plan::resolve(&PlanRequest::default(), &needs, sink).await?);
    let preparation = t0.elapsed();
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = RunOptions {
        parallel,
        snapshots: None,
        out: None,
    };
    let results = run_all(p, loaded, opts, Arc::new(Silent)).await;
    if let Some(bad) = results.iter().find(|r| !r.outcome.passed()) {
        return Err(BenchError::Flow(format!(
            "scenario {} did not pass ({}); run `luo-harness run` for details",
            bad.name,
            bad.outcome.label()
        )));
    }
    let mut slowest: Vec<_> = results
        .iter()
        .map(|r| (r.name.clone(), r.duration))
        .collect();
    slowest.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    Ok(ScenarioFigures {
        parallel,
        preparation,
        wall: t0.elapsed(),
        slowest,
    })
}

impl std::fmt::Display for ScenarioFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scenario set: {} scenarios, {} at a time, wall {:.1} s (kernel + image preparation {:.2} s)",
            self.slowest.len(),
            self.parallel,
            self.wall.as_secs_f64(),
            self.preparation.as_secs_f64()
        )?;
        for (name, d) in self.slowest.iter().take(5) {
            writeln!(f, "  {name:<28} {:.1} s", d.as_secs_f64())?;
        }
        Ok(())
    }
}
