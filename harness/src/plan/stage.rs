//! The stage: everything the test suite's VMs need, built once and carried to other machines in a
//! nextest archive (`[profile.default.archive] include` takes `target/luo-stage`). A machine that
//! runs the archive has no kernel source, no apt state and no cache: the plan finds its kernels,
//! selftests, C programs, busybox and root filesystems here and builds nothing.
//!
//! ```text
//! manifest.json              what is staged, under which key, each file's SHA-256
//! kernels/<spec>-<variant>/  bzImage, vmlinux (PVH), System.map, config
//! selftests/<spec>/<name>
//! programs/<spec>/<key>/<name>
//! busybox                    the static busybox the image with a shell is made with
//! trees/<name>/<path>/       files of the boot kernel's source a test reads (kunit.py, which
//!                            insists on lying in tools/testing/kunit)
//! rootfs-<name>-<key>.tar    a root filesystem (a tarball keeps device nodes, owners, links)
//! ```
//! Kernels are found by the spec the run names, their variant and their recipe key (fragments,
//! variant patches, recipe, base config): a run that asks for other options builds, as it would
//! without a stage. Only `debian:` specs are staged; a tree or a git commit is built where it is.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";
/// The variable that names a stage (empty: use none, even beside the binary).
pub const ENV: &str = "LUO_HARNESS_STAGE";
/// Where a stage lies relative to the target directory, which is where nextest's archive puts it.
pub const TARGET_SUBDIR: &str = "luo-stage";
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[diagnostic(help("stage it again with this luo-harness: luo-harness stage"))]
    #[error("{path}: not a stage this luo-harness reads: {why}")]
    Manifest { path: PathBuf, why: String },
    #[diagnostic(help(
        "the archive is damaged or the stage was changed since; stage and archive again, or run without it (LUO_HARNESS_STAGE=)"
    ))]
    #[error("staged {path} does not match its SHA-256")]
    Damaged { path: PathBuf },
    #[error("staging {what}: {why}")]
    Incomplete { what: String, why: String },
}

impl crate::outcome::Classify for StageError {
    /// A stage that cannot be read or written is the machine's trouble, not the scenarios'.
    fn kind(&self) -> crate::outcome::Kind {
        crate::outcome::Kind::InfraFailure
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The luo-harness that staged it.
    pub harness: String,
    pub kernels: Vec<StagedKernel>,
    pub selftests: Vec<StagedProgram>,
    pub programs: Vec<StagedProgram>,
    pub busybox: Option<StagedFile>,
    /// Guest agents built for other architectures than the harness's own (which it embeds).
    #[serde(default)]
    pub agents: Vec<StagedGuestBinary>,
    /// The busyboxes of other architectures' images with a shell (`busybox` is x86_64's).
    #[serde(default)]
    pub busyboxes: Vec<StagedGuestBinary>,
    pub roots: Vec<StagedRoot>,
    pub trees: Vec<StagedTree>,
}

/// A guest binary (an agent, a busybox) for `arch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedGuestBinary {
    pub arch: luo_kernels::Arch,
    pub file: StagedFile,
}

/// A directory of the boot kernel's source (`kunit`: tools/testing/kunit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedTree {
    pub name: String,
    pub dir: PathBuf,
    pub files: Vec<StagedFile>,
}

/// A file of the stage, relative to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedKernel {
    /// The spec a run names (`debian:7.3`).
    pub spec: String,
    pub variant: String,
    pub recipe_key: String,
    /// Where it came from, exactly (`debian:linux-source-7.3=7.3.4-1~bpo13+1`).
    pub source: String,
    pub release: Option<String>,
    /// What kexec loads: a bzImage, or arm64's Image.
    pub boot_image: StagedFile,
    #[serde(default)]
    pub arch: luo_kernels::Arch,
    pub pvh_vmlinux: Option<StagedFile>,
    pub system_map: Option<StagedFile>,
    pub config: Option<StagedFile>,
    #[serde(default)]
    pub flavour: luo_kernels::Flavour,
    /// The ELF kernel reports are symbolized against, when it is not the PVH one.
    #[serde(default)]
    pub vmlinux: Option<StagedFile>,
    #[serde(default)]
    pub source_root: Option<String>,
    /// A gcov kernel's notes and profiled sources, under `gcov/` of its directory.
    #[serde(default)]
    pub gcov: Vec<StagedFile>,
    #[serde(default)]
    pub profiled: Vec<String>,
}

/// A selftest (by its name) or a C program (by its sources' key), built from `spec`'s source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedProgram {
    pub spec: String,
    pub key: String,
    pub file: StagedFile,
    /// The machine it was compiled for.
    #[serde(default)]
    pub arch: luo_kernels::Arch,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedRoot {
    pub name: String,
    pub key: String,
    pub tarball: StagedFile,
}

/// A stage that was found, and what it holds.
#[derive(Debug, Clone)]
pub struct Stage {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn sha256(path: &Path) -> Result<String, StageError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io(path))?;
    Ok(hex::encode(h.finalize()))
}

impl Stage {
    /// The stage `LUO_HARNESS_STAGE` names (it must be one), or else the one in the target
    /// directory this program was built in, if there is one.
    pub fn find() -> Result<Option<Stage>, StageError> {
        match std::env::var_os(ENV) {
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Stage::open(Path::new(&v)).map(Some),
            None => match std::env::current_exe() {
                Ok(exe) => Stage::beside(&exe),
                Err(_) => Ok(None),
            },
        }
    }

    /// The stage of the target directory `exe` lies in: `target/debug/luo-harness` and a test's
    /// `target/debug/deps/smoke-…` both find `target/luo-stage` (what nextest extracts an
    /// archive's stage to). Three levels up at most: an installed binary finds none.
    pub fn beside(exe: &Path) -> Result<Option<Stage>, StageError> {
        let dir = exe
            .ancestors()
            .skip(1)
            .take(3)
            .map(|d| d.join(TARGET_SUBDIR))
            .find(|d| d.join(MANIFEST).is_file());
        dir.map(|d| Stage::open(&d)).transpose()
    }

    pub fn open(dir: &Path) -> Result<Stage, StageError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| StageError::Manifest {
            path: path.clone(),
            why: e.to_string(),
        })?;
        if manifest.format != FORMAT {
            return Err(StageError::Manifest {
                path,
                why: format!("format {} (this one reads {FORMAT})", manifest.format),
            });
        }
        Ok(Stage {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The file's path, once its bytes are checked: an archive cut short must not boot.
    fn verified(&self, f: &StagedFile) -> Result<PathBuf, StageError> {
        let path = self.dir.join(&f.path);
        let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == f.bytes)
            && sha256(&path)? == f.sha256;
        match ok {
            true => Ok(path),
            false => Err(StageError::Damaged { path }),
        }
    }

    pub fn kernel(
        &self,
        spec: &str,
        variant: &str,
        recipe_key: &str,
    ) -> Result<Option<super::PlannedKernel>, StageError> {
        let Some(k) = self
            .manifest
            .kernels
            .iter()
            .find(|k| k.spec == spec && k.variant == variant && k.recipe_key == recipe_key)
        else {
            return Ok(None);
        };
        let optional = |f: &Option<StagedFile>| f.as_ref().map(|f| self.verified(f)).transpose();
        let pvh_vmlinux = optional(&k.pvh_vmlinux)?;
        let gcov = match k.gcov.first() {
            None => None,
            Some(first) => {
                for f in &k.gcov {
                    self.verified(f)?;
                }
                let dir = first
                    .path
                    .ancestors()
                    .find(|a| a.ends_with(luo_kernels::cache::GCOV_DIR))
                    .map(|a| self.dir.join(a));
                dir.map(|dir| super::kernel::GcovNotes {
                    dir,
                    files: k.profiled.clone(),
                })
            }
        };
        Ok(Some(super::PlannedKernel {
            spec: spec.to_string(),
            source: k.source.clone(),
            variant: k.variant.clone(),
            boot_image: self.verified(&k.boot_image)?,
            arch: k.arch,
            vmlinux: optional(&k.vmlinux)?.or_else(|| pvh_vmlinux.clone()),
            pvh_vmlinux,
            config: optional(&k.config)?,
            system_map: optional(&k.system_map)?,
            release: k.release.clone(),
            flavour: k.flavour,
            source_root: k.source_root.clone(),
            gcov,
        }))
    }

    pub fn selftest(
        &self,
        arch: luo_kernels::Arch,
        spec: &str,
        name: &str,
    ) -> Result<Option<PathBuf>, StageError> {
        Self::program_in(self, &self.manifest.selftests, arch, spec, name)
    }

    pub fn program(
        &self,
        arch: luo_kernels::Arch,
        spec: &str,
        key: &str,
    ) -> Result<Option<PathBuf>, StageError> {
        Self::program_in(self, &self.manifest.programs, arch, spec, key)
    }

    fn program_in(
        &self,
        list: &[StagedProgram],
        arch: luo_kernels::Arch,
        spec: &str,
        key: &str,
    ) -> Result<Option<PathBuf>, StageError> {
        list.iter()
            .find(|p| p.spec == spec && p.key == key && p.arch == arch)
            .map(|p| self.verified(&p.file))
            .transpose()
    }

    /// The busybox staged for `arch`'s image with a shell, if any.
    pub fn busybox(&self, arch: luo_kernels::Arch) -> Result<Option<PathBuf>, StageError> {
        match arch {
            luo_kernels::Arch::X86_64 => self.manifest.busybox.as_ref(),
            _ => Self::for_arch(&self.manifest.busyboxes, arch),
        }
        .map(|f| self.verified(f))
        .transpose()
    }

    /// The guest agent staged for `arch`, if any.
    pub fn agent(&self, arch: luo_kernels::Arch) -> Result<Option<PathBuf>, StageError> {
        Self::for_arch(&self.manifest.agents, arch)
            .map(|f| self.verified(f))
            .transpose()
    }

    fn for_arch(list: &[StagedGuestBinary], arch: luo_kernels::Arch) -> Option<&StagedFile> {
        list.iter().find(|a| a.arch == arch).map(|a| &a.file)
    }

    /// The staged directory `name`, every file checked.
    pub fn tree(&self, name: &str) -> Result<Option<PathBuf>, StageError> {
        let Some(t) = self.manifest.trees.iter().find(|t| t.name == name) else {
            return Ok(None);
        };
        for f in &t.files {
            self.verified(f)?;
        }
        Ok(Some(self.dir.join(&t.dir)))
    }

    /// The tarball of the root filesystem `name` with `key`, if staged.
    pub fn root(&self, name: &str, key: &str) -> Result<Option<PathBuf>, StageError> {
        self.manifest
            .roots
            .iter()
            .find(|r| r.name == name && r.key == key)
            .map(|r| self.verified(&r.tarball))
            .transpose()
    }
}

/// Writes a stage into `dir` (emptied first): files are hard links to the cache's where they can
/// be (the same filesystem), copies where not.
pub struct Writer {
    dir: PathBuf,
    manifest: Manifest,
}

impl Writer {
    pub fn create(dir: &Path) -> Result<Writer, StageError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            manifest: Manifest {
                format: FORMAT,
                harness: env!("CARGO_PKG_VERSION").to_string(),
                ..Manifest::default()
            },
        })
    }

    /// Where a file of the stage goes (its directory made), for a writer that makes it itself.
    pub fn path_for(&self, rel: &Path) -> Result<PathBuf, StageError> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        Ok(path)
    }

    /// A file already written at `rel`, recorded.
    pub fn record(&self, rel: &Path) -> Result<StagedFile, StageError> {
        let path = self.dir.join(rel);
        let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
        Ok(StagedFile {
            path: rel.to_path_buf(),
            sha256: sha256(&path)?,
            bytes,
        })
    }

    /// `from` placed at `rel`.
    pub fn add(&self, from: &Path, rel: &Path) -> Result<StagedFile, StageError> {
        let to = self.path_for(rel)?;
        let _ = std::fs::remove_file(&to);
        if std::fs::hard_link(from, &to).is_err() {
            std::fs::copy(from, &to).map_err(io(from))?;
        }
        self.record(rel)
    }

    pub fn kernel(
        &mut self,
        k: &super::PlannedKernel,
        recipe_key: String,
    ) -> Result<(), StageError> {
        let name = match k.flavour.is_plain() {
            true => format!("{}-{}{}", k.spec, k.variant, k.arch.dir_suffix()),
            false => format!(
                "{}-{}-{}{}",
                k.spec,
                k.variant,
                k.flavour,
                k.arch.dir_suffix()
            ),
        };
        let dir = PathBuf::from("kernels").join(slug(&name));
        let optional = |p: &Option<PathBuf>, name: &str| {
            p.as_ref().map(|p| self.add(p, &dir.join(name))).transpose()
        };
        let mut gcov = Vec::new();
        if let Some(notes) = &k.gcov {
            for f in &notes.files {
                let note = Path::new(f).with_extension("gcno");
                for rel in [note.as_path(), Path::new(f)] {
                    let staged = PathBuf::from(luo_kernels::cache::GCOV_DIR).join(rel);
                    gcov.push(self.add(&notes.dir.join(rel), &dir.join(staged))?);
                }
            }
        }
        let pvh_vmlinux = optional(&k.pvh_vmlinux, "vmlinux")?;
        // The same file when the kernel boots from it; staged once.
        let vmlinux = match (&k.vmlinux, &k.pvh_vmlinux) {
            (Some(v), Some(p)) if v == p => None,
            (v, _) => optional(v, "vmlinux.elf")?,
        };
        let staged = StagedKernel {
            spec: k.spec.clone(),
            variant: k.variant.clone(),
            recipe_key,
            source: k.source.clone(),
            release: k.release.clone(),
            boot_image: self.add(&k.boot_image, &dir.join(k.arch.image_target()))?,
            arch: k.arch,
            pvh_vmlinux,
            system_map: optional(&k.system_map, "System.map")?,
            config: optional(&k.config, "config")?,
            flavour: k.flavour,
            vmlinux,
            source_root: k.source_root.clone(),
            gcov,
            profiled: k.gcov.as_ref().map(|g| g.files.clone()).unwrap_or_default(),
        };
        self.manifest.kernels.push(staged);
        Ok(())
    }

    pub fn selftest(
        &mut self,
        arch: luo_kernels::Arch,
        spec: &str,
        name: &str,
        built: &Path,
    ) -> Result<(), StageError> {
        let rel = PathBuf::from("selftests")
            .join(arch.name())
            .join(slug(spec))
            .join(name);
        let file = self.add(built, &rel)?;
        self.manifest.selftests.push(StagedProgram {
            spec: spec.to_string(),
            key: name.to_string(),
            file,
            arch,
        });
        Ok(())
    }

    pub fn program(
        &mut self,
        arch: luo_kernels::Arch,
        spec: &str,
        key: &str,
        name: &str,
        built: &Path,
    ) -> Result<(), StageError> {
        let rel = PathBuf::from("programs")
            .join(arch.name())
            .join(slug(spec))
            .join(key)
            .join(name);
        let file = self.add(built, &rel)?;
        self.manifest.programs.push(StagedProgram {
            spec: spec.to_string(),
            key: key.to_string(),
            file,
            arch,
        });
        Ok(())
    }

    pub fn agent(&mut self, arch: luo_kernels::Arch, from: &Path) -> Result<(), StageError> {
        let file = self.add(from, &Path::new("agents").join(arch.name()))?;
        self.manifest.agents.retain(|a| a.arch != arch);
        self.manifest.agents.push(StagedGuestBinary { arch, file });
        Ok(())
    }

    pub fn busybox(&mut self, arch: luo_kernels::Arch, from: &Path) -> Result<(), StageError> {
        let file = self.add(from, Path::new(&format!("busybox{}", arch.dir_suffix())))?;
        match arch {
            luo_kernels::Arch::X86_64 => self.manifest.busybox = Some(file),
            _ => {
                self.manifest.busyboxes.retain(|a| a.arch != arch);
                self.manifest
                    .busyboxes
                    .push(StagedGuestBinary { arch, file });
            }
        }
        Ok(())
    }

    /// The regular files under `root`/`sub`, as the tree `name` (at the same `sub` in the stage).
    pub fn tree(&mut self, name: &str, root: &Path, sub: &Path) -> Result<(), StageError> {
        let from = &root.join(sub);
        let dir = PathBuf::from("trees").join(name).join(sub);
        let mut files = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let here = from.join(&rel);
            for e in std::fs::read_dir(&here).map_err(io(&here))?.flatten() {
                let (path, sub) = (e.path(), rel.join(e.file_name()));
                let meta = std::fs::metadata(&path).map_err(io(&path))?;
                if meta.is_dir() {
                    stack.push(sub);
                } else if meta.is_file() {
                    files.push(self.add(&path, &dir.join(sub))?);
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        self.manifest.trees.push(StagedTree {
            name: name.to_string(),
            dir,
            files,
        });
        Ok(())
    }

    pub fn root(&mut self, name: &str, key: &str, tarball: StagedFile) {
        self.manifest.roots.push(StagedRoot {
            name: name.to_string(),
            key: key.to_string(),
            tarball,
        });
    }

    /// The manifest written last, so a stage cut short has none and is never found.
    pub fn finish(self) -> Result<Stage, StageError> {
        let path = self.dir.join(MANIFEST);
        let json = serde_json::to_string_pretty(&self.manifest).expect("plain data serialises");
        std::fs::write(&path, json).map_err(io(&path))?;
        Ok(Stage {
            dir: self.dir,
            manifest: self.manifest,
        })
    }
}

/// What to stage besides the plan's kernels and programs.
pub struct Extras<'a> {
    /// The systemd image's root filesystem, as a tarball.
    pub systemd: bool,
    /// Directories of the boot kernel's source: name, the source, the directory within it.
    pub trees: Vec<(&'a str, PathBuf, &'a Path)>,
    /// Kernels besides the plan's: the instrumented flavours the suite boots.
    pub kernels: Vec<super::PlannedKernel>,
    /// The suite's plans on other architectures (plan::OTHER_ARCHES), with the build template
    /// each was made with: their kernels, programs and agent.
    pub other_arches: Vec<(super::Plan, luo_kernels::BuildRequest)>,
}

/// Stages everything `plan` resolved (made with `build` as its template and `boot_spec` as its
/// boot kernel) into `dir`: its `debian:` kernels with their recipe keys, the selftests and C
/// programs built from the boot kernel's source, and `extras`.
pub fn write(
    plan: &super::Plan,
    build: &luo_kernels::BuildRequest,
    boot_spec: &str,
    extras: &Extras<'_>,
    dir: &Path,
) -> Result<Stage, StageError> {
    let incomplete = |what: &str| {
        let what = what.to_string();
        move |e: &dyn std::fmt::Display| StageError::Incomplete {
            what,
            why: e.to_string(),
        }
    };
    let mut w = Writer::create(dir)?;
    let mut seen = std::collections::BTreeSet::new();
    let plans = std::iter::once((plan, build, &extras.kernels[..])).chain(
        extras
            .other_arches
            .iter()
            .map(|(p, b)| (p, b, &[] as &[super::PlannedKernel])),
    );
    for (plan, build, more) in plans {
        for k in plan.all_kernels().chain(more) {
            if !k.spec.starts_with("debian:")
                || !seen.insert((k.spec.clone(), k.variant.clone(), k.flavour, k.arch))
            {
                continue;
            }
            let recipe_key = build
                .with_flavour(k.flavour)
                .with_variant(&k.variant)
                .recipe_key()
                .map_err(|e| incomplete(&k.label())(&e))?;
            w.kernel(k, recipe_key)?;
        }
        for (name, path) in &plan.selftests {
            w.selftest(plan.boot.arch, boot_spec, name, path)?;
        }
        for (p, path) in &plan.programs {
            let name = p.name();
            let key = luo_kernels::programs::sources_key(&name, &p.sources, p.libc)
                .map_err(|e| incomplete(&name)(&e))?;
            w.program(plan.boot.arch, boot_spec, &key, &name, path)?;
        }
        if let Some(agent) = &plan.agent_file {
            w.agent(plan.boot.arch, agent)?;
        }
        if let Some(b) = &plan.busybox_file {
            w.busybox(plan.boot.arch, b)?;
        }
    }
    for (name, root, sub) in &extras.trees {
        w.tree(name, root, sub)?;
    }
    if extras.systemd {
        let root = luo_rootfs::SYSTEMD;
        let rel = PathBuf::from(format!("rootfs-{}-{}.tar", root.name, root.key()));
        let tarball = w.path_for(&rel)?;
        root.pack(&luo_kernels::Cache::from_env(), &tarball, &mut |_| {})
            .map_err(|e| incomplete(&format!("image {}", root.name))(&e))?;
        let file = w.record(&rel)?;
        w.root(root.name, &root.key(), file);
    }
    w.finish()
}

/// A spec as one path component: `debian:7.3` → `debian-7.3`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '-',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(dir: &Path) -> super::super::PlannedKernel {
        for f in ["bzImage", "config"] {
            std::fs::write(dir.join(f), format!("{f} bytes")).unwrap();
        }
        super::super::PlannedKernel {
            spec: "debian:7.3".into(),
            source: "debian:linux-source-7.3=7.3.4-1".into(),
            variant: "stock".into(),
            boot_image: dir.join("bzImage"),
            arch: Default::default(),
            pvh_vmlinux: None,
            config: Some(dir.join("config")),
            system_map: None,
            release: Some("7.3.4".into()),
            flavour: Default::default(),
            vmlinux: None,
            source_root: None,
            gcov: None,
        }
    }

    #[test]
    fn a_kernel_is_found_by_spec_variant_and_recipe_key_only() {
        let cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("stage");
        let mut w = Writer::create(&dir).unwrap();
        w.kernel(&kernel(cache.path()), "r1".into()).unwrap();
        let stage = w.finish().unwrap();
        let stage = Stage::open(&stage.dir).unwrap();
        let k = stage.kernel("debian:7.3", "stock", "r1").unwrap().unwrap();
        assert_eq!(k.source, "debian:linux-source-7.3=7.3.4-1");
        assert_eq!(std::fs::read(&k.boot_image).unwrap(), b"bzImage bytes");
        assert!(k.boot_image.starts_with(&dir) && k.system_map.is_none());
        // Another fragment set, variant or spec is not this kernel.
        assert!(stage.kernel("debian:7.3", "stock", "r2").unwrap().is_none());
        assert!(
            stage
                .kernel("debian:7.3", "magic-unique", "r1")
                .unwrap()
                .is_none()
        );
        assert!(stage.kernel("debian:7.2", "stock", "r1").unwrap().is_none());
    }

    #[test]
    fn a_changed_or_cut_file_is_an_error_not_a_boot() {
        let cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("stage");
        let mut w = Writer::create(&dir).unwrap();
        w.kernel(&kernel(cache.path()), "r1".into()).unwrap();
        let stage = w.finish().unwrap();
        let staged = dir.join(&stage.manifest.kernels[0].boot_image.path);
        // Same length, other bytes (a hard link to the cache's file is broken first).
        std::fs::remove_file(&staged).unwrap();
        std::fs::write(&staged, b"bzImage BYTES").unwrap();
        let e = stage.kernel("debian:7.3", "stock", "r1").unwrap_err();
        assert!(matches!(e, StageError::Damaged { .. }), "{e}");
        std::fs::write(&staged, b"bz").unwrap();
        assert!(matches!(
            stage.kernel("debian:7.3", "stock", "r1"),
            Err(StageError::Damaged { .. })
        ));
    }

    #[test]
    fn a_stage_without_its_manifest_or_of_another_format_is_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Stage::open(d.path()), Err(StageError::Io { .. })));
        std::fs::write(
            d.path().join(MANIFEST),
            r#"{"format": 99, "harness": "x", "kernels": [], "selftests": [], "programs": [], "busybox": null, "roots": [], "trees": []}"#,
        )
        .unwrap();
        let e = Stage::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("format 99"), "{e}");
        std::fs::write(d.path().join(MANIFEST), "{").unwrap();
        assert!(matches!(
            Stage::open(d.path()),
            Err(StageError::Manifest { .. })
        ));
    }

    #[test]
    fn specs_become_one_path_component() {
        assert_eq!(slug("debian:7.3~rc"), "debian-7.3-rc");
        assert_eq!(slug("file:/a/b"), "file--a-b");
    }
}
