//! `luo-harness bisect --good REV --bad REV [--tree PATH] SCENARIO...`: the first commit that
//! breaks the scenarios, by `git bisect run` on a private clone; and `bisect-step`, what each step
//! of it runs (hidden: git calls it, not people).

use super::args::{BuildArgs, parse_spec};
use super::failed::Failed;
use super::terminal::Terminal;
use super::{check, collect};
use clap::Args;
use luo_harness::bisect::{self, BisectOptions, MetricBisect, StepOptions};
use luo_harness::outcome::exit;
use luo_harness::scenario::snapshot::Snapshots;
use luo_harness::vm::accel::AccelChoice;
use luo_kernels::spec::KernelSpec;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs of each kernel per attempt of a bisect on a figure.
const DEFAULT_METRIC_RUNS: u32 = 12;

/// What both the bisect and each of its steps take.
#[derive(Args, Clone)]
pub struct Common {
    /// Scenario files or directories: the commit is bad if any fails.
    #[arg(required_unless_present = "metric", conflicts_with = "metric")]
    paths: Vec<PathBuf>,
    /// Runs of each scenario per commit, bad if any run fails (for flaky regressions; default 1);
    /// with --metric, runs of each kernel per attempt (default 12).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: Option<u32>,
    /// Judge each commit by a figure instead of scenarios: measured alternately with the good
    /// endpoint, bad when significantly worse by more than --threshold (blackout_ms,
    /// slab_bytes_per_session, ...; an unknown name lists them).
    #[arg(long, value_name = "NAME", value_parser = metric_name)]
    metric: Option<String>,
    /// Percent: how much worse the figure may get before a commit is bad (with --metric).
    #[arg(long, default_value_t = 5.0, value_name = "PCT", requires = "metric")]
    threshold: f64,
    /// Sessions each measurement creates (with --metric).
    #[arg(long, default_value_t = 100, requires = "metric",
          value_parser = clap::value_parser!(u32).range(1..=500_000))]
    sessions: u32,
    /// One-page memfds each measurement preserves (with a per-file --metric).
    #[arg(long, default_value_t = 100, requires = "metric",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    files: u32,
    /// Confidence of each call (with --metric).
    #[arg(long, default_value_t = 0.95, requires = "metric")]
    confidence: f64,
    /// More attempts, each adding --runs more of both kernels, for a commit whose figure is within
    /// the noise of the threshold, before it is called by its estimate (with --metric).
    #[arg(long, default_value_t = 2, requires = "metric", value_parser = clap::value_parser!(u32).range(0..=10))]
    retries: u32,
    /// Boot this kernel and kexec into the commit under test: bisects the target of a live update.
    #[arg(long, value_name = "SPEC", value_parser = parse_spec)]
    kexec_from: Option<KernelSpec>,
    /// Snapshot directory (default: `snapshots/` beside the scenarios', when it exists).
    #[arg(long, value_name = "DIR")]
    snapshots: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    #[command(flatten)]
    build: BuildArgs,
}

impl Common {
    fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Some(r) = self.runs {
            w.extend(["--runs".to_string(), r.to_string()]);
        }
        if let Some(m) = &self.metric {
            w.extend(["--metric".into(), m.clone()]);
            w.extend(["--threshold".into(), self.threshold.to_string()]);
            w.extend(["--sessions".into(), self.sessions.to_string()]);
            w.extend(["--files".into(), self.files.to_string()]);
            w.extend(["--confidence".into(), self.confidence.to_string()]);
            w.extend(["--retries".into(), self.retries.to_string()]);
        }
        if let Some(k) = &self.kexec_from {
            w.extend(["--kexec-from".into(), k.to_string()]);
        }
        if let Some(s) = &self.snapshots {
            w.extend(["--snapshots".into(), abs(s)]);
        }
        if self.accel != AccelChoice::Auto {
            w.extend(["--accel".into(), format!("{:?}", self.accel).to_lowercase()]);
        }
        w.extend(self.build.words());
        w.push("--".into());
        w.extend(self.paths.iter().map(abs));
        w
    }
}

fn metric_name(s: &str) -> Result<String, String> {
    luo_harness::measure::metric::find(s)
        .map(|m| m.name.to_string())
        .map_err(|e| e.to_string())
}

/// The fewest runs that can call a change at this confidence.
fn check_runs(c: &Common) -> Result<(), Failed> {
    if c.metric.is_none() {
        return Ok(());
    }
    if !(c.confidence > 0.5 && c.confidence < 1.0) {
        return Err(Failed::bad_input(format!(
            "--confidence {}: between 0.5 and 1, e.g. 0.95",
            c.confidence
        )));
    }
    let min = luo_harness::measure::stats::min_runs(1.0 - c.confidence);
    match c.runs {
        Some(r) if (r as usize) < min => Err(Failed::bad_input(format!(
            "--runs {r} is too few to call a change at {}% confidence: at least {min}",
            c.confidence * 100.0
        ))),
        _ => Ok(()),
    }
}

/// git runs the step in its own directory: every path it gets is absolute.
fn abs(p: &PathBuf) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.clone())
        .display()
        .to_string()
}

#[derive(Args)]
pub struct BisectArgs {
    /// A commit where the scenarios pass.
    #[arg(long)]
    good: String,
    /// A commit where they fail.
    #[arg(long)]
    bad: String,
    /// The git repository (default: the current directory); only read, never written.
    #[arg(long, value_name = "PATH", default_value = ".")]
    tree: PathBuf,
    /// Where the bisect log, each step's results and the run's output go.
    #[arg(long, default_value = "luo-reports/bisect")]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct StepArgs {
    #[arg(long)]
    repo: PathBuf,
    /// The commit under test (default: BISECT_HEAD of the repository git runs the step in).
    #[arg(long)]
    commit: Option<String>,
    #[arg(long)]
    out: PathBuf,
    /// With --metric: the good endpoint's commit, measured beside every step's.
    #[arg(long, requires = "metric")]
    metric_good: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// The first bad commit's figure against the good endpoint's: both distributions.
fn metric_text(m: &luo_harness::bisect::MetricRecord) -> String {
    let list = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let median = luo_harness::measure::stats::median;
    let mut s = format!(
        "{} at N={} ({}), good endpoint: median {:.1}  [{}]\n{} at N={} ({}), first bad:     median {:.1}  [{}]\n",
        m.metric,
        m.sessions,
        m.unit,
        median(&m.good_values),
        list(&m.good_values),
        m.metric,
        m.sessions,
        m.unit,
        median(&m.commit_values),
        list(&m.commit_values)
    );
    if let Some(c) = &m.change
        && let (Some(rel), Some((lo, hi))) = (c.relative, c.relative_interval)
    {
        s.push_str(&format!(
            "change {:+.1}% [{:+.1}%, {:+.1}%], threshold {:.1}%, {} attempt(s){}\n",
            rel * 100.0,
            lo * 100.0,
            hi * 100.0,
            m.threshold * 100.0,
            m.attempts,
            if m.called_by_estimate {
                ", called by its estimate (still within the noise)"
            } else {
                ""
            }
        ));
    }
    s
}

pub async fn bisect(a: BisectArgs) -> Result<u8, Failed> {
    // Bad input is found now, not at the first step.
    check_runs(&a.common)?;
    if a.common.metric.is_none() {
        let files = collect::files(&a.common.paths)?;
        if let Err(problems) =
            collect::load_all_for(&files, a.common.build.arch.unwrap_or_default())
        {
            return Ok(check::report_invalid(problems, files.len()));
        }
    }
    let exe =
        std::env::current_exe().map_err(|e| Failed::infra(format!("finding this program: {e}")))?;
    let out = std::path::absolute(&a.out).unwrap_or_else(|_| a.out.clone());
    let repo = std::fs::canonicalize(&a.tree).map_err(|e| Failed::io(&a.tree, e))?;
    let mut step_command = vec![
        exe.display().to_string(),
        "bisect-step".into(),
        "--repo".into(),
        repo.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if a.common.metric.is_some() {
        // Every step measures the good endpoint beside its commit: the same commit for all.
        let good = luo_kernels::git::resolve(&repo, &a.good)?;
        step_command.extend(["--metric-good".into(), good]);
    }
    step_command.extend(a.common.words());
    let o = BisectOptions {
        repo,
        good: a.good,
        bad: a.bad,
        step_command,
        out,
    };
    let r = bisect::bisect(&o, &Terminal::default()).await?;
    match &r.first_bad {
        Some((_, described)) => {
            println!("first bad commit: {described}");
            if let Some(f) = &r.failure {
                println!("what failed there: {f}");
            }
            if let Some(d) = &r.diff {
                println!("--- the report, last good commit against the first bad ---\n{d}");
            }
            if let Some(m) = &r.metric {
                print!("{}", metric_text(m));
            }
        }
        None if r.aborted => {
            println!("the bisect stopped: a step could not test its commit (see the log)")
        }
        None => println!("no first bad commit could be named (only skipped commits were left)"),
    }
    for st in &r.steps {
        println!(
            "step {}  {:<5} {:6.1} s",
            &st.commit[..12.min(st.commit.len())],
            st.verdict,
            st.seconds
        );
    }
    if !r.skipped.is_empty() {
        println!("skipped (could not be tested): {}", r.skipped.join(", "));
    }
    println!("bisect log: {}", r.log.display());
    println!("steps' results: {}", o.out.join("steps").display());
    Ok(match (&r.first_bad, r.aborted) {
        (Some(_), _) => exit::PASS,
        (None, true) => exit::KERNEL_OR_VM,
        (None, false) => exit::FAIL,
    })
}

pub async fn step(a: StepArgs) -> Result<u8, Failed> {
    // git started us: when git goes, so do we, and our VMs with us (SIGTERM reaches the handler).
    // SAFETY: plain syscall.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let commit = match a.commit {
        Some(c) => c,
        None => {
            let out = std::process::Command::new("git")
                .args(["rev-parse", "BISECT_HEAD"])
                .output()
                .map_err(|e| Failed::infra(format!("git rev-parse BISECT_HEAD: {e}")))?;
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let (files, loaded) = if a.common.metric.is_some() {
        (Vec::new(), Vec::new())
    } else {
        let files = collect::files(&a.common.paths)?;
        match collect::load_all_for(&files, a.common.build.arch.unwrap_or_default()) {
            Ok(v) => (files, v),
            Err(problems) => {
                return Ok(check::report_invalid(problems, files.len()).max(exit::BISECT_ABORT));
            }
        }
    };
    let metric = match (&a.common.metric, &a.metric_good) {
        (Some(name), Some(good)) => Some(MetricBisect {
            metric: luo_harness::measure::metric::find(name)
                .map_err(|e| Failed::bad_input(e.to_string()))?,
            threshold: a.common.threshold / 100.0,
            sessions: a.common.sessions,
            files: a.common.files,
            runs: a.common.runs.unwrap_or(DEFAULT_METRIC_RUNS),
            confidence: a.common.confidence,
            retries: a.common.retries,
            good: good.clone(),
        }),
        (Some(_), None) => {
            return Err(Failed::bad_input(
                "bisect-step --metric needs --metric-good".into(),
            ));
        }
        _ => None,
    };
    let snapshots = a
        .common
        .snapshots
        .clone()
        .or_else(|| files.first().and_then(|f| collect::default_snapshots(f)))
        .map(|root| Snapshots {
            root,
            write_new: false,
        });
    let o = StepOptions {
        repo: a.repo,
        commit: commit.clone(),
        scenarios: loaded,
        runs: a.common.runs.unwrap_or(1),
        kexec_from: a.common.kexec_from.clone(),
        build: a.common.build.template()?,
        snapshots,
        accel: a.common.accel,
        out: a.out,
        metric,
    };
    let code = bisect::step(&o, Arc::new(Terminal::default())).await;
    let short = &commit[..commit.len().min(12)];
    let word = match code {
        0 => "good",
        exit::BISECT_SKIP => "skip",
        c if c > 127 => "abort",
        _ => "bad",
    };
    println!("bisect-step {short}: {word}");
    Ok(code)
}
