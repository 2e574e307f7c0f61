//! Runs a validated scenario on a booted guest: each step in order until one fails, then the
//! kernel log and the identity summary, and the outcome.

use super::context::{StepContext, StepFailure};
use super::driver::GuestDriver;
use super::model::Scenario;
use super::report::{BootFacts, KernelFacts, Metrics, Report};
use super::watch::GcovCapture;
use crate::guest::GuestError;
use crate::outcome::Outcome;
use crate::plan::Plan;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use tracing::Instrument;

/// What a scenario that ran to its end (pass, fail or skip) produced.
#[derive(Debug, Clone)]
pub struct Ran {
    pub report: Report,
    pub metrics: Metrics,
    pub outcome: Outcome,
    /// The VM's artifacts, kept when the scenario did not pass.
    pub artifacts: Option<PathBuf>,
    /// The gcov counters of every boot of a gcov kernel, as read at its last checkpoint.
    pub gcov: Vec<GcovCapture>,
}

/// The result of a scenario that did not start: skipped before any VM, for `why`.
pub fn skipped_before_boot(scenario: &Scenario, plan: &Plan, why: String) -> Ran {
    let mut report = first_report_of(scenario, plan, String::new());
    report.skipped = Some(why.clone());
    Ran {
        report,
        metrics: Metrics {
            scenario: scenario.name().to_string(),
            ..Default::default()
        },
        outcome: Outcome::Skip { reason: why },
        artifacts: None,
        gcov: vec![],
    }
}

fn first_report(scenario: &Scenario, plan: &Plan, hello: &luo_protocol::Hello) -> Report {
    let mut r = first_report_of(scenario, plan, hello.boot.release.clone());
    r.boots = vec![BootFacts::from_hello(0, hello)];
    r
}

/// The report before any step, of a kernel that said it is `release` (none before a boot).
fn first_report_of(scenario: &Scenario, plan: &Plan, release: String) -> Report {
    Report {
        scenario: scenario.name().to_string(),
        description: scenario.description.trim().to_string(),
        kernel: KernelFacts {
            release,
            variant: plan.boot.variant.clone(),
            source: plan.boot.source.clone(),
            flavour: (!plan.boot.flavour.is_plain()).then(|| plan.boot.flavour.to_string()),
            arch: (plan.boot.arch != luo_kernels::Arch::X86_64).then(|| plan.boot.arch.to_string()),
        },
        boots: vec![],
        steps: vec![],
        observations: BTreeMap::new(),
        session_identity: vec![],
        memory: vec![],
        kernel_log: vec![],
        findings: vec![],
        handover: vec![],
        subtests: vec![],
        failures: vec![],
        skipped: None,
        passed: false,
    }
}

/// Runs every step on `guest`, which has said its first hello; stops at the first unmet
/// expectation. A VM failure is the error; anything the scenario can say is in the report.
pub async fn drive<G: GuestDriver>(
    scenario: &Scenario,
    plan: &Plan,
    guest: G,
) -> Result<Ran, GuestError> {
    let report = first_report(scenario, plan, guest.hello());
    let metrics = Metrics {
        scenario: report.scenario.clone(),
        boots_ms: vec![guest.first_boot().as_secs_f64() * 1000.0],
        first_boot: guest.start(),
        ..Default::default()
    };
    let mut cx = StepContext::new(guest, plan, &scenario.requires, report, metrics);
    cx.dir = scenario.dir();
    if let Some(i) = plan.initrd_for(scenario.shell) {
        cx.initrd = i.to_path_buf();
    }
    let mut skipped = None;
    let mut vm_failure = None;
    match cx.unmet_requirements().await {
        Ok(why) => skipped = why.map(|w| format!("boot 0: {w}")),
        Err(StepFailure::Vm(e)) => vm_failure = Some(*e),
        Err(other) => cx
            .report
            .failures
            .push(format!("checking requirements: {other:?}")),
    }
    if skipped.is_none() && vm_failure.is_none() && cx.report.failures.is_empty() {
        for step in &scenario.steps {
            let line = step.referenced.line();
            let keyword = step.value.keyword();
            let t0 = Instant::now();
            let span = tracing::info_span!("step", line, keyword, boot = cx.guest.boot_index());
            cx.line = line;
            cx.enter_step(format!("L{line} {keyword}"));
            let result = step.value.run(&mut cx).instrument(span).await;
            cx.metrics.steps_ms.push((
                format!("L{line} {keyword}"),
                t0.elapsed().as_secs_f64() * 1000.0,
            ));
            match result {
                Ok(summary) => cx.report.steps.push(format!("L{line} {summary}")),
                Err(StepFailure::Vm(e)) => {
                    vm_failure = Some(*e);
                    break;
                }
                Err(StepFailure::Skip(why)) => {
                    skipped = Some(why);
                    break;
                }
                Err(f) => {
                    let msg = f
                        .located(line, keyword)
                        .expect("a check failure has a line");
                    cx.report.steps.push(msg.clone());
                    cx.report.failures.push(msg);
                    break;
                }
            }
        }
    }
    if let Some(e) = vm_failure {
        cx.guest.keep_artifacts();
        return Err(e.with_reports(cx.console_reports()));
    }
    cx.enter_step("end".into());
    match cx.checkpoint("end").await {
        Ok(()) => {}
        Err(StepFailure::Vm(e)) => {
            cx.guest.keep_artifacts();
            return Err(*e);
        }
        Err(other) => cx
            .report
            .failures
            .push(format!("reading the kernel log: {other:?}")),
    }
    cx.conclude_findings();
    cx.summarise_identity();
    let gcov = cx.watch.iter().filter_map(GcovCapture::of).collect();
    let StepContext {
        mut guest,
        mut report,
        metrics,
        ..
    } = cx;
    report.skipped = skipped.clone();
    report.passed = skipped.is_none()
        && report.failures.is_empty()
        && report.kernel_log.is_empty()
        && report.findings.is_empty();
    let outcome = match (&skipped, report.passed) {
        (Some(why), _) => Outcome::Skip {
            reason: why.clone(),
        },
        (None, true) => Outcome::Pass,
        (None, false) => {
            let finding = report.findings.first().map(|f| {
                let more = match report.findings.len() {
                    1 => String::new(),
                    n => format!(" (and {} more findings)", n - 1),
                };
                format!("boot {}, {}: {}{more}", f.boot, f.step, f.title)
            });
            let first = report
                .failures
                .first()
                .cloned()
                .or(finding)
                .or(report.kernel_log.first().cloned())
                .unwrap_or_default();
            Outcome::Fail {
                // Lost or refused state is the finding; the failing step follows from it.
                reason: match report.handover.first() {
                    Some(h) => format!("live update: {h}; then {first}"),
                    None => first,
                },
            }
        }
    };
    let artifacts = if outcome.passed() {
        None
    } else {
        guest.keep_artifacts();
        guest.artifacts()
    };
    if outcome.passed() {
        guest.power_off().await?;
    } else {
        // The outcome is decided; a VM that will not power off changes nothing about it.
        let _ = guest.power_off().await;
    }
    Ok(Ran {
        report,
        metrics,
        outcome,
        artifacts,
        gcov,
    })
}
