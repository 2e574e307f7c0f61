//! What the debug and gcov flavours of a kernel offer in debugfs: kmemleak's leak check and the
//! gcov counters.

use luo_protocol::{AgentError, ErrorKind, GcovFile, Reply};
use std::path::Path;
use std::time::{Duration, Instant};

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
const GCOV: &str = "/sys/kernel/debug/gcov";

fn io(call: String) -> impl FnOnce(std::io::Error) -> AgentError {
    move |e| AgentError::syscall(call, e.raw_os_error().unwrap_or(libc::EIO))
}

fn command(cmd: &str) -> Result<(), AgentError> {
    std::fs::write(KMEMLEAK, cmd).map_err(io(format!("write({KMEMLEAK}, {cmd})")))
}

/// kmemleak's minimum age, where the kernel lets it be set (the debug flavour's patch).
const MIN_AGE: &str = "/sys/module/kmemleak/parameters/min_age_ms";
/// kmemleak's own minimum age (mm/kmemleak.c, MSECS_MIN_AGE), waited out where it cannot be set.
const STOCK_MIN_AGE: Duration = Duration::from_millis(5000);

/// Scan (see [`luo_protocol::Request::Kmemleak`]), read the suspects, `clear` them.
pub fn kmemleak(min_age_ms: u64) -> Result<Reply, AgentError> {
    if !Path::new(KMEMLEAK).exists() {
        return Err(AgentError::new(
            ErrorKind::Syscall,
            format!("open({KMEMLEAK})"),
            "no kmemleak: the kernel is not a debug flavour (CONFIG_DEBUG_KMEMLEAK)",
        ));
    }
    let t0 = Instant::now();
    let mut waited = Duration::ZERO;
    // A scan only records the checksum of an object it has not seen before; an object is
    // reported by a later scan that finds it unreferenced and unchanged (7.3's scan then confirms
    // it with a second pass of its own).
    if std::fs::write(MIN_AGE, min_age_ms.to_string()).is_ok() {
        command("scan")?;
        command("scan")?;
    } else {
        command("scan")?;
        waited = STOCK_MIN_AGE;
        std::thread::sleep(waited);
        command("scan")?;
    }
    let scan_ms = t0.elapsed().as_millis() as u64;
    let mut report = std::fs::read_to_string(KMEMLEAK).map_err(io(format!("read({KMEMLEAK})")))?;
    command("clear")?;
    let max = luo_protocol::MAX_LOG_BYTES;
    let truncated = report.len() > max;
    if truncated {
        let mut cut = max;
        while !report.is_char_boundary(cut) {
            cut -= 1;
        }
        report.truncate(cut);
    }
    Ok(Reply::Leaks {
        report,
        truncated,
        scan_ms,
        waited_ms: waited.as_millis() as u64,
    })
}

/// Every `.gcda` under /sys/kernel/debug/gcov, hex-encoded.
pub fn gcov_data() -> Result<Reply, AgentError> {
    if !Path::new(GCOV).is_dir() {
        return Err(AgentError::new(
            ErrorKind::Syscall,
            format!("open({GCOV})"),
            "no gcov data: the kernel is not a gcov flavour (CONFIG_GCOV_KERNEL)",
        ));
    }
    let mut files = Vec::new();
    collect(Path::new(GCOV), &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Reply::Gcov { files })
}

fn collect(dir: &Path, out: &mut Vec<GcovFile>) -> Result<(), AgentError> {
    let rd = std::fs::read_dir(dir).map_err(io(format!("opendir({})", dir.display())))?;
    for e in rd.flatten() {
        let path = e.path();
        // The .gcno entries are symlinks into the build directory, which the guest does not have.
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            collect(&path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "gcda") {
            let bytes = std::fs::read(&path).map_err(io(format!("read({})", path.display())))?;
            let rel = path.strip_prefix(GCOV).unwrap_or(&path);
            out.push(GcovFile {
                path: format!("/{}", rel.display()),
                hex: hex::encode(bytes),
            });
        }
    }
    Ok(())
}
