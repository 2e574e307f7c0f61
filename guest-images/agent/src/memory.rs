//! /proc/meminfo and /proc/slabinfo, parsed.

use luo_protocol::{MemorySnapshot, SlabCache};

pub fn snapshot() -> MemorySnapshot {
    MemorySnapshot {
        meminfo: meminfo(),
        slabs: slabinfo(),
    }
}

fn meminfo() -> Vec<(String, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((
                k.trim().to_string(),
                v.split_whitespace().next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// slabinfo 2.1: name active_objs num_objs objsize objperslab pagesperslab : tunables ... : slabdata
/// active_slabs num_slabs sharedavail
fn slabinfo() -> Vec<SlabCache> {
    let text = std::fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| f.get(i)?.parse::<u64>().ok();
            let slabdata = f.iter().position(|w| *w == "slabdata")?;
            Some(SlabCache {
                name: f.first()?.to_string(),
                active_objs: num(1)?,
                num_objs: num(2)?,
                objsize: num(3)?,
                pages_per_slab: num(5)?,
                num_slabs: num(slabdata + 2)?,
            })
        })
        .collect()
}
