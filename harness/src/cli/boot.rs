use super::{KernelArgs, VmArgs};
use clap::{Args, Subcommand};
use luo_harness::output::Terminal;
use luo_harness::{Vm, bench, prepare};
use luo_protocol::{Reply, Request};
use std::process::ExitCode;

#[derive(Args)]
pub struct BootArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    vm: VmArgs,
    /// How many kernel log lines to print.
    #[arg(long, default_value_t = 20)]
    log_lines: usize,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The memfd round trip (boot, create, preserve, kexec, retrieve, verify, power off), alternated
    /// with the kernel's own vmtest.sh flow for luo_kexec_simple on the same kernel.
    Roundtrip(bench::RoundtripArgs),
    /// The whole scenario set on the default kernel, as many at once as there are cores: wall time
    /// and the slowest scenarios.
    Scenarios {
        #[arg(default_value = "scenarios")]
        dir: std::path::PathBuf,
    },
}

pub async fn boot(args: BootArgs) -> miette::Result<ExitCode> {
    let prepared = args.vm.prepare(&args.kernel).await?;
    let mut guest = Vm::boot(prepared.vm_config("boot")).await?;
    let b = &guest.boots()[0];
    println!(
        "booted in {} ms ({}; {}):",
        b.to_hello.as_millis(),
        prepared.accel,
        b.phases
    );
    println!("{}", serde_json::to_string_pretty(&b.hello.boot).unwrap());
    if let Reply::Log { lines } = guest.request(Request::KernelLog).await? {
        println!(
            "--- kernel log, last {} of {} lines ---",
            args.log_lines.min(lines.len()),
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(args.log_lines)..] {
            println!("{l}");
        }
    }
    let artifacts = guest.artifacts().to_path_buf();
    guest.power_off().await?;
    if args.vm.keep {
        println!("artifacts: {}", artifacts.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn bench(cmd: BenchCommand) -> miette::Result<ExitCode> {
    match cmd {
        BenchCommand::Roundtrip(a) => bench::roundtrip(a).await?,
        BenchCommand::Scenarios { dir } => bench_scenarios(&dir).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_scenarios(dir: &std::path::Path) -> miette::Result<()> {
    use std::time::Instant;
    let files = super::run::collect(&[dir.to_path_buf()])?;
    let mut scenarios = Vec::new();
    for f in &files {
        scenarios.push(luo_harness::scenario::load(f)?.0);
    }
    let t0 = Instant::now();
    let prepared = std::sync::Arc::new(
        prepare(
            &luo_harness::prepare::KernelChoice::Build(Default::default()),
            luo_harness::vm::accel::AccelChoice::Auto,
            &Terminal::default(),
        )
        .await?,
    );
    let prep = t0.elapsed();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(cores));
    let mut tasks = Vec::new();
    for s in scenarios {
        let (sem, prepared) = (sem.clone(), prepared.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            let t = Instant::now();
            let r = luo_harness::scenario::run(&s, &prepared, "stock").await;
            (
                s.name.unwrap_or_default(),
                t.elapsed(),
                r.map(|(rep, _)| rep.passed),
            )
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        let (name, d, r) = t.await.expect("scenario task");
        match r {
            Ok(true) => {}
            Ok(false) => {
                return Err(miette::miette!(
                    "scenario {name} failed; run `luo-harness run` for details"
                ));
            }
            Err(e) => return Err(e.into()),
        }
        times.push((d, name));
    }
    let wall = t0.elapsed();
    times.sort();
    println!(
        "scenario set: {} scenarios, {cores} at a time, wall {:.1} s (kernel + image preparation {:.2} s)",
        times.len(),
        wall.as_secs_f64(),
        prep.as_secs_f64()
    );
    for (d, name) in times.iter().rev().take(5) {
        println!("  {name:<28} {:.1} s", d.as_secs_f64());
    }
    Ok(())
}
