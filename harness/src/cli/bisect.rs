//! `luo-harness bisect --good REV --bad REV [--tree PATH] SCENARIO...`: the first commit that
//! breaks the scenarios, by `git bisect run` on a private clone; and `bisect-step`, what each step
//! of it runs (hidden: git calls it, not people).

use super::args::{BuildArgs, parse_spec};
use super::failed::Failed;
use super::terminal::Terminal;
use super::{check, collect};
use clap::Args;
use luo_harness::bisect::{self, BisectOptions, StepOptions};
use luo_harness::outcome::exit;
use luo_harness::scenario::snapshot::Snapshots;
use luo_harness::vm::accel::AccelChoice;
use luo_kernels::spec::KernelSpec;
use std::path::PathBuf;
use std::sync::Arc;

/// What both the bisect and each of its steps take.
#[derive(Args, Clone)]
pub struct Common {
    /// Scenario files or directories: the commit is bad if any fails.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Runs of each scenario per commit; bad if any run fails (for flaky regressions).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
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
        let mut w = vec!["--runs".to_string(), self.runs.to_string()];
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
    #[command(flatten)]
    common: Common,
}

pub async fn bisect(a: BisectArgs) -> Result<u8, Failed> {
    // Bad input is found now, not at the first step.
    let files = collect::files(&a.common.paths)?;
    if let Err(problems) = collect::load_all(&files) {
        return Ok(check::report_invalid(problems, files.len()));
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
    let files = collect::files(&a.common.paths)?;
    let loaded = match collect::load_all(&files) {
        Ok(v) => v,
        Err(problems) => {
            return Ok(check::report_invalid(problems, files.len()).max(exit::BISECT_ABORT));
        }
    };
    let snapshots = a
        .common
        .snapshots
        .clone()
        .or_else(|| collect::default_snapshots(&files[0]))
        .map(|root| Snapshots {
            root,
            write_new: false,
        });
    let o = StepOptions {
        repo: a.repo,
        commit: commit.clone(),
        scenarios: loaded,
        runs: a.common.runs,
        kexec_from: a.common.kexec_from.clone(),
        build: a.common.build.template()?,
        snapshots,
        accel: a.common.accel,
        out: a.out,
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
