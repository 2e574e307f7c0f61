//! `luo-harness compare`: what each session-inode design costs, measured on real kernels; the
//! table on stdout, compare.json and compare.svg in the output directory.

use super::args::KernelArgs;
use super::failed::Failed;
use super::terminal::Terminal;
use clap::Args;
use luo_harness::compare::{self, CompareOptions, Comparison};
use luo_harness::vm::accel::AccelChoice;
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// Kernel variants to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "stock,anon-unique,magic-shared,magic-unique"
    )]
    variants: Vec<String>,
    /// Session counts.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000",
          value_parser = clap::value_parser!(u32).range(1..=500_000))]
    sessions: Vec<u32>,
    /// Repetitions per point.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: u32,
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    #[command(flatten)]
    kernel: KernelArgs,
    /// Where compare.json and compare.svg are written.
    #[arg(long, default_value = "luo-reports")]
    out: PathBuf,
    /// Do not measure: print the table and write the plot from a saved compare.json.
    #[arg(long, value_name = "FILE")]
    from_json: Option<PathBuf>,
}

pub async fn compare(a: CompareArgs) -> Result<u8, Failed> {
    let (comparison, dir) = match &a.from_json {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Failed::io(path, e))?;
            let saved: Comparison = serde_json::from_str(&text)
                .map_err(|e| Failed::bad_input(format!("{}: {e}", path.display())))?;
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            (saved, dir)
        }
        None => {
            let o = CompareOptions {
                kernel: a.kernel.spec(),
                base: a.kernel.build_template()?,
                variants: a.variants.clone(),
                sessions: a.sessions.clone(),
                reps: a.reps,
                accel: a.accel,
            };
            let samples = compare::measure(&o, &Terminal::default()).await?;
            (
                Comparison {
                    samples,
                    points: vec![],
                },
                a.out.clone(),
            )
        }
    };
    let points = compare::summarise(&comparison.samples);
    print!("{}", compare::table(&points));
    std::fs::create_dir_all(&dir).map_err(|e| Failed::io(&dir, e))?;
    if a.from_json.is_none() {
        let jp = dir.join("compare.json");
        let json = Comparison {
            samples: comparison.samples,
            points: points.clone(),
        };
        std::fs::write(
            &jp,
            serde_json::to_string_pretty(&json).expect("figures serialise"),
        )
        .map_err(|e| Failed::io(&jp, e))?;
        println!("wrote {}", jp.display());
    }
    let sp = dir.join("compare.svg");
    std::fs::write(&sp, compare::svg(&points)).map_err(|e| Failed::io(&sp, e))?;
    println!("wrote {}", sp.display());
    Ok(0)
}
