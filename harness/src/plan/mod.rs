//! The run plan: every kernel, program and image a run needs, resolved (built or found in the
//! cache) before any VM starts, all from the same source and recipe as the boot kernel.

mod accel;
mod agent;
pub mod image;
mod kernel;

pub use kernel::{PREBUILT, PlannedKernel};

use crate::events::{Event, EventSink};
use crate::outcome::{Classify, Kind};
use crate::vm::VmConfig;
use crate::vm::accel::AccelChoice;
use crate::vm::qemu::{Accel, Machine};
use luo_kernels::{BuildRequest, Cache, KernelError, Recipe};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which kernel boots first.
#[derive(Debug, Clone)]
pub enum KernelChoice {
    /// A bzImage used as is.
    Prebuilt(PathBuf),
    /// Built (or found in the cache) from a source.
    Build(BuildRequest),
}

impl Default for KernelChoice {
    fn default() -> Self {
        KernelChoice::Build(BuildRequest::default())
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub kernel: KernelChoice,
    pub accel: Option<AccelChoice>,
    /// Default: microvm for kernels built here with the minimal recipe, pc for any other.
    pub machine: Option<Machine>,
    pub vm: VmOptions,
}

/// Per-run VM options: keep artifacts, extra kernel command line, memory.
#[derive(Debug, Clone, Default)]
pub struct VmOptions {
    pub keep: bool,
    pub extra_cmdline: String,
    pub memory_mib: Option<u32>,
}

/// What the scenarios of a run need besides the boot kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Variants a `kexec` step names.
    pub variants: BTreeSet<String>,
    /// Selftests an `exec` step runs (`selftests/<name>`).
    pub selftests: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub boot: PlannedKernel,
    /// Kernels a `kexec` step may name, by variant.
    pub variants: BTreeMap<String, PlannedKernel>,
    /// Built selftest programs, by name.
    pub selftests: BTreeMap<String, PathBuf>,
    pub initrd: PathBuf,
    pub accel: Accel,
    pub machine: Machine,
    pub vm: VmOptions,
}

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
    #[error(transparent)]
    #[diagnostic(transparent)]
    Image(#[from] image::ImageError),
    #[error("{0}: no such kernel image")]
    NoKernelFile(PathBuf),
    #[error("{what} needs a kernel source, but --kernel {} gives only a bzImage (use --tree, or build the kernel here)", kernel.display())]
    NeedsSource { what: String, kernel: PathBuf },
    #[error("choosing the accelerator: {0}")]
    Accel(KernelError),
}

impl Classify for PlanError {
    fn kind(&self) -> Kind {
        match self {
            PlanError::Kernel { source, .. } | PlanError::Selftest { source, .. } => source.kind(),
            PlanError::NoKernelFile(_) | PlanError::NeedsSource { .. } => Kind::BadInput,
            PlanError::Image(_) | PlanError::Accel(_) => Kind::InfraFailure,
        }
    }
}

impl Plan {
    /// The configuration of one VM of this run.
    pub fn vm_config(&self, name: &str) -> VmConfig {
        let mut cfg = VmConfig::new(
            name,
            self.boot.bzimage.clone(),
            self.initrd.clone(),
            self.accel,
        );
        cfg.machine = self.machine;
        cfg.cold_boot = self.boot.pvh_vmlinux.clone();
        cfg.keep |= self.vm.keep;
        cfg.extra_cmdline = self.vm.extra_cmdline.clone();
        if let Some(m) = self.vm.memory_mib {
            cfg.memory_mib = m;
        }
        cfg
    }

    /// The kernel a kexec goes into: the named variant, or the boot kernel.
    pub fn kexec_kernel(&self, variant: Option<&str>) -> Option<&PlannedKernel> {
        match variant {
            None => Some(&self.boot),
            Some(v) => self.variants.get(v),
        }
    }

    pub fn selftest(&self, name: &str) -> Option<&Path> {
        self.selftests.get(name).map(PathBuf::as_path)
    }
}

/// Builds or finds everything `needs` names, then the image and the accelerator.
pub async fn resolve(
    req: &PlanRequest,
    needs: &Needs,
    sink: &dyn EventSink,
) -> Result<Plan, PlanError> {
    let cache = Cache::from_env();
    let (boot, build) = match &req.kernel {
        KernelChoice::Prebuilt(p) if p.is_file() => (PlannedKernel::prebuilt(p), None),
        KernelChoice::Prebuilt(p) => return Err(PlanError::NoKernelFile(p.clone())),
        KernelChoice::Build(b) => (build_kernel(b, sink).await?, Some(b)),
    };
    let needs_source = |what: String| PlanError::NeedsSource {
        what,
        kernel: boot.bzimage.clone(),
    };
    let mut variants = BTreeMap::new();
    variants.insert(boot.variant.clone(), boot.clone());
    for v in &needs.variants {
        if variants.contains_key(v) {
            continue;
        }
        let b = build.ok_or_else(|| needs_source(format!("`kexec: {{kernel: {v}}}`")))?;
        variants.insert(v.clone(), build_kernel(&b.with_variant(v), sink).await?);
    }
    let mut selftests = BTreeMap::new();
    for name in &needs.selftests {
        let b = build.ok_or_else(|| needs_source(format!("`exec: selftests/{name}`")))?;
        selftests.insert(name.clone(), build_selftest(b, name, sink).await?);
    }
    let initrd = image::initramfs(&cache.root().join("images"))?;
    let accel = accel::choose(
        req.accel.unwrap_or(AccelChoice::Auto),
        &cache,
        &boot.bzimage,
        &initrd,
        sink,
    )
    .await
    .map_err(PlanError::Accel)?;
    // Only kernels configured here are known to find microvm's devices on their command line.
    let machine = req.machine.unwrap_or(match build {
        Some(b) if b.recipe == Recipe::Minimal => Machine::Microvm,
        _ => Machine::Pc,
    });
    Ok(Plan {
        boot,
        variants,
        selftests,
        initrd,
        accel,
        machine,
        vm: req.vm.clone(),
    })
}

/// What a build request is called in progress and errors.
pub fn request_label(req: &BuildRequest) -> String {
    format!("{} {}", req.source.location(), req.variant)
}

/// make runs for minutes: off the async workers, its events sent back through a channel.
async fn blocking<T: Send + 'static>(
    label: String,
    sink: &dyn EventSink,
    job: impl FnOnce(&mut dyn FnMut(luo_kernels::BuildEvent)) -> T + Send + 'static,
) -> T {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || job(&mut |e| drop(tx.send(e))));
    while let Some(event) = rx.recv().await {
        sink.emit(Event::Kernel {
            label: label.clone(),
            event,
        });
    }
    task.await.expect("a kernel build task panicked")
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
