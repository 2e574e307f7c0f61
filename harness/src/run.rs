//! Runs validated scenarios on a resolved plan, as many at once as asked, and reports each as it
//! finishes. A scenario that panics, times out or loses its VM becomes a result like any other:
//! the others' results are never lost.

use crate::events::{Event, EventSink};
use crate::guest::GuestError;
use crate::outcome::{Classify, Kind, Outcome};
use crate::plan::Plan;
use crate::result::{ResultSink, ScenarioResult};
use crate::scenario::snapshot::{SnapshotStatus, Snapshots};
use crate::scenario::{self, Ran, Scenario};
use crate::vm::Timeouts;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// A scenario file that passed `check`.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub scenario: Scenario,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenarios run at once.
    pub parallel: usize,
    /// Where to compare reports (None: not compared).
    pub snapshots: Option<Snapshots>,
    /// Where reports and metrics are written as each scenario finishes.
    pub out: Option<PathBuf>,
    /// Who takes each result as it finishes (a renderer), besides the events.
    pub results: Option<Arc<dyn ResultSink>>,
}

/// How one scenario is run: on a real VM ([`OnVm`]), or by a test's stand-in.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, l: &Loaded, plan: &Plan) -> impl Future<Output = Result<Ran, GuestError>> + Send;
}

/// Boots a VM for each scenario.
pub struct OnVm;

impl Runner for OnVm {
    async fn run(&self, l: &Loaded, plan: &Plan) -> Result<Ran, GuestError> {
        scenario::run(&l.scenario, plan).await
    }
}

/// Runs every scenario on VMs; results come back in the order given.
pub async fn run_all(
    plan: Arc<Plan>,
    scenarios: Vec<Loaded>,
    opts: RunOptions,
    sink: Arc<dyn EventSink>,
) -> Vec<ScenarioResult> {
    run_with(Arc::new(OnVm), plan, scenarios, opts, sink).await
}

/// [`run_all`] with any [`Runner`].
pub async fn run_with<R: Runner>(
    runner: Arc<R>,
    plan: Arc<Plan>,
    scenarios: Vec<Loaded>,
    opts: RunOptions,
    sink: Arc<dyn EventSink>,
) -> Vec<ScenarioResult> {
    sink.emit(Event::RunStarted {
        scenarios: scenarios
            .iter()
            .map(|l| l.scenario.name().to_string())
            .collect(),
    });
    // Scenarios start in the order given (a dispatcher hands out the permits in turn), so `-p 1`
    // runs them one after the other as listed; each writes its report the moment it ends.
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let results_sink = opts.results.clone();
    let opts = Arc::new(opts);
    let mut tasks = Vec::new();
    let mut turns = Vec::new();
    for l in scenarios {
        let (plan, opts, sink, runner) = (plan.clone(), opts.clone(), sink.clone(), runner.clone());
        let (turn, my_turn) = tokio::sync::oneshot::channel::<tokio::sync::OwnedSemaphorePermit>();
        turns.push(turn);
        let (file, name) = (l.file.clone(), l.scenario.name().to_string());
        let task = tokio::spawn(async move {
            let Ok(_permit) = my_turn.await else {
                let reason = "not started: the run ended before its turn".to_string();
                return ScenarioResult::new(
                    l.file.clone(),
                    l.scenario.name().to_string(),
                    Outcome::InfraFailure { reason },
                );
            };
            sink.emit(Event::ScenarioStarted {
                name: l.scenario.name().to_string(),
            });
            let span = tracing::info_span!("scenario", name = l.scenario.name());
            run_one(&*runner, &l, &plan, &opts).instrument(span).await
        });
        tasks.push((file, name, task));
    }
    let dispatcher = tokio::spawn(async move {
        for turn in turns {
            let permit = sem
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            // A scenario whose task is gone (panicked before its turn) gives the permit back.
            let _ = turn.send(permit);
        }
    });
    let mut results = Vec::new();
    for (file, name, task) in tasks {
        let t0 = Instant::now();
        let r = match task.await {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("internal error: the scenario's task {}", panic_text(e));
                let mut r = ScenarioResult::new(file, name, Outcome::InfraFailure { reason });
                r.duration = t0.elapsed();
                r
            }
        };
        if let Some(taker) = &results_sink {
            taker.finished(&r);
        }
        sink.emit(Event::ScenarioFinished {
            name: r.name.clone(),
            outcome: r.outcome.label().to_string(),
            duration: r.duration,
        });
        results.push(r);
    }
    let _ = dispatcher.await;
    sink.emit(Event::RunFinished);
    results
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            format!("panicked: {msg}")
        }
        Err(e) => format!("was cancelled: {e}"),
    }
}

async fn run_one<R: Runner>(
    runner: &R,
    l: &Loaded,
    plan: &Plan,
    opts: &RunOptions,
) -> ScenarioResult {
    let t0 = Instant::now();
    let limit = Timeouts::for_accel(plan.accel).scenario;
    let name = l.scenario.name().to_string();
    let mut r = ScenarioResult::new(l.file.clone(), name.clone(), Outcome::Pass);
    match tokio::time::timeout(limit, runner.run(l, plan)).await {
        Ok(Ok(ran)) => {
            r = ScenarioResult::from_ran(l.file.clone(), name, ran);
            if let (Some(snaps), Some(report)) = (&opts.snapshots, &r.report)
                && matches!(r.outcome.kind(), Kind::Pass | Kind::Fail)
            {
                match snaps.check(report, &l.file) {
                    Ok(status) => {
                        if let SnapshotStatus::Differs { path, .. } = &status
                            && r.outcome.passed()
                        {
                            r.outcome = Outcome::Fail {
                                reason: format!("the report differs from {}", path.display()),
                            };
                        }
                        r.snapshot = status;
                    }
                    Err(e) => {
                        r.outcome = Outcome::Fail {
                            reason: format!("snapshot: {e}"),
                        }
                    }
                }
            }
        }
        Ok(Err(e)) => {
            r.artifacts = e.artifacts().map(PathBuf::from);
            let reason = e.to_string();
            r.outcome = match e.kind() {
                Kind::KernelFailure => Outcome::KernelFailure { reason },
                Kind::Fail => Outcome::Fail { reason },
                _ => Outcome::InfraFailure { reason },
            };
        }
        Err(_) => {
            r.outcome = Outcome::Fail {
                reason: format!("the scenario did not finish within {limit:?}"),
            }
        }
    }
    r.duration = t0.elapsed();
    if let Some(dir) = &opts.out {
        write_outputs(dir, &r);
    }
    r
}

/// `<name>.report.yaml` and `<name>.metrics.json`, as soon as a scenario ends (an interrupted run
/// keeps the finished ones).
fn write_outputs(dir: &Path, r: &ScenarioResult) {
    if let Some(report) = &r.report {
        let _ = std::fs::write(
            dir.join(format!("{}.report.yaml", r.name)),
            serde_saphyr::to_string(report).unwrap_or_default(),
        );
    }
    if let Some(m) = &r.metrics {
        let _ = std::fs::write(
            dir.join(format!("{}.metrics.json", r.name)),
            serde_json::to_string_pretty(m).unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Collected;

    /// Panics on the scenario named `panics`, passes the others without a VM.
    struct Stand;
    impl Runner for Stand {
        async fn run(&self, l: &Loaded, _plan: &Plan) -> Result<Ran, GuestError> {
            assert_ne!(l.scenario.name(), "panics", "a bug in the harness");
            let guest = crate::scenario::fake_guest();
            crate::scenario::engine::drive(&l.scenario, &crate::scenario::fake_plan(), guest).await
        }
    }

    /// Records the order scenarios start in.
    #[derive(Default)]
    struct Order(std::sync::Mutex<Vec<String>>);

    impl Runner for Order {
        async fn run(&self, l: &Loaded, _plan: &Plan) -> Result<Ran, GuestError> {
            self.0.lock().unwrap().push(l.scenario.name().to_string());
            // Give a later scenario every chance to start first, were the order not kept.
            tokio::task::yield_now().await;
            let guest = crate::scenario::fake_guest();
            crate::scenario::engine::drive(&l.scenario, &crate::scenario::fake_plan(), guest).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_at_a_time_runs_them_in_the_order_given() {
        let names: Vec<String> = (0..24).map(|i| format!("s{i:02}")).collect();
        let order = Arc::new(Order::default());
        run_with(
            order.clone(),
            Arc::new(crate::scenario::fake_plan()),
            names.iter().map(|n| loaded(n)).collect(),
            RunOptions {
                parallel: 1,
                snapshots: None,
                out: None,
                results: None,
            },
            Arc::new(Collected::default()),
        )
        .await;
        assert_eq!(*order.0.lock().unwrap(), names);
    }

    fn loaded(name: &str) -> Loaded {
        let yaml = format!("name: {name}\ndescription: d\nsteps:\n  - open_device: {{}}\n");
        Loaded {
            file: format!("scenarios/{name}.yaml").into(),
            scenario: crate::scenario::parse("t.yaml", &yaml).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_scenario_that_panics_is_an_error_row_and_the_others_are_reported() {
        let sink = Arc::new(Collected::default());
        let opts = RunOptions {
            parallel: 2,
            snapshots: None,
            out: None,
            results: None,
        };
        let results = run_with(
            Arc::new(Stand),
            Arc::new(crate::scenario::fake_plan()),
            vec![loaded("first"), loaded("panics"), loaded("last")],
            opts,
            sink.clone(),
        )
        .await;
        let rows: Vec<_> = results
            .iter()
            .map(|r| (r.name.as_str(), r.outcome.kind()))
            .collect();
        assert_eq!(
            rows,
            [
                ("first", Kind::Pass),
                ("panics", Kind::InfraFailure),
                ("last", Kind::Pass)
            ]
        );
        assert!(
            results[1].outcome.reason().contains("panicked: assertion"),
            "{:?}",
            results[1].outcome
        );
        let events = sink.0.lock().unwrap();
        let finished = events
            .iter()
            .filter(|e| matches!(e, Event::ScenarioFinished { .. }))
            .count();
        assert_eq!(finished, 3);
        assert!(matches!(events.last(), Some(Event::RunFinished)));
    }
}
