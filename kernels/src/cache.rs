//! The content-addressed kernel cache under `$XDG_CACHE_HOME/luo-harness` (or `~/.cache/luo-harness`;
//! `LUO_HARNESS_CACHE` overrides).
//!
//! ```text
//! sources/<package>_<version>/   unpacked Debian source, once
//! staging/<family>/src/          the source being built, synced by content (see staging.rs)
//! builds/<family>-<recipe>/      persistent O= build directories (incremental rebuilds)
//! kernels/<key>/                 published results: bzImage, vmlinux, System.map, config, build.log, meta.json
//! selftests/<key>/               the kernel's LUO selftests built from a source
//! locks/                         flock files; a build holds its family's lock
//! ```
//! A result is built in its build directory, copied to `kernels/.tmp-*` and renamed into place, so a
//! reader never sees a half-written kernel and a failed or interrupted build publishes nothing.
//! meta.json records each file's SHA-256; a lookup checks them, so a file truncated or changed since
//! (a full disk, a stray write, bit rot) is a miss that is rebuilt, never a kernel that is booted.

use crate::error::{IoContext, KernelError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// Everything that determines a kernel's bytes, hashed into its key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInputs<'a> {
    pub source: &'a str,
    pub variant: &'a str,
    pub fragments: &'a str,
    pub patches: Vec<(&'a str, &'a str)>,
    pub toolchain: &'a str,
    pub make_args: &'a [String],
}

pub fn key(inputs: &KeyInputs<'_>) -> String {
    let json = serde_json::to_vec(inputs).expect("key inputs serialise");
    hex::encode(&Sha256::digest(&json)[..16])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelMeta {
    pub key: String,
    pub source: String,
    pub variant: String,
    /// `make kernelrelease`.
    pub release: String,
    pub toolchain: String,
    /// Seconds since the epoch when published.
    pub built_at: u64,
    pub build_seconds: f64,
    /// SHA-256 of each published file, by name. Empty in entries published before hashes were kept,
    /// which are therefore misses.
    #[serde(default)]
    pub sha256: std::collections::BTreeMap<String, String>,
    /// The instrumentation it was built with (plain in entries from before flavours).
    #[serde(default)]
    pub flavour: crate::Flavour,
    /// The staged tree it was compiled from: the prefix its debug information and gcov notes give
    /// every source path, for making them relative (`kernel/liveupdate/luo_session.c`).
    #[serde(default)]
    pub source_root: String,
    /// The gcov flavour's profiled files, relative to the tree; their notes and sources are
    /// published under `gcov/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiled: Vec<String>,
    /// The architecture it was built for (x86_64 in entries from before arm64).
    #[serde(default)]
    pub arch: crate::Arch,
}

/// Why a published entry is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// A file every kernel is published with is not there (an older layout, or deleted since).
    Missing(String),
    /// The entry records no hashes (published by an older luo-harness).
    Unverifiable,
    /// A file's bytes are not the bytes published.
    Changed { file: String },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Missing(file) => write!(f, "{file} is missing"),
            Damage::Unverifiable => write!(f, "it records no SHA-256 of its files"),
            Damage::Changed { file } => {
                write!(
                    f,
                    "{file} does not match its SHA-256 (truncated or changed)"
                )
            }
        }
    }
}

/// What the cache holds under a key.
#[derive(Debug, Clone)]
pub enum Lookup {
    Hit(BuiltKernel),
    Miss,
    /// Published once, but not servable now: rebuilt (and republished) by whoever needs it.
    Damaged {
        dir: PathBuf,
        damage: Damage,
    },
}

impl Lookup {
    pub fn hit(self) -> Option<BuiltKernel> {
        match self {
            Lookup::Hit(k) => Some(k),
            _ => None,
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[derive(Debug, Clone)]
pub struct BuiltKernel {
    pub dir: PathBuf,
    pub meta: KernelMeta,
}

/// What every published kernel has besides its boot image (a vmlinux only when it was built
/// with a PVH entry, or for symbols).
pub const PUBLISHED_FILES: &[&str] = &["System.map", "config", "build.log"];

impl BuiltKernel {
    /// The image kexec_file_load and QEMU's -kernel take: x86's bzImage, arm64's Image.
    pub fn boot_image(&self) -> PathBuf {
        self.dir.join(self.meta.arch.image_target())
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }
    /// The uncompressed ELF kernel, when it has a PVH entry QEMU can boot directly (no
    /// decompression); kernels published before it was kept, or built without PVH, have none.
    pub fn pvh_vmlinux(&self) -> Option<PathBuf> {
        let cfg = std::fs::read_to_string(self.config()).ok()?;
        let path = self.dir.join("vmlinux");
        (cfg.lines().any(|l| l == "CONFIG_PVH=y") && path.exists()).then_some(path)
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("build.log")
    }
    /// The kernel's symbols, for naming sampled instruction pointers (`luo-harness profile`).
    pub fn system_map(&self) -> PathBuf {
        self.dir.join("System.map")
    }
    /// The ELF kernel (with DWARF in the debug flavour), for symbolizing its reports.
    pub fn vmlinux(&self) -> Option<PathBuf> {
        Some(self.dir.join("vmlinux")).filter(|p| p.is_file())
    }
    /// The gcov flavour's notes and sources: `gcov/<file>.gcno` and `gcov/<file>.c` for every
    /// profiled file.
    pub fn gcov_dir(&self) -> Option<PathBuf> {
        (!self.meta.profiled.is_empty()).then(|| self.dir.join(GCOV_DIR))
    }
}

/// Where a gcov kernel's notes and profiled sources are published, beside its bzImage.
pub const GCOV_DIR: &str = "gcov";

/// An exclusive flock, released on drop (or when the process dies, so a crash never wedges the cache).
pub struct Lock {
    _file: File,
}

impl Cache {
    pub fn from_env() -> Cache {
        let root = std::env::var_os("LUO_HARNESS_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("luo-harness"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/luo-harness"))
            })
            .unwrap_or_else(|| PathBuf::from("/tmp/luo-harness-cache"));
        Cache { root }
    }

    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn sources_dir(&self) -> PathBuf {
        self.root.join("sources")
    }
    pub fn kernels_dir(&self) -> PathBuf {
        self.root.join("kernels")
    }
    /// The staged source tree of a kernel family (`linux-7.3`).
    pub fn staging_dir(&self, family: &str) -> PathBuf {
        self.root.join("staging").join(family)
    }
    /// The persistent make O= directory for a family's staged tree and a configuration recipe.
    pub fn build_dir(&self, family: &str, recipe: &str) -> PathBuf {
        self.root.join("builds").join(format!("{family}-{recipe}"))
    }
    /// Removes every build directory of `family` (their objects no longer match the staged tree).
    pub fn remove_build_dirs(&self, family: &str) -> Result<(), KernelError> {
        let builds = self.root.join("builds");
        let Ok(rd) = std::fs::read_dir(&builds) else {
            return Ok(());
        };
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{family}-"))
            {
                std::fs::remove_dir_all(e.path()).at(e.path())?;
            }
        }
        Ok(())
    }
    pub fn selftests_dir(&self) -> PathBuf {
        self.root.join("selftests")
    }

    /// What `ready` finds in the cache, or else what `make` puts there, made under the lock
    /// `name`. `ready` is asked again once the lock is held: of several processes that miss at
    /// once, one makes it and the others wait and find it made.
    pub fn get_or_make<T, E: From<KernelError>>(
        &self,
        name: &str,
        ready: impl Fn() -> Option<T>,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(found) = ready() {
            return Ok(found);
        }
        let _lock = self.lock(name)?;
        if let Some(found) = ready() {
            return Ok(found);
        }
        make()
    }

    /// Blocks until this process holds the lock called `name`.
    pub fn lock(&self, name: &str) -> Result<Lock, KernelError> {
        let dir = self.root.join("locks");
        std::fs::create_dir_all(&dir).at(&dir)?;
        let path = dir.join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        if file.try_lock().is_err() {
            tracing::info!(lock = %path.display(), "waiting for another luo-harness process");
            file.lock().at(&path)?;
        }
        Ok(Lock { _file: file })
    }

    /// The published kernel under `key`, if it has everything a kernel is published with now and
    /// every file's bytes are the ones published. Anything else (an older layout, a truncated
    /// bzImage) is not served, so the build publishes it afresh.
    pub fn lookup(&self, key: &str) -> Lookup {
        let Some(k) = self.entry(key) else {
            return Lookup::Miss;
        };
        match verify(&k) {
            Ok(()) => Lookup::Hit(k),
            Err(damage) => {
                tracing::warn!(dir = %k.dir.display(), %damage, "cached kernel not served");
                Lookup::Damaged { dir: k.dir, damage }
            }
        }
    }

    /// Any published entry, complete or from an older layout (for listing and collecting).
    fn entry(&self, key: &str) -> Option<BuiltKernel> {
        let dir = self.kernels_dir().join(key);
        let meta: KernelMeta =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
        dir.join(meta.arch.image_target())
            .is_file()
            .then_some(BuiltKernel { dir, meta })
    }

    /// Copies the named files into a temporary directory and renames it to `kernels/<key>`.
    pub fn publish(
        &self,
        meta: KernelMeta,
        files: &[(&str, &Path)],
    ) -> Result<BuiltKernel, KernelError> {
        let kernels = self.kernels_dir();
        std::fs::create_dir_all(&kernels).at(&kernels)?;
        let tmp = kernels.join(format!(".tmp-{}-{}", meta.key, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).at(&tmp)?;
        let mut meta = meta;
        for (name, src) in files {
            let dest = tmp.join(name);
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir).at(dir)?;
            }
            std::fs::copy(src, &dest).at(*src)?;
            // Hashed from the copy, so what is recorded is what was written.
            let sum = sha256_file(&dest).at(&dest)?;
            meta.sha256.insert(name.to_string(), sum);
        }
        let json = serde_json::to_vec_pretty(&meta).expect("meta serialises");
        std::fs::write(tmp.join("meta.json"), json).at(tmp.join("meta.json"))?;
        let dest = kernels.join(&meta.key);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest).at(&dest)?;
        Ok(BuiltKernel { dir: dest, meta })
    }

    /// Published kernels, newest first (verified or not: for listing and collecting).
    pub fn list(&self) -> Vec<BuiltKernel> {
        let mut v: Vec<BuiltKernel> = std::fs::read_dir(self.kernels_dir())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| self.entry(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.meta
                .built_at
                .cmp(&a.meta.built_at)
                .then(a.meta.key.cmp(&b.meta.key))
        });
        v
    }

    /// Removes leftovers of interrupted builds, and every published kernel except the newest
    /// `keep` per (source, variant). Returns what was removed.
    pub fn gc(&self, keep: usize) -> Result<Vec<PathBuf>, KernelError> {
        let mut removed = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.kernels_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // A .tmp-<key>-<pid> whose process is gone is garbage.
                if let Some(pid) = name
                    .strip_prefix(".tmp-")
                    .and_then(|r| r.rsplit('-').next()?.parse::<i32>().ok())
                {
                    // SAFETY: kill with signal 0 only checks for existence.
                    if unsafe { libc::kill(pid, 0) } != 0 {
                        std::fs::remove_dir_all(e.path()).at(e.path())?;
                        removed.push(e.path());
                    }
                }
            }
        }
        let mut seen: std::collections::BTreeMap<(String, String), usize> = Default::default();
        for k in self.list() {
            let n = seen
                .entry((k.meta.source.clone(), k.meta.variant.clone()))
                .or_default();
            *n += 1;
            if *n > keep {
                std::fs::remove_dir_all(&k.dir).at(&k.dir)?;
                removed.push(k.dir);
            }
        }
        Ok(removed)
    }
}

/// Checks an entry's files against the hashes it was published with.
fn verify(k: &BuiltKernel) -> Result<(), Damage> {
    let image = k.meta.arch.image_target();
    if let Some(f) = std::iter::once(&image)
        .chain(PUBLISHED_FILES)
        .find(|f| !k.dir.join(f).is_file())
    {
        return Err(Damage::Missing(f.to_string()));
    }
    if k.meta.sha256.is_empty() {
        return Err(Damage::Unverifiable);
    }
    for (file, want) in &k.meta.sha256 {
        let path = k.dir.join(file);
        if !path.is_file() {
            return Err(Damage::Missing(file.clone()));
        }
        if sha256_file(&path).ok().as_ref() != Some(want) {
            return Err(Damage::Changed { file: file.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        fragments: &'a str,
        patches: Vec<(&'a str, &'a str)>,
        toolchain: &'a str,
    ) -> KeyInputs<'a> {
        KeyInputs {
            source: "debian:linux-source-7.3=7.3.4",
            variant: "stock",
            fragments,
            patches,
            toolchain,
            make_args: &[],
        }
    }

    #[test]
    fn key_changes_with_every_input_and_only_then() {
        let base = key(&inputs("CONFIG_A=y\n", vec![], "gcc 12"));
        assert_eq!(base, key(&inputs("CONFIG_A=y\n", vec![], "gcc 12")));
        assert_eq!(base.len(), 32);
        assert_ne!(base, key(&inputs("CONFIG_A=n\n", vec![], "gcc 12")));
        assert_ne!(
            base,
            key(&inputs("CONFIG_A=y\n", vec![("p", "diff")], "gcc 12"))
        );
        assert_ne!(base, key(&inputs("CONFIG_A=y\n", vec![], "gcc 13")));
        let mut other = inputs("CONFIG_A=y\n", vec![], "gcc 12");
        other.variant = "anon-unique";
        assert_ne!(base, key(&other));
    }

    fn meta(key: &str, built_at: u64) -> KernelMeta {
        KernelMeta {
            key: key.into(),
            source: "s".into(),
            variant: "stock".into(),
            release: "7.3.4".into(),
            toolchain: "gcc".into(),
            built_at,
            build_seconds: 1.0,
            sha256: Default::default(),
            flavour: Default::default(),
            source_root: String::new(),
            profiled: vec![],
            arch: Default::default(),
        }
    }

    /// An empty cache in a temporary directory, and a file to publish as any of a kernel's files.
    fn cache_with_image() -> (tempfile::TempDir, Cache, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let img = dir.path().join("img");
        std::fs::write(&img, b"kernel").unwrap();
        (dir, cache, img)
    }

    #[test]
    fn publish_is_visible_only_when_complete_and_gc_keeps_newest() {
        let (_dir, cache, img) = cache_with_image();
        assert!(matches!(cache.lookup("k1"), Lookup::Miss));
        // A leftover from a dead build is never served and is collected.
        let stale = cache.kernels_dir().join(".tmp-k0-999999999");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("bzImage"), b"half").unwrap();
        let all: Vec<(&str, &Path)> = std::iter::once(&"bzImage")
            .chain(PUBLISHED_FILES)
            .map(|f| (*f, img.as_path()))
            .collect();
        cache.publish(meta("k1", 1), &all).unwrap();
        cache.publish(meta("k2", 2), &all).unwrap();
        assert_eq!(
            std::fs::read(cache.lookup("k1").hit().unwrap().boot_image()).unwrap(),
            b"kernel"
        );
        assert_eq!(
            cache
                .list()
                .iter()
                .map(|k| k.meta.key.as_str())
                .collect::<Vec<_>>(),
            ["k2", "k1"]
        );
        let removed = cache.gc(1).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(
            matches!(cache.lookup("k1"), Lookup::Miss)
                && cache.lookup("k2").hit().is_some()
                && !stale.exists()
        );
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let held = cache.lock("x").unwrap();
        let path = dir.path().join("locks/x.lock");
        let other = File::options().write(true).open(&path).unwrap();
        assert!(
            other.try_lock().is_err(),
            "a second open file description must not get the lock"
        );
        drop(held);
        assert!(other.try_lock().is_ok());
    }

    #[test]
    fn get_or_make_makes_under_the_lock_only_what_is_not_there() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let file = dir.path().join("made");
        let ready = || file.is_file().then(|| file.clone());
        let made = cache
            .get_or_make("m", ready, || {
                // The lock is held while making: a second holder cannot take it.
                let other = File::options()
                    .write(true)
                    .open(dir.path().join("locks/m.lock"))
                    .unwrap();
                assert!(other.try_lock().is_err());
                std::fs::write(&file, b"x").unwrap();
                Ok::<_, KernelError>(file.clone())
            })
            .unwrap();
        assert_eq!(made, file);
        let again: Result<_, KernelError> = cache.get_or_make("m", ready, || panic!("made twice"));
        assert_eq!(again.unwrap(), file);
    }

    #[test]
    fn an_entry_from_an_older_layout_is_a_miss_but_still_listed() {
        let (_dir, cache, img) = cache_with_image();
        cache.publish(meta("old", 1), &[("bzImage", &img)]).unwrap();
        assert!(
            matches!(cache.lookup("old"), Lookup::Damaged { damage: Damage::Missing(f), .. } if f == "System.map"),
            "rebuilt to get System.map"
        );
        assert_eq!(cache.list().len(), 1, "still seen by list and gc");
    }

    #[test]
    fn a_truncated_or_changed_file_is_never_served() {
        let (_dir, cache, img) = cache_with_image();
        let all: Vec<(&str, &Path)> = std::iter::once(&"bzImage")
            .chain(PUBLISHED_FILES)
            .map(|f| (*f, img.as_path()))
            .collect();
        let k = cache.publish(meta("k", 1), &all).unwrap();
        assert!(cache.lookup("k").hit().is_some());
        // Same length, one byte changed: only the hash can tell.
        std::fs::write(k.boot_image(), b"kernal").unwrap();
        assert!(matches!(
            cache.lookup("k"),
            Lookup::Damaged { damage: Damage::Changed { file }, .. } if file == "bzImage"
        ));
        cache.publish(meta("k", 2), &all).unwrap();
        std::fs::write(k.config(), b"").unwrap();
        assert!(matches!(
            cache.lookup("k"),
            Lookup::Damaged { damage: Damage::Changed { file }, .. } if file == "config"
        ));
        // An entry without hashes cannot be trusted either.
        let mut m = cache.list()[0].meta.clone();
        m.sha256.clear();
        std::fs::write(k.dir.join("meta.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(matches!(
            cache.lookup("k"),
            Lookup::Damaged {
                damage: Damage::Unverifiable,
                ..
            }
        ));
        // And a truncated meta.json is no entry at all.
        std::fs::write(k.dir.join("meta.json"), b"{\"key\":").unwrap();
        assert!(matches!(cache.lookup("k"), Lookup::Miss));
    }
}
