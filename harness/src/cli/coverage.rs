//! `luo-harness coverage`: the scenarios on the gcov flavour of their kernels, and what of
//! kernel/liveupdate (and mm/memfd_luo.c, and the files a variant patches) they ran: lcov
//! tracefiles, genhtml's report and a per-file table.

use super::args::{KernelArgs, VmArgs};
use super::failed::Failed;
use super::terminal::Terminal;
use super::{check, collect};
use clap::{Args, ValueEnum};
use luo_harness::outcome::{Kind, exit};
use luo_harness::plan;
use luo_harness::run::{RunOptions, run_all};
use luo_harness::scenario::snapshot::Snapshots;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct CoverageArgs {
    /// Scenario files or directories (default: scenarios/).
    paths: Vec<PathBuf>,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    vm: VmArgs,
    /// Where the tracefiles, the HTML report and summary.json go.
    #[arg(long, default_value = "luo-reports/coverage")]
    out: PathBuf,
    /// What goes to stdout: the per-file table, or summary.json.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Scenarios run at once (default: the number of cores).
    #[arg(long, short = 'p', value_parser = clap::value_parser!(u32).range(1..=256))]
    parallel: Option<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

pub async fn coverage(args: CoverageArgs) -> Result<u8, Failed> {
    let files = collect::files(&args.paths)?;
    let loaded = match collect::load_all_for(&files, args.kernel.build.arch.unwrap_or_default()) {
        Ok(v) => v,
        Err(problems) => return Ok(check::report_invalid(problems, files.len())),
    };
    let needs = collect::needs(&loaded, args.kernel.build.arch.unwrap_or_default());
    super::args::check_debug_memory(&args.kernel, &args.vm)?;
    let mut request = args.vm.plan_request(&args.kernel)?;
    request.build.flavour.gcov = true;
    let terminal = Terminal::default();
    let plan = plan::resolve(&request, &needs, &terminal).await?;
    let reports = args.out.join("scenarios");
    std::fs::create_dir_all(&reports).map_err(|e| Failed::io(&reports, e))?;
    let opts = RunOptions {
        parallel: collect::parallel(args.parallel),
        // The gcov flavour behaves like the plain kernel: a report that differs is still wrong.
        snapshots: collect::default_snapshots(&files[0]).map(|root| Snapshots {
            root,
            write_new: false,
        }),
        out: Some(reports.clone()),
        results: None,
    };
    let results = run_all(Arc::new(plan), loaded, opts, Arc::new(terminal)).await;
    for r in results
        .iter()
        .filter(|r| !matches!(r.outcome.kind(), Kind::Pass | Kind::Skip))
    {
        eprintln!("{}: {} {}", r.name, r.outcome.label(), r.outcome.reason());
    }
    let written = luo_harness::coverage::write(&results, &args.out)?;
    match args.format {
        Format::Human => {
            for k in &written {
                println!("{}", k.summary.table());
            }
            for k in &written {
                eprintln!("wrote {} and {}", k.tracefile.display(), k.html.display());
            }
            eprintln!(
                "wrote {} (and each scenario's report under {})",
                args.out.join("summary.json").display(),
                reports.display()
            );
        }
        Format::Json => {
            let text = std::fs::read_to_string(args.out.join("summary.json"))
                .map_err(|e| Failed::io(&args.out.join("summary.json"), e))?;
            print!("{text}");
        }
    }
    Ok(exit::run(results.iter().map(|r| r.outcome.kind())))
}
