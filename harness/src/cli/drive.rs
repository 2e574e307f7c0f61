//! `luo-harness drive`: boot a guest and send it requests typed (or piped) on stdin, one per line:
//! a protocol request as JSON (`{"op":"open_device","handle":"dev"}`), `kexec`, or `quit`.

use super::args::{KernelArgs, VmArgs};
use super::failed::Failed;
use super::terminal::Terminal;
use clap::Args;
use luo_harness::Guest;
use luo_harness::plan::{self, Needs};
use luo_protocol::Request;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Args)]
pub struct DriveArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    vm: VmArgs,
}

pub async fn drive(args: DriveArgs) -> Result<u8, Failed> {
    let plan = plan::resolve(
        &args.vm.plan_request(&args.kernel)?,
        &Needs::default(),
        &Terminal::default(),
    )
    .await?;
    if let Some(line) = super::args::gdb_line(&plan) {
        eprintln!("luo-harness: the guest is paused for gdb: {line}");
    }
    let mut guest = Guest::boot(plan.vm_config("drive")).await?;
    println!("{}", serde_json::to_string(guest.hello()).unwrap());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        match line {
            "" => continue,
            "quit" => break,
            "kexec" => {
                let t = guest.kexec_same().await?;
                println!(
                    "{{\"kexec_ms\":{},\"hello\":{}}}",
                    t.as_millis(),
                    serde_json::to_string(guest.hello()).unwrap()
                );
            }
            _ => match serde_json::from_str::<Request>(line) {
                Ok(req) => match guest.try_request(req).await? {
                    Ok(reply) => println!("{}", serde_json::to_string(&reply).unwrap()),
                    Err(e) => println!("{}", serde_json::json!({ "error": e })),
                },
                Err(e) => eprintln!("not a request: {e}"),
            },
        }
    }
    guest.power_off().await?;
    Ok(0)
}
