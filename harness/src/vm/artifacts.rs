//! The per-run artifacts directory: console log, agent transcript, QMP events, the share.
//! Kept when the run fails (and its path printed), removed on success unless asked to keep it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where artifacts directories are made: `$LUO_HARNESS_ARTIFACTS`, or `$TMPDIR/luo-harness`.
pub fn base() -> PathBuf {
    std::env::var_os("LUO_HARNESS_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("luo-harness"))
}

pub struct Artifacts {
    dir: PathBuf,
    keep: bool,
    failed: bool,
    discard: bool,
}

impl Artifacts {
    /// A fresh directory under `$LUO_HARNESS_ARTIFACTS` (default: `$TMPDIR/luo-harness`), named after
    /// the run. Paths stay short: they hold unix sockets (108-byte limit).
    pub fn create(name: &str, keep: bool) -> std::io::Result<Artifacts> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let base = base();
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let dir = base.join(format!(
            "{safe}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("share"))?;
        super::process::register_artifacts(dir.clone());
        Ok(Artifacts {
            dir,
            keep,
            failed: false,
            discard: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn share(&self) -> PathBuf {
        self.dir.join("share")
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Marks the run failed: the directory survives drop.
    pub fn fail(&mut self) {
        self.failed = true;
    }

    pub fn kept(&self) -> bool {
        !self.discard && (self.keep || self.failed || std::thread::panicking())
    }

    /// Never keep (probes, whose failure is an expected answer).
    pub fn discard(&mut self) {
        self.discard = true;
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        super::process::unregister_artifacts(&self.dir);
        if self.kept() {
            // Whoever reports the failure names the directory (GuestError, the scenario result);
            // this is for a panic, which reports nothing else.
            if std::thread::panicking() {
                tracing::warn!(dir = %self.dir.display(), "artifacts of the failed run kept");
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The last `n` lines of a text file (the console log on failures): read from its last 64 KiB
/// only, each line cut to 300 characters, so a flooded console makes a readable message.
pub fn tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 64 << 10;
    const LINE: usize = 300;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let mut bytes = Vec::new();
    let _ = f.take(WINDOW).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.char_indices().nth(LINE) {
            Some((i, _)) => format!("{}... ({} bytes)", &l[..i], l.len()),
            None => l.to_string(),
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
