//! One request in, one outcome out. [`State::dispatch`] sends each request to the module of its
//! family: LUO sessions and their files, plain files, programs, the system.

mod files;
mod programs;
mod sessions;
mod system;

use crate::exec::Children;
use crate::fds::Fds;
use crate::sys;
use luo_protocol::{AgentError, Outcome, Reply, Request, SHARE_MOUNT};

/// What the main loop must do after sending the reply.
pub enum After {
    Nothing,
    PowerOff,
    KexecReboot,
    Exit(i32),
}

pub struct State {
    fds: Fds,
    children: Children,
    /// CLOCK_BOOTTIME when `main` began: part of the facts a resumed VM reports again.
    agent_start_us: u64,
    /// What systemd said at the hello (`image: systemd`), which a resumed VM reports again.
    system_at_hello: Option<luo_protocol::SystemFacts>,
}

type R = Result<Reply, AgentError>;

fn sc(call: impl Into<String>) -> impl FnOnce(i32) -> AgentError {
    let call = call.into();
    move |e| AgentError::syscall(call, e)
}

impl State {
    pub fn new(agent_start_us: u64, system_at_hello: Option<luo_protocol::SystemFacts>) -> State {
        State {
            fds: Fds::default(),
            children: Children::default(),
            agent_start_us,
            system_at_hello,
        }
    }

    pub fn handle(&mut self, req: Request) -> (Outcome, After) {
        let after = match req {
            Request::PowerOff => After::PowerOff,
            Request::KexecReboot => After::KexecReboot,
            Request::Exit { code } => After::Exit(code),
            _ => After::Nothing,
        };
        match self.dispatch(req) {
            Ok(r) => (Outcome::Ok(r), after),
            Err(e) => (Outcome::Err(e), After::Nothing),
        }
    }

    fn dispatch(&mut self, req: Request) -> R {
        use Request::*;
        match req {
            Ping | PowerOff | KexecReboot | Exit { .. } => Ok(Reply::Done),
            r @ (OpenDevice { .. }
            | CreateSession { .. }
            | RetrieveSession { .. }
            | GetSessionName { .. }
            | FinishSession { .. }
            | PreserveFd { .. }
            | RetrieveFd { .. }
            | RawIoctl { .. }
            | CreateSessions { .. }
            | RetrieveSessions { .. }
            | FinishSessions { .. }
            | PreserveFds { .. }
            | RetrieveFds { .. }) => sessions::handle(&mut self.fds, r),
            r @ (Close { .. }
            | CreateMemfd { .. }
            | CreateMemfds { .. }
            | OpenPath { .. }
            | Dup { .. }
            | WritePattern { .. }
            | VerifyPattern { .. }
            | HashContents { .. }
            | AddSeals { .. }
            | Truncate { .. }
            | Seek { .. }
            | Observe { .. }) => files::handle(&mut self.fds, r),
            r @ (Exec { .. } | Wait { .. }) => programs::handle(&mut self.children, r),
            r @ (ReadFile { .. }
            | MemorySnapshot
            | KernelLog
            | KernelRecords { .. }
            | Kmemleak { .. }
            | GcovData
            | KernelConfig
            | KexecLoad { .. }
            | Unit { .. }
            | Journal { .. }) => system::handle(r),
            Resume { unix_time_ns } => {
                system::resume(unix_time_ns, self.agent_start_us, &self.system_at_hello)
            }
        }
    }
}

/// A new handle for the fd `f` makes; the handle must be free first.
fn open_new(fds: &mut Fds, handle: &str, call: &str, f: impl FnOnce() -> Result<i32, i32>) -> R {
    fds.ensure_free(handle, call)?;
    let fd = f().map_err(sc(call))?;
    fds.insert(handle, fd);
    Ok(Reply::Opened { fd })
}

/// A request that reached the wrong family's handler (a dispatch bug, reported, never a panic).
fn misrouted(family: &str, req: &Request) -> AgentError {
    AgentError::new(
        luo_protocol::ErrorKind::BadRequest,
        family,
        format!("not a {family} request: {req:?}"),
    )
}

fn open(path: &str, flags: i32) -> Result<i32, i32> {
    let c = sys::cstring(path)?;
    // SAFETY: valid C string.
    sys::check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) } as i64).map(|f| f as i32)
}

/// Paths in requests are relative to the share unless absolute.
fn share_path(p: &str) -> String {
    if !p.starts_with('/') || p.starts_with(SHARE_MOUNT) {
        crate::boot::ensure_share();
    }
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{SHARE_MOUNT}/{p}")
    }
}

/// Runs `op` `count` times against the monotonic clock; an fd an operation opens gets its handle
/// name once all succeeded, and all of them are closed if one fails.
fn timed(
    fds: &mut Fds,
    count: u32,
    call: &str,
    mut op: impl FnMut(u32) -> Result<Option<(String, i32)>, i32>,
) -> R {
    let mut made = Vec::with_capacity(count as usize);
    let t0 = sys::monotonic_ns();
    for i in 0..count {
        match op(i) {
            Ok(m) => made.extend(m),
            Err(e) => {
                for (_, fd) in made {
                    // SAFETY: fds we just created.
                    unsafe { libc::close(fd) };
                }
                return Err(AgentError::syscall(format!("{call} #{i}"), e));
            }
        }
    }
    let ns = sys::monotonic_ns() - t0;
    for (name, fd) in made {
        fds.insert(&name, fd);
    }
    Ok(Reply::Timed { count, ns })
}
