//! Running programs from the share: foreground with a timeout, or in the background by name.

use luo_protocol::{AgentError, ErrorKind, ExitStatus};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program's output as sent back: at most MAX_PROGRAM_OUTPUT bytes, and whether there was more.
type Output = (String, bool);

pub struct Running {
    child: Child,
    started: Instant,
    out: std::thread::JoinHandle<(Output, Output)>,
}

/// Everything `r` gives until EOF, of which the first MAX_PROGRAM_OUTPUT bytes are kept.
fn bounded(mut r: impl Read) -> Output {
    let limit = luo_protocol::MAX_PROGRAM_OUTPUT;
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut more = false;
    loop {
        match r.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
                more |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), more)
}

#[derive(Default)]
pub struct Children {
    running: BTreeMap<String, Running>,
}

pub fn spawn(path: &str, args: &[String], env: &[(String, String)]) -> Result<Running, AgentError> {
    let call = format!("exec({path})");
    let mut child = Command::new(path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.raw_os_error() {
            Some(n) => AgentError::syscall(call.clone(), n),
            None => AgentError::new(ErrorKind::BadRequest, call.clone(), e.to_string()),
        })?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let (so, se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let err_thread = std::thread::spawn(move || bounded(se));
        (bounded(so), err_thread.join().unwrap_or_default())
    });
    Ok(Running {
        child,
        started: Instant::now(),
        out,
    })
}

pub fn wait(
    mut r: Running,
    timeout: Option<Duration>,
    call: &str,
) -> Result<ExitStatus, AgentError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let status = loop {
        match r.child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(AgentError::new(ErrorKind::Syscall, call, e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = r.child.kill();
            let _ = r.child.wait();
            return Err(AgentError::syscall(call, libc::ETIMEDOUT));
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let duration_us = r.started.elapsed().as_micros() as u64;
    let ((stdout, stdout_truncated), (stderr, stderr_truncated)) = r.out.join().unwrap_or_default();
    Ok(ExitStatus {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        duration_us,
    })
}

impl Children {
    pub fn start(&mut self, name: &str, r: Running) -> Result<i32, AgentError> {
        if self.running.contains_key(name) {
            return Err(AgentError::new(
                ErrorKind::Handle,
                "exec",
                format!("background name {name:?} is in use"),
            ));
        }
        let pid = r.child.id() as i32;
        self.running.insert(name.to_string(), r);
        Ok(pid)
    }

    pub fn wait(
        &mut self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<ExitStatus, AgentError> {
        let call = format!("wait({name})");
        let r = self.running.remove(name).ok_or_else(|| {
            AgentError::new(
                ErrorKind::Handle,
                &call,
                format!("no background program {name:?}"),
            )
        })?;
        wait(r, timeout, &call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_kept_up_to_the_limit_and_marked_when_there_was_more() {
        let limit = luo_protocol::MAX_PROGRAM_OUTPUT;
        let (text, more) = bounded(std::io::Cursor::new(vec![b'k'; 3 * limit + 17]));
        assert_eq!((text.len(), more), (limit, true));
        let (text, more) = bounded(std::io::Cursor::new(vec![b'k'; limit]));
        assert_eq!(
            (text.len(), more),
            (limit, false),
            "exactly the limit is not truncated"
        );
        let (text, more) = bounded(&b"ok 1 - small\n"[..]);
        assert_eq!((text.as_str(), more), ("ok 1 - small\n", false));
    }
}
