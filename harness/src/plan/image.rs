//! The guest image: the agent as /init in a deterministic initramfs, cached by content.

use luo_initramfs::Initramfs;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Initramfs(#[from] luo_initramfs::InitramfsError),
}

/// The initramfs bytes holding `agent` as /init.
pub fn initramfs_bytes(agent: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut i = Initramfs::new();
    i.file("init", 0o755, agent.to_vec())?;
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    i.char_dev("dev/console", 5, 1)?;
    i.dir("proc")?.dir("sys")?.dir("share")?.dir("tmp")?;
    Ok(i.to_bytes())
}

/// Writes the initramfs for the agent into `dir` under its content hash (once) and returns it.
pub fn initramfs(dir: &Path) -> Result<PathBuf, ImageError> {
    let agent = super::agent::agent().map_err(|u| ImageError::Io {
        path: u.path,
        source: u.source,
    })?;
    tracing::debug!(agent = agent.from, "guest agent");
    let bytes = initramfs_bytes(&agent.bytes)?;
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
