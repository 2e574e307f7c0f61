//! What to build: source, recipe, variant and extra fragments, and the cache key they hash to.

use crate::cache::{KeyInputs, key};
use crate::config::{self, Fragment};
use crate::error::KernelError;
use crate::flavour::Flavour;
use crate::source::KernelSource;
use crate::variant::{self, Variant};
use std::process::Command;

/// How the .config is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// `allnoconfig` + the embedded fragments: small, fast to build and to boot.
    #[default]
    Minimal,
    /// What tools/testing/selftests/liveupdate/vmtest.sh builds: its config.x86_64 + config
    /// fragments + `olddefconfig`. Used as the benchmark baseline.
    UpstreamSelftest,
}

impl Recipe {
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Minimal => "minimal",
            Recipe::UpstreamSelftest => "upstream-selftest",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub source: KernelSource,
    pub recipe: Recipe,
    pub variant: String,
    /// Instrumentation on top: sanitizers (`debug`), gcov counters (`gcov`).
    pub flavour: Flavour,
    /// Extra fragments after the built-in ones (a developer's own options).
    pub extra_fragments: Vec<Fragment>,
    /// A user's own .config to start from instead of `allnoconfig` (the fragments still apply).
    pub base_config: Option<Fragment>,
    /// make -j; default: cores + 1.
    pub jobs: Option<usize>,
    /// The guest architecture (an arm64 kernel is cross-built).
    pub arch: crate::Arch,
}

impl Default for BuildRequest {
    fn default() -> Self {
        BuildRequest {
            source: KernelSource::default(),
            recipe: Recipe::Minimal,
            variant: variant::DEFAULT.into(),
            flavour: Flavour::PLAIN,
            extra_fragments: vec![],
            base_config: None,
            jobs: None,
            arch: crate::Arch::X86_64,
        }
    }
}

impl BuildRequest {
    /// The same source, recipe and fragments with another variant: what a scenario's
    /// `kexec: {kernel: <variant>}` builds.
    pub fn with_variant(&self, variant: &str) -> BuildRequest {
        BuildRequest {
            variant: variant.to_string(),
            ..self.clone()
        }
    }

    /// The same kernel in another flavour.
    pub fn with_flavour(&self, flavour: Flavour) -> BuildRequest {
        BuildRequest {
            flavour,
            ..self.clone()
        }
    }

    /// The same recipe, fragments and variant for another source.
    pub fn with_source(&self, source: KernelSource) -> BuildRequest {
        BuildRequest {
            source,
            ..self.clone()
        }
    }

    /// The fragments the minimal recipe configures with: the built-in ones, the flavour's, then
    /// the user's (the last word is the user's).
    pub(crate) fn fragments(&self) -> Vec<Fragment> {
        let mut f = config::builtin_fragments(self.arch);
        f.extend(self.flavour.fragments());
        f.extend(self.extra_fragments.iter().cloned());
        f
    }

    /// The cache key (computing the source's identity, which for a tree outside git stats it).
    pub fn key(&self) -> Result<String, KernelError> {
        let variant = variant::find(&self.variant)?;
        Ok(self.key_for(&self.source.identity()?, &variant, &toolchain(self.arch)))
    }

    /// What decides the kernel besides its source and toolchain: recipe, fragments, base config,
    /// variant and its patches. A kernel staged on another machine (plan/stage.rs) is served only
    /// to a request with the same recipe key, so a changed fragment or patch is never served stale.
    pub fn recipe_key(&self) -> Result<String, KernelError> {
        let variant = variant::find(&self.variant)?;
        Ok(self.key_for("", &variant, ""))
    }

    pub(crate) fn key_for(&self, identity: &str, variant: &Variant, toolchain: &str) -> String {
        let mut merged = match self.recipe {
            Recipe::Minimal => config::merge(&self.fragments()),
            // The fragments live in the tree, so the source identity already covers them; a
            // flavour's go on top.
            Recipe::UpstreamSelftest if self.flavour.is_plain() => {
                "recipe:upstream-selftest".to_string()
            }
            Recipe::UpstreamSelftest => format!(
                "recipe:upstream-selftest\n{}",
                config::merge(&self.flavour.fragments())
            ),
        };
        if let Some(base) = &self.base_config {
            merged = format!("base-config:\n{}\n{merged}", base.text);
        }
        let mut make_args: Vec<String> = self
            .arch
            .make_args()
            .iter()
            .map(|s| s.to_string())
            .collect();
        make_args.extend(self.flavour.make_rule().map(String::from));
        let mut patches = variant.patches.to_vec();
        patches.extend(self.flavour.patches());
        key(&KeyInputs {
            source: identity,
            variant: variant.name,
            fragments: &merged,
            patches,
            toolchain,
            make_args: &make_args,
        })
    }

    /// The published kernel for this request, if it is cached (never builds).
    pub fn cached(&self, cache: &crate::Cache) -> Result<Option<crate::BuiltKernel>, KernelError> {
        Ok(cache.lookup(&self.key()?).hit())
    }
}

/// `gcc --version` and `ld --version` first lines (the cross compiler's for arm64): a compiler
/// upgrade must not serve stale objects.
pub fn toolchain(arch: crate::Arch) -> String {
    [arch.gcc(), arch.ld()]
        .iter()
        .map(|t| {
            Command::new(t)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| format!("{t}: none"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
