//! The guest images. The default: the agent as /init in a deterministic initramfs, cached by
//! content; with a shell, also the host's static busybox (Debian's busybox-static) as /bin/busybox
//! and a link per applet in /bin, so `/bin/sh` and small scripts work. `image: systemd`: the same
//! initramfs, whose agent is then a first stage, over a Debian root filesystem with systemd
//! (luo-rootfs) that the VM serves read-only.

use luo_initramfs::Initramfs;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Which image a scenario's guest runs.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GuestImage {
    /// The agent as PID 1 in an initramfs (with busybox under `shell: true`).
    #[default]
    Default,
    /// Debian sid with systemd 262 as PID 1; the agent is a service, `kexec` is `systemctl kexec`.
    Systemd,
}

impl GuestImage {
    pub fn name(self) -> &'static str {
        match self {
            GuestImage::Default => "default",
            GuestImage::Systemd => "systemd",
        }
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImageError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Rootfs(#[from] luo_rootfs::RootfsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Initramfs(#[from] luo_initramfs::InitramfsError),
    #[diagnostic(help(
        "{var} names the agent for {arch}: give a static {arch} build of guest-images/agent, or unset it"
    ))]
    #[error("the guest agent {from} {why}")]
    WrongAgent {
        from: String,
        arch: luo_kernels::Arch,
        var: &'static str,
        why: luo_kernels::executable::NotGuestExecutable,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cross(#[from] luo_cross::CrossError),
    #[diagnostic(help("install Debian's busybox-static (bash ci/install-deps does)"))]
    #[error("`shell: true` needs a static busybox: {0}")]
    NoBusybox(String),
}

/// Where the host's busybox is, and what it must be.
pub const BUSYBOX: &str = "/bin/busybox";

/// A static busybox and its applets' names.
pub struct Busybox {
    pub bytes: Vec<u8>,
    pub applets: Vec<String>,
}

impl Busybox {
    /// The static busybox at `path` (the host's BUSYBOX, or a staged one).
    pub fn at(path: &Path) -> Result<Busybox, ImageError> {
        super::guest_program::inspect(path, false, luo_kernels::Arch::X86_64)
            .map_err(ImageError::NoBusybox)?;
        let out = std::process::Command::new(path)
            .arg("--list")
            .output()
            .map_err(|e| ImageError::NoBusybox(format!("{} --list: {e}", path.display())))?;
        let applets = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && !a.contains('/') && *a != "busybox")
            .map(str::to_string)
            .collect();
        let bytes = std::fs::read(path).map_err(|e| ImageError::NoBusybox(e.to_string()))?;
        Ok(Busybox { bytes, applets })
    }
}

/// The initramfs bytes holding `agent` as /init.
pub fn initramfs_bytes(agent: &[u8], shell: Option<&Busybox>) -> Result<Vec<u8>, ImageError> {
    let mut i = Initramfs::new();
    i.file("init", 0o755, agent.to_vec())?;
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    i.char_dev("dev/console", 5, 1)?;
    i.dir("proc")?.dir("sys")?.dir("share")?.dir("tmp")?;
    if let Some(b) = shell {
        i.dir("bin")?;
        i.file("bin/busybox", 0o755, b.bytes.clone())?;
        for a in &b.applets {
            i.symlink(&format!("bin/{a}"), "busybox")?;
        }
    }
    Ok(i.to_bytes())
}

/// Writes the initramfs for `agent` (with the busybox at `busybox`, when given) into `dir` under
/// its content hash (once) and returns it.
pub fn initramfs(
    dir: &Path,
    agent: &super::agent::Agent,
    busybox: Option<&Path>,
) -> Result<PathBuf, ImageError> {
    tracing::debug!(agent = agent.from(), "guest agent");
    let busybox = busybox.map(Busybox::at).transpose()?;
    let bytes = initramfs_bytes(&agent.bytes, busybox.as_ref())?;
    let name = format!(
        "initramfs-{}.cpio",
        &hex::encode(Sha256::digest(&bytes))[..16]
    );
    let path = dir.join(name);
    if !path.is_file() {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(path)
}
