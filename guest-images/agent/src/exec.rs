//! Running programs from the share: foreground with a timeout, or in the background by name.

use luo_protocol::{AgentError, ErrorKind, ExitStatus};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Running {
    child: Child,
    started: Instant,
    out: std::thread::JoinHandle<(String, String)>,
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
    // Drain both pipes on a thread so a chatty child cannot block on a full pipe.
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let err_thread = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = se.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let mut o = Vec::new();
        let _ = so.read_to_end(&mut o);
        (
            String::from_utf8_lossy(&o).into_owned(),
            err_thread.join().unwrap_or_default(),
        )
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
    let (stdout, stderr) = r.out.join().unwrap_or_default();
    Ok(ExitStatus {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
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
