//! The /dev/liveupdate ABI (include/uapi/linux/liveupdate.h). Every command is `_IO(0xBA, nr)` with a
//! struct argument whose first field is its size.

use crate::sys::check;

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
pub fn raw(fd: i32, nr: u8, arg: &[u8]) -> (Result<i64, i32>, Vec<u8>) {
    let mut buf = vec![0u8; arg.len().max(128)];
    buf[..arg.len()].copy_from_slice(arg);
    // SAFETY: buf is a live allocation of at least 128 bytes.
    let r = check(unsafe { libc::ioctl(fd, request_code(nr) as _, buf.as_mut_ptr()) } as i64);
    buf.truncate(arg.len());
    (r, buf)
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
