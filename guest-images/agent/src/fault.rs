//! Misbehaviour on request, for the host's tests of a hostile or broken guest: the kernel command
//! line's `luo_agent.fault=NAME` makes the agent do one thing wrong. Without it (every real run)
//! nothing here happens.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never say hello.
    NoHello,
    /// A line that is not JSON where the hello belongs.
    GarbageHello,
    /// Bytes that are not UTF-8 where the hello belongs.
    NotUtf8,
    /// An endless line where the hello belongs.
    EndlessLine,
    /// Answer every request under another id.
    WrongId,
    /// Answer every request twice.
    DoubleReply,
    /// Flood the console from a thread, and answer normally.
    ConsoleFlood,
}

pub fn from_cmdline(cmdline: &str) -> Option<Fault> {
    let name = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("luo_agent.fault="))?;
    Some(match name {
        "no-hello" => Fault::NoHello,
        "garbage-hello" => Fault::GarbageHello,
        "not-utf8" => Fault::NotUtf8,
        "endless-line" => Fault::EndlessLine,
        "wrong-id" => Fault::WrongId,
        "double-reply" => Fault::DoubleReply,
        "console-flood" => Fault::ConsoleFlood,
        _ => return None,
    })
}

/// Instead of the hello: true when the fault replaces it (and the agent then just waits).
pub fn replace_hello(f: Option<Fault>, port: &mut std::fs::File) -> bool {
    match f {
        Some(Fault::NoHello) => true,
        Some(Fault::GarbageHello) => {
            let _ = port.write_all(b"this is not the agent speaking\n");
            true
        }
        Some(Fault::NotUtf8) => {
            let _ = port.write_all(b"{\"protocol\":\xff\xfe}\n");
            true
        }
        Some(Fault::EndlessLine) => {
            let chunk = vec![b'x'; 1 << 16];
            loop {
                if port.write_all(&chunk).is_err() {
                    return true;
                }
            }
        }
        Some(Fault::ConsoleFlood) => {
            std::thread::spawn(|| {
                let line = [b'#'; 4096];
                if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
                    while c.write_all(&line).is_ok() {}
                }
            });
            false
        }
        _ => false,
    }
}
