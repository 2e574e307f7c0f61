//! `luo-harness bisect`: which commit broke live update. `git bisect run` drives a private, bare
//! clone of the user's repository (`git clone --shared`: the user's objects, read through
//! alternates; nothing in the repository, `.git` included, is written, and an interrupted bisect
//! leaves it exactly as it was). Each step ([`step`]) builds the commit (cached by its tree,
//! incremental in its family's staged tree), boots it and runs the scenarios, and answers in git's
//! terms (outcome::exit::bisect): good, bad, skip (does not build), or abort (the harness failed).

use crate::events::{Event, EventSink};
use crate::measure::metric::Per;
use crate::measure::stats::{self, Change};
use crate::measure::{Metric, Side, metric};
use crate::outcome::{Kind, Outcome, exit};
use crate::plan::{self, Needs, PlanRequest};
use crate::run::{Loaded, RunOptions, run_all};
use crate::scenario::snapshot::{self, Snapshots};
use crate::vm::process::Child;
use luo_kernels::spec::KernelSpec;
use luo_kernels::{BuildRequest, Cache, KernelError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What one step decided for one commit, kept in `<out>/steps/<commit>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub commit: String,
    /// good, bad, skip, abort.
    pub verdict: String,
    /// Build, boot and scenarios, in seconds.
    #[serde(default)]
    pub seconds: f64,
    /// Per scenario and run: its outcome and report.
    pub results: Vec<StepResult>,
    /// In a bisect on a figure: the figure's runs on the good endpoint and on this commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricRecord>,
}

/// A bisect on a figure (`bisect --metric`): each commit is measured alternately with the good
/// endpoint, and called bad when the figure got significantly worse by more than the threshold.
#[derive(Debug, Clone)]
pub struct MetricBisect {
    pub metric: &'static Metric,
    /// How much worse is bad: 0.05 = 5%.
    pub threshold: f64,
    pub sessions: u32,
    /// Memfds each VM preserves, for a per-file figure.
    pub files: u32,
    /// Runs of each kernel per attempt.
    pub runs: u32,
    pub confidence: f64,
    /// Attempts after the first, each adding `runs` more of both, while the figure is within the
    /// noise of the threshold.
    pub retries: u32,
    /// The good endpoint's commit, which every step measures beside its own.
    pub good: String,
}

/// What a step of a bisect on a figure measured and how it decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRecord {
    pub metric: String,
    pub unit: String,
    pub sessions: u32,
    pub threshold: f64,
    pub good_values: Vec<f64>,
    pub commit_values: Vec<f64>,
    pub change: Option<Change>,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
    /// The interval still straddled the threshold after every retry: called by its estimate.
    pub called_by_estimate: bool,
}

/// Good, bad or not yet known, from one figure's change.
fn judge(c: &Change, threshold: f64) -> Option<bool> {
    if c.worse_by_more_than(threshold) {
        return Some(false);
    }
    match c.relative_interval {
        // A zero base that did not get significantly worse.
        None => Some(true),
        Some((_, hi)) if hi <= threshold => Some(true),
        Some(_) => None,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub scenario: String,
    pub run: u32,
    pub outcome: Outcome,
    pub report: Option<crate::scenario::Report>,
}

pub struct StepOptions {
    pub repo: PathBuf,
    pub commit: String,
    pub scenarios: Vec<Loaded>,
    /// Runs of each scenario; any failure makes the commit bad (flaky regressions).
    pub runs: u32,
    /// Boot this kernel and kexec into the commit under test, instead of booting the commit.
    pub kexec_from: Option<KernelSpec>,
    pub build: BuildRequest,
    pub snapshots: Option<Snapshots>,
    pub accel: crate::vm::accel::AccelChoice,
    pub out: PathBuf,
    /// Judge the commit by a figure instead of by scenarios.
    pub metric: Option<MetricBisect>,
}

fn verdict(code: u8) -> &'static str {
    match code {
        0 => "good",
        exit::BISECT_SKIP => "skip",
        c if c > 127 => "abort",
        _ => "bad",
    }
}

/// One commit: build, boot, run; the exit code for `git bisect run`.
pub async fn step(o: &StepOptions, sink: Arc<dyn EventSink>) -> u8 {
    let commit = KernelSpec::Git {
        repo: o.repo.clone(),
        rev: o.commit.clone(),
    };
    let (kernel, next) = match &o.kexec_from {
        Some(from) => (from.clone(), Some(commit)),
        None => (commit, None),
    };
    let req = PlanRequest {
        kernel,
        next,
        build: o.build.clone(),
        accel: Some(o.accel),
        ..Default::default()
    };
    let mut needs = Needs::default();
    for l in &o.scenarios {
        l.scenario.needs(o.build.arch, &mut needs);
    }
    let started = std::time::Instant::now();
    let mut record = StepRecord {
        commit: o.commit.clone(),
        verdict: String::new(),
        seconds: 0.0,
        results: vec![],
        metric: None,
    };
    let kinds: Vec<Kind> = match plan::resolve(&req, &needs, &*sink).await {
        Ok(p) if o.metric.is_some() => {
            let m = o.metric.as_ref().expect("checked");
            match metric_step(o, m, &p, &*sink).await {
                Ok((good, rec)) => {
                    record.metric = Some(rec);
                    vec![if good { Kind::Pass } else { Kind::Fail }]
                }
                Err(reason) => {
                    record.results.push(StepResult {
                        scenario: format!("(measuring {})", m.metric.name),
                        run: 0,
                        outcome: Outcome::InfraFailure {
                            reason: reason.clone(),
                        },
                        report: None,
                    });
                    vec![Kind::InfraFailure]
                }
            }
        }
        Err(e) => {
            use crate::outcome::Classify;
            let kind = e.kind();
            record.results.push(StepResult {
                scenario: "(plan)".into(),
                run: 0,
                outcome: match kind {
                    Kind::InfraFailure => Outcome::InfraFailure {
                        reason: e.to_string(),
                    },
                    _ => Outcome::BuildFailure {
                        reason: e.to_string(),
                    },
                },
                report: None,
            });
            // A commit whose kernel does not build, or lacks an option the harness needs, is
            // untestable, not bad.
            vec![if kind == Kind::InfraFailure {
                kind
            } else {
                Kind::BuildFailure
            }]
        }
        Ok(p) => {
            let p = Arc::new(p);
            let mut kinds = Vec::new();
            for run in 0..o.runs {
                let opts = RunOptions {
                    parallel: 1,
                    snapshots: o.snapshots.clone(),
                    out: None,
                    results: None,
                };
                for r in run_all(p.clone(), o.scenarios.clone(), opts, sink.clone()).await {
                    kinds.push(r.outcome.kind());
                    record.results.push(StepResult {
                        scenario: r.name,
                        run,
                        outcome: r.outcome,
                        report: r.report,
                    });
                }
            }
            kinds
        }
    };
    let code = exit::bisect(kinds);
    record.verdict = verdict(code).into();
    record.seconds = started.elapsed().as_secs_f64();
    let dir = o.out.join("steps");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(format!("{}.json", o.commit)),
        serde_json::to_vec_pretty(&record).expect("records serialise"),
    );
    code
}

/// Measures the commit (`plan`) against the good endpoint, alternately, retrying while the figure
/// is within the noise of the threshold; true when the commit is good. An error is the harness's
/// (the good endpoint did not build, a VM failed): the step aborts.
async fn metric_step(
    o: &StepOptions,
    m: &MetricBisect,
    plan: &plan::Plan,
    sink: &dyn EventSink,
) -> Result<(bool, MetricRecord), String> {
    let good_req = PlanRequest {
        kernel: KernelSpec::Git {
            repo: o.repo.clone(),
            rev: m.good.clone(),
        },
        build: o.build.clone(),
        accel: Some(o.accel),
        ..Default::default()
    };
    let good_plan = plan::resolve(&good_req, &Needs::default(), sink)
        .await
        .map_err(|e| format!("the good endpoint {}: {e}", m.good))?;
    let sides = [
        Side {
            label: "good".into(),
            plan: &good_plan,
        },
        Side {
            label: "commit".into(),
            plan,
        },
    ];
    let alpha = 1.0 - m.confidence;
    // Files cost time in every VM: preserved only when the figure is theirs.
    let files = if m.metric.per == Per::File {
        m.files
    } else {
        0
    };
    let mut samples = Vec::new();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let more = crate::measure::alternate(&sides, &[m.sessions], files, m.runs, "bisect", sink)
            .await
            .map_err(|e| e.to_string())?;
        samples.extend(more);
        let good_values = metric::values(m.metric, &samples, "good", m.sessions);
        let commit_values = metric::values(m.metric, &samples, "commit", m.sessions);
        let resolution = metric::resolution(m.metric, &samples, m.sessions);
        let change = stats::change(
            &good_values,
            &commit_values,
            alpha,
            m.metric.better,
            resolution,
        );
        let judged = change.as_ref().and_then(|c| judge(c, m.threshold));
        let last = attempts > m.retries;
        if judged.is_some() || last {
            let good = judged.unwrap_or_else(|| {
                change
                    .as_ref()
                    .is_none_or(|c| !c.worse_by_more_than(m.threshold))
            });
            return Ok((
                good,
                MetricRecord {
                    metric: m.metric.name.into(),
                    unit: m.metric.unit.into(),
                    sessions: m.sessions,
                    threshold: m.threshold,
                    good_values,
                    commit_values,
                    change,
                    attempts,
                    called_by_estimate: judged.is_none(),
                },
            ));
        }
        sink.emit(Event::Note(format!(
            "bisect: {} of {} is within the noise of {:.1}%: measuring {} more runs of each",
            m.metric.name,
            &o.commit[..o.commit.len().min(12)],
            m.threshold * 100.0,
            m.runs
        )));
    }
}

pub struct BisectOptions {
    pub repo: PathBuf,
    pub good: String,
    pub bad: String,
    /// What `git bisect run` runs: this binary's `bisect-step` with the same options.
    pub step_command: Vec<String>,
    pub out: PathBuf,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BisectError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Git(#[from] KernelError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("git bisect: {0}")]
    Bisect(String),
}

impl crate::outcome::Classify for BisectError {
    fn kind(&self) -> Kind {
        match self {
            BisectError::Git(e) => crate::outcome::Classify::kind(e),
            BisectError::Io { .. } | BisectError::Bisect(_) => Kind::InfraFailure,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Bisected {
    /// The first bad commit, described (hash, subject, author, date), when git named one.
    pub first_bad: Option<(String, String)>,
    /// What the first bad commit's failing scenario said.
    pub failure: Option<String>,
    /// The failing scenario's report, last good against first bad.
    pub diff: Option<String>,
    /// In a bisect on a figure: the first bad commit's measurement against the good endpoint.
    pub metric: Option<MetricRecord>,
    /// Commits skipped because they could not be tested.
    pub skipped: Vec<String>,
    /// `git bisect run` stopped because a step aborted (the harness, not the commit).
    pub aborted: bool,
    /// Every step, in the order git ran them.
    pub steps: Vec<StepRecord>,
    pub log: PathBuf,
    pub output: String,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, BisectError> {
    let out = luo_kernels::git::command()
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|source| BisectError::Io {
            what: "running git".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(BisectError::Bisect(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every step's record, in the order they were written.
fn records_in_order(out: &Path) -> Vec<StepRecord> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(out.join("steps"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, p)| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect()
}

fn record(out: &Path, commit: &str) -> Option<StepRecord> {
    serde_json::from_slice(&std::fs::read(out.join("steps").join(format!("{commit}.json"))).ok()?)
        .ok()
}

pub async fn bisect(o: &BisectOptions, sink: &dyn EventSink) -> Result<Bisected, BisectError> {
    let good = luo_kernels::git::resolve(&o.repo, &o.good)?;
    let bad = luo_kernels::git::resolve(&o.repo, &o.bad)?;
    let cache = Cache::from_env();
    let io = |what: &str| {
        let what = what.to_string();
        move |source| BisectError::Io { what, source }
    };
    std::fs::create_dir_all(&o.out).map_err(io("creating the bisect directory"))?;
    let _ = std::fs::remove_dir_all(o.out.join("steps"));
    // Removed on every way out, an error included.
    let scratch = luo_kernels::git::ScratchClone::new(&cache, &o.repo)?;
    let clone = scratch.path();
    git(clone, &["bisect", "start", "--no-checkout", &bad, &good])?;
    let log_path = o.out.join("bisect-run.log");
    let log = std::fs::File::create(&log_path).map_err(io("creating bisect-run.log"))?;
    let mut cmd = luo_kernels::git::command();
    cmd.arg("-C")
        .arg(clone)
        .args(["bisect", "run"])
        .args(&o.step_command)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(io("bisect-run.log"))?)
        .stderr(log);
    // In this process group: Ctrl-C reaches every step, which stops its own VMs.
    let mut child =
        Child::spawn_in_group(cmd, "git bisect run").map_err(io("starting git bisect run"))?;
    let mut seen = 0;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.map_err(io("waiting for git bisect run"))?,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in text.lines().skip(seen) {
            if line.starts_with("Bisecting:")
                || line.starts_with("bisect-step ")
                || line.contains("is the first bad commit")
            {
                sink.emit(Event::Note(format!("bisect: {line}")));
            }
        }
        seen = text.lines().count();
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let bisect_log = git(clone, &["bisect", "log"]).unwrap_or_default();
    let log = o.out.join("bisect.log");
    std::fs::write(&log, &bisect_log).map_err(io("writing bisect.log"))?;
    let first_bad = output
        .lines()
        .find_map(|l| l.strip_suffix(" is the first bad commit"))
        .map(|h| h.trim().to_string());
    let skipped: Vec<String> = bisect_log
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# skip: [")?
                .split(']')
                .next()
                .map(String::from)
        })
        .collect();
    let goods: Vec<String> = bisect_log
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# good: [")?
                .split(']')
                .next()
                .map(String::from)
        })
        .collect();
    let _ = git(clone, &["bisect", "reset"]);
    drop(scratch);
    let aborted = !status.success() && first_bad.is_none();
    let steps = records_in_order(&o.out);
    let mut result = Bisected {
        first_bad: None,
        failure: None,
        diff: None,
        metric: None,
        skipped,
        aborted,
        steps,
        log,
        output,
    };
    let Some(bad_commit) = first_bad else {
        return Ok(result);
    };
    result.first_bad = Some((
        bad_commit.clone(),
        luo_kernels::git::describe(&o.repo, &bad_commit).unwrap_or_default(),
    ));
    let bad_record = record(&o.out, &bad_commit);
    result.metric = bad_record.as_ref().and_then(|r| r.metric.clone());
    let failed = bad_record.as_ref().and_then(|r| {
        r.results
            .iter()
            .find(|x| !x.outcome.passed() && x.outcome.kind() != Kind::Skip)
            .cloned()
    });
    if let Some(f) = &failed {
        result.failure = Some(format!(
            "{}: {} {}",
            f.scenario,
            f.outcome.label(),
            f.outcome.reason()
        ));
        // The last good commit tested: the first bad's parent when it was, else the last one marked.
        let parent = git(&o.repo, &["rev-parse", &format!("{bad_commit}^")]).unwrap_or_default();
        let last_good = goods
            .iter()
            .find(|g| g.as_str() == parent.trim())
            .or(goods.last())
            .cloned();
        let good_report = last_good
            .and_then(|g| record(&o.out, &g))
            .and_then(|r| r.results.into_iter().find(|x| x.scenario == f.scenario))
            .and_then(|x| x.report);
        if let (Some(before), Some(after)) = (good_report, &f.report) {
            let (a, b) = (
                snapshot::render(&snapshot::redacted(&before)),
                snapshot::render(&snapshot::redacted(after)),
            );
            result.diff = Some(snapshot::diff(&a, &b, "last good", "first bad"));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::stats::Better;

    fn judged(good: &[f64], commit: &[f64], threshold: f64) -> Option<bool> {
        let c = stats::change(good, commit, 0.05, Better::Lower, 0.0).unwrap();
        judge(&c, threshold)
    }

    #[test]
    fn a_commit_is_bad_when_clearly_worse_good_when_clearly_within_and_retried_in_between() {
        let base = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.1];
        let plus = |d: f64| base.map(|v| v + d);
        assert_eq!(judged(&base, &plus(30.0), 0.05), Some(false), "30% worse");
        assert_eq!(judged(&base, &plus(0.0), 0.05), Some(true), "the same");
        assert_eq!(
            judged(&base, &plus(2.0), 0.05),
            Some(true),
            "worse, but by less than 5%"
        );
        // Worse by about the threshold, with the noise straddling it: not called yet.
        let noisy = [90.0, 110.0, 95.0, 105.0, 100.0, 92.0, 108.0, 100.0];
        let noisy_plus = noisy.map(|v| v + 6.0);
        assert_eq!(judged(&noisy, &noisy_plus, 0.05), None);
        // A figure that was zero and grew is bad whatever the threshold.
        assert_eq!(judged(&[0.0; 6], &[4096.0; 6], 0.5), Some(false));
    }
}
