//! A kernel as the run carries it: not a path but everything known of it.

use luo_kernels::{BuiltKernel, Flavour};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedKernel {
    /// What the run called it (`debian:7.3`, a variant's boot spec).
    pub spec: String,
    /// Where it came from, exactly: `debian:<package>=<version>`, `tree:<path>`,
    /// `git:<repo>@<commit>`, `file:<path>`.
    pub source: String,
    /// Its session-inode design (kernels/variants), or `prebuilt` for a kernel built elsewhere.
    pub variant: String,
    /// What kexec loads (and a cold boot, without a PVH entry): a bzImage, or arm64's Image.
    pub boot_image: PathBuf,
    /// The machine it runs on.
    pub arch: luo_kernels::Arch,
    /// The same kernel as an ELF with a PVH entry: cold boots start from it.
    pub pvh_vmlinux: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub system_map: Option<PathBuf>,
    /// `make kernelrelease`, when built here.
    pub release: Option<String>,
    /// Its instrumentation (plain for a kernel built elsewhere: what it checks is read from its
    /// config, [`PlannedKernel::has`]).
    pub flavour: Flavour,
    /// The ELF kernel its reports are symbolized against (with DWARF in the debug flavour).
    pub vmlinux: Option<PathBuf>,
    /// The tree it was compiled from: the prefix of every path in its DWARF and gcov notes.
    pub source_root: Option<String>,
    /// The gcov flavour's notes and profiled sources.
    pub gcov: Option<GcovNotes>,
}

/// Where a gcov kernel's notes (`<file>.gcno`) and profiled sources (`<file>.c`) are, by their
/// paths in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcovNotes {
    pub dir: PathBuf,
    pub files: Vec<String>,
}

pub const PREBUILT: &str = "prebuilt";

impl PlannedKernel {
    pub fn built(k: &BuiltKernel) -> PlannedKernel {
        PlannedKernel {
            spec: k.meta.source.clone(),
            source: k.meta.source.clone(),
            variant: k.meta.variant.clone(),
            boot_image: k.boot_image(),
            arch: k.meta.arch,
            pvh_vmlinux: k.pvh_vmlinux(),
            config: Some(k.config()),
            system_map: Some(k.system_map()),
            release: Some(k.meta.release.clone()),
            flavour: k.meta.flavour,
            vmlinux: k.vmlinux(),
            source_root: Some(k.meta.source_root.clone()).filter(|r| !r.is_empty()),
            gcov: k.gcov_dir().map(|dir| GcovNotes {
                dir,
                files: k.meta.profiled.clone(),
            }),
        }
    }

    /// A kernel image built elsewhere for `arch`. It brings no System.map, config or PVH vmlinux
    /// unless they lie beside it (`System.map`, `config` or `.config`, `vmlinux`).
    pub fn prebuilt(bzimage: &Path, arch: luo_kernels::Arch) -> PlannedKernel {
        let beside = |names: &[&str]| {
            names
                .iter()
                .map(|n| bzimage.with_file_name(n))
                .find(|p| p.is_file() && p != bzimage)
        };
        let config = beside(&["config", ".config"]);
        let vmlinux = beside(&["vmlinux"]);
        let pvh = vmlinux.clone().filter(|_| {
            config
                .as_ref()
                .and_then(|c| std::fs::read_to_string(c).ok())
                .is_some_and(|t| t.lines().any(|l| l == "CONFIG_PVH=y"))
        });
        PlannedKernel {
            spec: format!("file:{}", bzimage.display()),
            source: format!("file:{}", bzimage.display()),
            variant: PREBUILT.into(),
            boot_image: bzimage.to_path_buf(),
            arch,
            pvh_vmlinux: pvh,
            config,
            system_map: beside(&["System.map"]),
            release: None,
            flavour: Flavour::PLAIN,
            vmlinux,
            source_root: None,
            gcov: None,
        }
    }

    /// Whether its config has `CONFIG_<symbol>=y` (false when its config is unknown): what the
    /// checks after each boot use, so a kernel built elsewhere with kmemleak is scanned too.
    pub fn has(&self, symbol: &str) -> bool {
        let want = format!("CONFIG_{symbol}=y");
        self.config
            .as_ref()
            .and_then(|c| std::fs::read_to_string(c).ok())
            .is_some_and(|t| t.lines().any(|l| l == want))
    }

    /// Whether it finds virtio-mmio devices on its command line (what microvm needs): known from
    /// its config, so a kernel without one is assumed not to.
    pub fn finds_mmio_devices(&self) -> bool {
        self.config
            .as_ref()
            .and_then(|c| std::fs::read_to_string(c).ok())
            .is_some_and(|t| {
                t.lines()
                    .any(|l| l == "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y")
            })
    }

    /// `debian:linux-source-7.3=7.3.4-1~bpo13+1 stock` (`... stock debug`), for messages and
    /// progress.
    pub fn label(&self) -> String {
        match self.flavour.is_plain() {
            true => format!("{} {}", self.source, self.variant),
            false => format!("{} {} {}", self.source, self.variant, self.flavour),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prebuilt_kernel_uses_only_what_lies_beside_it() {
        let d = tempfile::tempdir().unwrap();
        let bz = d.path().join("bzImage");
        std::fs::write(&bz, b"k").unwrap();
        let bare = PlannedKernel::prebuilt(&bz, luo_kernels::Arch::X86_64);
        assert_eq!(
            (bare.config, bare.system_map, bare.pvh_vmlinux),
            (None, None, None)
        );
        assert_eq!(bare.variant, PREBUILT);
        std::fs::write(d.path().join("System.map"), b"").unwrap();
        std::fs::write(d.path().join("vmlinux"), b"").unwrap();
        std::fs::write(d.path().join(".config"), "CONFIG_X=y\n").unwrap();
        let k = PlannedKernel::prebuilt(&bz, luo_kernels::Arch::X86_64);
        assert!(k.system_map.is_some() && k.config.is_some());
        assert_eq!(
            k.pvh_vmlinux, None,
            "a vmlinux without CONFIG_PVH cannot be booted directly"
        );
        std::fs::write(d.path().join(".config"), "CONFIG_PVH=y\n").unwrap();
        assert!(
            PlannedKernel::prebuilt(&bz, luo_kernels::Arch::X86_64)
                .pvh_vmlinux
                .is_some()
        );
    }
}
