//! LUO: the device, sessions, the files preserved in them, raw ioctls and timed batches.

use super::{R, misrouted, open_new, sc, timed};
use crate::fds::Fds;
use crate::luo;
use luo_protocol::{AgentError, Reply, Request};

fn ioctl_call(nr: u8) -> String {
    format!("ioctl({})", luo::command_name(nr))
}

pub(super) fn handle(fds: &mut Fds, req: Request) -> R {
    match req {
        Request::OpenDevice { handle } => open_new(fds, &handle, "open(/dev/liveupdate)", || {
            super::open("/dev/liveupdate", libc::O_RDWR)
        }),
        Request::CreateSession {
            device,
            handle,
            name,
        } => session(fds, &device, &handle, &name, false),
        Request::RetrieveSession {
            device,
            handle,
            name,
        } => session(fds, &device, &handle, &name, true),
        Request::GetSessionName { session } => {
            let call = ioctl_call(luo::CMD_GET_NAME);
            let fd = fds.get(&session, &call)?;
            luo::get_name(fd)
                .map(|name| Reply::Name { name })
                .map_err(sc(call))
        }
        Request::FinishSession { session } => {
            let call = ioctl_call(luo::CMD_FINISH);
            let fd = fds.get(&session, &call)?;
            luo::finish(fd).map(|_| Reply::Done).map_err(sc(call))
        }
        Request::PreserveFd { session, fd, token } => {
            let call = ioctl_call(luo::CMD_PRESERVE_FD);
            let (s, f) = (fds.get(&session, &call)?, fds.get(&fd, &call)?);
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
            let s = fds.get(&session, &call)?;
            open_new(fds, &handle, &call, || luo::retrieve_fd(s, token))
        }
        Request::RawIoctl {
            handle,
            nr,
            mut arg,
            memory,
            fds: in_arg,
        } => {
            let call = ioctl_call(nr);
            let fd = fds.get(&handle, &call)?;
            for (offset, h) in in_arg {
                let n = fds.get(&h, &call)?;
                let o = offset as usize;
                let Some(slot) = arg.get_mut(o..o + 4) else {
                    return Err(AgentError::new(
                        luo_protocol::ErrorKind::BadRequest,
                        call,
                        format!(
                            "offset {o} of {h}'s fd is outside the {}-byte argument",
                            arg.len()
                        ),
                    ));
                };
                slot.copy_from_slice(&(n as u32).to_ne_bytes());
            }
            let (r, arg) = luo::raw(fd, nr, &arg, memory);
            r.map(|ret| Reply::Raw { ret, arg }).map_err(sc(call))
        }
        Request::CreateSessions {
            device,
            prefix,
            count,
        } => {
            let call = ioctl_call(luo::CMD_CREATE_SESSION);
            let dev = fds.get(&device, &call)?;
            timed(fds, count, &call, |i| {
                luo::open_session(dev, &format!("{prefix}{i}"), false)
                    .map(|fd| Some((format!("{prefix}{i}"), fd)))
            })
        }
        Request::RetrieveSessions {
            device,
            prefix,
            count,
        } => {
            let call = ioctl_call(luo::CMD_RETRIEVE_SESSION);
            let dev = fds.get(&device, &call)?;
            for i in 0..count {
                fds.ensure_free(&format!("{prefix}{i}"), &call)?;
            }
            timed(fds, count, &call, |i| {
                luo::open_session(dev, &format!("{prefix}{i}"), true)
                    .map(|fd| Some((format!("{prefix}{i}"), fd)))
            })
        }
        Request::FinishSessions { prefix, count } => {
            let call = ioctl_call(luo::CMD_FINISH);
            let sessions = (0..count)
                .map(|i| fds.get(&format!("{prefix}{i}"), &call))
                .collect::<Result<Vec<_>, _>>()?;
            // Nothing new is opened: the batch only finishes.
            timed(fds, count, &call, |i| {
                luo::finish(sessions[i as usize]).map(|_| None)
            })
        }
        Request::PreserveFds {
            session,
            prefix,
            count,
        } => {
            let call = ioctl_call(luo::CMD_PRESERVE_FD);
            let s = fds.get(&session, &call)?;
            let files = (0..count)
                .map(|i| fds.get(&format!("{prefix}{i}"), &call))
                .collect::<Result<Vec<_>, _>>()?;
            // Nothing new is opened: the batch only preserves.
            timed(fds, count, &call, |i| {
                luo::preserve_fd(s, files[i as usize], i as u64).map(|_| None)
            })
        }
        Request::RetrieveFds {
            session,
            prefix,
            count,
        } => {
            let call = ioctl_call(luo::CMD_RETRIEVE_FD);
            let s = fds.get(&session, &call)?;
            for i in 0..count {
                fds.ensure_free(&format!("{prefix}{i}"), &call)?;
            }
            timed(fds, count, &call, |i| {
                luo::retrieve_fd(s, i as u64).map(|fd| Some((format!("{prefix}{i}"), fd)))
            })
        }
        other => Err(misrouted("session", &other)),
    }
}

fn session(fds: &mut Fds, device: &str, handle: &str, name: &str, retrieve: bool) -> R {
    let call = ioctl_call(if retrieve {
        luo::CMD_RETRIEVE_SESSION
    } else {
        luo::CMD_CREATE_SESSION
    });
    let dev = fds.get(device, &call)?;
    open_new(fds, handle, &call, || {
        luo::open_session(dev, name, retrieve)
    })
}
