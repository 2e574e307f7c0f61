//! `bench scenarios`: the wall time of a scenario set on the default kernel, as many at once as
//! there are cores, each VM restored from a saved booted VM and with `--cold-boot`, alternated in
//! one run; and the slowest scenarios.

use super::{BenchError, median};
use crate::events::{EventSink, Silent};
use crate::plan::{self, Plan, PlanRequest};
use crate::run::{Loaded, RunOptions, run_all};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ScenarioFigures {
    pub scenarios: usize,
    pub parallel: usize,
    pub preparation: Duration,
    /// The first pass, restoring: it saves a booted VM for each configuration that has none.
    pub first: Duration,
    /// Later passes, restoring (the saved VMs there).
    pub restored: Vec<Duration>,
    pub cold: Vec<Duration>,
    /// Of the last restored pass, slowest first.
    pub slowest: Vec<(String, Duration)>,
}

pub async fn scenarios(
    loaded: Vec<Loaded>,
    runs: usize,
    sink: &dyn EventSink,
) -> Result<ScenarioFigures, BenchError> {
    let t0 = Instant::now();
    let mut needs = plan::Needs::default();
    for l in &loaded {
        l.scenario.needs(luo_kernels::Arch::X86_64, &mut needs);
    }
    let p = plan::resolve(&PlanRequest::default(), &needs, sink).await?;
    let preparation = t0.elapsed();
    let mut cold_plan = p.clone();
    cold_plan.vm.cold_boot = true;
    let (p, cold_plan) = (Arc::new(p), Arc::new(cold_plan));
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (first, _) = pass(&p, &loaded, parallel).await?;
    let (mut restored, mut cold, mut slowest) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs.max(1) {
        cold.push(pass(&cold_plan, &loaded, parallel).await?.0);
        let (wall, times) = pass(&p, &loaded, parallel).await?;
        restored.push(wall);
        slowest = times;
        sink.emit(crate::events::Event::Progress {
            task: "scenario set".into(),
            done: i as u64 + 1,
            total: runs.max(1) as u64,
            what: String::new(),
        });
    }
    Ok(ScenarioFigures {
        scenarios: loaded.len(),
        parallel,
        preparation,
        first,
        restored,
        cold,
        slowest,
    })
}

/// One run of the whole set: its wall time and each scenario's, slowest first.
async fn pass(
    p: &Arc<Plan>,
    loaded: &[Loaded],
    parallel: usize,
) -> Result<(Duration, Vec<(String, Duration)>), BenchError> {
    let t0 = Instant::now();
    let opts = RunOptions {
        parallel,
        snapshots: None,
        out: None,
        results: None,
    };
    let results = run_all(p.clone(), loaded.to_vec(), opts, Arc::new(Silent)).await;
    let wall = t0.elapsed();
    if let Some(bad) = results.iter().find(|r| !r.outcome.passed()) {
        return Err(BenchError::Flow(format!(
            "scenario {} did not pass ({}); run `luo-harness run` for details",
            bad.name,
            bad.outcome.label()
        )));
    }
    let mut times: Vec<_> = results
        .iter()
        .map(|r| (r.name.clone(), r.duration))
        .collect();
    times.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    Ok((wall, times))
}

impl std::fmt::Display for ScenarioFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |d: Duration| d.as_secs_f64();
        let restored = median(&mut self.restored.clone());
        let cold = median(&mut self.cold.clone());
        writeln!(
            f,
            "scenario set: {} scenarios, {} at a time, {} passes each, alternating (kernel + image preparation {:.2} s)",
            self.scenarios,
            self.parallel,
            self.cold.len(),
            s(self.preparation)
        )?;
        writeln!(
            f,
            "  restored from saved VMs   median wall {:.1} s  (first pass, saving them: {:.1} s)",
            s(restored),
            s(self.first)
        )?;
        writeln!(
            f,
            "  --cold-boot               median wall {:.1} s",
            s(cold)
        )?;
        writeln!(
            f,
            "  restored is {:.0}% of --cold-boot's wall time",
            100.0 * s(restored) / s(cold).max(1e-9)
        )?;
        writeln!(f, "  slowest (restored):")?;
        for (name, d) in self.slowest.iter().take(5) {
            writeln!(f, "    {name:<28} {:.1} s", s(*d))?;
        }
        Ok(())
    }
}
