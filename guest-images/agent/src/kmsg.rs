//! The kernel log as /dev/kmsg gives it: records with their level and sequence number, read from a
//! sequence number on; and the marks the agent writes into it.

use luo_protocol::{KernelRecords, LogRecord};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

/// The records from sequence number `from` on, at most `max_bytes` of text.
pub fn read_from(from: u64, max_bytes: usize) -> KernelRecords {
    let mut out = KernelRecords {
        next: from,
        ..Default::default()
    };
    let Ok(mut f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return out;
    };
    let (mut bytes, mut expected) = (0usize, None::<u64>);
    // A record is at most about 8 KiB (PRINTK_MESSAGE_MAX and its dictionary).
    let mut buf = vec![0u8; 16384];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let Some(rec) = parse(&buf[..n]) else {
                    continue;
                };
                // A reader starts at the oldest record the ring buffer still holds; what wrapped
                // before it, or while it read, shows as a gap in the numbers.
                let gap_from = expected.unwrap_or(from).max(from);
                out.lost += rec.seq.saturating_sub(gap_from);
                expected = Some(rec.seq + 1);
                if rec.seq < from {
                    continue;
                }
                if bytes + rec.text.len() > max_bytes {
                    out.truncated = true;
                    break;
                }
                bytes += rec.text.len();
                out.next = rec.seq + 1;
                out.records.push(rec);
            }
            // EPIPE: records were overwritten while we read; the next read goes on after them.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    out
}

/// `prio,seq,usec,flags[,...];text\n continuation lines`: the first line of the text.
fn parse(raw: &[u8]) -> Option<LogRecord> {
    let rec = String::from_utf8_lossy(raw);
    let (head, text) = rec.split_once(';')?;
    let mut fields = head.split(',');
    let prio: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let usec: u64 = fields.next()?.parse().ok()?;
    // The kernel writes a message's own newline (and other control bytes) escaped as `\xNN`.
    let text = unescape(text.lines().next().unwrap_or(""));
    Some(LogRecord {
        seq,
        level: (prio & 7) as u8,
        usec,
        text: text.lines().next().unwrap_or("").to_string(),
    })
}

/// `\xNN` escapes back to their bytes (/dev/kmsg escapes control bytes and `\` itself).
fn unescape(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(v) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `text` into the kernel log at `level` (7: debug, which no console shows).
pub fn mark(level: u8, text: &str) {
    if let Ok(mut f) = OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = f.write_all(format!("<{level}>{text}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_level_sequence_time_and_the_first_line() {
        let r = parse(b"12,345,6789012,-,caller=T1;luo-agent: request 7\n SUBSYSTEM=x\n").unwrap();
        assert_eq!((r.level, r.seq, r.usec), (4, 345, 6789012));
        assert_eq!(r.text, "luo-agent: request 7");
        assert_eq!(r.line(), "[    6.789012] luo-agent: request 7");
        assert!(parse(b"garbage").is_none());
        let r = parse(b"3,9,10,-;BUG: KFENCE: use-after-free read in f+0x90/0xf0\\x0a\n").unwrap();
        assert_eq!(r.text, "BUG: KFENCE: use-after-free read in f+0x90/0xf0");
        assert_eq!(parse(b"6,1,1,-;a\\x5cb\\x09c").unwrap().text, "a\\b\tc");
    }
}
