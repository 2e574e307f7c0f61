//! `luo-harness run`, `check` and `schema`.

use super::{KernelArgs, VmArgs};
use clap::{Args, ValueEnum};

use luo_harness::GuestError;
use luo_harness::scenario::{self, Report, Scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
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
    #[arg(long, short = 'p')]
    parallel: Option<usize>,
    /// Where reports and metrics are written.
    #[arg(long, default_value = "luo-reports")]
    out: PathBuf,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Scenario files or directories (default: scenarios/).
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
    Ktap,
    Junit,
}

/// Scenario files: the named files, and the *.yaml directly inside named directories.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, miette::Report> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| miette::miette!("{}: {e}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            v.sort();
            files.extend(v);
        } else if p.is_file() {
            files.push(p);
        } else {
            return Err(miette::miette!(
                "{}: no such file or directory",
                p.display()
            ));
        }
    }
    if files.is_empty() {
        return Err(miette::miette!("no scenario files found"));
    }
    Ok(files)
}

/// Loads every file; all problems of all files are reported, then exit 2.
fn load_all(files: &[PathBuf]) -> Result<Vec<(PathBuf, Scenario)>, ExitCode> {
    let mut ok = Vec::new();
    let mut bad = 0;
    for f in files {
        match scenario::load(f) {
            Ok((s, _)) => ok.push((f.clone(), s)),
            Err(report) => {
                bad += 1;
                eprintln!("{report:?}");
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "{bad} of {} scenario file(s) are invalid; no VM was started",
            files.len()
        );
        return Err(ExitCode::from(2));
    }
    Ok(ok)
}

pub fn check(args: CheckArgs) -> miette::Result<ExitCode> {
    let files = match collect(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e:?}");
            return Ok(ExitCode::from(2));
        }
    };
    Ok(match load_all(&files) {
        Ok(v) => {
            println!("{} scenario file(s) valid", v.len());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    })
}

pub fn schema() -> miette::Result<ExitCode> {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(std::io::stdout(), "{}", scenario::json_schema());
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: RunArgs) -> miette::Result<ExitCode> {
    let files = match collect(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e:?}");
            return Ok(ExitCode::from(2));
        }
    };
    let scenarios = match load_all(&files) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let variant = args
        .kernel
        .variant
        .clone()
        .unwrap_or_else(|| "stock".into());
    let prepared = match args.vm.prepare(&args.kernel).await {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("{e:?}");
            return Ok(ExitCode::from(3));
        }
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| miette::miette!("{}: {e}", args.out.display()))?;
    let jobs = args
        .parallel
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = indicatif::ProgressBar::new(scenarios.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} scenarios [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
        )
        .unwrap(),
    );
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut tasks = Vec::new();
    for (path, s) in scenarios {
        let (sem, prepared, variant, bar) =
            (sem.clone(), prepared.clone(), variant.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let r = scenario::run(&s, &prepared, &variant).await;
            bar.inc(1);
            bar.set_message(s.name.clone().unwrap_or_default());
            (path, s.name.unwrap_or_default(), r)
        }));
    }
    let mut results: Vec<(PathBuf, String, Result<Report, GuestError>)> = Vec::new();
    for t in tasks {
        let (path, name, r) = t.await.expect("scenario task panicked");
        let r = r.map(|(report, metrics)| {
            write_outputs(&args.out, &report, &metrics);
            report
        });
        results.push((path, name, r));
    }
    bar.finish_and_clear();
    print!("{}", render(&results, args.format));
    let vm_failed = results.iter().any(|(_, _, r)| r.is_err());
    let failed = results
        .iter()
        .any(|(_, _, r)| r.as_ref().is_ok_and(|r| !r.passed));
    for (_, name, r) in &results {
        if let Err(e) = r {
            eprintln!("{name}: {e}");
        }
    }
    Ok(ExitCode::from(if vm_failed {
        3
    } else if failed {
        1
    } else {
        0
    }))
}

fn write_outputs(dir: &Path, report: &Report, metrics: &scenario::Metrics) {
    let base = dir.join(&report.scenario);
    let _ = std::fs::write(
        base.with_extension("report.yaml"),
        serde_saphyr::to_string(report).unwrap_or_default(),
    );
    let _ = std::fs::write(
        base.with_extension("metrics.json"),
        serde_json::to_string_pretty(metrics).unwrap_or_default(),
    );
}

fn verdict(r: &Result<Report, GuestError>) -> (&'static str, String) {
    match r {
        Ok(rep) if rep.passed => ("pass", String::new()),
        Ok(rep) => (
            "FAIL",
            rep.failures
                .first()
                .cloned()
                .or_else(|| rep.kernel_log.first().cloned())
                .unwrap_or_default(),
        ),
        Err(e) => (
            "VM ERROR",
            e.to_string().lines().next().unwrap_or("").to_string(),
        ),
    }
}

fn render(results: &[(PathBuf, String, Result<Report, GuestError>)], format: Format) -> String {
    let mut s = String::new();
    match format {
        Format::Human => {
            let w = results
                .iter()
                .map(|(_, n, _)| n.len())
                .max()
                .unwrap_or(8)
                .max(8);
            s.push_str(&format!("{:<w$}  {:<8}  detail\n", "scenario", "result"));
            for (_, name, r) in results {
                let (v, d) = verdict(r);
                s.push_str(&format!(
                    "{name:<w$}  {v:<8}  {}\n",
                    d.lines().next().unwrap_or("")
                ));
            }
            let passed = results
                .iter()
                .filter(|(_, _, r)| r.as_ref().is_ok_and(|r| r.passed))
                .count();
            s.push_str(&format!(
                "{passed} passed, {} failed\n",
                results.len() - passed
            ));
        }
        Format::Json => {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(|(p, n, r)| match r {
                    Ok(rep) => serde_json::json!({"file": p, "name": n, "report": rep}),
                    Err(e) => serde_json::json!({"file": p, "name": n, "vm_error": e.to_string()}),
                })
                .collect();
            s = serde_json::to_string_pretty(&v).unwrap() + "\n";
        }
        Format::Ktap => {
            s.push_str(&format!("KTAP version 1\n1..{}\n", results.len()));
            for (i, (_, name, r)) in results.iter().enumerate() {
                let (v, d) = verdict(r);
                if v == "pass" {
                    s.push_str(&format!("ok {} {name}\n", i + 1));
                } else {
                    s.push_str(&format!(
                        "not ok {} {name} # {}\n",
                        i + 1,
                        d.lines().next().unwrap_or("").replace('#', "")
                    ));
                }
            }
        }
        Format::Junit => {
            let fails = results
                .iter()
                .filter(|(_, _, r)| verdict(r).0 != "pass")
                .count();
            s.push_str(&format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"luo-harness\" tests=\"{}\" failures=\"{fails}\">\n", results.len()));
            for (_, name, r) in results {
                let (v, d) = verdict(r);
                s.push_str(&format!("  <testcase name=\"{}\">", xml(name)));
                if v != "pass" {
                    s.push_str(&format!("<failure message=\"{}\"/>", xml(&d)));
                }
                s.push_str("</testcase>\n");
            }
            s.push_str("</testsuite>\n");
        }
    }
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
