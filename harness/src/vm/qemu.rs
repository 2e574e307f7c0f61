//! The QEMU command line, built from a typed configuration. Pure: no processes, no I/O.

use luo_kernels::Arch;
use std::path::PathBuf;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// The machine model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// i440fx PC: SeaBIOS, PCI, virtio-pci, pvpanic. Boots any x86 kernel.
    Pc,
    /// QEMU's microvm: qboot instead of a BIOS POST, no PCI, virtio-mmio devices announced on the
    /// kernel command line (needs VIRTIO_MMIO_CMDLINE_DEVICES, which the minimal recipe has).
    /// About 200 ms less per cold boot and 70 ms per kexec'd boot under TCG (measured).
    Microvm,
    /// arm64: QEMU's `virt` board, booted without firmware (QEMU hands the kernel a device tree):
    /// a PL011 console, PCI behind a generic ECAM host bridge, PSCI to power off.
    Virt,
}

impl Machine {
    /// The architecture the machine is.
    pub fn arch(self) -> Arch {
        match self {
            Machine::Pc | Machine::Microvm => Arch::X86_64,
            Machine::Virt => Arch::Aarch64,
        }
    }

    /// Whether its devices are on PCI (else virtio-mmio).
    fn has_pci(self) -> bool {
        self != Machine::Microvm
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Machine::Pc => "pc",
            Machine::Microvm => "microvm",
            Machine::Virt => "virt",
        })
    }
}

/// Everything QEMU needs for one VM. Sockets are created by the runner (QEMU connects to them), so
/// nothing waits for QEMU to create a file.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    pub binary: PathBuf,
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub console_log: PathBuf,
    pub agent_socket: PathBuf,
    pub qmp_socket: PathBuf,
    /// A second monitor, served by QEMU (server=on, wait=off): see `VmConfig::watch_monitor`.
    pub watch_monitor: Option<PathBuf>,
    /// gdb stub on 127.0.0.1 at this port; the CPU starts stopped (`-S`).
    pub gdb_port: Option<u16>,
    /// vhost-user-fs socket of virtiofsd, and the tag the guest mounts.
    pub virtiofs: Option<(PathBuf, String)>,
    /// A directory QEMU serves read-only over 9p, and its tag: the systemd image's root.
    pub root_9p: Option<(PathBuf, String)>,
    pub agent_port_name: String,
    /// Firmware; None = QEMU's default (SeaBIOS).
    pub bios: Option<PathBuf>,
    /// Wait for a saved VM to be loaded over QMP (`-incoming defer`) instead of booting.
    pub incoming: bool,
}

impl QemuSpec {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        let mem = format!("{}M", self.memory_mib);
        // `pc` boots measurably faster than q35 under TCG (no PCIe root ports to enumerate). The
        // kernel has no ACPI, so neither machine builds ACPI tables. microvm keeps the PIT: it drives
        // the tick under TCG (see VmConfig::cmdline).
        let mut machine = match self.machine {
            Machine::Pc => "pc,acpi=off".to_string(),
            Machine::Microvm => "microvm,acpi=off,pit=on,pic=on,rtc=on,isa-serial=on".to_string(),
            Machine::Virt => "virt".to_string(),
        };
        if self.virtiofs.is_some() {
            machine.push_str(",memory-backend=mem");
        }
        push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        push(&["-machine", &machine, "-accel", &self.accel.to_string()]);
        push(&["-cpu", cpu_model(self.machine.arch(), self.accel)]);
        push(&["-m", &mem, "-smp", &self.cpus.to_string()]);
        if let Some(bios) = &self.bios {
            push(&["-bios", &bios.display().to_string()]);
        }
        if self.virtiofs.is_some() {
            // vhost-user needs guest RAM that virtiofsd can map.
            push(&[
                "-object",
                &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
            ]);
        }
        push(&["-kernel", &self.kernel.display().to_string()]);
        push(&["-initrd", &self.initrd.display().to_string()]);
        push(&["-append", &self.cmdline]);
        push(&[
            "-chardev",
            &format!("file,id=console,path={}", self.console_log.display()),
        ]);
        push(&["-serial", "chardev:console"]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=qmp,path={},server=off",
                self.qmp_socket.display()
            ),
        ]);
        push(&["-mon", "chardev=qmp,mode=control"]);
        if self.incoming {
            push(&["-incoming", "defer"]);
        }
        if let Some(port) = self.gdb_port {
            push(&["-gdb", &format!("tcp:127.0.0.1:{port}"), "-S"]);
        }
        if let Some(path) = &self.watch_monitor {
            push(&[
                "-chardev",
                &format!("socket,id=watch,path={},server=on,wait=off", path.display()),
            ]);
            push(&["-mon", "chardev=watch,mode=control"]);
        }
        // Two ports (0 is reserved for a console; the agent's is 1) instead of 31: the guest then
        // sets up 6 virtqueues instead of 64 (about 15 ms less per boot under TCG).
        let (serial, fs) = match self.machine.has_pci() {
            true => ("virtio-serial-pci", "vhost-user-fs-pci"),
            false => ("virtio-serial-device", "vhost-user-fs-device"),
        };
        push(&["-device", &format!("{serial},id=vser,max_ports=2")]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=agent,path={},server=off",
                self.agent_socket.display()
            ),
        ]);
        push(&[
            "-device",
            &format!("virtserialport,chardev=agent,name={}", self.agent_port_name),
        ]);
        if self.machine.has_pci() {
            // microvm has no bus the kernel could find a pvpanic device on; there a panic shows as
            // the kernel's reboot (panic=-1) with "Kernel panic" on the console.
            push(&["-device", "pvpanic-pci"]);
        }
        // A guest panic ends QEMU with a failure status (GUEST_PANICKED is sent on QMP first).
        push(&["-action", "panic=exit-failure"]);
        if let Some((dir, tag)) = &self.root_9p {
            // QEMU's own 9p server, not a second virtiofsd: see kernels/fragments/systemd.config.
            push(&[
                "-fsdev",
                &format!(
                    "local,id=root,path={},security_model=passthrough,readonly=on",
                    dir.display()
                ),
            ]);
            let dev = match self.machine.has_pci() {
                true => "virtio-9p-pci",
                false => "virtio-9p-device",
            };
            push(&["-device", &format!("{dev},fsdev=root,mount_tag={tag}")]);
        }
        if let Some((sock, tag)) = &self.virtiofs {
            push(&[
                "-chardev",
                &format!("socket,id=vfs,path={}", sock.display()),
            ]);
            push(&[
                "-device",
                &format!("{fs},queue-size=1024,chardev=vfs,tag={tag}"),
            ]);
        }
        a
    }
}

/// The CPU model. Under KVM the host's own (only ever x86: an arm64 guest on this x86 host runs
/// under TCG). Under TCG for arm64, a Cortex-A72 (ARMv8.0): the kernel reaches init in about
/// 330 ms of guest time against 450 with `max` (with or without `pauth-impdef=on`: the kernel
/// built here has no pointer authentication), whose every optional feature it probes and sets
/// up; LUO and KHO need none of them (docs/arm64.md).
pub fn cpu_model(arch: Arch, accel: Accel) -> &'static str {
    match (arch, accel) {
        (_, Accel::Kvm) => "host",
        (Arch::X86_64, Accel::Tcg) => "qemu64",
        (Arch::Aarch64, Accel::Tcg) => "cortex-a72",
    }
}

/// The QEMU binary for `arch`: `LUO_HARNESS_QEMU` (for x86_64; `LUO_HARNESS_QEMU_AARCH64` for
/// arm64), or qemu-system-<arch> on the PATH.
pub fn qemu_binary(arch: Arch) -> Option<PathBuf> {
    let (var, name) = match arch {
        Arch::X86_64 => ("LUO_HARNESS_QEMU", "qemu-system-x86_64"),
        Arch::Aarch64 => ("LUO_HARNESS_QEMU_AARCH64", "qemu-system-aarch64"),
    };
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| luo_kernels::hosttools::which(name))
}

/// The kernel command line every boot gets, before the per-boot parameters. Chosen for boot speed
/// under TCG (each option measured): quiet console, no speculative-execution mitigations, trusted
/// TSC, one UART, no PS/2 probing, no PC speaker, and expedited RCU grace periods (boot waits on
/// several; about 100 ms less per boot). `reboot=t` restarts by triple fault at once (microvm has
/// no keyboard controller, whose absence costs the default reboot path seconds); QEMU runs with
/// -no-reboot, so a restart is how the guest powers off. `printk.devkmsg=on`: the agent marks every
/// request in the kernel log (luo_protocol::REQUEST_MARK), which the default rate limit (ten lines
/// in five seconds) would drop.
pub const BASE_CMDLINE: &str = "console=ttyS0 quiet loglevel=4 panic=-1 oops=panic reboot=t liveupdate=on \
    mitigations=off no_timer_check tsc=reliable 8250.nr_uarts=1 i8042.noaux i8042.nokbd i8042.nopnp \
    rcupdate.rcu_expedited=1 initcall_blacklist=add_pcspkr printk.devkmsg=on";

/// arm64's: the same without what only x86 has (its PL011 is ttyAMA0; PSCI restarts at once, so
/// no `reboot=`).
pub const BASE_CMDLINE_AARCH64: &str = "console=ttyAMA0 quiet loglevel=4 panic=-1 oops=panic \
    liveupdate=on mitigations=off rcupdate.rcu_expedited=1 printk.devkmsg=on";

/// The command line every boot of `arch` starts with.
pub fn base_cmdline(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => BASE_CMDLINE,
        Arch::Aarch64 => BASE_CMDLINE_AARCH64,
    }
}

/// The host's TSC rate in kHz, measured once against the monotonic clock (20 ms).
pub fn host_tsc_khz() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        static KHZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Some(*KHZ.get_or_init(|| {
            // SAFETY: rdtsc has no preconditions on x86_64.
            let (t0, c0) = (std::time::Instant::now(), unsafe {
                core::arch::x86_64::_rdtsc()
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            let (c1, dt) = (unsafe { core::arch::x86_64::_rdtsc() }, t0.elapsed());
            ((c1 - c0) as f64 / dt.as_secs_f64() / 1000.0) as u64
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QemuSpec {
        QemuSpec {
            binary: "qemu-system-x86_64".into(),
            machine: Machine::Pc,
            accel: Accel::Tcg,
            memory_mib: 256,
            cpus: 1,
            kernel: "/k/bzImage".into(),
            initrd: "/k/initrd".into(),
            cmdline: "console=ttyS0".into(),
            console_log: "/r/console.log".into(),
            agent_socket: "/r/agent.sock".into(),
            qmp_socket: "/r/qmp.sock".into(),
            watch_monitor: None,
            gdb_port: None,
            virtiofs: Some(("/r/vfs.sock".into(), "luoshare".into())),
            root_9p: None,
            agent_port_name: "org.luo-harness.agent".into(),
            bios: None,
            incoming: false,
        }
    }

    fn value_after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn virtiofs_gets_a_shared_memory_backend_of_the_vm_size() {
        let a = spec().args();
        assert_eq!(
            value_after(&a, "-machine"),
            ["pc,acpi=off,memory-backend=mem"]
        );
        assert!(
            value_after(&a, "-object").contains(&"memory-backend-memfd,id=mem,size=256M,share=on")
        );
        assert!(
            value_after(&a, "-device")
                .contains(&"vhost-user-fs-pci,queue-size=1024,chardev=vfs,tag=luoshare")
        );
    }

    #[test]
    fn without_virtiofs_no_shared_memory() {
        let mut s = spec();
        s.virtiofs = None;
        let a = s.args();
        assert_eq!(value_after(&a, "-machine"), ["pc,acpi=off"]);
        assert!(value_after(&a, "-object").is_empty());
    }

    #[test]
    fn a_root_is_served_read_only_by_qemus_own_9p_server() {
        let mut s = spec();
        s.root_9p = Some(("/img/root".into(), "luoroot".into()));
        let a = s.args();
        assert_eq!(
            value_after(&a, "-fsdev"),
            ["local,id=root,path=/img/root,security_model=passthrough,readonly=on"]
        );
        assert!(value_after(&a, "-device").contains(&"virtio-9p-pci,fsdev=root,mount_tag=luoroot"));
        s.machine = Machine::Microvm;
        assert!(
            value_after(&s.args(), "-device")
                .contains(&"virtio-9p-device,fsdev=root,mount_tag=luoroot")
        );
    }

    #[test]
    fn sockets_are_client_side_and_panic_exits() {
        let a = spec().args();
        let chardevs = value_after(&a, "-chardev");
        assert!(chardevs.contains(&"socket,id=agent,path=/r/agent.sock,server=off"));
        assert!(chardevs.contains(&"socket,id=qmp,path=/r/qmp.sock,server=off"));
        assert_eq!(value_after(&a, "-action"), ["panic=exit-failure"]);
        assert!(
            a.contains(&"-no-reboot".to_string()),
            "a guest reboot must end QEMU, not loop"
        );
    }

    #[test]
    fn a_watch_monitor_is_served_by_qemu_beside_the_runners() {
        let mut s = spec();
        assert_eq!(value_after(&s.args(), "-mon").len(), 1);
        s.watch_monitor = Some("/t/watch.sock".into());
        let a = s.args();
        assert!(
            value_after(&a, "-chardev")
                .contains(&"socket,id=watch,path=/t/watch.sock,server=on,wait=off"),
            "QEMU must not wait for the watcher before it boots"
        );
        assert_eq!(
            value_after(&a, "-mon"),
            ["chardev=qmp,mode=control", "chardev=watch,mode=control"]
        );
    }

    #[test]
    fn a_gdb_port_starts_the_guest_stopped_with_the_stub_on_loopback() {
        let mut s = spec();
        assert!(!s.args().contains(&"-S".to_string()));
        s.gdb_port = Some(1234);
        let a = s.args();
        assert_eq!(value_after(&a, "-gdb"), ["tcp:127.0.0.1:1234"]);
        assert!(a.contains(&"-S".to_string()));
    }

    #[test]
    fn a_restore_waits_for_its_state_and_otherwise_boots_the_same_vm() {
        let cold = spec().args();
        let mut s = spec();
        s.incoming = true;
        let restore = s.args();
        assert_eq!(value_after(&restore, "-incoming"), ["defer"]);
        let without: Vec<_> = restore
            .iter()
            .filter(|a| *a != "-incoming" && *a != "defer")
            .cloned()
            .collect();
        assert_eq!(
            without, cold,
            "a restored VM has the devices its state was saved with"
        );
        assert!(value_after(&cold, "-incoming").is_empty());
    }

    #[test]
    fn kvm_uses_host_cpu_tcg_uses_qemu64() {
        let mut s = spec();
        assert_eq!(value_after(&s.args(), "-cpu"), ["qemu64"]);
        s.accel = Accel::Kvm;
        assert_eq!(value_after(&s.args(), "-cpu"), ["host"]);
        assert_eq!(value_after(&s.args(), "-accel"), ["kvm"]);
    }

    #[test]
    fn arm64_boots_the_virt_board_with_pci_devices_on_the_cpu_tcg_boots_fastest() {
        let mut s = spec();
        s.machine = Machine::Virt;
        let a = s.args();
        assert_eq!(value_after(&a, "-machine"), ["virt,memory-backend=mem"]);
        assert_eq!(value_after(&a, "-cpu"), ["cortex-a72"]);
        let devices = value_after(&a, "-device");
        for d in [
            "virtio-serial-pci,id=vser,max_ports=2",
            "vhost-user-fs-pci,queue-size=1024,chardev=vfs,tag=luoshare",
            "pvpanic-pci",
        ] {
            assert!(devices.contains(&d), "{d} in {devices:?}");
        }
        assert_eq!(Machine::Virt.arch(), Arch::Aarch64);
        assert!(base_cmdline(Arch::Aarch64).starts_with("console=ttyAMA0 "));
        assert!(!base_cmdline(Arch::Aarch64).contains("reboot=t"));
    }

    #[test]
    fn microvm_uses_mmio_devices_and_no_pvpanic() {
        let mut s = spec();
        s.machine = Machine::Microvm;
        let a = s.args();
        let machine = value_after(&a, "-machine")[0];
        assert!(machine.starts_with("microvm,") && machine.ends_with(",memory-backend=mem"));
        let devices = value_after(&a, "-device");
        assert!(devices.contains(&"virtio-serial-device,id=vser,max_ports=2"));
        assert!(devices.contains(&"vhost-user-fs-device,queue-size=1024,chardev=vfs,tag=luoshare"));
        assert!(
            !devices.iter().any(|d| d.contains("pci")),
            "no PCI on microvm: {devices:?}"
        );
    }
}
