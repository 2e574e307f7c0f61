//! The options every VM-starting command shares: which kernel, how the VM runs.

use clap::Args;
use luo_harness::plan::{PlanRequest, VmOptions};
use luo_harness::vm::accel::AccelChoice;
use luo_harness::vm::qemu::Machine;
use luo_kernels::BuildRequest;
use luo_kernels::config::Fragment;
use luo_kernels::spec::KernelSpec;
use std::path::PathBuf;

/// How every kernel of a run is built.
#[derive(Args, Clone, Debug, Default)]
pub struct BuildArgs {
    /// Kernel variant (a patch set under kernels/variants/), for every kernel built.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Extra config fragment(s), applied after the built-in ones.
    #[arg(long, value_name = "FILE")]
    pub fragment: Vec<PathBuf>,
    /// Start from your own .config instead of allnoconfig (the harness's options still apply on
    /// top, and are verified).
    #[arg(long, value_name = "FILE")]
    pub base_config: Option<PathBuf>,
    /// make -j (default: cores + 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// How the configuration is made: `minimal` (allnoconfig + kernels/fragments) or
    /// `upstream-selftest` (what tools/testing/selftests/liveupdate/vmtest.sh builds).
    #[arg(long, default_value = "minimal", value_parser = ["minimal", "upstream-selftest"])]
    pub recipe: String,
    /// The debug flavour of every kernel: KASAN, KFENCE, kmemleak, lockdep, UBSAN, DEBUG_LIST,
    /// DEBUG_OBJECTS and DWARF (kernels/fragments/flavours/debug.config); every sanitizer report
    /// fails the scenario, symbolized.
    #[arg(long)]
    pub debug: bool,
    /// The gcov flavour: kernel/liveupdate/, mm/memfd_luo.c and the variant's files profiled
    /// (what `coverage` boots; here for `kernel build/path/key`).
    #[arg(long)]
    pub gcov: bool,
    /// The guest's architecture: x86_64 (the default) or aarch64 (arm64, QEMU's virt board under
    /// TCG; kernels cross-built). Every kernel of a run is the run's architecture: a kexec cannot
    /// change it.
    #[arg(long, value_name = "ARCH", value_parser = parse_arch)]
    pub arch: Option<luo_kernels::Arch>,
}

fn parse_arch(s: &str) -> Result<luo_kernels::Arch, String> {
    s.parse()
        .map_err(|e: luo_kernels::arch::UnknownArch| e.to_string())
}

impl BuildArgs {
    /// How every kernel of the run is built (the source is each kernel's own).
    pub fn template(&self) -> Result<BuildRequest, FragmentError> {
        let mut req = BuildRequest::default();
        if let Some(v) = &self.variant {
            req.variant = v.clone();
        }
        for f in &self.fragment {
            req.extra_fragments.push(fragment(f)?);
        }
        req.base_config = self.base_config.as_ref().map(fragment).transpose()?;
        req.jobs = self.jobs.map(|j| j as usize);
        if self.recipe == "upstream-selftest" {
            req.recipe = luo_kernels::Recipe::UpstreamSelftest;
        }
        req.flavour.debug = self.debug;
        req.flavour.gcov = self.gcov;
        req.arch = self.arch.unwrap_or_default();
        Ok(req)
    }

    /// These options again.
    pub fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Some(v) = &self.variant {
            w.extend(["--variant".into(), v.clone()]);
        }
        for f in &self.fragment {
            w.extend(["--fragment".into(), f.display().to_string()]);
        }
        if let Some(b) = &self.base_config {
            w.extend(["--base-config".into(), b.display().to_string()]);
        }
        if let Some(j) = self.jobs {
            w.extend(["--jobs".into(), j.to_string()]);
        }
        if self.recipe != "minimal" {
            w.extend(["--recipe".into(), self.recipe.clone()]);
        }
        if self.debug {
            w.push("--debug".into());
        }
        if self.gcov {
            w.push("--gcov".into());
        }
        if let Some(a) = self.arch {
            w.extend(["--arch".into(), a.to_string()]);
        }
        w
    }
}

/// Which kernel to use, and how kernels are built.
#[derive(Args, Clone, Debug, Default)]
pub struct KernelArgs {
    /// The kernel to boot: debian:7.3 (the default: the newest 7.3.x the archive has),
    /// debian:7.2, debian:7.3~rc, debian:7.2.13, tree:PATH, git:PATH@REV, file:BZIMAGE (a plain
    /// path to a file is file:).
    #[arg(long, value_name = "SPEC", value_parser = parse_spec, conflicts_with = "tree")]
    pub kernel: Option<KernelSpec>,
    /// Your kernel tree as it is (tree:PATH): staged into the cache and built out of tree, never
    /// written to.
    #[arg(long, value_name = "PATH")]
    pub tree: Option<PathBuf>,
    #[command(flatten)]
    pub build: BuildArgs,
    /// Binds a kernel name a scenario declares (`kernels: [next]`) to a spec: next=debian:7.3.
    #[arg(long = "kernel-as", value_name = "NAME=SPEC", value_parser = parse_binding)]
    pub kernel_as: Vec<(String, KernelSpec)>,
}

pub fn parse_spec(s: &str) -> Result<KernelSpec, String> {
    KernelSpec::parse(s).map_err(|e| e.to_string())
}

fn parse_binding(s: &str) -> Result<(String, KernelSpec), String> {
    let (name, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=SPEC, e.g. next=debian:7.3"))?;
    Ok((name.to_string(), parse_spec(spec)?))
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{path}: {source}")]
pub struct FragmentError {
    path: String,
    source: std::io::Error,
}

fn fragment(path: &PathBuf) -> Result<Fragment, FragmentError> {
    let text = std::fs::read_to_string(path).map_err(|source| FragmentError {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Fragment {
        name: path.display().to_string(),
        text,
    })
}

impl KernelArgs {
    /// The kernel to boot.
    pub fn spec(&self) -> KernelSpec {
        match (&self.tree, &self.kernel) {
            (Some(t), _) => KernelSpec::Tree(t.clone()),
            (None, Some(k)) => k.clone(),
            (None, None) => luo_harness::plan::default_spec(),
        }
    }

    /// How every kernel of the run is built (the source is each kernel's own).
    pub fn build_template(&self) -> Result<BuildRequest, FragmentError> {
        self.build.template()
    }

    /// A build request for the boot kernel's source (resolving a Debian name against the archive).
    pub fn build_request(&self) -> Result<BuildRequest, super::failed::Failed> {
        let source = luo_harness::plan::source_of(&self.spec())?;
        Ok(self.build_template()?.with_source(source))
    }

    /// These options again, for a command line that reruns with the same kernels.
    pub fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        let path = |flag: &str, p: &PathBuf, w: &mut Vec<String>| {
            w.push(flag.into());
            w.push(p.display().to_string());
        };
        if let Some(k) = &self.kernel {
            w.extend(["--kernel".into(), k.to_string()]);
        }
        if let Some(t) = &self.tree {
            path("--tree", t, &mut w);
        }
        w.extend(self.build.words());
        for (name, spec) in &self.kernel_as {
            w.extend(["--kernel-as".into(), format!("{name}={spec}")]);
        }
        w
    }
}

#[derive(Args, Clone, Debug)]
pub struct VmArgs {
    /// Accelerator: auto uses KVM only once it has proven it runs a guest on this host.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Keep the run's artifacts (console, transcripts) even on success.
    #[arg(long)]
    pub keep: bool,
    /// Extra kernel command line.
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Guest memory in MiB (default 256; a scenario's memory_mib wins).
    #[arg(long, value_parser = clap::value_parser!(u32).range(64..=65536))]
    pub memory: Option<u32>,
    /// Machine model (default: microvm when every kernel of the run finds its virtio-mmio devices
    /// on its command line, as kernels built here do; pc for any other).
    #[arg(long, value_enum)]
    pub machine: Option<Machine>,
    /// Start QEMU's gdb stub on a free port with the guest paused, and print the gdb command that
    /// attaches (nothing times out meanwhile).
    #[arg(long)]
    pub gdb: bool,
    /// Boot the kernel for every VM instead of starting from a saved VM that booted it to the
    /// agent's hello (made once per kernel, image, command line and machine; see README).
    #[arg(long)]
    pub cold_boot: bool,
}

impl VmArgs {
    /// Boots the agent on the kernel asked for, with nothing else planned (`boot`, `drive`), and
    /// says first how to attach gdb when the guest waits for it. The accelerator it runs on comes
    /// back with it.
    pub async fn boot_agent(
        &self,
        kernel: &KernelArgs,
        name: &str,
    ) -> Result<(luo_harness::vm::qemu::Accel, luo_harness::Guest), super::failed::Failed> {
        let plan = luo_harness::plan::resolve(
            &self.plan_request(kernel)?,
            &luo_harness::plan::Needs::default(),
            &super::terminal::Terminal::default(),
        )
        .await?;
        if let Some(line) = gdb_line(&plan) {
            eprintln!("luo-harness: the guest is paused for gdb: {line}");
        }
        let guest = luo_harness::Guest::boot(plan.vm_config(name)).await?;
        Ok((plan.accel, guest))
    }

    pub fn plan_request(&self, kernel: &KernelArgs) -> Result<PlanRequest, super::failed::Failed> {
        let gdb_port = if self.gdb { Some(free_port()?) } else { None };
        Ok(PlanRequest {
            kernel: kernel.spec(),
            build: kernel.build_template()?,
            bindings: kernel.kernel_as.iter().cloned().collect(),
            next: None,
            accel: Some(self.accel),
            machine: self.machine,
            vm: VmOptions {
                keep: self.keep,
                extra_cmdline: self.cmdline.clone(),
                memory_mib: self.memory,
                gdb_port,
                cold_boot: self.cold_boot,
            },
        })
    }

    /// These options again (all but --keep), for a rerun command line.
    pub fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.accel != AccelChoice::Auto {
            w.extend(["--accel".into(), format!("{:?}", self.accel).to_lowercase()]);
        }
        if !self.cmdline.is_empty() {
            w.extend(["--cmdline".into(), self.cmdline.clone()]);
        }
        if let Some(m) = self.memory {
            w.extend(["--memory".into(), m.to_string()]);
        }
        if let Some(m) = self.machine {
            w.extend(["--machine".into(), m.to_string()]);
        }
        if self.cold_boot {
            w.push("--cold-boot".into());
        }
        w
    }
}

/// A TCP port on loopback nobody listens on now (QEMU binds it a moment later).
fn free_port() -> Result<u16, super::failed::Failed> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| super::failed::Failed::infra(format!("finding a free port for gdb: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| super::failed::Failed::infra(format!("finding a free port for gdb: {e}")))
}

/// The line that attaches gdb to a VM started with --gdb.
pub fn gdb_line(plan: &luo_harness::Plan) -> Option<String> {
    let port = plan.vm.gdb_port?;
    let vmlinux = plan
        .boot
        .pvh_vmlinux
        .clone()
        .or_else(|| {
            plan.boot
                .system_map
                .as_ref()
                .map(|m| m.with_file_name("vmlinux"))
        })
        .filter(|p| p.is_file());
    Some(match vmlinux {
        Some(v) => format!(
            "gdb {} -ex 'target remote 127.0.0.1:{port}'   # the guest waits; `continue` starts it",
            v.display()
        ),
        None => format!(
            "gdb -ex 'target remote 127.0.0.1:{port}'   # no vmlinux beside the kernel; the guest waits"
        ),
    })
}

/// A debug kernel does not fit in less memory than [`luo_harness::plan::DEBUG_MEMORY_MIB`]:
/// `--memory` below it with `--debug` is refused before anything is built (a scenario's own
/// `memory_mib` is raised to it instead, and `check` refuses `debug: true` with less).
pub fn check_debug_memory(kernel: &KernelArgs, vm: &VmArgs) -> Result<(), super::failed::Failed> {
    let need = luo_harness::plan::DEBUG_MEMORY_MIB;
    match vm.memory.filter(|m| kernel.build.debug && *m < need) {
        Some(m) => Err(super::failed::Failed::bad_input(format!(
            "--memory {m} is too little for a debug kernel: KASAN's shadow and KHO's scratch need at least {need} MiB"
        ))),
        None => Ok(()),
    }
}
