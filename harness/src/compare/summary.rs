//! The comparison's figures per design and session count: medians and ranges over repetitions, the
//! table `compare` prints.

use crate::measure::Sample;
use crate::measure::metric::{self, Per};
use crate::measure::stats::median;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn spread(v: &[f64]) -> (f64, f64) {
    (
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub variant: String,
    pub sessions: u32,
    pub slab_bytes_per_session: f64,
    pub slab_bytes_per_session_range: (f64, f64),
    pub memfree_bytes_per_session: f64,
    pub create_us_per_session: f64,
    pub blackout_host_ms: f64,
    pub blackout_host_ms_range: (f64, f64),
    pub old_kernel_ms: f64,
    pub new_kernel_ms: f64,
    pub retrieve_finish_us_per_session: f64,
    pub grown_caches: String,
}

pub fn summarise(samples: &[Sample]) -> Vec<Point> {
    let mut groups: BTreeMap<(String, u32), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.label.clone(), s.sessions))
            .or_default()
            .push(s);
    }
    let mut points: Vec<Point> = groups
        .into_iter()
        .map(|((variant, n), g)| {
            let per =
                |f: &dyn Fn(&Sample) -> f64| g.iter().map(|s| f(s) / n as f64).collect::<Vec<_>>();
            let slab = per(&|s| s.slab_bytes as f64);
            let blackout: Vec<f64> = g.iter().map(|s| s.blackout_host_ms).collect();
            let caches = metric::grown_caches(g.iter().copied(), Per::Session);
            Point {
                variant,
                sessions: n,
                slab_bytes_per_session: median(&slab),
                slab_bytes_per_session_range: spread(&slab),
                memfree_bytes_per_session: median(&per(&|s| s.memfree_drop_bytes as f64)),
                create_us_per_session: median(&per(&|s| s.create_ns as f64 / 1000.0)),
                blackout_host_ms: median(&blackout),
                blackout_host_ms_range: spread(&blackout),
                old_kernel_ms: median(
                    &g.iter().filter_map(|s| s.old_kernel_ms).collect::<Vec<_>>(),
                ),
                new_kernel_ms: median(&g.iter().map(|s| s.new_kernel_ms).collect::<Vec<_>>()),
                retrieve_finish_us_per_session: median(&per(&|s| {
                    s.retrieve_finish_ns as f64 / 1000.0
                })),
                grown_caches: caches,
            }
        })
        .collect();
    points.sort_by_key(|p| (p.sessions, p.variant.clone()));
    points
}

pub fn table(points: &[Point]) -> String {
    let mut s = format!(
        "{:<13} {:>6} {:>16} {:>13} {:>11} {:>18} {:>10} {:>10} {:>12}  slab caches grown per session\n",
        "variant",
        "N",
        "slab B/session",
        "memfree B/s",
        "create us/s",
        "blackout ms (host)",
        "old k. ms",
        "new k. ms",
        "retr+fin us/s"
    );
    for p in points {
        s.push_str(&format!(
            "{:<13} {:>6} {:>7.0} [{:>4.0}-{:<4.0}] {:>13.0} {:>11.1} {:>7.0} [{:>4.0}-{:<4.0}] {:>10.1} {:>10.0} {:>12.1}  {}\n",
            p.variant,
            p.sessions,
            p.slab_bytes_per_session,
            p.slab_bytes_per_session_range.0,
            p.slab_bytes_per_session_range.1,
            p.memfree_bytes_per_session,
            p.create_us_per_session,
            p.blackout_host_ms,
            p.blackout_host_ms_range.0,
            p.blackout_host_ms_range.1,
            p.old_kernel_ms,
            p.new_kernel_ms,
            p.retrieve_finish_us_per_session,
            p.grown_caches
        ));
    }
    s
}
