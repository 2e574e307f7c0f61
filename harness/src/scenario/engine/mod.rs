//! Runs a validated scenario on a booted guest and builds its [`Report`]: this module drives the
//! steps and keeps the run's state; `steps` turns each step into requests, `checks` turns what the
//! guest reports into the report's observations, identity verdicts, memory deltas and log findings.

mod checks;
mod steps;

use super::model::{Scenario, Step};
use super::report::*;
use super::subst::expand;
use crate::guest::{Guest, GuestError};
use crate::{Prepared, Vm};
use luo_protocol::{AgentError, MemorySnapshot, Reply, Request};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub struct Engine<'a> {
    guest: Guest,
    prepared: &'a Prepared,
    report: Report,
    metrics: Metrics,
    inodes: BTreeMap<(u32, u64, u64), String>,
    /// Handles that are session fds, in the current boot.
    session_handles: std::collections::BTreeSet<String>,
    /// Per boot: the inode labels of observed session fds.
    session_inodes: BTreeMap<u32, Vec<String>>,
    last_memory: Option<(String, MemorySnapshot)>,
    sizes: BTreeMap<String, u64>,
}

/// Why a step did not go as the scenario says.
enum StepFailure {
    /// The scenario's expectation was not met; the run stops here.
    Check(String),
    /// The VM itself failed.
    Vm(GuestError),
}

impl From<GuestError> for StepFailure {
    fn from(e: GuestError) -> Self {
        StepFailure::Vm(e)
    }
}

type StepResult = Result<String, StepFailure>;

impl<'a> Engine<'a> {
    pub async fn start(
        scenario: &Scenario,
        prepared: &'a Prepared,
        variant: &str,
    ) -> Result<Engine<'a>, GuestError> {
        let name = scenario.name.clone().unwrap_or_default();
        let mut cfg = prepared.vm_config(&name);
        // The scenario's own memory size wins over the run's.
        if let Some(m) = scenario.memory_mib {
            cfg.memory_mib = m;
        }
        if let Some(t) = scenario.step_timeout_s {
            cfg.request_timeout = Duration::from_secs(t);
        }
        let guest = Vm::boot(cfg).await?;
        let hello = guest.hello().clone();
        let report = Report {
            scenario: name.clone(),
            description: scenario.description.trim().to_string(),
            kernel: KernelFacts {
                release: hello.boot.release.clone(),
                variant: variant.to_string(),
            },
            boots: vec![BootFacts {
                boot: 0,
                liveupdate_number: hello.boot.liveupdate_number,
                kho_exec_from: hello.boot.kho_exec_from.clone(),
            }],
            steps: vec![],
            observations: BTreeMap::new(),
            session_identity: vec![],
            memory: vec![],
            kernel_log: vec![],
            failures: vec![],
            passed: false,
        };
        let metrics = Metrics {
            scenario: name,
            boots_ms: vec![guest.boots()[0].to_hello.as_secs_f64() * 1000.0],
            ..Default::default()
        };
        Ok(Engine {
            guest,
            prepared,
            report,
            metrics,
            inodes: BTreeMap::new(),
            session_handles: Default::default(),
            session_inodes: BTreeMap::new(),
            last_memory: None,
            sizes: BTreeMap::new(),
        })
    }

    /// Runs every step; stops at the first unmet expectation. A VM failure is returned as an error
    /// (exit code 3 territory), a check failure ends up in the report.
    pub async fn run(mut self, scenario: &Scenario) -> Result<(Report, Metrics), GuestError> {
        self.check_requirements(scenario);
        if self.report.failures.is_empty() {
            for step in &scenario.steps {
                match self.run_step(step).await {
                    Ok(()) => {}
                    Err(StepFailure::Check(msg)) => {
                        self.report.failures.push(msg);
                        break;
                    }
                    Err(StepFailure::Vm(e)) => return Err(e),
                }
            }
        }
        self.scan_kernel_log().await?;
        self.summarise_identity();
        let Engine {
            guest,
            mut report,
            metrics,
            ..
        } = self;
        report.passed = report.failures.is_empty() && report.kernel_log.is_empty();
        if report.passed {
            guest.power_off().await?;
        } else {
            let mut guest = guest;
            guest.keep_artifacts();
            eprintln!(
                "luo-harness: scenario {} failed; artifacts kept in {}",
                report.scenario,
                guest.artifacts().display()
            );
            let _ = guest.power_off().await;
        }
        Ok((report, metrics))
    }

    fn check_requirements(&mut self, s: &Scenario) {
        if let Some(min) = &s.requires.kernel
            && version_tuple(&self.report.kernel.release) < version_tuple(min)
        {
            self.report.failures.push(format!(
                "requires kernel >= {min}, running {}",
                self.report.kernel.release
            ));
        }
        if s.requires.config.is_empty() {
            return;
        }
        // The published config sits next to the bzImage in the cache.
        let cfg_path = self.prepared.kernel.with_file_name("config");
        let Ok(text) = std::fs::read_to_string(&cfg_path) else {
            self.report.failures.push(format!(
                "requires {:?} but the kernel's config is not available at {}",
                s.requires.config,
                cfg_path.display()
            ));
            return;
        };
        let cfg = luo_kernels::config::parse_dot_config(&text);
        for opt in &s.requires.config {
            let sym = opt.trim_start_matches("CONFIG_");
            if cfg.get(sym).map(String::as_str) != Some("y") {
                self.report
                    .failures
                    .push(format!("requires CONFIG_{sym}=y, which this kernel lacks"));
            }
        }
    }

    async fn run_step(&mut self, step: &Spanned<Step>) -> Result<(), StepFailure> {
        let line = step.referenced.line();
        if let Step::Repeat(r) = &step.value {
            let t0 = Instant::now();
            for i in 0..r.count {
                for inner in &r.steps {
                    let s = expand(&inner.value, i);
                    if let Err(e) = self.execute(&s).await {
                        return Err(match e {
                            StepFailure::Check(m) => {
                                let msg = format!(
                                    "L{} {} (repeat iteration {i} of {}): {m}",
                                    inner.referenced.line(),
                                    s.keyword(),
                                    r.count
                                );
                                self.report.steps.push(msg.clone());
                                StepFailure::Check(msg)
                            }
                            vm => vm,
                        });
                    }
                }
            }
            self.metrics.steps_ms.push((
                format!("L{line} repeat"),
                t0.elapsed().as_secs_f64() * 1000.0,
            ));
            self.report.steps.push(format!(
                "L{line} repeat x{} ({} step(s) each): ok",
                r.count,
                r.steps.len()
            ));
            return Ok(());
        }
        let t0 = Instant::now();
        let result = self.execute(&step.value).await;
        self.metrics.steps_ms.push((
            format!("L{line} {}", step.value.keyword()),
            t0.elapsed().as_secs_f64() * 1000.0,
        ));
        match result {
            Ok(summary) => {
                self.report.steps.push(format!("L{line} {summary}"));
                Ok(())
            }
            Err(StepFailure::Check(m)) => {
                let msg = format!("L{line} {}: {m}", step.value.keyword());
                self.report.steps.push(msg.clone());
                Err(StepFailure::Check(msg))
            }
            Err(e) => Err(e),
        }
    }

    /// One request with the step's `expect` applied: Ok(reply) when it succeeded as it should,
    /// Ok(None) when it failed with the expected errno.
    async fn call(
        &mut self,
        req: Request,
        expect: Option<&str>,
    ) -> Result<Option<Reply>, StepFailure> {
        let outcome = self.guest.try_request(req).await?;
        match (outcome, expect) {
            (Ok(r), None) => Ok(Some(r)),
            (Ok(_), Some(e)) => Err(StepFailure::Check(format!(
                "expected {e}, but the call succeeded"
            ))),
            (Err(err), Some(e)) if err.errno.as_deref() == Some(e) => Ok(None),
            (Err(err), _) => Err(StepFailure::Check(describe(&err, expect))),
        }
    }
}

fn describe(err: &AgentError, expect: Option<&str>) -> String {
    match (expect, &err.errno) {
        (Some(e), Some(got)) => format!("expected {e}, got {got} from {}", err.call),
        _ => err.to_string(),
    }
}

fn version_tuple(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect()
}
