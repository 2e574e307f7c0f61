//! `luo-harness profile`: boot, kexec N times, and print where each boot spent its time.

use super::{KernelArgs, VmArgs};
use clap::Args;
use luo_harness::Vm;
use luo_harness::profile::{Sampler, SymbolMap, Window, render};
use miette::{IntoDiagnostic, WrapErr, miette};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    vm: VmArgs,
    /// How many kexecs after the first boot (each into the same kernel).
    #[arg(long, default_value_t = 1)]
    kexecs: u32,
    /// Places listed per boot.
    #[arg(long, default_value_t = 25)]
    top: usize,
    /// Least time between samples, in milliseconds (each sample pauses the vCPU briefly).
    #[arg(long, default_value_t = 1.0)]
    interval_ms: f64,
    /// The kernel's System.map (default: the one published beside the bzImage).
    #[arg(long, value_name = "FILE")]
    system_map: Option<PathBuf>,
}

pub async fn profile(args: ProfileArgs) -> miette::Result<ExitCode> {
    let prepared = args.vm.prepare(&args.kernel).await?;
    let map_path = args
        .system_map
        .clone()
        .unwrap_or_else(|| prepared.kernel.with_file_name("System.map"));
    let map = std::fs::read_to_string(&map_path)
        .into_diagnostic()
        .wrap_err_with(|| {
            format!(
                "reading {} (pass --system-map for a kernel built elsewhere)",
                map_path.display()
            )
        })?;
    let map = SymbolMap::parse(&map);

    let dir = tempfile::tempdir().into_diagnostic()?;
    let socket = dir.path().join("watch.sock");
    let mut cfg = prepared.vm_config("profile");
    cfg.watch_monitor = Some(socket.clone());
    let interval = std::time::Duration::from_secs_f64(args.interval_ms.max(0.05) / 1000.0);
    let sampler = Sampler::start(socket, interval);

    let mut windows = Vec::new();
    let t0 = Instant::now();
    let boot = Vm::boot(cfg).await;
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
    let samples = samples.map_err(|e| miette!("sampling: {e}"))?;
    if samples.is_empty() {
        return Err(miette!("no samples: QEMU's second monitor never answered"));
    }
    print!("{}", render(&samples, &windows, &map, args.top));
    Ok(ExitCode::SUCCESS)
}
