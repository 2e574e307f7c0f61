//! The run plan: every kernel, program and image a run needs, resolved (built or found in the
//! cache) before any VM starts. Kernels are named by spec (`debian:7.3`, `tree:PATH`,
//! `git:PATH@REV`, `file:BZIMAGE`); every one of them is built with the same recipe, fragments and
//! variant as the boot kernel, and a variant a `kexec` names is built from the boot kernel's source.

mod accel;
mod agent;
pub mod guest_program;
pub mod image;
mod kernel;
pub mod kernel_image;
pub mod stage;

pub use image::GuestImage;
pub use kernel::{GcovNotes, PREBUILT, PlannedKernel};
pub use stage::{Stage, StageError};

use crate::events::{Event, EventSink};
use crate::outcome::{Classify, Kind};
use crate::vm::VmConfig;
use crate::vm::accel::AccelChoice;
use crate::vm::qemu::{Accel, Machine};
use luo_kernels::spec::{KernelSpec, Resolved};
use luo_kernels::{BuildRequest, Cache, KernelError, KernelSource};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The kernel a run boots when nothing says otherwise.
pub const DEFAULT_KERNEL: &str = "debian:7.3";

pub fn default_spec() -> KernelSpec {
    KernelSpec::parse(DEFAULT_KERNEL).expect("the default spec parses")
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// The kernel the VM boots.
    pub kernel: KernelSpec,
    /// Recipe, variant, fragments, base config and jobs for every kernel built (its own `source`
    /// is replaced by each kernel's).
    pub build: BuildRequest,
    /// Names a scenario declares (`kernels: [next]`), bound to specs (`--kernel-as next=...`).
    pub bindings: BTreeMap<String, KernelSpec>,
    /// Where a `kexec` that names no kernel goes (default: the boot kernel).
    pub next: Option<KernelSpec>,
    pub accel: Option<AccelChoice>,
    /// Default: microvm when every kernel of the run can find its devices on its command line
    /// (VIRTIO_MMIO_CMDLINE_DEVICES, as every kernel built here has), pc otherwise.
    pub machine: Option<Machine>,
    pub vm: VmOptions,
}

impl Default for PlanRequest {
    fn default() -> Self {
        PlanRequest {
            kernel: default_spec(),
            build: BuildRequest::default(),
            bindings: BTreeMap::new(),
            next: None,
            accel: None,
            machine: None,
            vm: VmOptions::default(),
        }
    }
}

/// Per-run VM options: keep artifacts, extra kernel command line, memory, a debugger.
#[derive(Debug, Clone, Default)]
pub struct VmOptions {
    pub keep: bool,
    pub extra_cmdline: String,
    pub memory_mib: Option<u32>,
    /// Start paused with QEMU's gdb stub on this TCP port.
    pub gdb_port: Option<u16>,
    /// Boot every VM's kernel instead of starting from a saved booted VM.
    pub cold_boot: bool,
}

/// What the scenarios of a run need besides the boot kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Kernels a `kexec` step names: variants, specs, or declared names.
    pub kernels: BTreeSet<String>,
    /// Selftests an `exec` step runs (`selftests/<name>`).
    pub selftests: BTreeSet<String>,
    /// C programs an `exec: {source: ...}` builds, with where the first scenario names each
    /// (`file:line:column`, for a compile error).
    pub programs: BTreeMap<CProgram, String>,
    /// A scenario has `shell: true`: the image with busybox is needed too.
    pub shell: bool,
    /// A scenario has `image: systemd`: the Debian root filesystem with systemd is needed.
    pub systemd: bool,
    /// A scenario has `debug: true`: the debug flavour of every kernel is needed too.
    pub debug: bool,
}

/// A scenario's own C program: its sources (absolute) and C library.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CProgram {
    pub sources: Vec<PathBuf>,
    pub libc: luo_kernels::programs::Libc,
}

impl CProgram {
    /// The sources, as a scenario names them, made absolute against its directory `dir` and without
    /// `.` components, so one file is one key however it is named.
    pub fn against(mut self, dir: &Path) -> CProgram {
        for s in &mut self.sources {
            let joined = dir.join(&*s);
            *s = std::fs::canonicalize(&joined).unwrap_or(joined);
        }
        self
    }

    /// The program's name in the guest: its first source's stem.
    pub fn name(&self) -> String {
        self.sources[0]
            .file_stem()
            .map_or_else(|| "program".into(), |s| s.to_string_lossy().into_owned())
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub boot: PlannedKernel,
    /// Where a `kexec` that names no kernel goes; the boot kernel when None.
    pub next: Option<PlannedKernel>,
    /// Kernels a `kexec` step names, by the name it uses.
    pub kernels: BTreeMap<String, PlannedKernel>,
    /// Built selftest programs, by name.
    pub selftests: BTreeMap<String, PathBuf>,
    /// Built C programs of the scenarios.
    pub programs: BTreeMap<CProgram, PathBuf>,
    pub initrd: PathBuf,
    /// The agent file the initrd holds, when it is not the embedded x86 one (what a stage carries
    /// for another architecture).
    pub agent_file: Option<PathBuf>,
    /// The busybox file the shell image holds (what a stage carries for the plan's machine: the
    /// host's on x86_64, Debian's busybox-static of the machine on another).
    pub busybox_file: Option<PathBuf>,
    /// The image with busybox as /bin/sh, for scenarios with `shell: true`.
    pub shell_initrd: Option<PathBuf>,
    /// The Debian root filesystem with systemd, for scenarios with `image: systemd`: the directory
    /// QEMU serves the guest, holding the root as one archive.
    pub systemd_root: Option<PathBuf>,
    pub accel: Accel,
    pub machine: Machine,
    pub vm: VmOptions,
    /// The same plan with the debug flavour of every kernel, for scenarios with `debug: true` in
    /// a run that is not `--debug` itself.
    pub debug: Option<Box<Plan>>,
}

/// The memory a guest of a debug kernel gets at least. KASAN's shadow takes an eighth of it at
/// boot; by default KHO's scratch areas are four times what the first kernel reserved at boot
/// (200% for low memory and 200% per node), shadow included, which no guest size fits (1 GiB:
/// "Failed to reserve nid 0 scratch buffer"), so a VM with a KASAN kernel sizes them itself
/// ([`crate::vm::VmConfig::kasan`]). The next kernel, its initrd and its own shadow must fit in
/// the scratch. Measured (docs/findings.md, "Memory"): 512 MiB boots and kexecs with 179 MB left
/// to the first kernel's user space; 768 MiB leaves 350 MB, for the scenarios with thousands of
/// sessions and memfds, at the same boot time.
pub const DEBUG_MEMORY_MIB: u32 = 768;

/// How much longer a boot of a debug kernel may take than the plain one's limit.
pub const DEBUG_BOOT_FACTOR: u32 = 4;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error("kernel {label}: {source}")]
    Kernel {
        label: String,
        #[source]
        #[diagnostic_source]
        source: KernelError,
    },
    #[error("selftest {name} from {label}: {source}")]
    Selftest {
        name: String,
        label: String,
        #[source]
        #[diagnostic_source]
        source: KernelError,
    },
    /// A scenario's own C program did not build: bad input, at the step that names it.
    #[error("{at}: building {program} for the guest")]
    Program {
        at: String,
        program: String,
        #[source]
        #[diagnostic_source]
        source: KernelError,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Image(#[from] image::ImageError),
    #[error("{0}: no such kernel image")]
    NoKernelFile(PathBuf),
    #[diagnostic(help(
        "give the {} of a {arch} build ({}), or a source: debian:, tree:, git:",
        arch.image_target(), arch.image_path()
    ))]
    #[error("{}: {why}", path.display())]
    NotABootImage {
        path: PathBuf,
        arch: luo_kernels::Arch,
        why: String,
    },
    #[error("{what} needs a kernel source, but {} is only a kernel image (use a source: debian:, tree:, git:)", kernel.display())]
    NeedsSource { what: String, kernel: PathBuf },
    #[diagnostic(help(
        "bind it on the command line: --kernel-as {name}=debian:7.3 (or tree:, git:, file:)"
    ))]
    #[error("a scenario kexecs into `{name}`, which is not bound to a kernel")]
    Unbound { name: String },
    #[error("--machine {machine} is a {} machine; this run's architecture is {arch}", machine.arch())]
    MachineArch {
        machine: Machine,
        arch: luo_kernels::Arch,
    },
    #[diagnostic(help(
        "leave --accel at auto (or tcg): an {arch} guest on this host runs under TCG"
    ))]
    #[error("KVM cannot run an {arch} guest on an x86_64 host")]
    ForeignKvm { arch: luo_kernels::Arch },
    #[error("choosing the accelerator: {0}")]
    Accel(KernelError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Stage(#[from] StageError),
}

impl Classify for PlanError {
    fn kind(&self) -> Kind {
        match self {
            PlanError::Kernel { source, .. }
            | PlanError::Selftest { source, .. }
            | PlanError::Program { source, .. } => source.kind(),
            PlanError::NoKernelFile(_)
            | PlanError::NotABootImage { .. }
            | PlanError::NeedsSource { .. }
            | PlanError::Unbound { .. }
            | PlanError::MachineArch { .. }
            | PlanError::ForeignKvm { .. } => Kind::BadInput,
            PlanError::Image(_) | PlanError::Accel(_) | PlanError::Stage(_) => Kind::InfraFailure,
        }
    }
}

impl Plan {
    /// The plan a scenario runs on: this one, or its debug flavour for `debug: true`.
    pub fn for_scenario(&self, debug: bool) -> &Plan {
        match (debug, &self.debug) {
            (true, Some(d)) => d,
            _ => self,
        }
    }

    /// The least memory a guest of this plan's kernels needs, when that is more than the default.
    pub fn min_memory_mib(&self) -> Option<u32> {
        self.all_kernels()
            .any(|k| k.flavour.debug || k.has("KASAN"))
            .then_some(DEBUG_MEMORY_MIB)
    }

    /// The configuration of one VM of this run.
    pub fn vm_config(&self, name: &str) -> VmConfig {
        let mut cfg = VmConfig::new(
            name,
            self.boot.boot_image.clone(),
            self.initrd.clone(),
            self.accel,
        );
        cfg.machine = self.machine;
        cfg.cold_boot = self.boot.pvh_vmlinux.clone();
        cfg.keep |= self.vm.keep;
        cfg.extra_cmdline = self.vm.extra_cmdline.clone();
        cfg.from_saved = !self.vm.cold_boot;
        if let Some(m) = self.min_memory_mib() {
            cfg.memory_mib = cfg.memory_mib.max(m);
            cfg.kasan = true;
            // Under TCG a debug kernel boots in about 6 s where the plain one takes 0.5 (and
            // systemd on one took 241 s for systemd-fd-store, against about 8): boots get longer.
            cfg.timeouts = cfg
                .timeouts
                .with_boot(cfg.timeouts.boot * DEBUG_BOOT_FACTOR);
        }
        if let Some(m) = self.vm.memory_mib {
            cfg.memory_mib = m;
        }
        if let Some(port) = self.vm.gdb_port {
            // A person at a debugger sets the pace: nothing times out under it.
            cfg.gdb_port = Some(port);
            cfg.timeouts = crate::vm::Timeouts::debugging();
        }
        cfg
    }

    /// The kernel a kexec goes into: the one it names, or the run's default next kernel.
    pub fn kexec_kernel(&self, name: Option<&str>) -> Option<&PlannedKernel> {
        match name {
            None => Some(self.next.as_ref().unwrap_or(&self.boot)),
            Some(n) => self.kernels.get(n),
        }
    }

    pub fn selftest(&self, name: &str) -> Option<&Path> {
        self.selftests.get(name).map(PathBuf::as_path)
    }

    /// The guest image for a scenario with or without `shell: true` (None: the plan lacks it).
    pub fn initrd_for(&self, shell: bool) -> Option<&Path> {
        match shell {
            true => self.shell_initrd.as_deref(),
            false => Some(&self.initrd),
        }
    }

    pub fn program(&self, p: &CProgram) -> Option<&Path> {
        self.programs.get(p).map(PathBuf::as_path)
    }

    /// Every kernel the run may boot.
    pub fn all_kernels(&self) -> impl Iterator<Item = &PlannedKernel> {
        std::iter::once(&self.boot)
            .chain(self.next.iter())
            .chain(self.kernels.values())
    }
}

/// A spec resolved, and built or found: what every kernel of a run goes through.
pub struct Resolver<'a> {
    cache: Cache,
    template: &'a BuildRequest,
    sink: &'a dyn EventSink,
    /// What another machine built for this one (a nextest archive's), consulted first.
    stage: Option<Stage>,
    /// Each spec is resolved (the archive asked, git revs looked up) and built once per run.
    done: BTreeMap<(String, String), PlannedKernel>,
}

impl<'a> Resolver<'a> {
    pub fn new(
        template: &'a BuildRequest,
        sink: &'a dyn EventSink,
    ) -> Result<Resolver<'a>, StageError> {
        Ok(Resolver {
            cache: Cache::from_env(),
            template,
            sink,
            stage: Stage::find()?,
            done: BTreeMap::new(),
        })
    }

    /// The stage, for a spec whose builds it may carry: a Debian package is the same source on
    /// every machine; a tree or a git commit is built where it is.
    fn stage_for(&self, spec: &KernelSpec) -> Option<&Stage> {
        matches!(spec, KernelSpec::Debian(_))
            .then_some(self.stage.as_ref())
            .flatten()
    }

    fn staged(&self, what: String, path: &Path) {
        self.sink.emit(Event::Staged {
            what,
            path: path.to_path_buf(),
        });
    }

    /// The guest agent for `arch`, checked to be a static executable for it: x86's embedded one
    /// (or `LUO_HARNESS_AGENT`); for arm64 `LUO_HARNESS_AGENT_AARCH64`, the stage's, or the one
    /// luo-cross builds (once per agent source and rustc).
    pub async fn agent(&self, arch: luo_kernels::Arch) -> Result<agent::Agent, PlanError> {
        let unreadable = |u: agent::Unreadable| image::ImageError::Io {
            path: u.path,
            source: u.source,
        };
        let found = match (arch, agent::overridden(arch)) {
            (luo_kernels::Arch::X86_64, _) => agent::agent().map_err(unreadable)?,
            (_, Some(path)) => agent::from_file(&path).map_err(unreadable)?,
            (_, None) => {
                let staged = match &self.stage {
                    Some(s) => s.agent(arch)?,
                    None => None,
                };
                let path = match staged {
                    Some(p) => {
                        self.staged(format!("agent {arch}"), &p);
                        p
                    }
                    None => {
                        let c = self.cache.clone();
                        let to_event = move |message: String| Event::Image {
                            name: format!("agent-{arch}"),
                            message,
                        };
                        blocking_with(self.sink, to_event, move |on| {
                            luo_cross::agent(&c, agent::SOURCES, arch, &mut |s| on(s.to_string()))
                        })
                        .await
                        .map_err(image::ImageError::from)?
                    }
                };
                agent::from_file(&path).map_err(unreadable)?
            }
        };
        luo_kernels::executable::check_static(&found.bytes, arch).map_err(|why| {
            image::ImageError::WrongAgent {
                from: found.from(),
                arch,
                var: agent::override_var(arch),
                why,
            }
        })?;
        Ok(found)
    }

    /// The busybox an image with a shell is made with on `arch`: the stage's, else the host's for
    /// x86_64, and Debian's busybox-static of that architecture for another (luo-cross).
    pub async fn busybox(&self, arch: luo_kernels::Arch) -> Result<PathBuf, PlanError> {
        if let Some(p) = self
            .stage
            .as_ref()
            .map(|s| s.busybox(arch))
            .transpose()?
            .flatten()
        {
            self.staged(format!("busybox {arch}"), &p);
            return Ok(p);
        }
        if arch == luo_kernels::Arch::X86_64 {
            return Ok(PathBuf::from(image::BUSYBOX));
        }
        let c = self.cache.clone();
        let to_event = move |message: String| Event::Image {
            name: format!("busybox-{arch}"),
            message,
        };
        Ok(blocking_with(self.sink, to_event, move |on| {
            luo_cross::busybox(&c, arch, &mut |s| on(s.to_string()))
        })
        .await
        .map_err(image::ImageError::from)?)
    }

    /// The kernel `spec` names, with `variant` (the template's when None).
    pub async fn kernel(
        &mut self,
        spec: &KernelSpec,
        variant: Option<&str>,
    ) -> Result<PlannedKernel, PlanError> {
        let variant = variant.unwrap_or(&self.template.variant).to_string();
        let key = (spec.to_string(), variant.clone());
        if let Some(k) = self.done.get(&key) {
            return Ok(k.clone());
        }
        let label = spec.to_string();
        if let Some(stage) = self.stage_for(spec) {
            let recipe_key =
                self.template
                    .with_variant(&variant)
                    .recipe_key()
                    .map_err(|source| PlanError::Kernel {
                        label: label.clone(),
                        source,
                    })?;
            if let Some(k) = stage.kernel(&label, &variant, &recipe_key)? {
                self.staged(k.label(), &k.boot_image);
                self.done.insert(key, k.clone());
                return Ok(k);
            }
        }
        let resolved = {
            let (cache, s) = (self.cache.clone(), spec.clone());
            tokio::task::spawn_blocking(move || s.resolve(&cache))
                .await
                .expect("resolving a kernel spec panicked")
                .map_err(|source| PlanError::Kernel {
                    label: label.clone(),
                    source,
                })?
        };
        let mut k = match resolved {
            Resolved::File(p) if p.is_file() => {
                let arch = self.template.arch;
                kernel_image::check(&p, arch).map_err(|why| PlanError::NotABootImage {
                    path: p.clone(),
                    arch,
                    why,
                })?;
                PlannedKernel::prebuilt(&p, arch)
            }
            Resolved::File(p) => return Err(PlanError::NoKernelFile(p)),
            Resolved::Source(source) => {
                let req = self.template.with_source(source).with_variant(&variant);
                build_kernel(&req, self.sink).await?
            }
        };
        k.spec = spec.to_string();
        self.done.insert(key, k.clone());
        Ok(k)
    }

    /// The kernel `name` (as a `kexec` step writes it) names: a variant of the boot kernel's
    /// source, a spec, or a name bound on the command line.
    pub async fn named(
        &mut self,
        name: &str,
        boot: &PlannedKernel,
        boot_spec: &KernelSpec,
        bindings: &BTreeMap<String, KernelSpec>,
    ) -> Result<PlannedKernel, PlanError> {
        if luo_kernels::variant::find(name).is_ok() {
            if boot.variant == PREBUILT {
                return Err(PlanError::NeedsSource {
                    what: format!("`kexec: {{kernel: {name}}}`"),
                    kernel: boot.boot_image.clone(),
                });
            }
            return self.kernel(boot_spec, Some(name)).await;
        }
        if KernelSpec::looks_like(name) {
            let spec = KernelSpec::parse(name).map_err(|source| PlanError::Kernel {
                label: name.into(),
                source,
            })?;
            return self.kernel(&spec, None).await;
        }
        match bindings.get(name) {
            Some(spec) => self.kernel(spec, None).await,
            None => Err(PlanError::Unbound { name: name.into() }),
        }
    }

    /// The selftest `name`, built from the same source as `spec`.
    pub async fn selftest(
        &mut self,
        spec: &KernelSpec,
        name: &str,
        boot: &PlannedKernel,
    ) -> Result<PathBuf, PlanError> {
        if let Some(path) = self
            .stage_for(spec)
            .map(|s| s.selftest(self.template.arch, &spec.to_string(), name))
            .transpose()?
            .flatten()
        {
            self.staged(format!("selftests/{name}"), &path);
            return Ok(path);
        }
        let what = format!("`exec: selftests/{name}`");
        let source = match spec.resolve(&self.cache) {
            Ok(Resolved::Source(s)) => s,
            Ok(Resolved::File(_)) => {
                return Err(PlanError::NeedsSource {
                    what,
                    kernel: boot.boot_image.clone(),
                });
            }
            Err(source) => {
                return Err(PlanError::Kernel {
                    label: spec.to_string(),
                    source,
                });
            }
        };
        build_selftest(&self.template.with_source(source), name, self.sink).await
    }

    /// The C program `p`, built against the same source as `spec`.
    pub async fn program(
        &mut self,
        spec: &KernelSpec,
        p: &CProgram,
        at: &str,
        boot: &PlannedKernel,
    ) -> Result<PathBuf, PlanError> {
        let name = p.name();
        if self.stage_for(spec).is_some() {
            let key = luo_kernels::programs::sources_key(&name, &p.sources, p.libc).map_err(
                |source| PlanError::Program {
                    at: at.to_string(),
                    program: name.clone(),
                    source,
                },
            )?;
            if let Some(path) = self
                .stage_for(spec)
                .map(|s| s.program(self.template.arch, &spec.to_string(), &key))
                .transpose()?
                .flatten()
            {
                self.staged(name, &path);
                return Ok(path);
            }
        }
        let source = match spec.resolve(&self.cache) {
            Ok(Resolved::Source(s)) => s,
            Ok(Resolved::File(_)) => {
                return Err(PlanError::NeedsSource {
                    what: format!("`exec: {{source: ...}}` ({at})"),
                    kernel: boot.boot_image.clone(),
                });
            }
            Err(source) => {
                return Err(PlanError::Kernel {
                    label: spec.to_string(),
                    source,
                });
            }
        };
        let req = self.template.with_source(source);
        let label = req.source.location();
        self.sink.emit(Event::Program {
            name: name.clone(),
            label: label.clone(),
        });
        let (r, p2, n) = (req.clone(), p.clone(), name.clone());
        blocking(label, self.sink, move |on| {
            luo_kernels::programs::build(&r, &Cache::from_env(), &n, &p2.sources, p2.libc, on)
        })
        .await
        .map_err(|source| PlanError::Program {
            at: at.to_string(),
            program: name,
            source,
        })
    }
}

/// Builds or finds everything `needs` names, then the image and the accelerator.
pub async fn resolve(
    req: &PlanRequest,
    needs: &Needs,
    sink: &dyn EventSink,
) -> Result<Plan, PlanError> {
    let cache = Cache::from_env();
    let arch = req.build.arch;
    if let Some(m) = req.machine.filter(|m| m.arch() != arch) {
        return Err(PlanError::MachineArch { machine: m, arch });
    }
    if arch != luo_kernels::Arch::X86_64 && req.accel == Some(AccelChoice::Kvm) {
        return Err(PlanError::ForeignKvm { arch });
    }
    let mut r = Resolver::new(&req.build, sink)?;
    let (boot, next, kernels) = resolve_kernels(&mut r, req, needs).await?;
    let mut selftests = BTreeMap::new();
    for name in &needs.selftests {
        selftests.insert(name.clone(), r.selftest(&req.kernel, name, &boot).await?);
    }
    let mut programs = BTreeMap::new();
    for (p, at) in &needs.programs {
        programs.insert(p.clone(), r.program(&req.kernel, p, at, &boot).await?);
    }
    let images = cache.root().join("images");
    let agent = r.agent(req.build.arch).await?;
    let initrd = image::initramfs(&images, &agent, None, arch)?;
    let busybox_file = match needs.shell {
        true => Some(r.busybox(arch).await?),
        false => None,
    };
    let shell_initrd = busybox_file
        .as_deref()
        .map(|b| image::initramfs(&images, &agent, Some(b), arch))
        .transpose()?;
    // The systemd image is x86_64 only so far: its scenarios are skipped on another machine
    // (Scenario::unsupported_on), and nothing is built for them.
    let x86 = arch == luo_kernels::Arch::X86_64;
    let systemd_root = match needs.systemd && x86 {
        true => Some(r.systemd_root().await?),
        false => None,
    };
    let accel = match arch {
        luo_kernels::Arch::X86_64 => accel::choose(
            req.accel.unwrap_or(AccelChoice::Auto),
            &cache,
            &boot.boot_image,
            &initrd,
            sink,
        )
        .await
        .map_err(PlanError::Accel)?,
        // KVM runs only guests of the host's own architecture.
        _ => Accel::Tcg,
    };
    let mut plan = Plan {
        boot,
        next,
        kernels,
        selftests,
        programs,
        initrd,
        // The x86 agent is embedded in the harness; another architecture's is a file to stage.
        agent_file: agent.file.clone().filter(|_| !x86),
        busybox_file,
        shell_initrd,
        systemd_root,
        accel,
        machine: Machine::Pc,
        vm: req.vm.clone(),
        debug: None,
    };
    if needs.debug && !req.build.flavour.debug {
        let template = req
            .build
            .with_flavour(req.build.flavour.with(luo_kernels::Flavour::DEBUG));
        let mut r = Resolver::new(&template, sink)?;
        let (boot, next, kernels) = resolve_kernels(&mut r, req, needs).await?;
        plan.debug = Some(Box::new(Plan {
            boot,
            next,
            kernels,
            ..plan.clone()
        }));
    }
    plan.machine = req.machine.unwrap_or_else(|| {
        if arch == luo_kernels::Arch::Aarch64 {
            return Machine::Virt;
        }
        let kernels = plan
            .all_kernels()
            .chain(plan.debug.iter().flat_map(|d| d.all_kernels()));
        match kernels.into_iter().all(PlannedKernel::finds_mmio_devices) {
            true => Machine::Microvm,
            false => Machine::Pc,
        }
    });
    if let Some(d) = plan.debug.as_mut() {
        d.machine = plan.machine;
    }
    Ok(plan)
}

/// The architectures besides x86_64 the suite runs its scenarios on.
pub const OTHER_ARCHES: &[luo_kernels::Arch] = &[luo_kernels::Arch::Aarch64];

/// What the suite needs on `arch` of what it needs on x86: the designs, the selftests and the
/// scenarios' programs, built for that machine. Not the kernels of other releases (the matrix
/// and cross-release kexecs are x86's), nor the image that is x86_64 only (systemd), nor the
/// debug flavour.
pub fn needs_on_arch(needs: &Needs) -> Needs {
    Needs {
        kernels: needs
            .kernels
            .iter()
            .filter(|k| luo_kernels::variant::find(k).is_ok())
            .cloned()
            .collect(),
        selftests: needs.selftests.clone(),
        programs: needs.programs.clone(),
        shell: needs.shell,
        systemd: false,
        debug: false,
    }
}

/// The plan request of the suite's default configuration on `arch`.
pub fn request_on_arch(arch: luo_kernels::Arch) -> PlanRequest {
    PlanRequest {
        build: BuildRequest {
            arch,
            ..BuildRequest::default()
        },
        ..PlanRequest::default()
    }
}

/// The kernels the test suite boots besides the plain designs, as (flavour, variant) of the
/// default kernel: the debug flavour of every variant (the four designs, whose scenario set runs on
/// it, and the test-only ones with planted bugs), the gcov flavour of the default variant, and the
/// plain flavour of the planted cost `delta` is tested with.
pub fn suite_flavours() -> Vec<(luo_kernels::Flavour, String)> {
    use luo_kernels::variant::{Planted, planted};
    let mut v: Vec<_> = luo_kernels::variant::all()
        .filter(|v| !matches!(planted(v.name), Some(Planted::Cost | Planted::Contract)))
        .map(|v| (luo_kernels::Flavour::DEBUG, v.name.to_string()))
        .collect();
    v.push((
        luo_kernels::Flavour::GCOV,
        luo_kernels::variant::DEFAULT.into(),
    ));
    // What harness/tests/delta.rs measures (test-slow-kexec is for ci/bench-delta-planted).
    v.push((luo_kernels::Flavour::PLAIN, "test-fat-session".into()));
    // What harness/tests/fuzz_programs.rs must find.
    v.push((luo_kernels::Flavour::PLAIN, "test-retrieve-twice".into()));
    v
}

/// The kernel `req` boots, in each of `flavours` (flavour, variant): built, found in the cache
/// or taken from the stage, like any kernel of a plan.
pub async fn flavoured_kernels(
    req: &PlanRequest,
    flavours: &[(luo_kernels::Flavour, String)],
    sink: &dyn EventSink,
) -> Result<Vec<PlannedKernel>, PlanError> {
    let mut out = Vec::new();
    for (flavour, variant) in flavours {
        let template = req.build.with_flavour(*flavour);
        let mut r = Resolver::new(&template, sink)?;
        out.push(r.kernel(&req.kernel, Some(variant)).await?);
    }
    Ok(out)
}

/// The boot kernel, the run's next kernel and every kernel a `kexec` names, in the resolver's
/// flavour.
async fn resolve_kernels(
    r: &mut Resolver<'_>,
    req: &PlanRequest,
    needs: &Needs,
) -> Result<
    (
        PlannedKernel,
        Option<PlannedKernel>,
        BTreeMap<String, PlannedKernel>,
    ),
    PlanError,
> {
    let boot = r.kernel(&req.kernel, None).await?;
    let next = match &req.next {
        Some(spec) => Some(r.kernel(spec, None).await?),
        None => None,
    };
    let mut kernels = BTreeMap::new();
    kernels.insert(boot.variant.clone(), boot.clone());
    for name in &needs.kernels {
        if kernels.contains_key(name) {
            continue;
        }
        let k = r.named(name, &boot, &req.kernel, &req.bindings).await?;
        kernels.insert(name.clone(), k);
    }
    Ok((boot, next, kernels))
}

impl Resolver<'_> {
    /// The systemd image's root filesystem as the guest takes it (luo_rootfs::DebianRoot::
    /// guest_dir): its tree unpacked from the stage's tarball, or built by mmdebstrap the first
    /// time (about half a minute).
    pub async fn systemd_root(&self) -> Result<PathBuf, PlanError> {
        let root = luo_rootfs::SYSTEMD;
        let c = self.cache.clone();
        if let Some(tarball) = match &self.stage {
            Some(s) => s.root(root.name, &root.key())?,
            None => None,
        } {
            self.staged(format!("image {}", root.name), &tarball);
            tokio::task::spawn_blocking(move || root.unpack(&c, &tarball))
                .await
                .expect("unpacking a root filesystem panicked")
                .map_err(image::ImageError::from)?;
        }
        let c = self.cache.clone();
        let to_event = |message| Event::Image {
            name: root.name.into(),
            message,
        };
        let dir = blocking_with(self.sink, to_event, move |on| root.guest_dir(&c, on))
            .await
            .map_err(image::ImageError::from)?;
        Ok(dir)
    }
}

/// What a build request is called in progress and errors.
pub fn request_label(req: &BuildRequest) -> String {
    match req.flavour.is_plain() {
        true => format!("{} {}", req.source.location(), req.variant),
        false => format!("{} {} {}", req.source.location(), req.variant, req.flavour),
    }
}

/// make runs for minutes: off the async workers, its events sent back through a channel.
async fn blocking<T: Send + 'static>(
    label: String,
    sink: &dyn EventSink,
    job: impl FnOnce(&mut dyn FnMut(luo_kernels::BuildEvent)) -> T + Send + 'static,
) -> T {
    let to_event = |event| Event::Kernel {
        label: label.clone(),
        event,
    };
    blocking_with(sink, to_event, job).await
}

/// A long blocking job (a build) off the async workers; what it reports becomes events.
async fn blocking_with<E: Send + 'static, T: Send + 'static>(
    sink: &dyn EventSink,
    to_event: impl Fn(E) -> Event,
    job: impl FnOnce(&mut dyn FnMut(E)) -> T + Send + 'static,
) -> T {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || job(&mut |e| drop(tx.send(e))));
    while let Some(e) = rx.recv().await {
        sink.emit(to_event(e));
    }
    task.await.expect("a build task panicked")
}

pub async fn build_kernel(
    req: &BuildRequest,
    sink: &dyn EventSink,
) -> Result<PlannedKernel, PlanError> {
    let label = request_label(req);
    let r = req.clone();
    let built = blocking(label.clone(), sink, move |on| {
        luo_kernels::build(&r, &Cache::from_env(), on)
    })
    .await;
    built
        .map(|k| PlannedKernel::built(&k))
        .map_err(|source| PlanError::Kernel { label, source })
}

async fn build_selftest(
    req: &BuildRequest,
    name: &str,
    sink: &dyn EventSink,
) -> Result<PathBuf, PlanError> {
    let label = req.source.location();
    sink.emit(Event::Program {
        name: format!("selftests/{name}"),
        label: label.clone(),
    });
    let (r, n) = (req.clone(), name.to_string());
    let built = blocking(label.clone(), sink, move |on| {
        luo_kernels::selftests::build(&r, &Cache::from_env(), &n, on)
    })
    .await;
    built.map(|b| b.test).map_err(|source| PlanError::Selftest {
        name: name.to_string(),
        label,
        source,
    })
}

/// The source a plan's boot kernel came from, for commands that build more of it.
pub fn source_of(spec: &KernelSpec) -> Result<KernelSource, KernelError> {
    match spec.resolve(&Cache::from_env())? {
        Resolved::Source(s) => Ok(s),
        Resolved::File(p) => Err(KernelError::BadSpec(format!(
            "file:{} is not a source",
            p.display()
        ))),
    }
}
