//! The guest image: the static agent as /init in a deterministic initramfs, cached by content.

use luo_initramfs::Initramfs;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImageError {
    #[error("building the guest agent failed (cargo build -p luo-agent):\n{0}")]
    AgentBuild(String),
    #[error(
        "no guest agent binary: set LUO_HARNESS_AGENT or build it with `cargo build --profile agent --target {TARGET} -p luo-agent` (RUSTFLAGS=-Ctarget-feature=+crt-static)"
    )]
    NoAgent,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Initramfs(#[from] luo_initramfs::InitramfsError),
}

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata().ok()?.modified().ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// The static agent binary: `$LUO_HARNESS_AGENT`, or the workspace's build, rebuilt first when its
/// sources are newer (so a changed agent is never silently stale).
pub fn agent_binary() -> Result<PathBuf, ImageError> {
    if let Some(p) = std::env::var_os("LUO_HARNESS_AGENT") {
        return Ok(PathBuf::from(p));
    }
    let root = workspace_root();
    let bin = root.join("target").join(TARGET).join("agent/luo-agent");
    let sources = [root.join("guest-images/agent"), root.join("protocol")];
    if !sources[0].exists() {
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(ImageError::NoAgent)
        };
    }
    let built = bin.metadata().and_then(|m| m.modified()).ok();
    let newest = sources.iter().filter_map(|d| newest_mtime(d)).max();
    if built.is_none() || newest > built {
        build_agent(&root)?;
    }
    Ok(bin)
}

/// crt-static only for this crate and only with an explicit --target: set workspace-wide it would
/// break every proc-macro.
fn build_agent(root: &Path) -> Result<(), ImageError> {
    tracing::info!("building the static guest agent");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--quiet",
            "--profile",
            "agent",
            "--target",
            TARGET,
            "-p",
            "luo-agent",
        ])
        .output()
        .map_err(|e| ImageError::AgentBuild(e.to_string()))?;
    if !out.status.success() {
        return Err(ImageError::AgentBuild(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(())
}

/// The initramfs bytes for `agent`.
pub fn initramfs_bytes(agent: &Path) -> Result<Vec<u8>, ImageError> {
    let mut i = Initramfs::new();
    i.file_from_host("init", 0o755, agent)?;
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    i.char_dev("dev/console", 5, 1)?;
    i.dir("proc")?.dir("sys")?.dir("share")?.dir("tmp")?;
    Ok(i.to_bytes())
}

/// Writes the initramfs into `dir` under its content hash (once) and returns the path.
pub fn initramfs(dir: &Path) -> Result<PathBuf, ImageError> {
    let agent = agent_binary()?;
    let bytes = initramfs_bytes(&agent)?;
    let name = format!(
        "initramfs-{}.cpio",
        &hex::encode(Sha256::digest(&bytes))[..16]
    );
    let path = dir.join(name);
    if !path.is_file() {
        std::fs::create_dir_all(dir).map_err(|source| ImageError::Io {
            path: dir.into(),
            source,
        })?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(|source| ImageError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(path)
}
