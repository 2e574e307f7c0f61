//! Plain files: memfds and any path, the seeded pattern, hashes, seals, size, position, and what
//! userspace can observe of an fd.

use super::{R, misrouted, open_new, sc, timed};
use crate::fds::Fds;
use crate::{pattern, sys};
use luo_protocol::{AgentError, ErrorKind, Observation, Reply, Request};
use sha2::{Digest, Sha256};

pub(super) fn handle(fds: &mut Fds, req: Request) -> R {
    match req {
        Request::Close { handle } => {
            let fd = fds.remove(&handle, "close")?;
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
            open_new(fds, &handle, &call, || memfd(&name, size, hugetlb))
        }
        Request::CreateMemfds {
            prefix,
            count,
            size,
        } => {
            for i in 0..count {
                fds.ensure_free(&format!("{prefix}{i}"), "memfd_create")?;
            }
            timed(fds, count, "memfd_create", |i| {
                let name = format!("{prefix}{i}");
                let fd = memfd(&name, size, false)?;
                if let Err(e) = fill(fd, size) {
                    // SAFETY: fd was just created.
                    unsafe { libc::close(fd) };
                    return Err(e);
                }
                Ok(Some((name, fd)))
            })
        }
        Request::OpenPath {
            handle,
            path,
            write,
        } => {
            let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
            open_new(fds, &handle, &format!("open({path})"), || {
                super::open(&path, flags)
            })
        }
        Request::Dup { handle, new_handle } => {
            let fd = fds.get(&handle, "dup")?;
            // SAFETY: fd is ours.
            open_new(fds, &new_handle, "dup", || {
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
            let fd = fds.get(&handle, "pwrite")?;
            write_pattern(fd, seed, offset, len).map(|_| Reply::Done)
        }
        Request::VerifyPattern {
            handle,
            seed,
            offset,
            len,
        } => {
            let fd = fds.get(&handle, "pread")?;
            verify_pattern(fd, seed, offset, len)
        }
        Request::HashContents { handle } => {
            let fd = fds.get(&handle, "pread")?;
            hash_contents(fd)
        }
        Request::AddSeals { handle, seals } => {
            let fd = fds.get(&handle, "fcntl(F_ADD_SEALS)")?;
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
            let fd = fds.get(&handle, "ftruncate")?;
            // SAFETY: fd is ours.
            sys::check(unsafe { libc::ftruncate(fd, size as i64) } as i64)
                .map(|_| Reply::Done)
                .map_err(sc("ftruncate"))
        }
        Request::Seek { handle, offset } => {
            let fd = fds.get(&handle, "lseek")?;
            // SAFETY: fd is ours.
            sys::check(unsafe { libc::lseek(fd, offset as i64, libc::SEEK_SET) })
                .map(|_| Reply::Done)
                .map_err(sc("lseek"))
        }
        Request::Observe { handle } => {
            let fd = fds.get(&handle, "fstat")?;
            observe(fd).map(Reply::Observation)
        }
        other => Err(misrouted("file", &other)),
    }
}

const CHUNK: u64 = 1 << 20;

/// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB]) + ftruncate(size).
fn memfd(name: &str, size: u64, hugetlb: bool) -> Result<i32, i32> {
    let cname = sys::cstring(name)?;
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
}

/// Writes a non-zero byte into every page of [0, size), so that each page is allocated.
fn fill(fd: i32, size: u64) -> Result<(), i32> {
    const PAGE: u64 = 4096;
    let mut at = 0;
    while at < size {
        // SAFETY: one byte from a live buffer.
        sys::check(unsafe { libc::pwrite(fd, [1u8].as_ptr().cast(), 1, at as i64) } as i64)?;
        at += PAGE;
    }
    Ok(())
}

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
        // nlink_t is u64 on x86_64 and u32 on aarch64.
        st_nlink: st.st_nlink as u64,
        st_size: st.st_size,
        st_rdev: st.st_rdev,
        fs_magic: sf.f_type as u64,
        link,
        seals,
        position,
        cloexec,
    })
}
