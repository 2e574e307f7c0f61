//! One request in, one outcome out.

use crate::exec::{self, Children};
use crate::fds::Fds;
use crate::{boot, luo, memory, pattern, sys};
use luo_protocol::{AgentError, ErrorKind, Observation, Outcome, Reply, Request, SHARE_MOUNT};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What the main loop must do after sending the reply.
pub enum After {
    Nothing,
    PowerOff,
    KexecReboot,
    Exit(i32),
}

#[derive(Default)]
pub struct State {
    fds: Fds,
    children: Children,
}

type R = Result<Reply, AgentError>;

fn sc(call: impl Into<String>) -> impl FnOnce(i32) -> AgentError {
    let call = call.into();
    move |e| AgentError::syscall(call, e)
}

impl State {
    pub fn handle(&mut self, req: Request) -> (Outcome, After) {
        let after = match req {
            Request::PowerOff => After::PowerOff,
            Request::KexecReboot => After::KexecReboot,
            Request::Exit { code } => After::Exit(code),
            _ => After::Nothing,
        };
        let outcome = match self.dispatch(req) {
            Ok(r) => Outcome::Ok(r),
            Err(e) => return (Outcome::Err(e), After::Nothing),
        };
        (outcome, after)
    }

    fn dispatch(&mut self, req: Request) -> R {
        match req {
            Request::Ping | Request::PowerOff | Request::KexecReboot | Request::Exit { .. } => {
                Ok(Reply::Done)
            }
            Request::OpenDevice { handle } => {
                self.open_new(&handle, "open(/dev/liveupdate)", || {
                    open("/dev/liveupdate", libc::O_RDWR)
                })
            }
            Request::CreateSession {
                device,
                handle,
                name,
            } => self.session(&device, &handle, &name, false),
            Request::RetrieveSession {
                device,
                handle,
                name,
            } => self.session(&device, &handle, &name, true),
            Request::GetSessionName { session } => {
                let call = ioctl_call(luo::CMD_GET_NAME);
                let fd = self.fds.get(&session, &call)?;
                luo::get_name(fd)
                    .map(|name| Reply::Name { name })
                    .map_err(sc(call))
            }
            Request::FinishSession { session } => {
                let call = ioctl_call(luo::CMD_FINISH);
                let fd = self.fds.get(&session, &call)?;
                luo::finish(fd).map(|_| Reply::Done).map_err(sc(call))
            }
            Request::PreserveFd { session, fd, token } => {
                let call = ioctl_call(luo::CMD_PRESERVE_FD);
                let (s, f) = (self.fds.get(&session, &call)?, self.fds.get(&fd, &call)?);
                luo::preserve_fd(s, f, token)
                    .map(|_| Reply::Done)
                    .map_err(sc(call))
            }
            Request::RetrieveFd {
                session,
                handle,
                token,
            } => {
                let call = ioctl_call(luo::CMD_RETRIEVE_FD);
                let s = self.fds.get(&session, &call)?;
                self.open_new(&handle, &call, || luo::retrieve_fd(s, token))
            }
            Request::RawIoctl { handle, nr, arg } => {
                let call = ioctl_call(nr);
                let fd = self.fds.get(&handle, &call)?;
                let (r, arg) = luo::raw(fd, nr, &arg);
                r.map(|ret| Reply::Raw { ret, arg }).map_err(sc(call))
            }
            Request::CreateSessions {
                device,
                prefix,
                count,
            } => {
                let call = ioctl_call(luo::CMD_CREATE_SESSION);
                let dev = self.fds.get(&device, &call)?;
                self.timed(count, &call, |i| {
                    luo::open_session(dev, &format!("{prefix}{i}"), false)
                        .map(|fd| (format!("{prefix}{i}"), Some(fd)))
                })
            }
            Request::RetrieveSessions {
                device,
                prefix,
                count,
                finish,
            } => {
                let call = ioctl_call(luo::CMD_RETRIEVE_SESSION);
                let dev = self.fds.get(&device, &call)?;
                self.timed(count, &call, |i| {
                    let fd = luo::open_session(dev, &format!("{prefix}{i}"), true)?;
                    if finish {
                        luo::finish(fd)?;
                    }
                    Ok((format!("{prefix}{i}"), Some(fd)))
                })
            }
            Request::Close { handle } => {
                let fd = self.fds.remove(&handle, "close")?;
                // SAFETY: fd was ours and is forgotten now.
                sys::check(unsafe { libc::close(fd) } as i64)
                    .map(|_| Reply::Done)
                    .map_err(sc("close"))
            }
            Request::CreateMemfd {
                handle,
                name,
                size,
                hugetlb,
            } => {
                let call = format!("memfd_create({name})");
                self.open_new(&handle, &call.clone(), || {
                    let cname = sys::cstring(&name)?;
                    let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
                    if hugetlb {
                        flags = libc::MFD_CLOEXEC | libc::MFD_HUGETLB;
                    }
                    // SAFETY: valid C string.
                    let fd = sys::check(unsafe { libc::memfd_create(cname.as_ptr(), flags) } as i64)? as i32;
                    // SAFETY: fd is ours.
                    if let Err(e) = sys::check(unsafe { libc::ftruncate(fd, size as i64) } as i64) {
                        unsafe { libc::close(fd) };
                        return Err(e);
                    }
                    Ok(fd)
                })
            }
            Request::OpenPath {
                handle,
                path,
                write,
            } => {
                let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
                self.open_new(&handle, &format!("open({path})"), || open(&path, flags))
            }
            Request::Dup { handle, new_handle } => {
                let fd = self.fds.get(&handle, "dup")?;
                // SAFETY: fd is ours.
                self.open_new(&new_handle, "dup", || {
                    sys::check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) } as i64)
                        .map(|f| f as i32)
                })
            }
            Request::WritePattern {
                handle,
                seed,
                offset,
                len,
            } => {
                let fd = self.fds.get(&handle, "pwrite")?;
                write_pattern(fd, seed, offset, len).map(|_| Reply::Done)
            }
            Request::VerifyPattern {
                handle,
                seed,
                offset,
                len,
            } => {
                let fd = self.fds.get(&handle, "pread")?;
                verify_pattern(fd, seed, offset, len)
            }
            Request::HashContents { handle } => {
                let fd = self.fds.get(&handle, "pread")?;
                hash_contents(fd)
            }
            Request::AddSeals { handle, seals } => {
                let fd = self.fds.get(&handle, "fcntl(F_ADD_SEALS)")?;
                let mut bits = 0;
                for s in &seals {
                    bits |= seal_bit(s).ok_or_else(|| {
                        AgentError::new(
                            ErrorKind::BadRequest,
                            "fcntl(F_ADD_SEALS)",
                            format!("unknown seal {s:?}"),
                        )
                    })?;
                }
                // SAFETY: fd is ours.
                sys::check(unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, bits) } as i64)
                    .map(|_| Reply::Done)
                    .map_err(sc("fcntl(F_ADD_SEALS)"))
            }
            Request::Truncate { handle, size } => {
                let fd = self.fds.get(&handle, "ftruncate")?;
                // SAFETY: fd is ours.
                sys::check(unsafe { libc::ftruncate(fd, size as i64) } as i64)
                    .map(|_| Reply::Done)
                    .map_err(sc("ftruncate"))
            }
            Request::Seek { handle, offset } => {
                let fd = self.fds.get(&handle, "lseek")?;
                // SAFETY: fd is ours.
                sys::check(unsafe { libc::lseek(fd, offset as i64, libc::SEEK_SET) })
                    .map(|_| Reply::Done)
                    .map_err(sc("lseek"))
            }
            Request::Observe { handle } => {
                let fd = self.fds.get(&handle, "fstat")?;
                observe(fd).map(Reply::Observation)
            }
            Request::ReadFile { path, max_bytes } => read_file(&path, max_bytes),
            Request::MemorySnapshot => Ok(Reply::Memory(memory::snapshot())),
            Request::KernelLog => Ok(Reply::Log {
                lines: boot::kernel_log(),
            }),
            Request::Exec {
                path,
                args,
                env,
                background,
                timeout_ms,
            } => {
                let path = share_path(&path);
                let running = exec::spawn(&path, &args, &env)?;
                match background {
                    Some(name) => self
                        .children
                        .start(&name, running)
                        .map(|pid| Reply::Started { pid }),
                    None => exec::wait(
                        running,
                        timeout_ms.map(Duration::from_millis),
                        &format!("exec({path})"),
                    )
                    .map(Reply::Exited),
                }
            }
            Request::Wait { handle, timeout_ms } => self
                .children
                .wait(&handle, timeout_ms.map(Duration::from_millis))
                .map(Reply::Exited),
            Request::KexecLoad {
                kernel,
                initrd,
                cmdline,
            } => kexec_load(&kernel, &initrd, &cmdline),
        }
    }

    fn open_new(&mut self, handle: &str, call: &str, f: impl FnOnce() -> Result<i32, i32>) -> R {
        self.fds.ensure_free(handle, call)?;
        let fd = f().map_err(sc(call))?;
        self.fds.insert(handle, fd);
        Ok(Reply::Opened { fd })
    }

    /// Runs `op` `count` times against the monotonic clock; each result's fd gets its handle name.
    fn timed(
        &mut self,
        count: u32,
        call: &str,
        mut op: impl FnMut(u32) -> Result<(String, Option<i32>), i32>,
    ) -> R {
        let mut made = Vec::with_capacity(count as usize);
        let t0 = sys::monotonic_ns();
        for i in 0..count {
            match op(i) {
                Ok(m) => made.push(m),
                Err(e) => {
                    for (_, fd) in made {
                        if let Some(fd) = fd {
                            // SAFETY: fds we just created.
                            unsafe { libc::close(fd) };
                        }
                    }
                    return Err(AgentError::syscall(format!("{call} #{i}"), e));
                }
            }
        }
        let ns = sys::monotonic_ns() - t0;
        for (name, fd) in made {
            if let Some(fd) = fd {
                self.fds.insert(&name, fd);
            }
        }
        Ok(Reply::Timed { count, ns })
    }

    fn session(&mut self, device: &str, handle: &str, name: &str, retrieve: bool) -> R {
        let call = ioctl_call(if retrieve {
            luo::CMD_RETRIEVE_SESSION
        } else {
            luo::CMD_CREATE_SESSION
        });
        let dev = self.fds.get(device, &call)?;
        self.open_new(handle, &call, || luo::open_session(dev, name, retrieve))
    }
}

fn ioctl_call(nr: u8) -> String {
    format!("ioctl({})", luo::command_name(nr))
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

const CHUNK: u64 = 1 << 20;

fn write_pattern(fd: i32, seed: u64, offset: u64, len: u64) -> Result<(), AgentError> {
    let mut buf = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done) as usize;
        pattern::fill(seed, offset + done, &mut buf[..n]);
        // SAFETY: buf holds n bytes.
        let w =
            sys::check(
                unsafe { libc::pwrite(fd, buf.as_ptr().cast(), n, (offset + done) as i64) } as i64,
            )
            .map_err(sc("pwrite"))?;
        done += w as u64;
    }
    Ok(())
}

fn pread_full(fd: i32, buf: &mut [u8], offset: u64) -> Result<usize, AgentError> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the slice is valid for its length.
        let r = sys::check(unsafe {
            libc::pread(
                fd,
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
                (offset + got as u64) as i64,
            )
        } as i64)
        .map_err(sc("pread"))?;
        if r == 0 {
            break;
        }
        got += r as usize;
    }
    Ok(got)
}

fn verify_pattern(fd: i32, seed: u64, offset: u64, len: u64) -> R {
    let mut buf = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done) as usize;
        let got = pread_full(fd, &mut buf[..n], offset + done)?;
        if got < n {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                "verify_pattern",
                format!(
                    "file ends at {} but the pattern runs to {}",
                    offset + done + got as u64,
                    offset + len
                ),
            ));
        }
        if let Some(at) = pattern::first_mismatch(seed, offset + done, &buf[..n]) {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                "verify_pattern",
                format!("first differing byte at offset {at}"),
            ));
        }
        done += n as u64;
    }
    Ok(Reply::Verified { bytes: len })
}

fn hash_contents(fd: i32) -> R {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut off = 0;
    loop {
        let got = pread_full(fd, &mut buf, off)?;
        h.update(&buf[..got]);
        off += got as u64;
        if got < buf.len() {
            break;
        }
    }
    Ok(Reply::Hash {
        sha256: hex::encode(h.finalize()),
        size: off,
    })
}

const SEALS: &[(&str, i32)] = &[
    ("seal", libc::F_SEAL_SEAL),
    ("shrink", libc::F_SEAL_SHRINK),
    ("grow", libc::F_SEAL_GROW),
    ("write", libc::F_SEAL_WRITE),
    ("future_write", libc::F_SEAL_FUTURE_WRITE),
];

fn seal_bit(name: &str) -> Option<i32> {
    SEALS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn observe(fd: i32) -> Result<Observation, AgentError> {
    // SAFETY: plain-data out structs filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    sys::check(unsafe { libc::fstat(fd, &mut st) } as i64).map_err(sc("fstat"))?;
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    sys::check(unsafe { libc::fstatfs(fd, &mut sf) } as i64).map_err(sc("fstatfs"))?;
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| AgentError::syscall("readlink", e.raw_os_error().unwrap_or(libc::EIO)))?;
    let seals = match unsafe { libc::fcntl(fd, libc::F_GET_SEALS) } {
        s if s >= 0 => Some(
            SEALS
                .iter()
                .filter(|(_, b)| s & b != 0)
                .map(|(n, _)| n.to_string())
                .collect(),
        ),
        _ => None,
    };
    let position = match unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) } {
        p if p >= 0 => Some(p),
        _ => None,
    };
    let cloexec = unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0;
    Ok(Observation {
        st_dev: st.st_dev,
        st_ino: st.st_ino,
        st_mode: st.st_mode,
        st_nlink: st.st_nlink,
        st_size: st.st_size,
        st_rdev: st.st_rdev,
        fs_magic: sf.f_type as u64,
        link,
        seals,
        position,
        cloexec,
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
    let (kp, ip) = (share_path(kernel), share_path(initrd));
    let k = open(&kp, libc::O_RDONLY).map_err(sc(format!("open({kp})")))?;
    let i = match open(&ip, libc::O_RDONLY) {
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
