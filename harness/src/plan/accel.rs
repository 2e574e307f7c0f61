//! Which accelerator the run uses: the forced choice, or for `auto` the cached verdict of this host,
//! or a real boot under KVM with a short deadline (see vm/accel.rs for why nothing less will do).

use crate::events::{Event, EventSink};
use crate::guest::Guest;
use crate::vm::VmConfig;
use crate::vm::accel::{self, AccelChoice, Verdict};
use crate::vm::qemu::Accel;
use luo_kernels::{Cache, KernelError};
use std::path::Path;
use std::time::Duration;

pub async fn choose(
    choice: AccelChoice,
    cache: &Cache,
    kernel: &Path,
    initrd: &Path,
    sink: &dyn EventSink,
) -> Result<Accel, KernelError> {
    let qemu_version = crate::vm::qemu_binary(luo_kernels::Arch::X86_64)
        .and_then(|q| std::process::Command::new(q).arg("--version").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let host = accel::host_identity(&qemu_version);
    let path = cache.root().join("accel-verdict.json");
    let cached = accel::load(&path, &host);
    if let Some(a) = accel::pick(choice, cached.as_ref()) {
        sink.emit(Event::AccelChosen {
            accel: a.to_string(),
            cached: cached.is_some(),
        });
        return Ok(a);
    }
    let _lock = cache.lock("accel-probe")?;
    if let Some(v) = accel::load(&path, &host) {
        return Ok(if v.kvm_works { Accel::Kvm } else { Accel::Tcg });
    }
    let (kvm_works, detail) = probe_kvm(kernel, initrd).await;
    sink.emit(Event::AccelProbe {
        kvm_works,
        detail: detail.clone(),
    });
    accel::store(
        &path,
        &Verdict {
            host,
            kvm_works,
            detail,
        },
    );
    Ok(if kvm_works { Accel::Kvm } else { Accel::Tcg })
}

/// Boots the real guest under KVM with a short deadline. Working KVM reaches the hello in well under
/// a second; the broken nested KVM seen on these machines hangs or aborts.
async fn probe_kvm(kernel: &Path, initrd: &Path) -> (bool, String) {
    let mut cfg = VmConfig::new(
        "kvm-probe",
        kernel.to_path_buf(),
        initrd.to_path_buf(),
        Accel::Kvm,
    );
    cfg.timeouts.boot = Duration::from_secs(8);
    cfg.virtiofs = false;
    cfg.discard_artifacts = true;
    match Guest::boot(cfg).await {
        Ok(guest) => {
            let ms = guest.boots()[0].to_hello.as_millis();
            match guest.power_off().await {
                Ok(()) => (true, format!("booted to the agent in {ms} ms")),
                Err(e) => (
                    false,
                    format!(
                        "booted but did not power off: {}",
                        first_line(&e.to_string())
                    ),
                ),
            }
        }
        Err(e) => (false, first_line(&e.to_string())),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}
