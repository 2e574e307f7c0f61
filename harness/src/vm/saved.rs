//! Booted VMs saved to files, so that a VM can start where an earlier one stood at its agent's
//! hello instead of booting its kernel again.
//!
//! ```text
//! booted/<key>.vm     QEMU's migration stream (mapped-ram: each page at its own offset, so
//!                     the file is sparse where the guest never wrote)
//! booted/.tmp-*       a state being written; renamed into place when QEMU says it is complete
//! ```
//! The key is a hash of everything that shapes the saved memory and devices: QEMU's command line
//! (paths of this VM's own directory left out), the kernel, initrd and firmware files, the QEMU
//! binary, the protocol the agent speaks and this harness's version. Files are identified by path,
//! size, inode and modification time, not by hashing them on every start: kernels and images are
//! published by rename, and a QEMU upgrade replaces its binary, so new bytes are a new inode (and
//! asking QEMU for `--version` would cost every process 100 ms for nothing more).

use super::qemu::QemuSpec;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Saved states beyond this many, least recently used first, are removed after a save (each is
/// about 20 MB on disk for a 256 MiB guest).
const KEEP: usize = 24;

/// Bumped when the way a state is made changes (when it is saved, what the agent has done by then).
const FORMAT: u32 = 1;

pub struct SavedBoots {
    dir: PathBuf,
    cache: luo_kernels::Cache,
}

impl SavedBoots {
    pub fn from_env() -> SavedBoots {
        let cache = luo_kernels::Cache::from_env();
        SavedBoots {
            dir: cache.root().join("booted"),
            cache,
        }
    }

    /// The saved state under `key`, if one was published.
    pub fn lookup(&self, key: &str) -> Option<PathBuf> {
        let path = self.path(key);
        let meta = std::fs::metadata(&path).ok()?;
        // Least recently used is decided by modification time: a restore counts as a use.
        let _ = std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        meta.is_file().then_some(path)
    }

    /// Blocks until this process may make the state under `key` (one maker per key at a time).
    pub fn lock(&self, key: &str) -> std::io::Result<luo_kernels::cache::Lock> {
        self.cache
            .lock(&format!("booted-{key}"))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Where a maker writes the state before [`SavedBoots::publish`].
    pub fn temp_path(&self, key: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        Ok(self.dir.join(format!(".tmp-{}-{key}", std::process::id())))
    }

    /// Moves a complete state into place, then prunes the least recently used ones.
    pub fn publish(&self, temp: &Path, key: &str) -> std::io::Result<PathBuf> {
        let path = self.path(key);
        std::fs::rename(temp, &path)?;
        self.prune(KEEP);
        Ok(path)
    }

    /// Removes a state that did not load (QEMU changed under it, or the file was damaged).
    pub fn discard(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.vm"))
    }

    fn prune(&self, keep: usize) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut states: Vec<(std::time::SystemTime, PathBuf)> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".vm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        states.sort();
        let excess = states.len().saturating_sub(keep);
        for (_, path) in states.into_iter().take(excess) {
            tracing::debug!(path = %path.display(), "removing a least recently used saved VM");
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The key of the state a VM of this configuration saves and restores.
pub fn key_of(cfg: &super::VmConfig) -> std::io::Result<String> {
    // Any directory will do: it is replaced in the key.
    let dir = Path::new("/luo-harness-vm-dir");
    let spec = cfg.qemu_spec(dir).map_err(std::io::Error::other)?;
    key(&spec, dir, &cfg.share_seed)
}

/// The key of the state a VM with this command line would save; `vm_dir` is its own directory
/// (sockets, console), which differs on every start and does not shape the guest. `seed` is what
/// the share holds at boot: the systemd image's first stage installs it into the saved root.
pub fn key(spec: &QemuSpec, vm_dir: &Path, seed: &[(PathBuf, String)]) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut put = |label: &str, value: &str| {
        h.update(label.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    };
    put("format", &FORMAT.to_string());
    put("harness", env!("CARGO_PKG_VERSION"));
    put("protocol", &luo_protocol::PROTOCOL_VERSION.to_string());
    for arg in command_line(spec, vm_dir) {
        put("arg", &arg);
    }
    let files = [Some(&spec.binary), Some(&spec.kernel), Some(&spec.initrd)];
    for f in files.into_iter().flatten().chain(spec.bios.as_ref()) {
        put("file", &identity(f)?);
    }
    for (host, at) in seed {
        put("seed", at);
        put("file", &identity(host)?);
    }
    Ok(hex::encode(&h.finalize()[..16]))
}

/// QEMU's arguments as they shape the guest: this VM's directory replaced, and the host's TSC
/// rate (measured afresh by every process, to a few hundred ppm) left out. A restored guest keeps
/// the rate measured when it was saved, on the same host.
fn command_line(spec: &QemuSpec, vm_dir: &Path) -> Vec<String> {
    let dir = vm_dir.display().to_string();
    let saving = QemuSpec {
        incoming: false,
        ..spec.clone()
    };
    saving
        .args()
        .into_iter()
        .map(|a| {
            let a = a.replace(&dir, "<vm>");
            a.split(' ')
                .filter(|w| !w.starts_with("tsc_early_khz="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn identity(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(format!(
        "{} {} {} {} {}.{}",
        path.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::qemu::{Accel, Machine};

    fn spec(dir: &Path, files: &Path) -> QemuSpec {
        QemuSpec {
            binary: files.join("qemu"),
            machine: Machine::Microvm,
            accel: Accel::Tcg,
            memory_mib: 256,
            cpus: 1,
            kernel: files.join("vmlinux"),
            initrd: files.join("initrd"),
            cmdline: "console=ttyS0 tsc_early_khz=2994321 luo_harness.boot=0".into(),
            console_log: dir.join("console.log"),
            agent_socket: dir.join("agent.sock"),
            qmp_socket: dir.join("qmp.sock"),
            watch_monitor: None,
            gdb_port: None,
            virtiofs: Some((dir.join("vfs.sock"), "luoshare".into())),
            root_9p: None,
            agent_port_name: "org.luo-harness.agent".into(),
            bios: None,
            incoming: false,
        }
    }

    fn files() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in ["qemu", "vmlinux", "initrd", "other-initrd"] {
            std::fs::write(d.path().join(f), f).unwrap();
        }
        d
    }

    #[test]
    fn the_key_ignores_the_vms_own_directory_and_the_measured_tsc_rate() {
        let f = files();
        let a = spec(Path::new("/tmp/a-1"), f.path());
        let mut b = spec(Path::new("/tmp/b-22"), f.path());
        b.cmdline = b.cmdline.replace("2994321", "2993017");
        b.incoming = true;
        assert_eq!(
            key(&a, Path::new("/tmp/a-1"), &[]).unwrap(),
            key(&b, Path::new("/tmp/b-22"), &[]).unwrap(),
            "a restore (-incoming) looks the state up under the key its maker saved it with"
        );
    }

    #[test]
    fn the_key_changes_with_what_shapes_the_guest() {
        let f = files();
        let dir = Path::new("/tmp/v");
        let base = key(&spec(dir, f.path()), dir, &[]).unwrap();
        let changed = |edit: &dyn Fn(&mut QemuSpec)| {
            let mut s = spec(dir, f.path());
            edit(&mut s);
            key(&s, dir, &[]).unwrap()
        };
        assert_ne!(base, changed(&|s| s.memory_mib = 512));
        assert_ne!(base, changed(&|s| s.cpus = 2));
        assert_ne!(base, changed(&|s| s.machine = Machine::Pc));
        assert_ne!(base, changed(&|s| s.accel = Accel::Kvm));
        assert_ne!(base, changed(&|s| s.cmdline.push_str(" foo=1")));
        assert_ne!(base, changed(&|s| s.initrd = f.path().join("other-initrd")));
        // The same path with new bytes (a rebuilt kernel is published by rename: a new inode).
        let k = f.path().join("vmlinux");
        std::fs::write(f.path().join("new"), "rebuilt").unwrap();
        std::fs::rename(f.path().join("new"), &k).unwrap();
        assert_ne!(base, key(&spec(dir, f.path()), dir, &[]).unwrap());
    }

    #[test]
    fn the_key_changes_with_what_the_share_holds_at_boot() {
        let f = files();
        let dir = Path::new("/tmp/v");
        let s = spec(dir, f.path());
        let unit = f.path().join("a.service");
        std::fs::write(&unit, "[Service]").unwrap();
        let seed = |at: &str| vec![(unit.clone(), at.to_string())];
        let none = key(&s, dir, &[]).unwrap();
        let with_unit = key(&s, dir, &seed("units/a.service")).unwrap();
        assert_ne!(none, with_unit);
        assert_ne!(with_unit, key(&s, dir, &seed("units/b.service")).unwrap());
        std::fs::write(f.path().join("new"), "[Service]\nX=1").unwrap();
        std::fs::rename(f.path().join("new"), &unit).unwrap();
        assert_ne!(with_unit, key(&s, dir, &seed("units/a.service")).unwrap());
    }

    #[test]
    fn a_missing_kernel_is_an_error_naming_it() {
        let f = files();
        let mut s = spec(Path::new("/v"), f.path());
        s.kernel = "/nonexistent/vmlinux".into();
        let e = key(&s, Path::new("/v"), &[]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/vmlinux"), "{e}");
    }

    #[test]
    fn publishing_is_a_rename_and_the_least_recently_used_go_first() {
        let cache = tempfile::tempdir().unwrap();
        let saved = SavedBoots {
            dir: cache.path().join("booted"),
            cache: luo_kernels::Cache::at(cache.path()),
        };
        assert_eq!(saved.lookup("k0"), None);
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for i in 0..4 {
            let tmp = saved.temp_path(&format!("k{i}")).unwrap();
            std::fs::write(&tmp, "state").unwrap();
            let published = saved.publish(&tmp, &format!("k{i}")).unwrap();
            assert!(!tmp.exists());
            let f = std::fs::File::options()
                .append(true)
                .open(&published)
                .unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i))
                .unwrap();
        }
        assert!(
            saved.lookup("k0").is_some(),
            "a lookup makes k0 the most recent"
        );
        saved.prune(2);
        let left: Vec<bool> = (0..4)
            .map(|i| saved.path(&format!("k{i}")).exists())
            .collect();
        assert_eq!(left, [true, false, false, true]);
    }
}
