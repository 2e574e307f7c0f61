//! `luo-harness compare`: what each session-inode design costs, measured on real kernels.
//!
//! For every variant, session count N and repetition, one VM: memory before and after creating N
//! sessions (timed inside the guest), a kexec (the blackout seen from the host, and the guest's own
//! split from kernel log timestamps), then retrieving and finishing the N sessions in the new kernel.

mod plot;
mod summary;

pub use plot::svg;
pub use summary::{Point, Sample, summarise, table};

use crate::events::{Event, EventSink};
use crate::guest::{Guest, GuestError};
use crate::plan::{self, Needs, PlanError, PlanRequest};
use crate::vm::accel::AccelChoice;
use luo_kernels::BuildRequest;
use luo_protocol::{KEXEC_MARK, MemorySnapshot, Reply, Request};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The source every variant is built from.
    pub kernel: luo_kernels::spec::KernelSpec,
    /// The recipe and fragments.
    pub base: BuildRequest,
    pub variants: Vec<String>,
    /// Session counts (each at least 1).
    pub sessions: Vec<u32>,
    /// Repetitions per point (at least 1).
    pub reps: u32,
    pub accel: AccelChoice,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CompareError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Guest(#[from] GuestError),
    #[error("unexpected reply to {what}: {got}")]
    Reply { what: &'static str, got: String },
}

impl crate::outcome::Classify for CompareError {
    fn kind(&self) -> crate::outcome::Kind {
        match self {
            CompareError::Plan(e) => e.kind(),
            CompareError::Guest(e) => e.kind(),
            CompareError::Reply { .. } => crate::outcome::Kind::InfraFailure,
        }
    }
}

/// What `compare` measured, as compare.json holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub points: Vec<Point>,
}

fn unexpected(what: &'static str, got: Reply) -> CompareError {
    CompareError::Reply {
        what,
        got: format!("{got:?}"),
    }
}

fn meminfo(s: &MemorySnapshot, k: &str) -> i64 {
    s.meminfo
        .iter()
        .find(|(n, _)| n == k)
        .map_or(0, |(_, v)| *v as i64 * 1024)
}

async fn one(guest: &mut Guest, variant: &str, n: u32, rep: u32) -> Result<Sample, CompareError> {
    let dev = "dev".to_string();
    guest
        .request(Request::OpenDevice {
            handle: dev.clone(),
        })
        .await?;
    let before = match guest.request(Request::MemorySnapshot).await? {
        Reply::Memory(m) => m,
        other => return Err(unexpected("memory_snapshot", other)),
    };
    let create_ns = match guest
        .request(Request::CreateSessions {
            device: dev.clone(),
            prefix: "s".into(),
            count: n,
        })
        .await?
    {
        Reply::Timed { ns, .. } => ns,
        other => return Err(unexpected("create_sessions", other)),
    };
    let after = match guest.request(Request::MemorySnapshot).await? {
        Reply::Memory(m) => m,
        other => return Err(unexpected("memory_snapshot", other)),
    };
    let mut grown = BTreeMap::new();
    for c in &after.slabs {
        let b = before
            .slabs
            .iter()
            .find(|p| p.name == c.name)
            .map_or(0, |p| p.active_objs as i64);
        let d = c.active_objs as i64 - b;
        if d >= (n as i64 / 2).max(1) {
            grown.insert(c.name.clone(), d);
        }
    }
    let console_before = std::fs::read_to_string(guest.vm().artifacts().console())
        .unwrap_or_default()
        .len();
    let blackout = guest.kexec_same().await?;
    let console = std::fs::read(guest.vm().artifacts().console())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let old_kernel_ms = old_kernel_split(&console[console_before.min(console.len())..]);
    let new_kernel_ms = guest.hello().boot.uptime_us as f64 / 1000.0;
    guest
        .request(Request::OpenDevice {
            handle: dev.clone(),
        })
        .await?;
    let retrieve_finish_ns = match guest
        .request(Request::RetrieveSessions {
            device: dev,
            prefix: "s".into(),
            count: n,
            finish: true,
        })
        .await?
    {
        Reply::Timed { ns, .. } => ns,
        other => return Err(unexpected("retrieve_sessions", other)),
    };
    Ok(Sample {
        variant: variant.into(),
        sessions: n,
        rep,
        slab_bytes: meminfo(&after, "Slab") - meminfo(&before, "Slab"),
        sunreclaim_bytes: meminfo(&after, "SUnreclaim") - meminfo(&before, "SUnreclaim"),
        memfree_drop_bytes: meminfo(&before, "MemFree") - meminfo(&after, "MemFree"),
        grown_caches: grown,
        create_ns,
        blackout_host_ms: blackout.as_secs_f64() * 1000.0,
        old_kernel_ms,
        new_kernel_ms,
        retrieve_finish_ns,
    })
}

/// From the old kernel's console: the agent's mark to "Starting new kernel", in ms.
pub fn old_kernel_split(console: &str) -> Option<f64> {
    let ts = |needle: &str| {
        console.lines().rfind(|l| l.contains(needle)).and_then(|l| {
            let inner = l.split_once('[')?.1.split_once(']')?.0.trim();
            inner.parse::<f64>().ok()
        })
    };
    Some((ts("Starting new kernel")? - ts(KEXEC_MARK)?) * 1000.0)
}

/// Boots one VM per variant, session count and repetition, and measures each.
pub async fn measure(
    o: &CompareOptions,
    sink: &dyn EventSink,
) -> Result<Vec<Sample>, CompareError> {
    let mut plans = Vec::new();
    for v in &o.variants {
        let req = PlanRequest {
            kernel: o.kernel.clone(),
            build: o.base.with_variant(v),
            accel: Some(o.accel),
            ..Default::default()
        };
        plans.push((
            v.clone(),
            plan::resolve(&req, &Needs::default(), sink).await?,
        ));
    }
    let total = (o.variants.len() * o.sessions.len() * o.reps as usize) as u64;
    let mut samples = Vec::new();
    // Repetitions outermost and variants innermost: drift of the host affects every design alike.
    for rep in 0..o.reps {
        for &n in &o.sessions {
            for (variant, p) in &plans {
                sink.emit(Event::Progress {
                    task: "compare".into(),
                    done: samples.len() as u64,
                    total,
                    what: format!("{variant} N={n} rep {rep}"),
                });
                let mut cfg = p.vm_config(&format!("compare-{variant}"));
                cfg.timeouts.request = std::time::Duration::from_secs(120);
                let mut guest = Guest::boot(cfg).await?;
                let s = one(&mut guest, variant, n, rep).await?;
                guest.power_off().await?;
                samples.push(s);
            }
        }
    }
    sink.emit(Event::Progress {
        task: "compare".into(),
        done: total,
        total,
        what: String::new(),
    });
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn old_kernel_split_reads_the_last_kexec() {
        let c = "[    1.000000] luo-agent: reboot(KEXEC)\n[    1.250000] kexec_core: Starting new kernel\n[    0.000000] Linux version\n";
        assert_eq!(old_kernel_split(c), Some(250.0));
        assert_eq!(old_kernel_split("[ 1.0] other\n"), None);
    }
}
