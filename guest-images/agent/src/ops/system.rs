//! The system: files of /proc, /sys and debugfs, memory, the kernel's log and its own config, and
//! loading the next kernel.

use super::{R, misrouted, sc};
use crate::{boot, debug, kmsg, memory, sys, systemd};
use luo_protocol::{AgentError, Reply, Request};

pub(super) fn handle(req: Request) -> R {
    match req {
        Request::ReadFile { path, max_bytes } => read_file(&path, max_bytes),
        Request::MemorySnapshot => Ok(Reply::Memory(memory::snapshot())),
        Request::KernelLog => Ok(Reply::Log {
            lines: boot::kernel_log(),
        }),
        Request::KernelRecords { from } => Ok(Reply::Records(kmsg::read_from(
            from,
            luo_protocol::MAX_LOG_BYTES,
        ))),
        Request::Kmemleak { min_age_ms } => debug::kmemleak(min_age_ms),
        Request::GcovData => debug::gcov_data(),
        Request::KernelConfig => kernel_config(),
        Request::KexecLoad {
            kernel,
            initrd,
            cmdline,
        } => kexec_load(&kernel, &initrd, &cmdline),
        Request::Unit { unit, action } => {
            needs_systemd("systemctl")?;
            systemd::unit(&unit, action)
        }
        Request::Journal { unit } => {
            needs_systemd("journalctl")?;
            systemd::journal(unit.as_deref())
        }
        other => Err(misrouted("system", &other)),
    }
}

/// A restored VM's memory is an earlier boot's at its hello: its wall clock stands where it was
/// saved, and the facts are what they were then. Set the clock, then gather the kernel's facts
/// again. systemd's are those of its start-up, which the pause did not change: the ones the hello
/// carried are sent again (gathering them runs six systemctl and journalctl processes, 0.7 s
/// on a restored VM under TCG, where nothing is translated yet).
pub(super) fn resume(
    unix_time_ns: u64,
    agent_start_us: u64,
    system_at_hello: &Option<luo_protocol::SystemFacts>,
) -> R {
    let ts = libc::timespec {
        tv_sec: (unix_time_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_time_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; PID 1 runs as root.
    sys::check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } as i64)
        .map_err(sc("clock_settime(CLOCK_REALTIME)"))?;
    Ok(Reply::Resumed(luo_protocol::Hello {
        protocol: luo_protocol::PROTOCOL_VERSION,
        boot: boot::facts(agent_start_us),
        system: system_at_hello.clone(),
    }))
}

/// Units and the journal exist only in the systemd image.
fn needs_systemd(tool: &str) -> Result<(), AgentError> {
    match systemd::under_systemd() {
        true => Ok(()),
        false => Err(AgentError::new(
            luo_protocol::ErrorKind::BadRequest,
            tool,
            "the agent is PID 1: this image has no systemd (`image: systemd` has)",
        )),
    }
}

/// /proc/config.gz, decompressed (CONFIG_IKCONFIG_PROC).
fn kernel_config() -> R {
    use std::io::Read;
    const PATH: &str = "/proc/config.gz";
    let call = format!("read({PATH})");
    let f = std::fs::File::open(PATH)
        .map_err(|e| AgentError::syscall(&call, e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut text)
        .map_err(|e| AgentError::new(luo_protocol::ErrorKind::Syscall, &call, e.to_string()))?;
    Ok(Reply::Text {
        text,
        truncated: false,
    })
}

fn read_file(path: &str, max: u64) -> R {
    use std::io::Read;
    let call = format!("read({path})");
    let f = std::fs::File::open(path)
        .map_err(|e| AgentError::syscall(&call, e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| AgentError::syscall(&call, e.raw_os_error().unwrap_or(libc::EIO)))?;
    let truncated = buf.len() as u64 > max;
    buf.truncate(max as usize);
    Ok(Reply::Text {
        text: String::from_utf8_lossy(&buf).into_owned(),
        truncated,
    })
}

fn kexec_load(kernel: &str, initrd: &str, cmdline: &str) -> R {
    let (kp, ip) = (super::share_path(kernel), super::share_path(initrd));
    let k = super::open(&kp, libc::O_RDONLY).map_err(sc(format!("open({kp})")))?;
    let i = match super::open(&ip, libc::O_RDONLY) {
        Ok(i) => i,
        Err(e) => {
            unsafe { libc::close(k) };
            return Err(AgentError::syscall(format!("open({ip})"), e));
        }
    };
    let c = sys::cstring(cmdline).map_err(sc("kexec_file_load"));
    let r = c.and_then(|c| {
        // SAFETY: fds are open, the command line is NUL-terminated and its length includes the NUL.
        sys::check(unsafe {
            libc::syscall(
                libc::SYS_kexec_file_load,
                k,
                i,
                c.as_bytes_with_nul().len(),
                c.as_ptr(),
                0u64,
            )
        })
        .map_err(sc("kexec_file_load"))
    });
    unsafe {
        libc::close(k);
        libc::close(i);
    }
    r.map(|_| Reply::Done)
}
