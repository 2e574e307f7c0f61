//! `luo-harness profile`: boot, kexec N times, and print where each boot spent its time.

use super::args::{KernelArgs, VmArgs};
use super::failed::Failed;
use super::terminal::Terminal;
use clap::Args;
use luo_harness::Guest;
use luo_harness::plan::{self, Needs};
use luo_harness::profile::{Sampler, SymbolMap, Window, render};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    vm: VmArgs,
    /// How many kexecs after the first boot (each into the same kernel).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=20))]
    kexecs: u32,
    /// Places listed per boot.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..))]
    top: u32,
    /// Least time between samples, in milliseconds (each sample pauses the vCPU briefly; at least
    /// 0.05).
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    interval_ms: f64,
    /// The kernel's System.map (default: the one published beside the bzImage).
    #[arg(long, value_name = "FILE")]
    system_map: Option<PathBuf>,
}

fn interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.05 => Ok(v),
        _ => Err("a number of milliseconds, at least 0.05".into()),
    }
}

pub async fn profile(args: ProfileArgs) -> Result<u8, Failed> {
    let plan = plan::resolve(
        &args.vm.plan_request(&args.kernel)?,
        &Needs::default(),
        &Terminal::default(),
    )
    .await?;
    let map_path = match args
        .system_map
        .clone()
        .or_else(|| plan.boot.system_map.clone())
    {
        Some(p) => p,
        None => {
            return Err(Failed::bad_input(format!(
                "{} has no System.map beside it: pass --system-map",
                plan.boot.boot_image.display()
            )));
        }
    };
    let map = std::fs::read_to_string(&map_path).map_err(|e| Failed::io(&map_path, e))?;
    let map = SymbolMap::parse(&map);

    let dir = tempfile::tempdir()
        .map_err(|e| Failed::io(std::path::Path::new("a temporary directory"), e))?;
    let socket = dir.path().join("watch.sock");
    let mut cfg = plan.vm_config("profile");
    cfg.watch_monitor = Some(socket.clone());
    let interval = std::time::Duration::from_secs_f64(args.interval_ms / 1000.0);
    let sampler = Sampler::start(socket, interval);

    let mut windows = Vec::new();
    let t0 = Instant::now();
    let boot = Guest::boot(cfg).await;
    let mut guest = match boot {
        Ok(g) => g,
        Err(e) => {
            let _ = sampler.finish().await;
            return Err(e.into());
        }
    };
    windows.push(Window {
        label: "boot 0: QEMU start to hello".into(),
        detail: guest.boots()[0].phases.to_string(),
        from: t0,
        to: Instant::now(),
    });
    for _ in 0..args.kexecs {
        let from = Instant::now();
        guest.kexec_same().await?;
        let b = guest.boots().last().expect("a boot after kexec");
        windows.push(Window {
            label: format!(
                "boot {}: kexec load, reboot and boot to hello",
                guest.boot_index()
            ),
            detail: b.phases.to_string(),
            from,
            to: Instant::now(),
        });
    }
    // Stop sampling before the guest powers off: QEMU 10.0 can hang or crash when the guest resets
    // while a monitor is reading its registers.
    let samples = sampler.finish().await;
    guest.power_off().await?;
    let samples = samples.map_err(|e| Failed::infra(format!("sampling: {e}")))?;
    if samples.is_empty() {
        return Err(Failed::infra(
            "no samples: QEMU's second monitor never answered".into(),
        ));
    }
    print!("{}", render(&samples, &windows, &map, args.top as usize));
    Ok(0)
}
