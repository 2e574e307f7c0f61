//! `luo-harness bisect`: which commit broke live update. `git bisect run` drives a private, bare
//! clone of the user's repository (`git clone --shared`: the user's objects, read through
//! alternates; nothing in the repository, `.git` included, is written, and an interrupted bisect
//! leaves it exactly as it was). Each step ([`step`]) builds the commit (cached by its tree,
//! incremental in its family's staged tree), boots it and runs the scenarios, and answers in git's
//! terms (outcome::exit::bisect): good, bad, skip (does not build), or abort (the harness failed).

use crate::events::{Event, EventSink};
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
        l.scenario.needs(&mut needs);
    }
    let started = std::time::Instant::now();
    let mut record = StepRecord {
        commit: o.commit.clone(),
        verdict: String::new(),
        seconds: 0.0,
        results: vec![],
    };
    let kinds: Vec<Kind> = match plan::resolve(&req, &needs, &*sink).await {
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
            result.diff = Some(
                similar::TextDiff::from_lines(&a, &b)
                    .unified_diff()
                    .header("last good", "first bad")
                    .to_string(),
            );
        }
    }
    Ok(result)
}
