//! The kernel's own LUO test flow (tools/testing/selftests/liveupdate/vmtest.sh, its QEMU step),
//! reproduced exactly so the benchmark can alternate it with ours on the same kernel: the kernel and
//! an inner initrd packed into the outer initrd, `-m 1G -smp 2`, full console to a file, pass =
//! "TEST PASSED" on the serial console. On arm64 as vmtest.sh's `get_arch_conf` has it: `-M virt
//! -cpu max`, console=ttyAMA0, its programs cross-built.

use super::BenchError;
use crate::events::EventSink;
use crate::plan::Plan;
use crate::vm::process::Child;
use luo_initramfs::Initramfs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct UpstreamFlow {
    qemu: PathBuf,
    arch: luo_kernels::Arch,
    kernel: PathBuf,
    initrd: PathBuf,
    serial: PathBuf,
    accel: String,
    _dir: tempfile::TempDir,
}

impl UpstreamFlow {
    /// The flow booting `kernel`, for the plan's architecture. vmtest.sh's programs are built from
    /// the default source (a benchmark of the flow, not of a tree).
    pub async fn prepare(
        p: &Plan,
        kernel: &std::path::Path,
        _sink: &dyn EventSink,
    ) -> Result<UpstreamFlow, BenchError> {
        let arch = p.boot.arch;
        let req = luo_kernels::BuildRequest {
            arch,
            ..Default::default()
        };
        let bins = tokio::task::spawn_blocking(move || {
            luo_kernels::selftests::build(
                &req,
                &luo_kernels::Cache::from_env(),
                "luo_kexec_simple",
                &mut |_| {},
            )
        })
        .await
        .map_err(|e| BenchError::Flow(e.to_string()))?
        .map_err(|e| BenchError::Flow(e.to_string()))?;
        let flow = |e: String| BenchError::Flow(e);
        let init = bins
            .init
            .clone()
            .ok_or_else(|| flow("this source has no vmtest.sh init.c".into()))?;
        let dir = tempfile::Builder::new()
            .prefix("luo-vmtest")
            .tempdir()
            .map_err(|e| flow(e.to_string()))?;
        let base = |i: &mut Initramfs| -> Result<(), luo_initramfs::InitramfsError> {
            i.dir("dev")?.dir("proc")?.dir("debugfs")?;
            i.char_dev("dev/console", 5, 1)?;
            i.file_from_host("init", 0o755, &init)?;
            i.file_from_host("test_binary", 0o755, &bins.test)?;
            Ok(())
        };
        let mut inner = Initramfs::new();
        base(&mut inner).map_err(|e| flow(e.to_string()))?;
        let mut outer = Initramfs::new();
        base(&mut outer).map_err(|e| flow(e.to_string()))?;
        outer
            .file_from_host("kernel", 0o644, kernel)
            .map_err(|e| flow(e.to_string()))?;
        outer
            .file("initrd.img", 0o644, inner.to_bytes())
            .map_err(|e| flow(e.to_string()))?;
        let initrd = dir.path().join("initrd.cpio");
        std::fs::write(&initrd, outer.to_bytes()).map_err(|e| flow(e.to_string()))?;
        Ok(UpstreamFlow {
            qemu: crate::vm::qemu_binary(arch)
                .ok_or(BenchError::Vm(crate::vm::VmError::NoQemu(arch)))?,
            arch,
            kernel: kernel.to_path_buf(),
            initrd,
            serial: dir.path().join("qemu.serial"),
            accel: p.accel.to_string(),
            _dir: dir,
        })
    }

    /// One run; the wall time from QEMU start to exit.
    pub async fn run(&self) -> Result<Duration, String> {
        let _ = std::fs::remove_file(&self.serial);
        let (machine, console) = vmtest_arch_conf(self.arch);
        let mut cmd = std::process::Command::new(&self.qemu);
        cmd.args(machine)
            .args([
                "-m",
                "1G",
                "-smp",
                "2",
                "-no-reboot",
                "-nographic",
                "-nodefaults",
                "-accel",
                &self.accel,
            ])
            .arg("-serial")
            .arg(format!("file:{}", self.serial.display()))
            .arg("-append")
            .arg(format!("console={console} liveupdate=on panic=-1"))
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let t0 = Instant::now();
        let mut child = Child::spawn(cmd, "qemu (vmtest.sh flow)").map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(_) => {}
            Err(_) => return Err("vmtest.sh flow: timed out after 30 s".into()),
        }
        let took = t0.elapsed();
        let serial = std::fs::read_to_string(&self.serial).unwrap_or_default();
        if !serial.contains("TEST PASSED") {
            let tail: Vec<&str> = serial.lines().rev().take(15).collect();
            return Err(format!(
                "vmtest.sh flow did not pass:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        Ok(took)
    }
}

/// vmtest.sh's `get_arch_conf`: the machine arguments of its QEMU command and its console.
fn vmtest_arch_conf(arch: luo_kernels::Arch) -> (&'static [&'static str], &'static str) {
    match arch {
        luo_kernels::Arch::X86_64 => (&[], "ttyS0"),
        luo_kernels::Arch::Aarch64 => (&["-M", "virt", "-cpu", "max"], "ttyAMA0"),
    }
}
