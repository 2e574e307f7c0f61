//! kmemleak's suspects (/sys/kernel/debug/kmemleak) as reports: one per allocation site, with how
//! many objects of which sizes leaked there.
//!
//! ```text
//! unreferenced object 0xffff888004a5c000 (size 256):
//!   comm "luo-agent", pid 1, jiffies 4294893456
//!   hex dump (first 32 bytes):
//!     72 6f 75 6e 64 74 72 69 70 00 00 00 00 00 00 00  roundtrip.......
//!   backtrace (crc 9f4d1a2c):
//!     __kmalloc_cache_noprof+0x2d7/0x3c0
//!     luo_session_alloc+0x2f/0x150
//! ```

use super::parse::{RawReport, RawStack, frame};

pub const KIND: &str = "kmemleak: suspected memory leak";

/// One report per distinct backtrace, in the order kmemleak lists them.
pub fn reports(text: &str) -> Vec<RawReport> {
    let mut objects: Vec<(String, Vec<String>, RawStack)> = Vec::new();
    for block in text.split("unreferenced object ").skip(1) {
        let mut lines = block.lines();
        let head = lines.next().unwrap_or("");
        let size = head
            .split("(size ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or("?")
            .to_string();
        let mut stack = RawStack {
            title: "allocated at".into(),
            frames: vec![],
        };
        let mut body = vec![format!("unreferenced object (size {size})")];
        let mut in_trace = false;
        for l in lines {
            let t = l.trim();
            if t.starts_with("backtrace") {
                in_trace = true;
            } else if in_trace {
                if let Some(f) = frame(t) {
                    stack.frames.push(f);
                }
            } else if t.starts_with("comm ") {
                body.push(t.split(", jiffies").next().unwrap_or(t).to_string());
            }
        }
        objects.push((size, body, stack));
    }
    let mut out: Vec<(RawReport, Vec<String>)> = Vec::new();
    for (size, body, stack) in objects {
        let names: Vec<&str> = stack.frames.iter().map(|f| f.function.as_str()).collect();
        match out.iter_mut().find(|(r, _)| {
            r.stacks[0]
                .frames
                .iter()
                .map(|f| f.function.as_str())
                .eq(names.iter().copied())
        }) {
            Some((r, sizes)) => {
                sizes.push(size);
                r.lines.extend(body);
            }
            None => out.push((
                RawReport {
                    kind: KIND.into(),
                    at: None,
                    lines: body,
                    stacks: vec![stack],
                    request: None,
                },
                vec![size],
            )),
        }
    }
    out.into_iter()
        .map(|(mut r, sizes)| {
            let n = sizes.len();
            r.lines.insert(
                0,
                format!(
                    "{n} unreferenced object{} of size {}",
                    if n == 1 { "" } else { "s" },
                    sizes.join(", ")
                ),
            );
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "unreferenced object 0xffff888004a5c000 (size 256):
  comm \"luo-agent\", pid 1, jiffies 4294893456
  hex dump (first 32 bytes):
    72 6f 75 6e 64 74 72 69 70 00 00 00 00 00 00 00  roundtrip.......
  backtrace (crc 9f4d1a2c):
    __kmalloc_cache_noprof+0x2d7/0x3c0
    luo_session_alloc+0x2f/0x150
    luo_session_create+0x3e/0x1c0
unreferenced object 0xffff888004a5c400 (size 256):
  comm \"luo-agent\", pid 1, jiffies 4294893460
  backtrace (crc 1234):
    [<ffffffff81234567>] __kmalloc_cache_noprof+0x2d7/0x3c0
    [<ffffffff81234568>] luo_session_alloc+0x2f/0x150
    [<ffffffff81234569>] luo_session_create+0x3e/0x1c0
unreferenced object 0xffff888004b00000 (size 64):
  comm \"kworker/0:1\", pid 9, jiffies 4294893470
  backtrace (crc 5678):
    kmemdup_noprof+0x1/0x2
    luo_flb_get+0x3/0x4
";

    #[test]
    fn one_report_per_allocation_site_with_its_objects() {
        let r = reports(TEXT);
        assert_eq!(r.len(), 2, "{r:#?}");
        assert_eq!(r[0].kind, KIND);
        assert_eq!(r[0].lines[0], "2 unreferenced objects of size 256, 256");
        assert_eq!(r[0].stacks[0].frames[1].function, "luo_session_alloc");
        assert_eq!(r[1].lines[0], "1 unreferenced object of size 64");
        assert!(r[1].lines.iter().any(|l| l.contains("kworker/0:1")));
        assert!(reports("").is_empty());
    }
}
