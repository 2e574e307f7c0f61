//! `luo-harness matrix --kernels A,B,...`: live update between every ordered pair of kernels, per
//! scenario; the tables on stdout, matrix.json and matrix.svg in the output directory.

use super::args::KernelArgs;
use super::failed::Failed;
use super::terminal::Terminal;
use super::{check, collect};
use clap::Args;
use luo_harness::matrix::{self, Cell, MatrixOptions};
use luo_harness::outcome::exit;
use luo_harness::vm::accel::AccelChoice;
use luo_kernels::spec::KernelSpec;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct MatrixArgs {
    /// The kernels, as specs: debian:7.2,debian:7.3 (each pair is tried both ways, and each with
    /// itself).
    #[arg(long, value_delimiter = ',', required = true,
          value_parser = |s: &str| KernelSpec::parse(s).map_err(|e| e.to_string()))]
    kernels: Vec<KernelSpec>,
    /// Scenario files or directories (default: scenarios/).
    paths: Vec<PathBuf>,
    #[command(flatten)]
    kernel: KernelArgs,
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Scenarios run at once (default: the number of cores).
    #[arg(long, short = 'p', value_parser = clap::value_parser!(u32).range(1..=256))]
    parallel: Option<u32>,
    /// Where matrix.json and matrix.svg are written.
    #[arg(long, default_value = "luo-reports")]
    out: PathBuf,
}

pub async fn matrix(a: MatrixArgs) -> Result<u8, Failed> {
    let files = collect::files(&a.paths)?;
    let loaded = match collect::load_all_for(&files, a.kernel.build.arch.unwrap_or_default()) {
        Ok(v) => v,
        Err(problems) => return Ok(check::report_invalid(problems, files.len())),
    };
    let o = MatrixOptions {
        kernels: a.kernels.clone(),
        build: a.kernel.build_template()?,
        accel: a.accel,
        parallel: collect::parallel(a.parallel),
    };
    let m = matrix::run(&o, loaded, Arc::new(Terminal::default())).await?;
    print!("{}", matrix::table(&m));
    std::fs::create_dir_all(&a.out).map_err(|e| Failed::io(&a.out, e))?;
    let jp = a.out.join("matrix.json");
    std::fs::write(
        &jp,
        serde_json::to_string_pretty(&m).expect("the matrix serialises"),
    )
    .map_err(|e| Failed::io(&jp, e))?;
    let sp = a.out.join("matrix.svg");
    std::fs::write(&sp, matrix::svg(&m)).map_err(|e| Failed::io(&sp, e))?;
    println!("wrote {} and {}", jp.display(), sp.display());
    let cells = m.scenarios.iter().flat_map(|g| g.cells.iter().flatten());
    Ok(exit::run(cells.map(|c| match c {
        Cell::Pass | Cell::NotApplicable | Cell::Skip { .. } => luo_harness::outcome::Kind::Pass,
        Cell::Error { .. } => luo_harness::outcome::Kind::InfraFailure,
        _ => luo_harness::outcome::Kind::Fail,
    })))
}
