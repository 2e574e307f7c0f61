//! The options every VM-starting command shares: which kernel, how the VM runs.

use clap::Args;
use luo_harness::plan::{KernelChoice, PlanRequest, VmOptions};
use luo_harness::vm::accel::AccelChoice;
use luo_harness::vm::qemu::Machine;
use luo_kernels::config::Fragment;
use luo_kernels::{BuildRequest, KernelSource};
use std::path::PathBuf;

/// Which kernel to use; the default is Debian's linux-source, built with the embedded fragments.
#[derive(Args, Clone, Debug, Default)]
pub struct KernelArgs {
    /// A prebuilt bzImage, used as is (its System.map, config and vmlinux are used if beside it).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tree", "variant", "fragment"])]
    pub kernel: Option<PathBuf>,
    /// Your kernel tree, built out of tree in the cache (it is never written to).
    #[arg(long, value_name = "PATH")]
    pub tree: Option<PathBuf>,
    /// Kernel variant (a patch set under kernels/variants/).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Extra config fragment(s), applied after the built-in ones.
    #[arg(long, value_name = "FILE")]
    pub fragment: Vec<PathBuf>,
    /// make -j (default: cores + 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// How the configuration is made: `minimal` (allnoconfig + kernels/fragments) or
    /// `upstream-selftest` (what tools/testing/selftests/liveupdate/vmtest.sh builds).
    #[arg(long, default_value = "minimal", value_parser = ["minimal", "upstream-selftest"])]
    pub recipe: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{path}: {source}")]
pub struct FragmentError {
    path: String,
    source: std::io::Error,
}

impl KernelArgs {
    pub fn build_request(&self) -> Result<BuildRequest, FragmentError> {
        let mut req = BuildRequest::default();
        if let Some(t) = &self.tree {
            req.source = KernelSource::Tree(t.clone());
        }
        if let Some(v) = &self.variant {
            req.variant = v.clone();
        }
        for f in &self.fragment {
            let text = std::fs::read_to_string(f).map_err(|source| FragmentError {
                path: f.display().to_string(),
                source,
            })?;
            req.extra_fragments.push(Fragment {
                name: f.display().to_string(),
                text,
            });
        }
        req.jobs = self.jobs.map(|j| j as usize);
        if self.recipe == "upstream-selftest" {
            req.recipe = luo_kernels::Recipe::UpstreamSelftest;
        }
        Ok(req)
    }

    pub fn choice(&self) -> Result<KernelChoice, FragmentError> {
        Ok(match &self.kernel {
            Some(k) => KernelChoice::Prebuilt(k.clone()),
            None => KernelChoice::Build(self.build_request()?),
        })
    }

    /// These options again, for a command line that reruns with the same kernel.
    pub fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        let path = |flag: &str, p: &PathBuf, w: &mut Vec<String>| {
            w.push(flag.into());
            w.push(p.display().to_string());
        };
        if let Some(k) = &self.kernel {
            path("--kernel", k, &mut w);
        }
        if let Some(t) = &self.tree {
            path("--tree", t, &mut w);
        }
        if let Some(v) = &self.variant {
            w.extend(["--variant".into(), v.clone()]);
        }
        for f in &self.fragment {
            path("--fragment", f, &mut w);
        }
        if self.recipe != "minimal" {
            w.extend(["--recipe".into(), self.recipe.clone()]);
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
    /// Machine model (default: microvm for kernels built here with the minimal recipe, pc for any
    /// other kernel).
    #[arg(long, value_enum)]
    pub machine: Option<Machine>,
}

impl VmArgs {
    pub fn plan_request(&self, kernel: &KernelArgs) -> Result<PlanRequest, FragmentError> {
        Ok(PlanRequest {
            kernel: kernel.choice()?,
            accel: Some(self.accel),
            machine: self.machine,
            vm: VmOptions {
                keep: self.keep,
                extra_cmdline: self.cmdline.clone(),
                memory_mib: self.memory,
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
        w
    }
}
