//! `luo-harness delta`: what a patch costs against the kernel it started from. The table (or the
//! JSON, or a mailing-list reply) on stdout; delta.json and delta.svg in the output directory;
//! with `--fail-on worse`, exit 1 naming each figure that got significantly worse by more than
//! the threshold.

use super::args::{KernelArgs, parse_spec};
use super::failed::Failed;
use super::terminal::Terminal;
use super::{check, collect};
use clap::{Args, ValueEnum};
use luo_harness::delta::{self, DeltaOptions, KernelChoice};
use luo_harness::outcome::exit;
use luo_harness::vm::accel::AccelChoice;
use luo_kernels::spec::KernelSpec;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    /// Plain text wrapped at 72 columns, for a reply on a kernel mailing list.
    Email,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    Worse,
}

#[derive(Args)]
pub struct DeltaArgs {
    /// Scenarios whose reports are compared between the two kernels (each run once on each).
    paths: Vec<PathBuf>,
    /// The kernel you started from (same forms as --kernel).
    #[arg(long, value_name = "SPEC", value_parser = parse_spec)]
    base: KernelSpec,
    /// The base's variant (default: stock).
    #[arg(long, value_name = "NAME")]
    base_variant: Option<String>,
    /// The base's extra config fragment(s).
    #[arg(long, value_name = "FILE")]
    base_fragment: Vec<PathBuf>,
    /// The patched kernel: --kernel/--tree with --variant/--fragment; --debug, --recipe, --jobs
    /// and --base-config apply to both.
    #[command(flatten)]
    kernel: KernelArgs,
    /// Session counts measured.
    #[arg(long, value_delimiter = ',', default_value = "1,1000",
          value_parser = clap::value_parser!(u32).range(1..=500_000))]
    sessions: Vec<u32>,
    /// One-page memfds every VM also preserves, in a session of their own, for the per-file
    /// figures (0: none).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    files: u32,
    /// Runs per kernel and session count (each one VM), the kernels alternated.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=200))]
    runs: u32,
    /// Confidence for the whole table (Bonferroni over its figures).
    #[arg(long, default_value_t = 0.95, value_parser = confidence)]
    confidence: f64,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Exit 1 when a figure got significantly worse by more than --threshold.
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Percent: how much worse a figure may get before --fail-on fails.
    #[arg(long, default_value_t = 5.0, value_name = "PCT")]
    threshold: f64,
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Where delta.json and delta.svg are written.
    #[arg(long, default_value = "luo-reports/delta")]
    out: PathBuf,
}

fn confidence(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if c > 0.5 && c < 1.0 => Ok(c),
        _ => Err(format!("{s:?}: a confidence between 0.5 and 1, e.g. 0.95")),
    }
}

pub async fn delta(a: DeltaArgs) -> Result<u8, Failed> {
    let scenarios = if a.paths.is_empty() {
        Vec::new()
    } else {
        let files = collect::files(&a.paths)?;
        match collect::load_all_for(&files, a.kernel.build.arch.unwrap_or_default()) {
            Ok(v) => v.into_iter().map(|l| l.scenario).collect(),
            Err(problems) => return Ok(check::report_invalid(problems, files.len())),
        }
    };
    let patched_build = a.kernel.build_template()?;
    let mut base_build = patched_build.with_variant(
        a.base_variant
            .as_deref()
            .unwrap_or(luo_kernels::variant::DEFAULT),
    );
    base_build.extra_fragments = super::args::BuildArgs {
        fragment: a.base_fragment.clone(),
        ..Default::default()
    }
    .template()?
    .extra_fragments;
    let o = DeltaOptions {
        base: KernelChoice {
            spec: a.base.clone(),
            build: base_build,
        },
        patched: KernelChoice {
            spec: a.kernel.spec(),
            build: patched_build,
        },
        scenarios,
        sessions: a.sessions.clone(),
        files: a.files,
        runs: a.runs,
        confidence: a.confidence,
        accel: a.accel,
    };
    o.check()?;
    let d = delta::delta(&o, &Terminal::default()).await?;
    match a.format {
        Format::Table => print!("{}", delta::table(&d)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&d).expect("figures serialise")
        ),
        Format::Email => print!("{}", delta::email(&d)),
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Failed::io(&a.out, e))?;
    let jp = a.out.join("delta.json");
    std::fs::write(
        &jp,
        serde_json::to_string_pretty(&d).expect("figures serialise"),
    )
    .map_err(|e| Failed::io(&jp, e))?;
    let sp = a.out.join("delta.svg");
    std::fs::write(&sp, delta::svg(&d)).map_err(|e| Failed::io(&sp, e))?;
    eprintln!("wrote {} and {}", jp.display(), sp.display());
    if a.fail_on.is_some() {
        let worse = d.worse_than(a.threshold / 100.0);
        for r in &worse {
            let c = r.change.as_ref().expect("a worse row has a change");
            eprintln!(
                "worse: {} at {}: {:+.1}% ({} -> {} {}), more than {}%",
                r.metric,
                r.at(),
                c.relative.unwrap_or(f64::NAN) * 100.0,
                c.base_median,
                c.patched_median,
                r.unit,
                a.threshold
            );
        }
        if !worse.is_empty() {
            return Ok(exit::FAIL);
        }
    }
    Ok(exit::PASS)
}
