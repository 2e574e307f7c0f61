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
}

pub async fn boot(args: BootArgs) -> miette::Result<ExitCode> {
    let prepared = prepare(&args.kernel.choice()?, args.vm.accel, &Terminal::default()).await?;
    let mut cfg = prepared.vm_config("boot");
    cfg.keep |= args.vm.keep;
    cfg.extra_cmdline = args.vm.cmdline.clone();
    cfg.memory_mib = args.vm.memory;
    let mut guest = Vm::boot(cfg).await?;
    let b = &guest.boots()[0];
    println!(
        "booted in {} ms ({}):",
        b.to_hello.as_millis(),
        prepared.accel
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
    }
    Ok(ExitCode::SUCCESS)
}
