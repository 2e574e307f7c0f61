//! `luo-harness drive`: boot a guest and send it requests typed (or piped) on stdin, one per line:
//! a protocol request as JSON (`{"op":"open_device","handle":"dev"}`), `kexec`, or `quit`.

use super::args::{KernelArgs, VmArgs};
use super::failed::Failed;
use clap::Args;
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
    let (_, mut guest) = args.vm.boot_agent(&args.kernel, "drive").await?;
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
