//! `luo-harness boot`: boot a kernel with the agent, print the boot facts, where the boot time
//! went and the kernel log tail, power off.

use super::args::{KernelArgs, VmArgs};
use super::failed::Failed;
use super::terminal::Terminal;
use clap::Args;
use luo_harness::Guest;
use luo_harness::plan::{self, Needs};
use luo_protocol::{Reply, Request};

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

pub async fn boot(args: BootArgs) -> Result<u8, Failed> {
    let plan = plan::resolve(
        &args.vm.plan_request(&args.kernel)?,
        &Needs::default(),
        &Terminal::default(),
    )
    .await?;
    if let Some(line) = super::args::gdb_line(&plan) {
        eprintln!("luo-harness: the guest is paused for gdb: {line}");
    }
    let mut guest = Guest::boot(plan.vm_config("boot")).await?;
    let b = &guest.boots()[0];
    println!(
        "booted in {} ms ({}; {}):",
        b.to_hello.as_millis(),
        plan.accel,
        b.phases
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&b.hello.boot).expect("boot facts serialise")
    );
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
    Ok(0)
}
