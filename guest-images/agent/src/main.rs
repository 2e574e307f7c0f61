//! luo-agent: PID 1 of every luo-harness guest, or a systemd service in the systemd image.
//!
//! Mounts the pseudo filesystems and the virtiofs share, finds its virtio-serial port, says hello with
//! the facts of this boot, then answers one request per line until it powers off or kexecs. Every
//! failure is a reply, never a panic: a dead PID 1 is a kernel panic that would hide the real result.
//! With `luo_harness.root=` on the command line, PID 1 is only the first stage (rootfs.rs): it
//! hands over to systemd, which starts the agent again as a service (systemd.rs).

mod boot;
mod debug;
mod exec;
mod fault;
mod fds;
mod kmsg;
mod luo;
mod memory;
mod ops;
mod pattern;
mod rootfs;
mod sys;
mod systemd;

use luo_protocol::{
    AgentError, Envelope, ErrorKind, Hello, Outcome, PROTOCOL_VERSION, Response, to_line,
};
use std::io::{BufRead, BufReader, Write};

fn main() {
    let started_us = sys::boottime_us();
    let service = systemd::under_systemd();
    if !service {
        if let Err(e) = boot::setup_pid1() {
            // Without the port there is nobody to tell but the console.
            eprintln!("luo-agent: setup failed: {e}");
            sys::power_off();
        }
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        if let Some(tag) = rootfs::root_tag(&cmdline) {
            let first_boot = boot::boot_index(&cmdline) == Some(0);
            eprintln!(
                "luo-agent: first stage: {}",
                rootfs::hand_over(tag, first_boot)
            );
            sys::power_off();
        }
    }
    let port = match boot::open_agent_port() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("luo-agent: {e}");
            sys::power_off();
        }
    };
    let mut writer = port.try_clone().expect("dup of the agent port");
    // Under systemd the hello waits for start-up to finish: what the units did is part of it.
    let system = service.then(systemd::facts);
    let facts = boot::facts(started_us);
    let fault = fault::from_cmdline(&facts.cmdline);
    if fault::replace_hello(fault, &mut writer) {
        loop {
            std::thread::park();
        }
    }
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        boot: facts,
        system: system.clone(),
    };
    send(&mut writer, &hello);

    let mut state = ops::State::new(started_us, system);
    let reader = BufReader::new(port);
    for line in reader.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("luo-agent: reading the port: {e}");
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let (id, outcome, after) = match luo_protocol::from_line::<Envelope>(&line) {
            Ok(env) => {
                // Reports the kernel prints from here on happened during this request.
                kmsg::mark(7, &format!("{}{}", luo_protocol::REQUEST_MARK, env.id));
                let (outcome, after) = state.handle(env.request);
                (env.id, outcome, after)
            }
            Err(e) => {
                // Recover the id if the line was JSON at all, so the host can match the error.
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                    .unwrap_or(0);
                (
                    id,
                    Outcome::Err(AgentError::new(
                        ErrorKind::BadRequest,
                        "parse",
                        e.to_string(),
                    )),
                    ops::After::Nothing,
                )
            }
        };
        match fault {
            Some(fault::Fault::WrongId) => send(
                &mut writer,
                &Response {
                    id: id + 1000,
                    outcome,
                },
            ),
            Some(fault::Fault::DoubleReply) => {
                send(
                    &mut writer,
                    &Response {
                        id,
                        outcome: outcome.clone(),
                    },
                );
                send(&mut writer, &Response { id, outcome });
            }
            _ => send(&mut writer, &Response { id, outcome }),
        }
        match after {
            ops::After::Nothing => {}
            ops::After::PowerOff => sys::power_off(),
            ops::After::Exit(code) => std::process::exit(code),
            ops::After::KexecReboot if service => {
                // systemd stops this service on the way: its own sessions close and un-preserve.
                let outcome = Outcome::Err(systemd::kexec());
                send(&mut writer, &Response { id, outcome });
            }
            ops::After::KexecReboot => {
                // Every session fd is still open in `state`: that is what carries them over.
                let err = sys::mark_and_kexec();
                let r = Response {
                    id,
                    outcome: Outcome::Err(AgentError::syscall(
                        "reboot(LINUX_REBOOT_CMD_KEXEC)",
                        err,
                    )),
                };
                send(&mut writer, &r);
            }
        }
    }
    eprintln!("luo-agent: agent port closed");
    sys::power_off();
}

fn send<T: serde::Serialize>(w: &mut std::fs::File, msg: &T) {
    let line = to_line(msg);
    if let Err(e) = w.write_all(line.as_bytes()) {
        eprintln!("luo-agent: writing the port: {e}");
    }
}
