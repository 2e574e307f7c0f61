//! The /dev/liveupdate ABI (include/uapi/linux/liveupdate.h). Every command is `_IO(0xBA, nr)` with a
//! struct argument whose first field is its size.

use crate::sys::check;
use luo_protocol::ArgMemory;

pub const IOCTL_TYPE: u64 = 0xBA;
pub const CMD_CREATE_SESSION: u8 = 0x00;
pub const CMD_RETRIEVE_SESSION: u8 = 0x01;
pub const CMD_PRESERVE_FD: u8 = 0x40;
pub const CMD_RETRIEVE_FD: u8 = 0x41;
pub const CMD_FINISH: u8 = 0x42;
pub const CMD_GET_NAME: u8 = 0x43;
pub const NAME_LEN: usize = 64;

/// `_IO(0xBA, nr)`: no direction or size bits.
pub fn request_code(nr: u8) -> u64 {
    (IOCTL_TYPE << 8) | nr as u64
}

pub fn command_name(nr: u8) -> String {
    match nr {
        CMD_CREATE_SESSION => "LIVEUPDATE_IOCTL_CREATE_SESSION".into(),
        CMD_RETRIEVE_SESSION => "LIVEUPDATE_IOCTL_RETRIEVE_SESSION".into(),
        CMD_PRESERVE_FD => "LIVEUPDATE_SESSION_PRESERVE_FD".into(),
        CMD_RETRIEVE_FD => "LIVEUPDATE_SESSION_RETRIEVE_FD".into(),
        CMD_FINISH => "LIVEUPDATE_SESSION_FINISH".into(),
        CMD_GET_NAME => "LIVEUPDATE_SESSION_GET_NAME".into(),
        other => format!("LUO ioctl 0x{other:02x}"),
    }
}

#[repr(C)]
struct SessionArg {
    size: u32,
    fd: i32,
    name: [u8; NAME_LEN],
}

#[repr(C)]
struct FdArg {
    size: u32,
    fd: i32,
    token: u64,
}

#[repr(C)]
struct FinishArg {
    size: u32,
    reserved: u32,
}

#[repr(C)]
struct NameArg {
    size: u32,
    reserved: u32,
    name: [u8; NAME_LEN],
}

fn ioctl<T>(fd: i32, nr: u8, arg: &mut T) -> Result<i64, i32> {
    // SAFETY: `arg` is a live, properly sized repr(C) struct the kernel reads and writes in place.
    check(unsafe { libc::ioctl(fd, request_code(nr) as _, arg as *mut T) } as i64)
}

/// The name as the kernel gets it: bytes then NUL. A name of 64 or more bytes is sent unterminated,
/// so the kernel's own length check is what answers.
fn name_field(name: &str) -> [u8; NAME_LEN] {
    let mut f = [0u8; NAME_LEN];
    let b = name.as_bytes();
    let n = b.len().min(NAME_LEN);
    f[..n].copy_from_slice(&b[..n]);
    f
}

/// CREATE_SESSION (`retrieve` = false) or RETRIEVE_SESSION: returns the session fd.
pub fn open_session(dev: i32, name: &str, retrieve: bool) -> Result<i32, i32> {
    let mut a = SessionArg {
        size: size_of::<SessionArg>() as u32,
        fd: -1,
        name: name_field(name),
    };
    ioctl(
        dev,
        if retrieve {
            CMD_RETRIEVE_SESSION
        } else {
            CMD_CREATE_SESSION
        },
        &mut a,
    )?;
    Ok(a.fd)
}

pub fn preserve_fd(session: i32, fd: i32, token: u64) -> Result<(), i32> {
    let mut a = FdArg {
        size: size_of::<FdArg>() as u32,
        fd,
        token,
    };
    ioctl(session, CMD_PRESERVE_FD, &mut a).map(|_| ())
}

pub fn retrieve_fd(session: i32, token: u64) -> Result<i32, i32> {
    let mut a = FdArg {
        size: size_of::<FdArg>() as u32,
        fd: -1,
        token,
    };
    ioctl(session, CMD_RETRIEVE_FD, &mut a)?;
    Ok(a.fd)
}

pub fn finish(session: i32) -> Result<(), i32> {
    let mut a = FinishArg {
        size: size_of::<FinishArg>() as u32,
        reserved: 0,
    };
    ioctl(session, CMD_FINISH, &mut a).map(|_| ())
}

pub fn get_name(session: i32) -> Result<String, i32> {
    let mut a = NameArg {
        size: size_of::<NameArg>() as u32,
        reserved: 0,
        name: [0; NAME_LEN],
    };
    ioctl(session, CMD_GET_NAME, &mut a)?;
    let end = a.name.iter().position(|c| *c == 0).unwrap_or(NAME_LEN);
    Ok(String::from_utf8_lossy(&a.name[..end]).into_owned())
}

/// An ioctl with caller-made bytes (for the errno contract). The buffer is padded to at least 128
/// bytes so an oversized `size` field cannot make the kernel read past our allocation.
/// The ioctl `nr` with `arg` as its argument, in the memory `memory` says: a page of its own, made
/// read-only or left unmapped for the cases where the kernel must fail to write or read it. Returns
/// the result and the argument as the kernel left it (as it was, where it could not be written).
pub fn raw(fd: i32, nr: u8, arg: &[u8], memory: ArgMemory) -> (Result<i64, i32>, Vec<u8>) {
    let page = 4096usize;
    let len = arg.len().clamp(128, page);
    let prot = match memory {
        ArgMemory::Unmapped => libc::PROT_NONE,
        _ => libc::PROT_READ | libc::PROT_WRITE,
    };
    // SAFETY: an anonymous private mapping of one page, unmapped below on every path.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return (Err(crate::sys::errno()), arg.to_vec());
    }
    let buf = p as *mut u8;
    if memory != ArgMemory::Unmapped {
        // SAFETY: the page is writable and at least `arg.len()` (at most 4096) bytes long.
        unsafe { std::ptr::copy_nonoverlapping(arg.as_ptr(), buf, arg.len().min(page)) };
    }
    if memory == ArgMemory::ReadOnly {
        // SAFETY: the page mapped above.
        unsafe { libc::mprotect(p, page, libc::PROT_READ) };
    }
    // SAFETY: a pointer to a mapped (or deliberately inaccessible) page the kernel checks itself.
    let r = check(unsafe { libc::ioctl(fd, request_code(nr) as _, buf) } as i64);
    let back = match memory {
        // SAFETY: readable, `len` bytes within the page.
        ArgMemory::Writable | ArgMemory::ReadOnly => unsafe {
            std::slice::from_raw_parts(buf, len)[..arg.len().min(len)].to_vec()
        },
        ArgMemory::Unmapped => arg.to_vec(),
    };
    // SAFETY: unmaps the page mapped above.
    unsafe { libc::munmap(p, page) };
    (r, back)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn struct_sizes_match_the_uapi_header() {
        assert_eq!(size_of::<SessionArg>(), 72);
        assert_eq!(size_of::<FdArg>(), 16);
        assert_eq!(size_of::<FinishArg>(), 8);
        assert_eq!(size_of::<NameArg>(), 72);
        assert_eq!(request_code(CMD_PRESERVE_FD), 0xBA40);
    }
}
