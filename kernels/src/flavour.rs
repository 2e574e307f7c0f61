//! Flavours: the same kernel (source, variant, fragments) with instrumentation on top.
//!
//! `debug` adds sanitizers and lock checking (kernels/fragments/flavours/debug.config); `gcov`
//! adds gcov profiling of the live-update code only (kernels/fragments/flavours/gcov.config, and
//! `GCOV_PROFILE_<object>=y` on make's command line for the files [`profiled`] names). Every
//! flavour builds from the family's one staged tree, each in a build directory of its own
//! ([`Flavour::dir_suffix`]), so that switching between them recompiles nothing.

use crate::config::Fragment;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Flavour {
    /// KASAN, KFENCE, kmemleak, lockdep, DEBUG_LIST, UBSAN, DEBUG_OBJECTS and DWARF debug info.
    #[serde(default)]
    pub debug: bool,
    /// gcov counters for kernel/liveupdate/, mm/memfd_luo.c and the files the variant patches.
    #[serde(default)]
    pub gcov: bool,
}

impl Flavour {
    pub const PLAIN: Flavour = Flavour {
        debug: false,
        gcov: false,
    };
    pub const DEBUG: Flavour = Flavour {
        debug: true,
        gcov: false,
    };
    pub const GCOV: Flavour = Flavour {
        debug: false,
        gcov: true,
    };

    pub fn is_plain(self) -> bool {
        self == Flavour::PLAIN
    }

    /// `plain`, `debug`, `gcov` or `debug+gcov`.
    pub fn name(self) -> &'static str {
        match (self.debug, self.gcov) {
            (false, false) => "plain",
            (true, false) => "debug",
            (false, true) => "gcov",
            (true, true) => "debug+gcov",
        }
    }

    /// This flavour with the other's instrumentation added.
    pub fn with(self, other: Flavour) -> Flavour {
        Flavour {
            debug: self.debug || other.debug,
            gcov: self.gcov || other.gcov,
        }
    }

    /// What the build directory's name gets after the recipe's. The debug flavour changes every
    /// file's flags. gcov changes the profiled files' flags and CONFIG_CONSTRUCTORS, which
    /// include/linux/module.h reads: 821 of 7.3's objects. Sharing the plain kernel's directory
    /// made every switch recompile those (249.8 s the first time, ccache cold for them, measured
    /// in `.ci/run`); a directory of its own costs that pass once (264.6 s), and afterwards a
    /// change to kernel/liveupdate rebuilds one file whichever flavour was built last.
    pub(crate) fn dir_suffix(self) -> &'static str {
        match (self.debug, self.gcov) {
            (false, false) => "",
            (true, false) => "-debug",
            (false, true) => "-gcov",
            (true, true) => "-debug-gcov",
        }
    }

    /// The names of the flavours this one is made of (`debug`, `gcov`), in fragment order.
    fn parts(self) -> impl Iterator<Item = &'static str> {
        [(self.debug, "debug"), (self.gcov, "gcov")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
    }

    /// The fragments this flavour adds after the built-in ones (embedded from
    /// kernels/fragments/flavours/).
    pub fn fragments(self) -> Vec<Fragment> {
        self.parts()
            .map(|part| {
                let (name, text) = crate::embedded::FLAVOUR_FRAGMENTS
                    .iter()
                    .find(|(n, _)| n.strip_suffix(".config") == Some(part))
                    .unwrap_or_else(|| {
                        panic!("kernels/fragments/flavours/{part}.config is embedded")
                    });
                Fragment {
                    name: format!("flavours/{name}"),
                    text: text.to_string(),
                }
            })
            .collect()
    }

    /// The patches this flavour applies after the variant's (kernels/flavours/<name>/): the debug
    /// flavour's makes kmemleak's minimum object age settable.
    pub fn patches(self) -> Vec<(&'static str, &'static str)> {
        self.parts()
            .flat_map(|part| {
                crate::embedded::FLAVOUR_PATCHES
                    .iter()
                    .filter(move |(name, _)| *name == part)
                    .flat_map(|(_, patches)| patches.iter().copied())
            })
            .collect()
    }

    /// What the cache key records of how this flavour builds besides its fragments: the rule that
    /// picks the profiled files (the files themselves follow from the source, which the key has).
    pub(crate) fn make_rule(self) -> Option<&'static str> {
        self.gcov.then_some(GCOV_RULE)
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Applies the flavour's patches to the staged tree, each only if it applies cleanly: they help
/// the harness (a settable kmemleak age) but a tree they do not fit must still build, and what
/// they would have given is then done the stock way (the agent waits out kmemleak's age). Returns
/// the patches that were not applied, with patch's words.
pub(crate) fn apply(
    flavour: Flavour,
    staging: &mut crate::staging::Staging,
) -> Result<Vec<(String, String)>, crate::KernelError> {
    use crate::error::IoContext;
    use crate::variant::{patch, touched_files};
    let tree = staging.tree();
    let mut skipped = Vec::new();
    for (name, text) in flavour.patches() {
        let (fits, output) = patch(&tree, text, &["--dry-run"]).at(&tree)?;
        if !fits {
            skipped.push((name.to_string(), output));
            continue;
        }
        for f in touched_files(text) {
            staging.make_private(&f)?;
        }
        let (ok, output) = patch(&tree, text, &[]).at(&tree)?;
        if !ok {
            return Err(crate::KernelError::PatchFailed {
                variant: format!("flavour {flavour}"),
                patch: name.to_string(),
                tree: tree.clone(),
                output,
            });
        }
    }
    Ok(skipped)
}

/// Bumped when [`profiled`] changes what it picks.
const GCOV_RULE: &str = "gcov-profile-v1: kernel/liveupdate/*.c mm/memfd_luo.c + variant's .c";

/// The C files outside kernel/liveupdate/ that are part of live update: memfd's LUO file handler.
const LUO_FILES_ELSEWHERE: &[&str] = &["mm/memfd_luo.c"];

/// The C files the gcov flavour profiles in `tree`, relative to it and sorted: every
/// kernel/liveupdate/*.c, [`LUO_FILES_ELSEWHERE`] that exist, and the C files `variant_files`
/// (what a variant's patches write) names.
pub fn profiled(tree: &Path, variant_files: &[String]) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(tree.join("kernel/liveupdate"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.ends_with(".c")
                        .then(|| format!("kernel/liveupdate/{name}"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.extend(
        LUO_FILES_ELSEWHERE
            .iter()
            .filter(|f| tree.join(f).is_file())
            .map(|f| f.to_string()),
    );
    files.extend(variant_files.iter().filter(|f| f.ends_with(".c")).cloned());
    files.sort();
    files.dedup();
    files
}

/// make's command-line variables that turn gcov on for exactly these files. kbuild looks up
/// `GCOV_PROFILE_<stem>.o` by the object's name without its directory, so a file elsewhere with
/// the same name would be profiled too (none of the live-update files' names is used twice).
pub(crate) fn gcov_make_args(profiled: &[String]) -> Vec<String> {
    profiled
        .iter()
        .filter_map(|f| {
            let stem = Path::new(f).file_stem()?.to_str()?;
            Some(format!("GCOV_PROFILE_{stem}.o=y"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_suffixes_and_combination() {
        assert_eq!(Flavour::PLAIN.name(), "plain");
        assert_eq!(Flavour::PLAIN.dir_suffix(), "");
        assert_eq!(Flavour::DEBUG.with(Flavour::GCOV).name(), "debug+gcov");
        assert_eq!(
            Flavour::DEBUG.with(Flavour::GCOV).dir_suffix(),
            "-debug-gcov"
        );
        assert_eq!(Flavour::GCOV.dir_suffix(), "-gcov");
        assert_eq!(Flavour::GCOV.with(Flavour::PLAIN), Flavour::GCOV);
        assert!(Flavour::PLAIN.fragments().is_empty() && Flavour::PLAIN.patches().is_empty());
        assert_eq!(Flavour::DEBUG.patches().len(), 3);
        assert!(Flavour::GCOV.patches().is_empty());
        let both: Vec<String> = Flavour::DEBUG
            .with(Flavour::GCOV)
            .fragments()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(both, ["flavours/debug.config", "flavours/gcov.config"]);
    }

    #[test]
    fn the_debug_fragment_asks_for_every_sanitizer_and_no_panic_on_warn() {
        let text = &Flavour::DEBUG.fragments()[0].text;
        let asked: std::collections::BTreeMap<String, String> =
            crate::config::requests(text).into_iter().collect();
        for sym in [
            "KASAN",
            "KASAN_GENERIC",
            "KFENCE",
            "DEBUG_KMEMLEAK",
            "PROVE_LOCKING",
            "DEBUG_LIST",
            "UBSAN",
            "DEBUG_OBJECTS",
            "DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT",
        ] {
            assert_eq!(asked.get(sym).map(String::as_str), Some("y"), "{sym}");
        }
        for sym in [
            "UBSAN_TRAP",
            "BUG_ON_DATA_CORRUPTION",
            "DEBUG_KMEMLEAK_AUTO_SCAN",
        ] {
            assert_eq!(asked.get(sym).map(String::as_str), Some("n"), "{sym}");
        }
        assert!(!text.contains("panic_on_warn=1"));
    }

    #[test]
    fn gcov_profiles_liveupdate_memfd_luo_and_what_the_variant_patches() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("kernel/liveupdate")).unwrap();
        std::fs::create_dir_all(d.path().join("mm")).unwrap();
        for f in [
            "kernel/liveupdate/luo_session.c",
            "kernel/liveupdate/kexec_handover.c",
            "kernel/liveupdate/luo_internal.h",
            "mm/memfd_luo.c",
        ] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        let files = profiled(
            d.path(),
            &[
                "fs/anon_inodes.c".into(),
                "include/uapi/linux/magic.h".into(),
            ],
        );
        assert_eq!(
            files,
            [
                "fs/anon_inodes.c",
                "kernel/liveupdate/kexec_handover.c",
                "kernel/liveupdate/luo_session.c",
                "mm/memfd_luo.c"
            ]
        );
        assert_eq!(
            gcov_make_args(&files),
            [
                "GCOV_PROFILE_anon_inodes.o=y",
                "GCOV_PROFILE_kexec_handover.o=y",
                "GCOV_PROFILE_luo_session.o=y",
                "GCOV_PROFILE_memfd_luo.o=y"
            ]
        );
    }
}
