//! One staged source tree per kernel family (`linux-7.3`), synced by content from whichever source
//! is being built, so that every source of a family builds in one persistent `O=` directory.
//!
//! kbuild records absolute source paths in every `.cmd` file, so two trees at two paths never share
//! an object even when their files are identical. Building everything of a family from one path
//! does: a copy of the Debian tree with one selftest replaced, a git commit next to the one built
//! before, or a variant's patch all recompile only what differs.
//!
//! The sync keeps make's rule sound: a staged file whose content changes gets a fresh inode and a
//! current mtime (never the source's older one), so it is newer than every object built from what
//! was there before; a file whose content is unchanged is not touched at all.
//!
//! First staging hard-links files from cache-owned sources (the unpacked Debian packages) and copies
//! from anyone else's tree, so nothing the harness does can write through a link into a user's
//! tree. Files the harness changes itself (variant patches) are made private first
//! ([`Staging::make_private`]) and dropped from the manifest, so the next sync restores them.

use crate::error::{IoContext, KernelError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the last sync saw of each source file, by path relative to the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

impl Seen {
    /// Matches no source file: the staged file was changed by the harness.
    const CHANGED_HERE: Seen = Seen {
        dev: 0,
        ino: 0,
        size: u64::MAX,
        mtime_ns: i64::MIN,
    };

    fn of(m: &std::fs::Metadata) -> Seen {
        Seen {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Regular files: what the source looked like when its content was last staged.
    files: BTreeMap<String, Seen>,
    /// Symbolic links: their target.
    links: BTreeMap<String, String>,
}

/// How a sync went: what make will have to look at again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub files: usize,
    pub changed: usize,
    pub removed: usize,
}

pub struct Staging {
    root: PathBuf,
    manifest: Manifest,
}

/// Top-level paths of a source tree that are never staged: version control, and what an in-tree
/// build leaves behind (kbuild refuses an `O=` build of a tree that has them).
const SKIPPED_TOP: &[&str] = &[
    ".git",
    ".config",
    ".config.old",
    "include/config",
    "include/generated",
];

fn skipped(rel: &str, is_dir: bool) -> bool {
    if SKIPPED_TOP.contains(&rel) {
        return true;
    }
    if is_dir {
        // arch/<arch>/include/generated
        let parts: Vec<&str> = rel.split('/').collect();
        return parts.len() == 4
            && parts[0] == "arch"
            && parts[2] == "include"
            && parts[3] == "generated";
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.ends_with(".o") || (name.starts_with('.') && name.ends_with(".cmd"))
}

/// `linux-<VERSION>.<PATCHLEVEL>` from a tree's top Makefile: trees of one family share a staged
/// tree and its build directories.
pub fn family(tree: &Path) -> Result<String, KernelError> {
    let (v, p) = version(tree)?;
    Ok(format!("linux-{v}.{p}"))
}

/// (VERSION, PATCHLEVEL) from a tree's top Makefile.
pub fn version(tree: &Path) -> Result<(u32, u32), KernelError> {
    let mk = tree.join("Makefile");
    let text = std::fs::read_to_string(&mk).at(&mk)?;
    let var = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    match (
        var("VERSION").and_then(|v| v.parse().ok()),
        var("PATCHLEVEL").and_then(|p| p.parse().ok()),
    ) {
        (Some(v), Some(p)) => Ok((v, p)),
        _ => Err(KernelError::NotATree(tree.to_path_buf())),
    }
}

impl Staging {
    /// The staged tree of `family` under `dir` (the caller holds the family's lock).
    pub fn open(dir: &Path) -> Result<Staging, KernelError> {
        let root = dir.to_path_buf();
        std::fs::create_dir_all(root.join("src")).at(&root)?;
        let manifest = std::fs::read(root.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Staging { root, manifest })
    }

    /// Nothing staged yet (or the manifest was lost): build directories of this family may hold
    /// objects newer than the files about to be linked in, so they must not be trusted.
    pub fn is_fresh(&self) -> bool {
        self.manifest.files.is_empty()
    }

    /// The tree make builds from.
    pub fn tree(&self) -> PathBuf {
        self.root.join("src")
    }

    fn save(&self) -> Result<(), KernelError> {
        let path = self.root.join("manifest.json");
        let tmp = self.root.join("manifest.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&self.manifest).expect("manifest serialises"),
        )
        .at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)
    }

    /// Makes the staged tree hold exactly `source`'s files. `owned_source` allows hard links for
    /// files staged for the first time (only for trees the harness owns).
    pub fn sync(&mut self, source: &Path, owned_source: bool) -> Result<SyncStats, KernelError> {
        let dest = self.tree();
        let mut stats = SyncStats::default();
        let mut seen_files = BTreeMap::new();
        let mut seen_links = BTreeMap::new();
        let manifest = &self.manifest;
        walk(source, &mut |rel, path, meta| {
            let d = dest.join(rel);
            let ft = meta.file_type();
            if ft.is_dir() {
                if !d.is_dir() {
                    remove_any(&d)?;
                    std::fs::create_dir_all(&d).at(&d)?;
                }
            } else if ft.is_symlink() {
                let target = std::fs::read_link(path)
                    .at(path)?
                    .to_string_lossy()
                    .into_owned();
                if manifest.links.get(rel) != Some(&target) {
                    remove_any(&d)?;
                    std::os::unix::fs::symlink(&target, &d).at(&d)?;
                    stats.changed += 1;
                }
                seen_links.insert(rel.to_string(), target);
            } else if ft.is_file() {
                stats.files += 1;
                let now = Seen::of(meta);
                if manifest.files.get(rel) != Some(&now) || !d.exists() {
                    let first = !d.exists() && !manifest.files.contains_key(rel);
                    if first || !same_content(path, &d)? {
                        stage_file(path, &d, first && owned_source)?;
                        stats.changed += 1;
                    }
                }
                seen_files.insert(rel.to_string(), now);
            }
            Ok(())
        })?;
        for rel in self.manifest.files.keys().chain(self.manifest.links.keys()) {
            if !seen_files.contains_key(rel) && !seen_links.contains_key(rel) {
                remove_any(&dest.join(rel))?;
                stats.removed += 1;
            }
        }
        self.manifest = Manifest {
            files: seen_files,
            links: seen_links,
        };
        self.save()?;
        Ok(stats)
    }

    /// Gives `rel` its own inode (so writing it cannot reach a linked source) and marks it as
    /// changed by the harness, so the next sync compares and restores it (or removes it, if the
    /// source has no such file).
    pub fn make_private(&mut self, rel: &str) -> Result<(), KernelError> {
        let path = self.tree().join(rel);
        self.manifest
            .files
            .insert(rel.to_string(), Seen::CHANGED_HERE);
        self.save()?;
        if path.is_file() {
            let bytes = std::fs::read(&path).at(&path)?;
            let tmp = path.with_extension("luo-private");
            std::fs::write(&tmp, bytes).at(&tmp)?;
            std::fs::rename(&tmp, &path).at(&path)?;
        }
        Ok(())
    }
}

/// Every entry below `root` that is staged (directories before what they hold), with its path
/// relative to `root`. Symbolic links are reported, not followed.
pub(crate) fn walk(
    root: &Path,
    visit: &mut dyn FnMut(&str, &Path, &std::fs::Metadata) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    let mut stack = vec![String::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = root.join(&rel_dir);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .at(&dir)?
            .collect::<Result<_, _>>()
            .at(&dir)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let meta = e.path().symlink_metadata().at(e.path())?;
            if skipped(&rel, meta.is_dir()) {
                continue;
            }
            visit(&rel, &e.path(), &meta)?;
            if meta.is_dir() {
                stack.push(rel);
            }
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> Result<(), KernelError> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).at(p),
        Ok(_) => std::fs::remove_file(p).at(p),
        Err(_) => Ok(()),
    }
}

/// A fresh inode for `dst`: a hard link where allowed and possible, else a copy (whose mtime is
/// now, not the source's).
fn stage_file(src: &Path, dst: &Path, link: bool) -> Result<(), KernelError> {
    remove_any(dst)?;
    if link && std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    let tmp = dst.with_extension("luo-staging");
    std::fs::copy(src, &tmp).at(src)?;
    std::fs::rename(&tmp, dst).at(dst)
}

fn same_content(a: &Path, b: &Path) -> Result<bool, KernelError> {
    let (ma, mb) = match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return Ok(false),
    };
    if ma.len() != mb.len() {
        return Ok(false);
    }
    if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
        return Ok(true);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a).at(a)?, std::fs::File::open(b).at(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut fa, &mut ba).at(a)?;
        let m = read_full(&mut fb, &mut bb).at(b)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn mtime(p: &Path) -> i64 {
        Seen::of(&p.metadata().unwrap()).mtime_ns
    }

    #[test]
    fn family_comes_from_the_makefile() {
        let d = tempfile::tempdir().unwrap();
        write(
            &d.path().join("Makefile"),
            "# x\nVERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\n",
        );
        assert_eq!(family(d.path()).unwrap(), "linux-7.2");
        write(&d.path().join("Makefile"), "all:\n");
        assert!(family(d.path()).is_err());
    }

    #[test]
    fn unchanged_files_are_left_alone_and_changed_ones_get_a_new_inode_and_mtime() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        write(&a.join("Makefile"), "VERSION = 7\n");
        write(&a.join("kernel/x.c"), "int x;\n");
        write(&a.join("tools/t.c"), "int t;\n");
        // b: a copy of a made with hard links, where one file is replaced, one added, one gone.
        for f in ["Makefile", "kernel/x.c"] {
            std::fs::create_dir_all(b.join(f).parent().unwrap()).unwrap();
            std::fs::hard_link(a.join(f), b.join(f)).unwrap();
        }
        write(&b.join("tools/new.c"), "int n;\n");
        let mut s = Staging::open(&d.path().join("stage")).unwrap();
        let first = s.sync(&a, true).unwrap();
        assert_eq!((first.files, first.changed, first.removed), (3, 3, 0));
        let staged_x = s.tree().join("kernel/x.c");
        assert_eq!(
            staged_x.metadata().unwrap().ino(),
            a.join("kernel/x.c").metadata().unwrap().ino(),
            "an owned source is linked on first staging"
        );
        let x_mtime = mtime(&staged_x);
        let second = s.sync(&b, false).unwrap();
        assert_eq!((second.files, second.changed, second.removed), (3, 1, 1));
        assert_eq!(
            mtime(&staged_x),
            x_mtime,
            "identical content must not be touched"
        );
        assert!(!s.tree().join("tools/t.c").exists());
        assert_eq!(
            std::fs::read_to_string(s.tree().join("tools/new.c")).unwrap(),
            "int n;\n"
        );
        // An older file with other content: staged with a current mtime, not the source's.
        let old = d.path().join("c");
        write(&old.join("Makefile"), "VERSION = 7\n");
        write(&old.join("kernel/x.c"), "int y;\n");
        let past = std::fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH);
        std::fs::File::options()
            .write(true)
            .open(old.join("kernel/x.c"))
            .unwrap()
            .set_times(past)
            .unwrap();
        s.sync(&old, false).unwrap();
        assert_eq!(std::fs::read_to_string(&staged_x).unwrap(), "int y;\n");
        assert!(mtime(&staged_x) >= x_mtime, "make must see the change");
        assert_ne!(
            staged_x.metadata().unwrap().ino(),
            old.join("kernel/x.c").metadata().unwrap().ino(),
            "a user's tree is copied, never linked"
        );
    }

    #[test]
    fn a_private_file_is_restored_by_the_next_sync_and_the_source_is_never_written() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        write(&src.join("m.h"), "#define M 1\n");
        let mut s = Staging::open(&d.path().join("stage")).unwrap();
        s.sync(&src, true).unwrap();
        s.make_private("m.h").unwrap();
        std::fs::write(s.tree().join("m.h"), "#define M 2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(src.join("m.h")).unwrap(),
            "#define M 1\n"
        );
        let again = Staging::open(&d.path().join("stage"))
            .unwrap()
            .sync(&src, true)
            .unwrap();
        assert_eq!(again.changed, 1);
        assert_eq!(
            std::fs::read_to_string(s.tree().join("m.h")).unwrap(),
            "#define M 1\n"
        );
    }

    #[test]
    fn build_leftovers_and_version_control_are_not_staged() {
        assert!(skipped(".git", true));
        assert!(skipped("include/config", true));
        assert!(skipped("arch/x86/include/generated", true));
        assert!(!skipped("arch/x86/include/asm", true));
        assert!(skipped("kernel/.fork.o.cmd", false));
        assert!(skipped("kernel/fork.o", false));
        assert!(!skipped("kernel/fork.c", false));
    }
}
