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
    /// The static busybox for `arch` at `path` (the host's BUSYBOX, a staged one, or arm64's from
    /// Debian), with the applets its table names.
    pub fn at(path: &Path, arch: luo_kernels::Arch) -> Result<Busybox, ImageError> {
        super::guest_program::inspect(path, false, arch).map_err(ImageError::NoBusybox)?;
        let bytes = std::fs::read(path).map_err(|e| ImageError::NoBusybox(e.to_string()))?;
        let applets = applet_table(&bytes).ok_or_else(|| {
            ImageError::NoBusybox(format!(
                "{} has no applet table (busybox's sorted applet_names, \"[\", \"[[\", ...)",
                path.display()
            ))
        })?;
        Ok(Busybox { bytes, applets })
    }
}

/// The applets a busybox binary has, read from its `applet_names` table (NUL-separated, sorted,
/// `[` and `[[` first, an empty name last) rather than by running `busybox --list`: the binary
/// may be another architecture's, which the host cannot run.
pub fn applet_table(bytes: &[u8]) -> Option<Vec<String>> {
    const START: &[u8] = b"\0[\0[[\0";
    let at = bytes.windows(START.len()).position(|w| w == START)? + 1;
    let names: Vec<String> = bytes[at..]
        .split(|&b| b == 0)
        .take_while(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|a| !a.contains('/') && a != "busybox")
        .collect();
    // Sorted, as busybox keeps it (it bisects the table): anything else is not the table.
    names.is_sorted().then_some(names).filter(|n| n.len() > 2)
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

/// Writes the initramfs for `agent` (with the busybox at `busybox`, when given, which must be
/// `arch`'s) into `dir` under its content hash (once) and returns it.
pub fn initramfs(
    dir: &Path,
    agent: &super::agent::Agent,
    busybox: Option<&Path>,
    arch: luo_kernels::Arch,
) -> Result<PathBuf, ImageError> {
    tracing::debug!(agent = agent.from(), "guest agent");
    let busybox = busybox.map(|b| Busybox::at(b, arch)).transpose()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applet_table_is_what_busybox_lists() {
        // The host's busybox-static (ci/install-deps): its table read from the bytes must be the
        // applets it lists when run, which is how an arm64 busybox's are found without running it.
        let listed = std::process::Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox-static (ci/install-deps)");
        let mut listed: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|a| !a.is_empty() && a != "busybox")
            .collect();
        listed.sort();
        let bytes = std::fs::read(BUSYBOX).unwrap();
        let table = applet_table(&bytes).expect("an applet table");
        assert!(
            table.contains(&"sh".to_string()) && table.len() > 100,
            "{table:?}"
        );
        assert_eq!(table, listed);
        assert_eq!(applet_table(b"no table here"), None);
        // Unsorted names after the marker are not busybox's table.
        assert_eq!(applet_table(b"\0[\0[[\0zz\0aa\0\0"), None);
    }
}
