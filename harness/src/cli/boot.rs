//! `luo-harness boot`: boot a kernel with the agent, print the boot facts, where the boot time
//! went and the kernel log tail, power off.

use super::args::{KernelArgs, VmArgs};
use super::failed::Failed;
use clap::Args;
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
    let (accel, mut guest) = args.vm.boot_agent(&args.kernel, "boot").await?;
    let b = &guest.boots()[0];
    println!(
        "booted in {} ms ({}; {}):",
        b.to_hello.as_millis(),
        accel,
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
