//! Where a boot and a kexec spend their time: the guest's instruction pointer, sampled over a second
//! QMP monitor while the runner drives the VM, and named from the kernel's System.map.
//!
//! Under TCG the instruction pointer rests on a block while QEMU translates it, so the samples count
//! translation as well as execution: what a boot actually waits for. Each sample is one `info
//! registers` round trip (about 1 ms), so a function's share is meaningful from a few samples up.

use crate::vm::qmp::{Qmp, QmpEvent};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub rip: u64,
    /// Running at CPL 3.
    pub user: bool,
}

/// Samples until stopped; starts by waiting for QEMU to create the monitor socket.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Vec<Sample>, String>>,
}

impl Sampler {
    /// `interval` is the least time between samples: each one stops the vCPU briefly, so sampling
    /// flat out would slow the guest it measures.
    pub fn start(socket: PathBuf, interval: Duration) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let stream = loop {
                if let Ok(s) = tokio::net::UnixStream::connect(&socket).await {
                    break s;
                }
                if stopped.try_recv().is_ok() {
                    return Err(format!("QEMU never served {}", socket.display()));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            let mut qmp = Qmp::negotiate(stream, Path::new("/dev/null"))
                .await
                .map_err(|e| e.to_string())?;
            let mut samples = Vec::new();
            // QEMU going away ends the sampling as surely as the stop signal.
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while stopped.try_recv().is_err() {
                tick.tick().await;
                // Once the guest shuts down, let go: QEMU 10.0 can hang or crash on its way out
                // while a monitor keeps asking for registers (seen on boots that failed).
                if let Ok(QmpEvent::Shutdown { .. }) = qmp.events.try_recv() {
                    break;
                }
                let Ok(regs) = qmp.hmp("info registers").await else {
                    break;
                };
                if let Some((rip, user)) = parse_registers(&regs) {
                    samples.push(Sample {
                        at: Instant::now(),
                        rip,
                        user,
                    });
                }
            }
            Ok(samples)
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Result<Vec<Sample>, String> {
        let _ = self.stop.send(());
        self.task.await.map_err(|e| e.to_string())?
    }
}

/// `RIP=ffffffff81234567` and whether `CPL=3`, from `info registers`.
pub fn parse_registers(registers: &str) -> Option<(u64, bool)> {
    let at = registers.find("RIP=")? + 4;
    let rip = u64::from_str_radix(registers.get(at..at + 16)?, 16).ok()?;
    Some((rip, registers.contains("CPL=3 ")))
}

/// Kernel text symbols, sorted by address.
pub struct SymbolMap {
    text: Vec<(u64, String)>,
}

impl SymbolMap {
    pub fn parse(system_map: &str) -> SymbolMap {
        let mut text: Vec<(u64, String)> = system_map
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, name.to_string()))
            })
            .collect();
        text.sort();
        SymbolMap { text }
    }

    /// What ran: a kernel function, user space, or code before the kernel.
    pub fn place(&self, s: &Sample) -> String {
        const KERNEL: u64 = 0xffff_ffff_8000_0000;
        if s.user {
            return "user space".to_string();
        }
        let rip = s.rip;
        match rip {
            KERNEL.. => {
                let i = self.text.partition_point(|(a, _)| *a <= rip);
                match i.checked_sub(1) {
                    Some(i) => self.text[i].1.clone(),
                    None => format!("kernel {rip:#x}"),
                }
            }
            0x8000_0000_0000.. => format!("kernel, outside the image ({rip:#x})"),
            0..0x10_0000 => "below 1 MiB (firmware, real-mode setup)".to_string(),
            // Identity-mapped code before the kernel: purgatory and the bzImage decompressor after
            // a kexec.
            _ => format!("physical {} MiB (purgatory, decompressor)", rip >> 20),
        }
    }
}

/// A stretch of the run the samples are grouped by.
pub struct Window {
    pub label: String,
    /// A line printed under the label (the boot's phases, say).
    pub detail: String,
    pub from: Instant,
    pub to: Instant,
}

/// One window's samples by place, most frequent first, with the time each stands for.
pub fn summarise(samples: &[Sample], window: &Window, map: &SymbolMap) -> Vec<(String, usize)> {
    let mut by_place: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.at >= window.from && s.at < window.to)
    {
        *by_place.entry(map.place(s)).or_default() += 1;
    }
    let mut v: Vec<_> = by_place.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

pub fn render(samples: &[Sample], windows: &[Window], map: &SymbolMap, top: usize) -> String {
    let mut out = String::new();
    for w in windows {
        let places = summarise(samples, w, map);
        let n: usize = places.iter().map(|(_, c)| c).sum();
        let span = w.to.saturating_duration_since(w.from);
        let per = if n > 0 {
            span.as_secs_f64() * 1000.0 / n as f64
        } else {
            0.0
        };
        out.push_str(&format!(
            "{} ({:.0} ms, {n} samples, one per {per:.1} ms)\n",
            w.label,
            span.as_secs_f64() * 1000.0
        ));
        if !w.detail.is_empty() {
            out.push_str(&format!("  {}\n", w.detail));
        }
        for (place, c) in places.iter().take(top) {
            out.push_str(&format!(
                "  {:5.1}%  ~{:4.0} ms  {place}\n",
                *c as f64 * 100.0 / n as f64,
                *c as f64 * per
            ));
        }
        if places.len() > top {
            let rest: usize = places[top..].iter().map(|(_, c)| c).sum();
            out.push_str(&format!(
                "  {:5.1}%  in {} other places\n",
                rest as f64 * 100.0 / n.max(1) as f64,
                places.len() - top
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "ffffffff81000000 T _stext\n\
                       ffffffff81000100 t memset_orig\n\
                       ffffffff81000200 D some_data\n\
                       ffffffff81000300 T __free_reserved_area\n";

    #[test]
    fn instruction_pointers_are_named_by_the_function_they_fall_in() {
        let m = SymbolMap::parse(MAP);
        let at = |rip, user| {
            m.place(&Sample {
                at: Instant::now(),
                rip,
                user,
            })
        };
        assert_eq!(at(0xffffffff81000104, false), "memset_orig");
        assert_eq!(
            at(0xffffffff81000250, false),
            "memset_orig",
            "data symbols are not functions"
        );
        assert_eq!(at(0xffffffff81000300, false), "__free_reserved_area");
        assert_eq!(
            at(0x40_1000, true),
            "user space",
            "CPL 3, wherever it is mapped"
        );
        assert_eq!(
            at(0x0f70_6610, false),
            "physical 247 MiB (purgatory, decompressor)"
        );
        assert_eq!(at(0xfff0, false), "below 1 MiB (firmware, real-mode setup)");
    }

    #[test]
    fn rip_is_read_from_info_registers() {
        let regs = "RAX=0000000000000000 RBX=ffffffff82a03e40\nRIP=ffffffff81e3b5c4 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";
        assert_eq!(parse_registers(regs), Some((0xffffffff81e3b5c4, false)));
        let user = "RIP=00007ffff7e8b90f RFL=00000202 [-------] CPL=3 II=0 A20=1 SMM=0 HLT=0\n";
        assert_eq!(parse_registers(user), Some((0x7ffff7e8b90f, true)));
        assert_eq!(parse_registers("no registers"), None);
    }

    #[test]
    fn windows_count_only_their_own_samples() {
        let m = SymbolMap::parse(MAP);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let samples = [
            Sample {
                at: at(1),
                rip: 0xffffffff81000101,
                user: false,
            },
            Sample {
                at: at(2),
                rip: 0xffffffff81000102,
                user: false,
            },
            Sample {
                at: at(3),
                rip: 0xffffffff81000301,
                user: false,
            },
            Sample {
                at: at(12),
                rip: 0x7fff_0000_0000,
                user: true,
            },
        ];
        let w = Window {
            label: "boot 0".into(),
            detail: "kernel 5 ms".into(),
            from: at(0),
            to: at(10),
        };
        assert_eq!(
            summarise(&samples, &w, &m),
            [
                ("memset_orig".to_string(), 2),
                ("__free_reserved_area".to_string(), 1)
            ]
        );
        let text = render(&samples, &[w], &m, 1);
        assert!(
            text.starts_with("boot 0 (10 ms, 3 samples, one per 3.3 ms)\n  kernel 5 ms\n"),
            "{text}"
        );
        assert!(text.contains(" 66.7%  ~   7 ms  memset_orig\n"), "{text}");
        assert!(text.contains(" 33.3%  in 1 other places\n"), "{text}");
    }
}
