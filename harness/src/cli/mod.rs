//! Command-line front end: parses arguments, sets up tracing and the signal handler, renders
//! errors with miette, and turns every command's end into its exit code (luo_harness::outcome).

mod args;
mod bench;
mod bisect;
mod boot;
mod check;
mod collect;
mod compare;
mod coverage;
mod delta;
mod drive;
mod failed;
mod fuzz;
mod kernel;
mod matrix;
mod profile;
mod run;
mod setup;
mod stage;
mod terminal;

use clap::{Parser, Subcommand};
use failed::Failed;
use luo_harness::outcome::exit;
use luo_harness::timeline::Timeline;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "luo-harness",
    version,
    about = "Integration test harness for Linux live update (LUO / KHO) under QEMU",
    after_help = exit::TABLE
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up after the system packages: kernels (default + variants), the scenarios' programs,
    /// the guest image, the accelerator verdict.
    Setup(setup::SetupArgs),
    /// Stage what `setup` builds under target/luo-stage, for a nextest archive to carry to
    /// machines that build nothing (`cargo nextest archive`; README: "Running on many machines").
    Stage(stage::StageArgs),
    /// Obtain, configure, build and cache guest kernels.
    #[command(subcommand)]
    Kernel(kernel::KernelCommand),
    /// Run scenario files on the real kernel and compare each report with its snapshot.
    #[command(after_help = exit::TABLE)]
    Run(run::RunArgs),
    /// Validate scenario files without starting any VM (exit 2 on any problem).
    Check(check::CheckArgs),
    /// Print the JSON Schema of scenario files (for yaml-language-server).
    Schema,
    /// Boot a kernel with the agent, print the boot facts and the kernel log tail, power off.
    Boot(boot::BootArgs),
    /// Boot a guest and drive it with requests read from stdin (JSON, `kexec`, `quit`).
    Drive(drive::DriveArgs),
    /// Boot, kexec and show where each spent its time: the guest's instruction pointer sampled
    /// over QMP and named from the kernel's System.map (translation included under TCG).
    Profile(profile::ProfileArgs),
    /// Live update between kernels: every ordered pair of --kernels, per scenario (pass, the
    /// failing step, state lost, incompatible); a table, matrix.json and matrix.svg.
    Matrix(matrix::MatrixArgs),
    /// The first commit that breaks the scenarios, or (--metric NAME) that made a figure worse by
    /// more than --threshold: `git bisect run` on a private clone of your repository (never
    /// written), each step built incrementally, booted and run or measured against the good
    /// endpoint. Exit 0 when a first bad commit is named, 1 when none could be, 3 when the harness
    /// could not test.
    Bisect(bisect::BisectArgs),
    /// One step of a bisect (git runs it): 0 good, 1 bad, 125 skip, 128 abort.
    #[command(hide = true)]
    BisectStep(bisect::StepArgs),
    /// Measure what each session-inode design costs: memory, creation, blackout, retrieval.
    Compare(compare::CompareArgs),
    /// What a patch costs: a base and a patched kernel measured alternately in one run (memory
    /// per session, create and retrieve latency, the blackout and its phases), each figure's
    /// change with its interval and a verdict; the scenarios' reports side by side. Exit 1 with
    /// --fail-on worse when a figure got significantly worse by more than --threshold.
    Delta(delta::DeltaArgs),
    /// Random LUO programs across kexecs, checked against a model of the ABI (errno, which
    /// sessions and files the next kernel has, their contents, sizes and seals); each finding
    /// shrunk and written as a scenario that `run` and `bisect` take. Exit 0 when nothing was
    /// found, 1 when something was.
    Fuzz(fuzz::FuzzArgs),
    /// What of kernel/liveupdate the scenarios run: the gcov flavour of their kernels, counters
    /// read before every kexec and at the end, lcov tracefiles, an HTML report and a table.
    #[command(after_help = exit::TABLE)]
    Coverage(coverage::CoverageArgs),
    /// Benchmarks (figures printed, never asserted in tests).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// `RUST_LOG` decides what is logged to stderr; the run's timeline (`run --trace`), when asked
/// for, records the harness's spans whatever `RUST_LOG` says.
fn init_tracing(timeline: Option<Timeline>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::{EnvFilter, Layer, prelude::*};
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let timeline = timeline
        .map(|t| t.with_filter(Targets::new().with_target("luo_harness", LevelFilter::INFO)));
    tracing_subscriber::registry()
        .with(log)
        .with(timeline)
        .init();
}

/// On SIGINT, SIGTERM or SIGHUP: kill every QEMU and virtiofsd, say where the running VMs' artifacts
/// are (they are kept), and exit 130. Reports of scenarios that finished are already written.
fn install_signal_handlers() {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        let Ok(mut s) = signal(kind) else { continue };
        tokio::spawn(async move {
            s.recv().await;
            luo_harness::vm::process::kill_all_children();
            let running = luo_harness::vm::process::live_artifact_dirs();
            if running.is_empty() {
                eprintln!("luo-harness: interrupted (no VM was running)");
            }
            for (dir, phase) in running {
                eprintln!(
                    "luo-harness: interrupted at {phase}; artifacts kept in {}",
                    dir.display()
                );
            }
            std::process::exit(exit::INTERRUPTED.into());
        });
    }
}

pub fn main() -> ExitCode {
    // Reports wrap at the terminal's width; COLUMNS overrides it (CI logs, tests).
    if let Some(width) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        let _ = miette::set_hook(Box::new(move |_| {
            Box::new(miette::MietteHandlerOpts::new().width(width).build())
        }));
    }
    miette::set_panic_hook();
    let cli = Cli::parse();
    let timeline = match &cli.command {
        Command::Run(r) if r.trace.is_some() => Some(Timeline::new()),
        _ => None,
    };
    init_tracing(timeline.clone());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("luo-harness: starting the async runtime: {e}");
            return ExitCode::from(exit::KERNEL_OR_VM);
        }
    };
    let result: Result<u8, Failed> = rt.block_on(async {
        install_signal_handlers();
        match cli.command {
            Command::Setup(a) => setup::setup(a).await,
            Command::Stage(a) => stage::stage(a).await,
            Command::Kernel(k) => kernel::run(k).await,
            Command::Run(r) => run::run(r, timeline).await,
            Command::Check(c) => Ok(check::check(c)),
            Command::Schema => Ok(check::schema()),
            Command::Boot(b) => boot::boot(b).await,
            Command::Drive(d) => drive::drive(d).await,
            Command::Profile(p) => profile::profile(p).await,
            Command::Compare(c) => compare::compare(c).await,
            Command::Delta(d) => delta::delta(d).await,
            Command::Fuzz(f) => fuzz::fuzz(f).await,
            Command::Coverage(c) => coverage::coverage(c).await,
            Command::Matrix(m) => matrix::matrix(m).await,
            Command::Bisect(b) => bisect::bisect(b).await,
            Command::BisectStep(b) => bisect::step(b).await,
            Command::Bench(b) => bench::bench(b).await,
        }
    });
    ExitCode::from(match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("{:?}", f.report);
            exit::run([f.kind])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn counts_of_zero_are_rejected_by_the_parser() {
        for args in [
            &["luo-harness", "bench", "roundtrip", "--runs", "0"][..],
            &["luo-harness", "compare", "--sessions", "1,0"],
            &["luo-harness", "compare", "--reps", "0"],
            &["luo-harness", "run", "-p", "0"],
            &["luo-harness", "run", "--memory", "0"],
            &["luo-harness", "kernel", "build", "--jobs", "0"],
            &["luo-harness", "profile", "--interval-ms", "0"],
        ] {
            let e = Cli::try_parse_from(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} was accepted"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
        assert!(Cli::try_parse_from(["luo-harness", "bench", "roundtrip", "--runs", "1"]).is_ok());
    }
}
