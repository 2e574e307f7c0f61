//! What one VM is: kernel, initrd, command line, machine, memory, time limits.

use super::error::VmError;
use super::qemu::{self, Accel, Machine, QemuSpec};
use crate::vm::Timeouts;
use luo_protocol::{AGENT_PORT_NAME, BOOT_INDEX_PARAM, ROOT_PARAM, ROOT_TAG, SHARE_TAG};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Used in artifact directory names and log spans.
    pub name: String,
    /// The bzImage: kexec loads it, and the first boot starts from it unless `cold_boot` is set.
    pub kernel: PathBuf,
    /// An ELF vmlinux of the same kernel with a PVH entry, for the first boot only: QEMU loads its
    /// segments and enters it directly (no real-mode setup, no decompression).
    pub cold_boot: Option<PathBuf>,
    pub initrd: PathBuf,
    /// Appended to [`qemu::BASE_CMDLINE`] on the first boot (and by default on kexec boots).
    pub extra_cmdline: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub machine: Machine,
    pub accel: Accel,
    pub timeouts: Timeouts,
    /// Serve the artifacts' share/ over virtiofs (needed for kexec and exec).
    pub virtiofs: bool,
    /// A root filesystem QEMU serves read-only over 9p (the systemd image): the initrd's first
    /// stage copies it into a tmpfs, unmounts it (a mounted 9p export blocks migration) and starts
    /// its init, on every boot.
    pub root: Option<PathBuf>,
    /// Host files put into the share before the guest starts, at their share-relative paths
    /// (what the first stage installs at boot: a scenario's units and their programs).
    pub share_seed: Vec<(PathBuf, String)>,
    /// Keep the artifacts even on success (default: the LUO_HARNESS_KEEP environment variable).
    pub keep: bool,
    /// Remove the artifacts even on failure (the accelerator probe).
    pub discard_artifacts: bool,
    /// A second QMP monitor QEMU serves at this path, for a tool watching the VM beside the
    /// runner (`luo-harness profile`); the caller picks the path so it can connect from the start.
    pub watch_monitor: Option<PathBuf>,
    /// QEMU's gdb stub on this port, the guest paused until the debugger continues it.
    pub gdb_port: Option<u16>,
    /// Start from a saved VM that booted to the agent's hello, saving one first if there is none
    /// (vm/saved.rs); unless [`VmConfig::cold_boot_reason`] says this VM cannot be restored.
    pub from_saved: bool,
    /// A kernel of this VM has KASAN: KHO's scratch areas are sized from the guest's memory
    /// ([`kho_scratch`]) instead of the kernel's default, which counts KASAN's shadow four times.
    pub kasan: bool,
}

/// `kho_scratch=` for a VM with KASAN kernels: a quarter of memory low (where kexec puts the next
/// kernel and initrd, and most of its early allocations go), a thirty-second each for the global
/// and per-node areas. The next debug kernel needs its image and initrd (about 45 MB) and a shadow
/// of an eighth of memory there. Only a cold boot reads it: a kexec'd kernel inherits its scratch.
pub fn kho_scratch(memory_mib: u32) -> String {
    format!(
        "kho_scratch={}M,{}M,{}M",
        memory_mib / 4,
        memory_mib / 32,
        memory_mib / 32
    )
}

/// Guest memory when nothing asks for more: KHO scratch is carved out of it at boot (about 200 MiB
/// of 256 MiB stay free for the tests), and smaller guests boot faster under TCG.
pub const DEFAULT_MEMORY_MIB: u32 = 256;

impl VmConfig {
    pub fn new(name: &str, kernel: PathBuf, initrd: PathBuf, accel: Accel) -> VmConfig {
        VmConfig {
            name: name.to_string(),
            kernel,
            cold_boot: None,
            initrd,
            extra_cmdline: String::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: 1,
            machine: Machine::Pc,
            accel,
            timeouts: Timeouts::for_accel(accel),
            virtiofs: true,
            root: None,
            share_seed: Vec::new(),
            keep: std::env::var_os("LUO_HARNESS_KEEP").is_some_and(|v| v != "0"),
            discard_artifacts: false,
            watch_monitor: None,
            gdb_port: None,
            from_saved: false,
            kasan: false,
        }
    }

    /// Why this VM boots its kernel instead of starting from a saved one, if it does.
    pub fn cold_boot_reason(&self) -> Option<&'static str> {
        if !self.from_saved {
            Some("a cold boot was asked for")
        } else if self.gdb_port.is_some() {
            Some("a debugger attaches at the first instruction")
        } else if self.watch_monitor.is_some() {
            Some("the boot itself is being watched (profile)")
        } else {
            None
        }
    }

    /// What QEMU loads: the PVH vmlinux when there is one, else the bzImage.
    pub fn first_boot_kernel(&self) -> &Path {
        self.cold_boot.as_deref().unwrap_or(&self.kernel)
    }

    pub fn cmdline(&self, boot_index: u32) -> String {
        let arch = self.machine.arch();
        let mut c = format!(
            "{} {BOOT_INDEX_PARAM}={boot_index}",
            qemu::base_cmdline(arch)
        );
        // x86's clocks need help that arm64's architected timer does not.
        let x86 = arch == luo_kernels::Arch::X86_64;
        if let Some(khz) = qemu::host_tsc_khz().filter(|_| x86) {
            // The guest has no HPET or ACPI PM timer to calibrate its TSC against (no ACPI) and
            // would fall back to a jiffies clock; under TCG its TSC is the host's.
            c.push_str(&format!(" tsc_early_khz={khz}"));
        }
        if self.accel == Accel::Tcg && x86 {
            // Without a TSC-deadline timer (no CPU model TCG offers has one) the kernel calibrates
            // the local APIC timer against the PIT: a fixed 100 ms of guest time, about 220 ms under
            // TCG. The PIT (or HPET) then drives the tick instead; interrupts still go through the
            // local APIC and IOAPIC as usual.
            c.push_str(" noapictimer");
        }
        if self.root.is_some() {
            c.push_str(&format!(" {ROOT_PARAM}={ROOT_TAG}"));
        }
        if self.kasan {
            c.push(' ');
            c.push_str(&kho_scratch(self.memory_mib));
            // KFENCE samples an allocation every 100 ms of wall time and KASAN does not check the
            // objects it took: under KASAN it only makes which detector reports a bug depend on
            // timing (`--cmdline kfence.sample_interval=100` turns it back on).
            c.push_str(" kfence.sample_interval=0");
        }
        if !self.extra_cmdline.trim().is_empty() {
            c.push(' ');
            c.push_str(self.extra_cmdline.trim());
        }
        c
    }

    /// The QEMU command line for this VM, with its sockets (the caller binds them) and console log
    /// in `dir`.
    pub fn qemu_spec(&self, dir: &Path) -> Result<QemuSpec, VmError> {
        Ok(QemuSpec {
            machine: self.machine,
            binary: qemu::qemu_binary(self.machine.arch())
                .ok_or(VmError::NoQemu(self.machine.arch()))?,
            accel: self.accel,
            memory_mib: self.memory_mib,
            cpus: self.cpus,
            kernel: self.first_boot_kernel().to_path_buf(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline(0),
            console_log: dir.join("console.log"),
            agent_socket: dir.join("agent.sock"),
            qmp_socket: dir.join("qmp.sock"),
            watch_monitor: self.watch_monitor.clone(),
            gdb_port: self.gdb_port,
            virtiofs: self
                .virtiofs
                .then(|| (dir.join("vfs.sock"), SHARE_TAG.to_string())),
            root_9p: self.root.clone().map(|r| (r, ROOT_TAG.to_string())),
            agent_port_name: AGENT_PORT_NAME.to_string(),
            bios: std::env::var_os("LUO_HARNESS_BIOS")
                .filter(|b| !b.is_empty())
                .map(PathBuf::from),
            incoming: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        let mut c = VmConfig::new("t", "/k".into(), "/i".into(), Accel::Tcg);
        c.extra_cmdline = " foo=1 ".into();
        c
    }

    #[test]
    fn cmdline_carries_boot_index_and_extra_last() {
        let c = config().cmdline(3);
        assert!(c.starts_with(qemu::BASE_CMDLINE));
        assert!(c.contains(&format!(" {BOOT_INDEX_PARAM}=3")));
        assert!(
            c.ends_with(" foo=1"),
            "extra parameters come last so they win: {c}"
        );
    }

    #[test]
    fn apic_timer_is_skipped_only_under_tcg() {
        let has = |c: &VmConfig| c.cmdline(0).split(' ').any(|w| w == "noapictimer");
        let mut c = config();
        assert!(has(&c));
        c.accel = Accel::Kvm;
        assert!(
            !has(&c),
            "KVM guests have a TSC-deadline timer and need no workaround"
        );
    }

    #[test]
    fn only_a_plain_vm_asked_to_may_start_from_a_saved_one() {
        let mut c = config();
        assert_eq!(c.cold_boot_reason(), Some("a cold boot was asked for"));
        c.from_saved = true;
        assert_eq!(c.cold_boot_reason(), None);
        for edit in [
            (|c: &mut VmConfig| c.gdb_port = Some(1234)) as fn(&mut VmConfig),
            |c| c.watch_monitor = Some("/w.sock".into()),
        ] {
            let mut c = c.clone();
            edit(&mut c);
            assert!(c.cold_boot_reason().is_some(), "{c:?}");
        }
    }

    #[test]
    fn a_kasan_vm_sizes_khos_scratch_from_its_memory() {
        let mut c = config();
        assert!(!c.cmdline(0).contains("kho_scratch"));
        c.kasan = true;
        c.memory_mib = 768;
        assert!(
            c.cmdline(0).contains(" kho_scratch=192M,24M,24M"),
            "{}",
            c.cmdline(0)
        );
        assert!(c.cmdline(0).contains(" kfence.sample_interval=0"));
        c.memory_mib = 2048;
        assert!(c.cmdline(1).contains(" kho_scratch=512M,64M,64M"));
    }

    #[test]
    fn a_root_filesystem_is_named_on_every_boot() {
        let mut c = config();
        assert!(!c.cmdline(0).contains("luo_harness.root"));
        c.root = Some("/img/root".into());
        assert!(c.cmdline(0).contains(" luo_harness.root=luoroot"));
        assert!(
            c.cmdline(2).contains(" luo_harness.root=luoroot"),
            "the kexec'd kernel boots the same image"
        );
        if let Ok(spec) = c.qemu_spec(Path::new("/r")) {
            assert_eq!(spec.root_9p, Some(("/img/root".into(), "luoroot".into())));
        }
    }

    #[test]
    fn cold_boot_image_is_only_for_qemu_and_kexec_keeps_the_bzimage() {
        let mut c = config();
        assert_eq!(c.first_boot_kernel(), Path::new("/k"));
        c.cold_boot = Some("/k.elf".into());
        assert_eq!(c.first_boot_kernel(), Path::new("/k.elf"));
        assert_eq!(c.kernel, Path::new("/k"), "what kexec loads");
    }
}
