//! Everything a VM needs before it can boot: a kernel (cached, built, or given), the guest image,
//! and an accelerator verdict.

use crate::guest::GuestError;
use crate::output::{Output, Reporter};
use crate::vm::accel::{self, AccelChoice, Verdict};
use crate::vm::qemu::{Accel, Machine};
use crate::vm::{Vm, VmConfig};
use luo_kernels::{BuildRequest, Cache, KernelError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum KernelChoice {
    /// A bzImage used as is.
    Prebuilt(PathBuf),
    /// Built (or found in the cache) from a source.
    Build(BuildRequest),
}

#[derive(Debug, Clone)]
pub struct Prepared {
    /// The bzImage: what kexec loads, and what a cold boot starts from without `cold_boot`.
    pub kernel: PathBuf,
    /// The same kernel as an ELF vmlinux with a PVH entry, when the build kept one: cold boots
    /// start from it, so QEMU loads the kernel itself and the guest skips the decompressor.
    pub cold_boot: Option<PathBuf>,
    pub initrd: PathBuf,
    pub accel: Accel,
    pub machine: Machine,
    /// Options every VM of this run gets (from the command line).
    pub vm: VmOptions,
}

/// Per-run VM options: keep artifacts, extra kernel command line, memory.
#[derive(Debug, Clone, Default)]
pub struct VmOptions {
    pub keep: bool,
    pub extra_cmdline: String,
    pub memory_mib: Option<u32>,
}

impl Prepared {
    pub fn vm_config(&self, name: &str) -> VmConfig {
        let mut cfg = VmConfig::new(name, self.kernel.clone(), self.initrd.clone(), self.accel);
        cfg.machine = self.machine;
        cfg.cold_boot = self.cold_boot.clone();
        cfg.keep |= self.vm.keep;
        cfg.extra_cmdline = self.vm.extra_cmdline.clone();
        if let Some(m) = self.vm.memory_mib {
            cfg.memory_mib = m;
        }
        cfg
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PrepareError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("{0}: no such kernel image")]
    NoKernel(PathBuf),
    #[error("probing the accelerator: {0}")]
    Probe(#[from] GuestError),
}

pub async fn prepare(
    kernel: &KernelChoice,
    accel: AccelChoice,
    reporter: &dyn Reporter,
) -> Result<Prepared, PrepareError> {
    let cache = Cache::from_env();
    // Only kernels configured here are known to find microvm's devices on their command line.
    let machine = match kernel {
        KernelChoice::Build(req) if req.recipe == luo_kernels::Recipe::Minimal => Machine::Microvm,
        _ => Machine::Pc,
    };
    let (kernel, cold_boot) = match kernel {
        KernelChoice::Prebuilt(p) if p.is_file() => (p.clone(), None),
        KernelChoice::Prebuilt(p) => return Err(PrepareError::NoKernel(p.clone())),
        KernelChoice::Build(req) => {
            let req = req.clone();
            let cache2 = cache.clone();
            // make runs for minutes; keep it off the async workers. Events cross back via a channel.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let job = tokio::task::spawn_blocking(move || {
                luo_kernels::build(&req, &cache2, &mut |e| drop(tx.send(e)))
            });
            while let Some(e) = rx.recv().await {
                reporter.emit(Output::Kernel(e));
            }
            let built = job.await.expect("kernel build task panicked")?;
            (built.bzimage(), built.pvh_vmlinux())
        }
    };
    let initrd = crate::image::initramfs(&cache.root().join("images"))?;
    let accel = choose_accel(accel, &cache, &kernel, &initrd, reporter).await?;
    Ok(Prepared {
        kernel,
        cold_boot,
        initrd,
        accel,
        machine,
        vm: VmOptions::default(),
    })
}

async fn choose_accel(
    choice: AccelChoice,
    cache: &Cache,
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    reporter: &dyn Reporter,
) -> Result<Accel, PrepareError> {
    let qemu_version = crate::vm::qemu_binary()
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
        reporter.emit(Output::AccelChosen {
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
    reporter.emit(Output::AccelProbe {
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
async fn probe_kvm(kernel: &std::path::Path, initrd: &std::path::Path) -> (bool, String) {
    let mut cfg = VmConfig::new(
        "kvm-probe",
        kernel.to_path_buf(),
        initrd.to_path_buf(),
        Accel::Kvm,
    );
    cfg.boot_timeout = Duration::from_secs(8);
    cfg.virtiofs = false;
    cfg.discard_artifacts = true;
    match Vm::boot(cfg).await {
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
