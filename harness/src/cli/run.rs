//! `luo-harness run`: validate the scenarios, resolve the plan (every kernel and program, before any
//! VM), run them, compare each report with its snapshot, and show the run in the chosen format.

use super::args::{KernelArgs, VmArgs};
use super::failed::Failed;
use super::terminal::Terminal;
use super::{check, collect};
use clap::{Args, ValueEnum};
use luo_harness::events::{Event, EventSink};
use luo_harness::outcome::exit;
use luo_harness::plan;
use luo_harness::render::{self, Render};
use luo_harness::result::{ResultSink, ScenarioResult};
use luo_harness::run::{RunOptions, run_all};
use luo_harness::scenario::snapshot::Snapshots;
use luo_harness::timeline::Timeline;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Scenario files or directories (default: scenarios/).
    paths: Vec<PathBuf>,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    vm: VmArgs,
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Scenarios run at once (default: the number of cores).
    #[arg(long, short = 'p', value_parser = clap::value_parser!(u32).range(1..=256))]
    parallel: Option<u32>,
    /// Where reports and metrics are written.
    #[arg(long, default_value = "luo-reports")]
    out: PathBuf,
    /// The snapshot directory (`<variant>/<name>.snap` inside; default: `snapshots/` beside the
    /// scenarios' directory, when it exists).
    #[arg(long, value_name = "DIR")]
    snapshots: Option<PathBuf>,
    /// Write `<name>.snap.new` for every report that differs from its snapshot or has none, for
    /// `cargo insta review`.
    #[arg(long)]
    update_snapshots: bool,
    /// Write the run's timeline to FILE as Chrome trace-event JSON (Perfetto, chrome://tracing):
    /// each scenario's VM start, boots and their phases, steps, requests and kexecs.
    #[arg(long, value_name = "FILE")]
    pub(super) trace: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
    Ktap,
    Junit,
}

/// The terminal's progress on stderr, and the chosen format on stdout.
struct RunSink {
    terminal: Terminal,
    render: Mutex<Box<dyn Render>>,
}

impl RunSink {
    /// Shows on stdout what the format makes of it.
    fn render(&self, show: impl FnOnce(&mut dyn Render, &mut dyn Write) -> std::io::Result<()>) {
        let mut r = self.render.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        // stdout closed (`| head`): the run goes on, its reports are still written.
        let _ = show(&mut **r, &mut out);
        let _ = out.flush();
    }
}

impl EventSink for RunSink {
    fn emit(&self, e: Event) {
        self.render(|r, out| r.event(&e, out));
        self.terminal.emit(e);
    }
}

impl ResultSink for RunSink {
    fn finished(&self, result: &ScenarioResult) {
        self.render(|r, out| r.finished(result, out));
    }
}

impl RunArgs {
    /// The command that runs one scenario again, alone, with its artifacts kept.
    fn rerun(&self, r: &ScenarioResult, snapshots: Option<&Path>) -> String {
        let mut w = vec![
            "luo-harness".to_string(),
            "run".into(),
            r.file.display().to_string(),
        ];
        w.extend(self.kernel.words());
        w.extend(self.vm.words());
        if let Some(s) = snapshots {
            w.extend(["--snapshots".into(), s.display().to_string()]);
        }
        w.push("--keep".into());
        shlex::try_join(w.iter().map(String::as_str)).unwrap_or_else(|_| w.join(" "))
    }

    fn renderer(&self) -> Box<dyn Render> {
        match self.format {
            Format::Human => {
                let args = self.clone();
                // Only a directory the user named: the default follows from the file again.
                Box::new(render::Human::new(Some(Box::new(move |r| {
                    args.rerun(r, args.snapshots.as_deref())
                }))))
            }
            Format::Json => Box::new(render::Json::default()),
            Format::Ktap => Box::new(render::Ktap::default()),
            Format::Junit => Box::new(render::Junit::default()),
        }
    }
}

/// `timeline` records the run when `--trace` asked for it (cli/mod.rs installs it).
pub async fn run(args: RunArgs, timeline: Option<Timeline>) -> Result<u8, Failed> {
    let files = collect::files(&args.paths)?;
    let loaded = match collect::load_all_for(&files, args.kernel.build.arch.unwrap_or_default()) {
        Ok(v) => v,
        Err(problems) => return Ok(check::report_invalid(problems, files.len())),
    };
    let needs = collect::needs(&loaded, args.kernel.build.arch.unwrap_or_default());
    if args.vm.gdb && loaded.len() > 1 {
        return Err(Failed::bad_input(format!(
            "--gdb debugs one VM: name one scenario file, not {}",
            loaded.len()
        )));
    }
    super::args::check_debug_memory(&args.kernel, &args.vm)?;
    let request = args.vm.plan_request(&args.kernel)?;
    let terminal = Terminal::default();
    let plan = plan::resolve(&request, &needs, &terminal).await?;
    if let Some(line) = super::args::gdb_line(&plan) {
        eprintln!("luo-harness: the guest is paused for gdb: {line}");
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Failed::io(&args.out, e))?;
    let snapshot_root = args
        .snapshots
        .clone()
        .or_else(|| collect::default_snapshots(&files[0]));
    let snapshots = snapshot_root.map(|root| Snapshots {
        root,
        write_new: args.update_snapshots,
    });
    let parallel = collect::parallel(args.parallel);
    let sink = Arc::new(RunSink {
        terminal,
        render: Mutex::new(args.renderer()),
    });
    let opts = RunOptions {
        parallel,
        snapshots,
        out: Some(args.out.clone()),
        results: Some(sink.clone()),
    };
    let results = run_all(Arc::new(plan), loaded, opts, sink).await;
    if let (Some(file), Some(timeline)) = (&args.trace, timeline) {
        timeline.write(file).map_err(|e| Failed::io(file, e))?;
        eprintln!("luo-harness: timeline written to {}", file.display());
    }
    Ok(exit::run(results.iter().map(|r| r.outcome.kind())))
}
