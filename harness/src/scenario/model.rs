//! The scenario file format: the top level. Steps are in steps/; every struct denies unknown keys.

use super::requires::Requires;
use super::steps::Step;
use crate::plan::{CProgram, GuestImage};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier; defaults to the file name.
    #[serde(default)]
    pub name: Option<String>,
    pub description: String,
    #[serde(default)]
    pub requires: Requires,
    /// Names for kernels this scenario kexecs into, bound on the command line
    /// (`--kernel-as next=debian:7.3`), e.g. `kernels: [next]` and `kexec: {kernel: next}`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub kernels: Vec<Spanned<String>>,
    /// Guest memory in MiB (default 256; 128 to 16384).
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub memory_mib: Option<Spanned<u64>>,
    /// Request timeout in seconds for every step (default 30; 1 to 3600).
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub step_timeout_s: Option<Spanned<u64>>,
    /// Put busybox in the guest image (/bin/sh and its applets in /bin) for scripts.
    #[serde(default)]
    pub shell: bool,
    /// Boot the kernel for this scenario instead of starting from a saved booted VM (for a
    /// scenario about the first boot itself).
    #[serde(default)]
    pub cold_boot: bool,
    /// Run on the debug flavour of every kernel (KASAN, KFENCE, kmemleak, lockdep, UBSAN, ...),
    /// which the run builds when it is not `--debug` itself: every report fails the scenario.
    #[serde(default)]
    pub debug: bool,
    /// The guest: `default` (the agent as PID 1 in an initramfs) or `systemd` (Debian sid with
    /// systemd 262.1 as PID 1 on a read-only root, the agent one of its services).
    #[serde(default)]
    pub image: GuestImage,
    /// systemd units beside the scenario (`image: systemd`), installed into /etc/systemd/system
    /// on every boot and enabled as their [Install] section says.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub units: Vec<Spanned<String>>,
    /// C files beside the scenario for its units to run (`image: systemd`): each is built
    /// statically for the guest and installed as /usr/local/bin/<its name without .c>.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub programs: Vec<Spanned<String>>,
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
    /// The scenario's file as it was named (programs and files beside it are relative to it).
    #[serde(skip)]
    #[schemars(skip)]
    pub file: std::path::PathBuf,
}

impl Scenario {
    /// The guest memory the scenario runs with (its own, or the default).
    pub fn memory_mib(&self) -> Option<u32> {
        self.memory_mib.as_ref().map(|m| m.value as u32)
    }

    pub fn step_timeout(&self) -> Option<std::time::Duration> {
        self.step_timeout_s
            .as_ref()
            .map(|t| std::time::Duration::from_secs(t.value))
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// Whether any kexec goes into the run's next kernel (names none): what a matrix cell varies.
    pub fn kexecs_unnamed(&self) -> bool {
        super::steps::unnamed_kexec(&self.steps)
    }

    /// Why this scenario cannot run on a guest of `arch`, if it cannot: the image that exists for
    /// x86_64 only (the systemd root). It is then skipped before any VM, and nothing is built for it.
    pub fn unsupported_on(&self, arch: luo_kernels::Arch) -> Option<String> {
        (self.image == GuestImage::Systemd && !arch.has_systemd_image()).then(|| {
            format!("the systemd image is amd64 Debian; there is no {arch} one yet (docs/arm64.md)")
        })
    }

    /// What a run on `arch` must build for this scenario besides the boot kernel: nothing when it
    /// cannot run there.
    pub fn needs(&self, arch: luo_kernels::Arch, needs: &mut crate::plan::Needs) {
        if self.unsupported_on(arch).is_some() {
            return;
        }
        let mut own = crate::plan::Needs::default();
        super::steps::needs_of(&self.steps, &mut own);
        needs.kernels.extend(own.kernels);
        needs.selftests.extend(own.selftests);
        // The steps name their C sources relative to this file, and where (line:column).
        for (p, at) in own.programs {
            needs
                .programs
                .entry(p.against(&self.dir()))
                .or_insert_with(|| format!("{}:{at}", self.file.display()));
        }
        needs.shell |= self.shell;
        needs.systemd |= self.image == GuestImage::Systemd;
        needs.debug |= self.debug;
        for p in &self.programs {
            needs
                .programs
                .entry(self.unit_program(&p.value))
                .or_insert_with(|| {
                    format!(
                        "{}:{}:{}",
                        self.file.display(),
                        p.referenced.line(),
                        p.referenced.column()
                    )
                });
        }
    }

    /// What the first stage installs at boot, as (host file, share path): the units under
    /// units/, the built programs under programs/. Err names a program the plan lacks.
    pub fn share_seed(
        &self,
        plan: &crate::plan::Plan,
    ) -> Result<Vec<(std::path::PathBuf, String)>, String> {
        let base = super::steps::base_name;
        let mut seed: Vec<_> = self
            .units
            .iter()
            .map(|u| {
                (
                    self.dir().join(&u.value),
                    format!("{}/{}", luo_protocol::UNITS_DIR, base(&u.value)),
                )
            })
            .collect();
        for p in &self.programs {
            let key = self.unit_program(&p.value);
            let built = plan.program(&key).ok_or_else(|| p.value.clone())?;
            let rel = format!("{}/{}", luo_protocol::PROGRAMS_DIR, key.name());
            seed.push((built.to_path_buf(), rel));
        }
        Ok(seed)
    }

    /// The program a `programs:` entry names, as the plan keys it.
    pub fn unit_program(&self, source: &str) -> CProgram {
        CProgram {
            sources: vec![source.into()],
            libc: luo_kernels::programs::Libc::Glibc,
        }
        .against(&self.dir())
    }

    /// The directory of the scenario's file.
    pub fn dir(&self) -> std::path::PathBuf {
        match self.file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => ".".into(),
        }
    }
}
