//! Programs: run one (waiting for it with a limit, or in the background by name) and wait for a
//! background one.

use super::{R, misrouted};
use crate::exec::{self, Children};
use luo_protocol::{Reply, Request};
use std::time::Duration;

pub(super) fn handle(children: &mut Children, req: Request) -> R {
    match req {
        Request::Exec {
            path,
            args,
            env,
            stdin,
            background,
            timeout_ms,
        } => {
            // Even for /bin/sh: the files it works on may be in the share.
            crate::boot::ensure_share();
            let path = super::share_path(&path);
            let running = exec::spawn(&path, &args, &env, stdin)?;
            match background {
                Some(name) => children
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
        Request::Wait { handle, timeout_ms } => children
            .wait(&handle, timeout_ms.map(Duration::from_millis))
            .map(Reply::Exited),
        other => Err(misrouted("program", &other)),
    }
}
