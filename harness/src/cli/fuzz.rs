//! `luo-harness fuzz`: random LUO programs across kexecs against the model; each finding shrunk
//! and written as a scenario under `--out`/findings. Exit 0 when nothing was found, 1 when
//! something was, like `run`.

use super::args::{KernelArgs, VmArgs, parse_spec};
use super::failed::Failed;
use super::terminal::Terminal;
use clap::Args;
use luo_harness::fuzz::{self, FuzzOptions, program::Shape};
use luo_harness::outcome::exit;
use luo_kernels::spec::KernelSpec;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    vm: VmArgs,
    /// Live update from one kernel to another: boot the first, and every kexec goes into the
    /// second (`debian:7.2,debian:7.3`).
    #[arg(long, value_delimiter = ',', num_args = 1, value_parser = parse_spec,
          conflicts_with_all = ["kernel", "tree"])]
    kernels: Vec<KernelSpec>,
    /// Where the corpus is read from and kept, on a `--gcov` kernel (default: OUT/corpus).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// The run's seed: the same seed and options, the same programs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many programs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    runs: Option<u64>,
    /// Stop after this long: `60s`, `30m`, `2h` (default 60s when --runs is not given).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Operations a program has at most (kexecs not counted).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=500))]
    max_ops: u64,
    /// Kexecs a program has at most.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=3))]
    max_kexecs: u32,
    /// Programs a finding's shrinking may run.
    #[arg(long, default_value_t = 150)]
    shrink_runs: u32,
    /// Where findings/ (each a scenario), corpus/, coverage/ and fuzz.json go.
    #[arg(long, default_value = "luo-reports/fuzz")]
    out: PathBuf,
}

pub async fn fuzz(a: FuzzArgs) -> Result<u8, Failed> {
    super::args::check_debug_memory(&a.kernel, &a.vm)?;
    let mut kernel = a.vm.plan_request(&a.kernel)?;
    match a.kernels.as_slice() {
        [] => {}
        [from, to] => {
            kernel.kernel = from.clone();
            kernel.next = Some(to.clone());
        }
        other => {
            return Err(Failed::bad_input(format!(
                "--kernels takes two kernels, the one booted and the one every kexec goes into \
                 (debian:7.2,debian:7.3), not {}",
                other.len()
            )));
        }
    }
    let o = FuzzOptions {
        kernel,
        seed: a.seed,
        runs: a.runs,
        duration: a
            .duration
            .or_else(|| a.runs.is_none().then(|| Duration::from_secs(60))),
        shape: Shape {
            max_ops: a.max_ops as usize,
            max_kexecs: a.max_kexecs,
        },
        shrink_runs: a.shrink_runs,
        out: a.out.clone(),
        corpus: a.corpus.clone().unwrap_or_else(|| a.out.join("corpus")),
    };
    let r = fuzz::fuzz(&o, &Terminal::default()).await?;
    let per_min = |n: u64| n as f64 * 60.0 / r.seconds.max(1e-3);
    println!(
        "fuzz on {}: seed {}, {} programs ({:.1}/min), {} operations, {} kexecs ({:.1}/min) in {:.0} s \
         ({:.0} s shrinking); {} finding{}",
        r.kernel,
        r.seed,
        r.programs,
        per_min(r.programs),
        r.operations,
        r.kexecs,
        per_min(r.kexecs),
        r.seconds,
        r.shrink_seconds,
        r.findings.len(),
        if r.findings.len() == 1 { "" } else { "s" }
    );
    if let Some(g) = &r.guidance {
        println!(
            "guided by gcov: {}/{} arcs reached; corpus {} programs ({} replayed, {} added) in {}{}",
            g.arcs_reached,
            g.arcs_known,
            g.corpus,
            g.replayed,
            g.added,
            g.corpus_dir.display(),
            g.coverage.as_ref().map_or(String::new(), |c| format!(
                "; lines {}, functions {}, branches {} (table: {})",
                c.lines.cell(),
                c.functions.cell(),
                c.branches.cell(),
                a.out.join("coverage/summary.json").display()
            ))
        );
    }
    for f in &r.findings {
        println!(
            "  {} ({} operations, from {}; {} more programs failed alike): {}",
            f.scenario.display(),
            f.operations,
            f.shrunk_from,
            f.duplicates,
            f.failure
        );
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Failed::io(&a.out, e))?;
    let jp = a.out.join("fuzz.json");
    std::fs::write(&jp, serde_json::to_string_pretty(&r).expect("serialises"))
        .map_err(|e| Failed::io(&jp, e))?;
    Ok(if r.findings.is_empty() {
        exit::PASS
    } else {
        exit::FAIL
    })
}
