//! What a kexec loads, and the command line the next kernel gets.

use crate::vm::VmConfig;
use std::path::PathBuf;

/// Where the next kernel and initrd are staged in the share.
pub(super) const KERNEL: &str = "kexec/bzImage";
pub(super) const INITRD: &str = "kexec/initrd";

/// Where to kexec to; paths on the host, staged into the share.
#[derive(Debug, Clone)]
pub struct KexecTarget {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Replaces the VM's extra command line for the new kernel, if set.
    pub extra_cmdline: Option<String>,
}

impl KexecTarget {
    /// The VM's command line for boot `next`, with this target's extra parameters and the devices
    /// the first kernel was told about.
    pub fn cmdline(&self, vm: &VmConfig, next: u32, first_cmdline: &str) -> String {
        let mut cfg = vm.clone();
        if let Some(extra) = &self.extra_cmdline {
            cfg.extra_cmdline = extra.clone();
        }
        let mut cmdline = cfg.cmdline(next);
        for device in machine_device_params(first_cmdline) {
            cmdline.push(' ');
            cmdline.push_str(device);
        }
        cmdline
    }
}

/// The parameters QEMU added to the first kernel's command line to announce microvm's virtio-mmio
/// devices. The devices are still there after a kexec, so the next kernel needs them too.
pub fn machine_device_params(cmdline: &str) -> impl Iterator<Item = &str> {
    cmdline
        .split_whitespace()
        .filter(|w| w.starts_with("virtio_mmio.device="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::qemu::Accel;

    #[test]
    fn only_virtio_mmio_devices_are_carried_to_the_next_kernel() {
        let first = "console=ttyS0 quiet luo_harness.boot=0 virtio_mmio.device=512@0xfeb00e00:12 \
                     virtio_mmio.device=512@0xfeb00c00:11 foo=bar";
        let carried: Vec<_> = machine_device_params(first).collect();
        assert_eq!(
            carried,
            [
                "virtio_mmio.device=512@0xfeb00e00:12",
                "virtio_mmio.device=512@0xfeb00c00:11"
            ]
        );
        assert_eq!(machine_device_params("console=ttyS0").count(), 0);
    }

    #[test]
    fn the_next_kernel_gets_its_boot_index_its_own_extra_and_the_devices() {
        let mut vm = VmConfig::new("t", "/k".into(), "/i".into(), Accel::Tcg);
        vm.extra_cmdline = "run=1".into();
        let t = KexecTarget {
            kernel: "/k2".into(),
            initrd: "/i".into(),
            extra_cmdline: Some("next=2".into()),
        };
        let c = t.cmdline(&vm, 1, "x virtio_mmio.device=512@0x1:5");
        assert!(
            c.contains("luo_harness.boot=1") && c.contains("next=2"),
            "{c}"
        );
        assert!(
            !c.contains("run=1"),
            "the target's extra replaces the VM's: {c}"
        );
        assert!(c.ends_with(" virtio_mmio.device=512@0x1:5"), "{c}");
    }
}
