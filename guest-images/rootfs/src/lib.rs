//! Root filesystems for guests that run a real distribution on top of the harness's kernel: a
//! Debian suite and a package set, built by mmdebstrap (from Debian's archive, through the mirror
//! the machine's own apt sources name) into a directory that the VM serves read-only over
//! virtiofs. Cached by everything that decides the tree: suite, packages, options.
//!
//! The tree is shared by every VM that boots it; each boot puts its own tmpfs over it (the
//! agent's first stage), so nothing a guest does reaches the cache.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RootfsError {
    #[diagnostic(help("install it: bash ci/install-deps (Debian's mmdebstrap package)"))]
    #[error("building the {image} image needs mmdebstrap, which is not on the PATH")]
    NoMmdebstrap { image: &'static str },
    #[diagnostic(help(
        "a pinned version that sid no longer carries means the image's package set (guest-images/rootfs/src/lib.rs) needs updating, with its snapshots; the log has apt's own words"
    ))]
    #[error("mmdebstrap failed building the {image} image ({status}); its log: {log}")]
    Mmdebstrap {
        image: &'static str,
        status: String,
        log: PathBuf,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tar {action} {tarball} failed ({status}): {stderr}")]
    Tar {
        action: &'static str,
        tarball: PathBuf,
        status: String,
        stderr: String,
    },
    #[error(
        "the {image} tarball {tarball} holds a tree without built.json (not made by `luo-harness stage`?)"
    )]
    NotATree {
        image: &'static str,
        tarball: PathBuf,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Mirror(#[from] luo_kernels::KernelError),
}

/// A root filesystem: a Debian suite and the packages on top of its minimal base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebianRoot {
    /// What scenarios call it (`image: systemd`).
    pub name: &'static str,
    pub suite: &'static str,
    /// `package` or `package=version`; pinned versions make the key exact.
    pub packages: &'static [&'static str],
}

/// The names the guest looks for in the directory it is served.
pub use luo_protocol::{ROOT_ARCHIVE as GUEST_ARCHIVE, ROOT_TREE as GUEST_TREE};

/// Debian sid with systemd 262.1, the first systemd with LUO support (fd stores preserved across
/// kexec, LUOSession=), and kexec-tools, which systemd-shutdown runs for the final `kexec -e`.
/// Pinned: the snapshots record what this systemd does, and sid moves.
pub const SYSTEMD: DebianRoot = DebianRoot {
    name: "systemd",
    suite: "sid",
    packages: &["systemd=262.1-1", "systemd-sysv=262.1-1", "kexec-tools"],
};

/// Documentation, manuals and translations: a fifth of the tree, read by nobody in a guest.
const DROPPED: &[&str] = &[
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
];

/// What a built tree records beside itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Built {
    pub key: String,
    pub seconds: f64,
    /// `dpkg-query` of the tree: `package version` per line.
    pub packages: Vec<String>,
    pub bytes: u64,
}

impl DebianRoot {
    fn mmdebstrap_args(&self, mirror: &str, target: &Path) -> Vec<String> {
        let mut a = vec![
            "--variant=minbase".to_string(),
            "--format=directory".into(),
            // The sid Release file this archive serves can be past its Valid-Until date.
            "--aptopt=Acquire::Check-Valid-Until \"false\"".into(),
            format!("--include={}", self.packages.join(",")),
        ];
        a.extend(
            DROPPED
                .iter()
                .map(|p| format!("--dpkgopt=path-exclude={p}")),
        );
        a.push(self.suite.into());
        a.push(target.display().to_string());
        a.push(format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {} main",
            self.suite
        ));
        a
    }

    /// The cache key: everything that decides the tree (the mirror does not: it serves the archive).
    pub fn key(&self) -> String {
        let args = self.mmdebstrap_args("MIRROR", Path::new("TARGET"));
        hex::encode(&Sha256::digest(args.join("\n").as_bytes())[..8])
    }

    /// Where its tree is, under `images`.
    pub fn dir(&self, images: &Path) -> PathBuf {
        images.join(format!("rootfs-{}-{}", self.name, self.key()))
    }

    /// The built tree, if it is cached.
    pub fn cached(&self, images: &Path) -> Option<(PathBuf, Built)> {
        let dir = self.dir(images);
        let built = std::fs::read_to_string(dir.join("built.json")).ok()?;
        Some((dir.join(GUEST_TREE), serde_json::from_str(&built).ok()?))
    }

    /// The tree under the cache's images/ (built by mmdebstrap the first time, as root: the tree
    /// keeps its owners and modes), and what was built. `on` hears what is happening.
    pub fn build(
        &self,
        cache: &luo_kernels::Cache,
        on: &mut dyn FnMut(String),
    ) -> Result<(PathBuf, Built), RootfsError> {
        self.cached_or(cache, |images| self.mmdebstrap(images, on))
    }

    /// The cached tree, or else the one `make` puts into images/.
    fn cached_or(
        &self,
        cache: &luo_kernels::Cache,
        make: impl FnOnce(&Path) -> Result<(PathBuf, Built), RootfsError>,
    ) -> Result<(PathBuf, Built), RootfsError> {
        let images = &cache.root().join("images");
        self.found_or_made(
            cache,
            || self.cached(images),
            || {
                std::fs::create_dir_all(images).map_err(io(images))?;
                make(images)
            },
        )
    }

    /// What `find` finds, or else what `make` makes: under the image's lock, looked for again once
    /// it is held, so two processes never make it twice.
    fn found_or_made<T>(
        &self,
        cache: &luo_kernels::Cache,
        find: impl Fn() -> Option<T>,
        make: impl FnOnce() -> Result<T, RootfsError>,
    ) -> Result<T, RootfsError> {
        if let Some(hit) = find() {
            return Ok(hit);
        }
        let _lock = cache.lock(&format!("rootfs-{}", self.name))?;
        if let Some(hit) = find() {
            return Ok(hit);
        }
        make()
    }

    fn mmdebstrap(
        &self,
        images: &Path,
        on: &mut dyn FnMut(String),
    ) -> Result<(PathBuf, Built), RootfsError> {
        let mmdebstrap = luo_kernels::hosttools::which("mmdebstrap")
            .ok_or(RootfsError::NoMmdebstrap { image: self.name })?;
        let mirror = luo_kernels::apt::system_mirror()?;
        let dir = self.dir(images);
        let tmp = images.join(format!("tmp-rootfs-{}-{}", self.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let log = tmp.join("mmdebstrap.log");
        let log_file = std::fs::File::create(&log).map_err(io(&log))?;
        on(format!(
            "mmdebstrap {} {} ({})",
            self.suite,
            self.packages.join(" "),
            self.key()
        ));
        let t0 = Instant::now();
        let status = Command::new(mmdebstrap)
            .args(self.mmdebstrap_args(&mirror, &tmp.join(GUEST_TREE)))
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().map_err(io(&log))?)
            .stderr(log_file)
            .status()
            .map_err(io(&tmp))?;
        if !status.success() {
            // Kept where it failed, log and all.
            return Err(RootfsError::Mmdebstrap {
                image: self.name,
                status: status.to_string(),
                log,
            });
        }
        let packages = installed(&tmp.join(GUEST_TREE));
        let built = Built {
            key: self.key(),
            seconds: t0.elapsed().as_secs_f64(),
            bytes: tree_bytes(&tmp.join(GUEST_TREE)),
            packages,
        };
        let json = serde_json::to_string_pretty(&built).expect("plain data serialises");
        std::fs::write(tmp.join("built.json"), json).map_err(io(&tmp))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        on(format!(
            "built in {:.1} s, {} MB",
            built.seconds,
            built.bytes >> 20
        ));
        Ok((dir.join(GUEST_TREE), built))
    }

    /// The directory QEMU serves the guest over 9p (built first if need be): the tree, and
    /// beside it [`GUEST_ARCHIVE`], the same tree as one uncompressed tar. The first boot of a VM
    /// unpacks the archive into a tmpfs and unmounts the export, because a mounted 9p export blocks
    /// migration and that boot is the one the harness saves; later boots (after a kexec) put a
    /// tmpfs over the tree and read only what they use.
    pub fn guest_dir(
        &self,
        cache: &luo_kernels::Cache,
        on: &mut dyn FnMut(String),
    ) -> Result<PathBuf, RootfsError> {
        let (root, _) = self.build(cache, on)?;
        let dir = root
            .parent()
            .expect("a tree lies in its directory")
            .to_path_buf();
        let archive = dir.join(GUEST_ARCHIVE);
        let made = || archive.is_file().then_some(());
        self.found_or_made(cache, made, || {
            let tmp = dir.join(format!(".tmp-{}-{GUEST_ARCHIVE}", std::process::id()));
            tar(
                "create",
                &tmp,
                &root,
                &["--create", "--numeric-owner", "--file"],
            )?;
            std::fs::rename(&tmp, &archive).map_err(io(&archive))
        })?;
        Ok(dir)
    }

    /// The cached tree (built first if need be) as one tarball at `tarball`: what carries it to
    /// another machine (a nextest archive skips device nodes and follows symlinks, a tar keeps
    /// them, with owners and modes).
    pub fn pack(
        &self,
        cache: &luo_kernels::Cache,
        tarball: &Path,
        on: &mut dyn FnMut(String),
    ) -> Result<Built, RootfsError> {
        let (root, built) = self.build(cache, on)?;
        let dir = root.parent().expect("a tree lies in its directory");
        // The guest's archive is made again from the tree wherever it is unpacked.
        let skip = format!("--exclude=./{GUEST_ARCHIVE}");
        tar(
            "create",
            tarball,
            dir,
            &["--create", "--numeric-owner", &skip, "--file"],
        )?;
        Ok(built)
    }

    /// The tree from a tarball `pack` made, into the cache where a build would put it (unless it
    /// is there already): on a machine that runs what another staged, instead of mmdebstrap.
    pub fn unpack(
        &self,
        cache: &luo_kernels::Cache,
        tarball: &Path,
    ) -> Result<(PathBuf, Built), RootfsError> {
        self.cached_or(cache, |images| self.untar(images, tarball))
    }

    fn untar(&self, images: &Path, tarball: &Path) -> Result<(PathBuf, Built), RootfsError> {
        let tmp = images.join(format!("tmp-unpack-{}-{}", self.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        if let Err(e) = tar(
            "extract",
            tarball,
            &tmp,
            &["--extract", "--numeric-owner", "--file"],
        ) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if !tmp.join("built.json").is_file() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(RootfsError::NotATree {
                image: self.name,
                tarball: tarball.to_path_buf(),
            });
        }
        let dir = self.dir(images);
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        self.cached(images).ok_or(RootfsError::NotATree {
            image: self.name,
            tarball: tarball.to_path_buf(),
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// GNU tar `args` `tarball` in `dir` (the whole of it, when creating).
fn tar(action: &'static str, tarball: &Path, dir: &Path, args: &[&str]) -> Result<(), RootfsError> {
    let mut cmd = Command::new("tar");
    cmd.args(args).arg(tarball).arg("--directory").arg(dir);
    if action == "create" {
        cmd.arg(".");
    }
    let out = cmd.output().map_err(|source| RootfsError::Io {
        path: tarball.to_path_buf(),
        source,
    })?;
    match out.status.success() {
        true => Ok(()),
        false => Err(RootfsError::Tar {
            action,
            tarball: tarball.to_path_buf(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// `package version` for every package installed in `root`, from its dpkg status file.
fn installed(root: &Path) -> Vec<String> {
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap_or_default();
    let mut out = Vec::new();
    for stanza in status.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(": "))
        };
        if let (Some(p), Some(v)) = (field("Package"), field("Version"))
            && field("Status").is_some_and(|s| s.ends_with(" installed"))
        {
            out.push(format!("{p} {v}"));
        }
    }
    out.sort();
    out
}

/// The bytes of the regular files under `root` (hard links once each).
fn tree_bytes(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_package_set_not_the_mirror() {
        let other = DebianRoot {
            packages: &["systemd=262.2-1", "systemd-sysv=262.2-1", "kexec-tools"],
            ..SYSTEMD
        };
        assert_ne!(SYSTEMD.key(), other.key());
        assert_eq!(SYSTEMD.key(), SYSTEMD.key());
        let a = SYSTEMD.mmdebstrap_args("http://a/debian", Path::new("/t"));
        assert!(a.contains(&"--include=systemd=262.1-1,systemd-sysv=262.1-1,kexec-tools".into()));
        assert!(a.last().unwrap().contains("http://a/debian sid main"));
    }

    #[test]
    fn a_packed_tree_unpacks_into_the_cache_with_its_links_once() {
        let (made, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cache = luo_kernels::Cache::at(cache.path());
        // A tree as a build leaves it: root/ and built.json.
        let tree = made.path().join("tree");
        std::fs::create_dir_all(tree.join("root/usr/bin")).unwrap();
        std::fs::write(tree.join("root/usr/bin/systemd"), b"elf").unwrap();
        std::os::unix::fs::symlink("usr/bin", tree.join("root/bin")).unwrap();
        let built = Built {
            key: SYSTEMD.key(),
            seconds: 1.0,
            packages: vec!["systemd 262.1-1".into()],
            bytes: 3,
        };
        std::fs::write(
            tree.join("built.json"),
            serde_json::to_string(&built).unwrap(),
        )
        .unwrap();
        let tarball = made.path().join("t.tar");
        tar(
            "create",
            &tarball,
            &tree,
            &["--create", "--numeric-owner", "--file"],
        )
        .unwrap();
        let (root, got) = SYSTEMD.unpack(&cache, &tarball).unwrap();
        assert_eq!(root, SYSTEMD.dir(&cache.root().join("images")).join("root"));
        assert_eq!(got.packages, built.packages);
        assert_eq!(std::fs::read(root.join("bin/systemd")).unwrap(), b"elf");
        assert!(root.join("bin").symlink_metadata().unwrap().is_symlink());
        // Cached now: a second unpack reads nothing (the tarball may be gone).
        std::fs::remove_file(&tarball).unwrap();
        assert!(SYSTEMD.unpack(&cache, &tarball).is_ok());
        // A tarball of something else is refused and leaves nothing behind.
        let other = luo_kernels::Cache::at(made.path().join("other"));
        let junk = made.path().join("junk.tar");
        tar("create", &junk, &tree.join("root"), &["--create", "--file"]).unwrap();
        assert!(matches!(
            SYSTEMD.unpack(&other, &junk),
            Err(RootfsError::NotATree { .. })
        ));
        assert!(SYSTEMD.cached(&other.root().join("images")).is_none());
    }

    #[test]
    fn the_guest_is_served_the_tree_and_its_archive_and_a_stage_carries_no_archive() {
        let (made, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cache = luo_kernels::Cache::at(cache.path());
        let dir = SYSTEMD.dir(&cache.root().join("images"));
        std::fs::create_dir_all(dir.join("root/etc")).unwrap();
        std::fs::write(dir.join("root/etc/os-release"), b"ID=debian").unwrap();
        let built = Built {
            key: SYSTEMD.key(),
            seconds: 1.0,
            packages: vec![],
            bytes: 9,
        };
        std::fs::write(
            dir.join("built.json"),
            serde_json::to_string(&built).unwrap(),
        )
        .unwrap();

        let served = SYSTEMD.guest_dir(&cache, &mut |_| {}).unwrap();
        assert_eq!(served, dir);
        assert!(served.join(GUEST_TREE).join("etc/os-release").is_file());
        let archive = served.join(GUEST_ARCHIVE);
        let names = names_in(&archive);
        assert!(names.lines().any(|l| l == "./etc/os-release"), "{names}");
        // Made once: a second call finds it.
        let made_at = std::fs::metadata(&archive).unwrap().modified().unwrap();
        SYSTEMD.guest_dir(&cache, &mut |_| {}).unwrap();
        assert_eq!(
            std::fs::metadata(&archive).unwrap().modified().unwrap(),
            made_at
        );
        assert!(
            !std::fs::read_dir(&dir).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")),
            "nothing half-written is left"
        );

        let tarball = made.path().join("stage.tar");
        SYSTEMD.pack(&cache, &tarball, &mut |_| {}).unwrap();
        let names = names_in(&tarball);
        assert!(
            names.lines().any(|l| l == "./root/etc/os-release"),
            "{names}"
        );
        assert!(!names.contains(GUEST_ARCHIVE), "{names}");
    }

    /// `tar -t` of an archive.
    fn names_in(archive: &Path) -> String {
        let out = std::process::Command::new("tar")
            .arg("-tf")
            .arg(archive)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn installed_packages_come_from_the_dpkg_status_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: systemd\nStatus: install ok installed\nVersion: 262.1-1\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
             Package: bash\nStatus: install ok installed\nVersion: 5.3-1\n",
        )
        .unwrap();
        assert_eq!(installed(d.path()), ["bash 5.3-1", "systemd 262.1-1"]);
    }
}
