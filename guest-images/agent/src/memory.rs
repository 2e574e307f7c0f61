//! /proc/meminfo, /proc/slabinfo and the per-cpu free lists of /proc/zoneinfo, parsed.

use luo_protocol::{MemorySnapshot, SlabCache};

pub fn snapshot() -> MemorySnapshot {
    // The counters behind meminfo are summed from per-cpu differences the kernel folds in only
    // now and then; stat_refresh folds them now, so two snapshots differ by what was allocated
    // between them, not by when the fold last ran. Without CONFIG_PROC_SYSCTL the figures are
    // merely less exact.
    let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
    shrink_slabs();
    MemorySnapshot {
        meminfo: meminfo(),
        slabs: slabinfo(),
        pcp_free_bytes: pcp_free_pages(
            &std::fs::read_to_string("/proc/zoneinfo").unwrap_or_default(),
        ) * page_size(),
    }
}

/// SLUB counts every object the cpus hold as in use (7.x keeps per-cpu sheaves, arrays of free
/// objects, and no per-cpu slabs; older kernels kept per-cpu slabs), and keeps empty slabs on its
/// partial lists: so what `/proc/slabinfo` says grew depends on what the boot left cached and
/// half-filled, not only on what was allocated (measured: a 100-memfd delta read 896 or 1088 B a
/// memfd on the same arm64 kernel on two machines). Shrinking each cache flushes the cpus' objects
/// back to their slabs and frees the empty ones, so the active objects are those allocated. A
/// merged cache appears once as a directory and again as links to it: only directories are
/// shrunk. Without SLUB's sysfs there is nothing to shrink and the figures are merely less exact.
fn shrink_slabs() {
    let Ok(caches) = std::fs::read_dir("/sys/kernel/slab") else {
        return;
    };
    for cache in caches.flatten() {
        if cache.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::write(cache.path().join("shrink"), "1");
        }
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// The `count:` of every cpu's pageset in every zone: free pages the cpu keeps to itself.
fn pcp_free_pages(zoneinfo: &str) -> u64 {
    zoneinfo
        .lines()
        .filter_map(|l| l.trim().strip_prefix("count:"))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_per_cpu_lists_of_every_zone_are_summed() {
        let zoneinfo = "Node 0, zone      DMA\n  pages free     3840\n        nr_free_pages 3840\n  pagesets\n    cpu: 0\n              count: 0\n              high:  0\n              batch: 1\n  vm stats threshold: 4\nNode 0, zone    DMA32\n  pages free     100000\n  pagesets\n    cpu: 0\n              count: 61\n              high:  372\n    cpu: 1\n              count: 7\n              high:  372\n";
        assert_eq!(super::pcp_free_pages(zoneinfo), 68);
        assert_eq!(super::pcp_free_pages(""), 0);
    }
}
