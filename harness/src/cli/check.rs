//! `luo-harness check` and `schema`: the scenario files alone, no VM.

use super::collect;
use clap::Args;
use luo_harness::outcome::exit;
use std::path::PathBuf;

#[derive(Args)]
pub struct CheckArgs {
    /// Scenario files or directories (default: scenarios/).
    paths: Vec<PathBuf>,
    /// The machine the scenarios will run on: the programs they bring must be built for it
    /// (x86_64 unless given).
    #[arg(long, value_name = "ARCH", value_parser = |s: &str| s.parse::<luo_kernels::Arch>().map_err(|e| e.to_string()))]
    arch: Option<luo_kernels::Arch>,
}

/// Prints every problem of every file; exit 0 when all are valid, 2 otherwise.
pub fn check(args: CheckArgs) -> u8 {
    let files = match collect::files(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return exit::BAD_INPUT;
        }
    };
    match collect::load_all_for(&files, args.arch.unwrap_or_default()) {
        Ok(v) => {
            println!("{} scenario file(s) valid", v.len());
            exit::PASS
        }
        Err(problems) => report_invalid(problems, files.len()),
    }
}

/// Every load error, then the count; the exit code for bad input.
pub fn report_invalid(problems: Vec<luo_harness::scenario::LoadError>, of: usize) -> u8 {
    let n = problems.len();
    for p in problems {
        eprintln!("{:?}", miette::Report::new(p));
    }
    eprintln!("{n} of {of} scenario file(s) are invalid; no VM was started");
    exit::BAD_INPUT
}

pub fn schema() -> u8 {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        luo_harness::scenario::json_schema()
    );
    exit::PASS
}
