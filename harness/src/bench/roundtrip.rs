//! `bench roundtrip`: the memfd round trip (boot, create a session with a 1 MiB patterned memfd,
//! kexec, retrieve, verify, power off), from a saved booted VM and with `--cold-boot`, alternated
//! in one run with the bare VM and with the kernel's own vmtest.sh flow on the same kernel and on
//! its own kernel.

use super::{BenchError, bare, median};
use crate::events::EventSink;
use crate::guest::{BootPhases, Guest, GuestError};
use crate::plan::{self, Needs, Plan, PlanRequest};
use crate::vm::accel::AccelChoice;
use luo_kernels::BuildRequest;
use luo_protocol::{Reply, Request};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RoundtripOptions {
    /// Round trips per flow (at least 1).
    pub runs: usize,
    pub accel: AccelChoice,
    /// Skip the kernel's own vmtest.sh flow.
    pub no_upstream: bool,
    /// Another kernel than the default (the vmtest.sh flow still builds its programs from the
    /// default source).
    pub kernel: Option<luo_kernels::spec::KernelSpec>,
    /// Extra kernel command line for both boots.
    pub cmdline: String,
    /// The guest's architecture; for another than x86_64, x86_64's round trip is timed beside it.
    pub arch: luo_kernels::Arch,
}

/// Timings of one harness round trip.
#[derive(Debug, Clone, Default)]
pub struct RoundtripTiming {
    pub total: Duration,
    /// The whole `Vm::boot` call: sockets, virtiofsd, QEMU, QMP, up to the hello.
    pub boot_call: Duration,
    pub first_hello: Duration,
    pub first_phases: BootPhases,
    pub blackout: Duration,
    pub kexec_phases: BootPhases,
    pub requests: Vec<Duration>,
    pub power_off: Duration,
}

pub const ROUNDTRIP_BYTES: u64 = 1 << 20;

/// Boot (or restore, unless `cold`), create a session with a 1 MiB patterned memfd, kexec,
/// retrieve, verify, power off.
pub async fn one_roundtrip(
    p: &Plan,
    extra_cmdline: &str,
    cold: bool,
) -> Result<RoundtripTiming, GuestError> {
    let t0 = Instant::now();
    let mut cfg = p.vm_config("bench-roundtrip");
    cfg.extra_cmdline = extra_cmdline.to_string();
    cfg.from_saved = !cold;
    let mut g = Guest::boot(cfg).await?;
    let mut t = RoundtripTiming {
        boot_call: t0.elapsed(),
        first_hello: g.boots()[0].to_hello,
        first_phases: g.boots()[0].phases,
        ..Default::default()
    };
    let timed =
        async |g: &mut Guest, r: Request, t: &mut RoundtripTiming| -> Result<Reply, GuestError> {
            let s = Instant::now();
            let reply = g.request(r).await?;
            t.requests.push(s.elapsed());
            Ok(reply)
        };
    let (dev, s, m) = ("dev".to_string(), "s".to_string(), "m".to_string());
    let before_kexec = [
        Request::OpenDevice {
            handle: dev.clone(),
        },
        Request::CreateSession {
            device: dev.clone(),
            handle: s.clone(),
            name: "bench".into(),
        },
        Request::CreateMemfd {
            handle: m.clone(),
            name: "bench".into(),
            size: ROUNDTRIP_BYTES,
            hugetlb: false,
        },
        Request::WritePattern {
            handle: m.clone(),
            seed: 7,
            offset: 0,
            len: ROUNDTRIP_BYTES,
        },
        Request::PreserveFd {
            session: s.clone(),
            fd: m.clone(),
            token: 1,
        },
    ];
    let after_kexec = [
        Request::OpenDevice {
            handle: dev.clone(),
        },
        Request::RetrieveSession {
            device: dev,
            handle: s.clone(),
            name: "bench".into(),
        },
        Request::RetrieveFd {
            session: s.clone(),
            handle: m.clone(),
            token: 1,
        },
        Request::VerifyPattern {
            handle: m,
            seed: 7,
            offset: 0,
            len: ROUNDTRIP_BYTES,
        },
        Request::FinishSession { session: s },
    ];
    for r in before_kexec {
        timed(&mut g, r, &mut t).await?;
    }
    t.blackout = g.kexec_same().await?;
    t.kexec_phases = g.boots()[1].phases;
    for r in after_kexec {
        timed(&mut g, r, &mut t).await?;
    }
    let s0 = Instant::now();
    g.power_off().await?;
    t.power_off = s0.elapsed();
    t.total = t0.elapsed();
    Ok(t)
}

/// The figures of one `bench roundtrip` invocation.
pub struct RoundtripFigures {
    pub runs: usize,
    pub accel: String,
    pub kernel: String,
    /// Each VM restored from the saved booted VM (made before the first timed run).
    pub ours: Vec<RoundtripTiming>,
    /// The same with `--cold-boot`.
    pub cold: Vec<RoundtripTiming>,
    /// Boots to hello of the same VM without the guest layer.
    pub bare: Vec<Duration>,
    /// (flow name, wall times).
    pub upstream: Vec<(&'static str, Vec<Duration>)>,
    /// The architecture measured, and for another than x86_64 the x86_64 round trip of the same
    /// kernel source, alternated with it.
    pub arch: luo_kernels::Arch,
    pub x86: Vec<RoundtripTiming>,
}

/// The kernel vmtest.sh itself would build for `arch`: the selftest fragments + olddefconfig
/// (minutes, once).
async fn upstream_recipe_kernel(
    arch: luo_kernels::Arch,
    sink: &dyn EventSink,
) -> Result<PathBuf, BenchError> {
    let req = BuildRequest {
        recipe: luo_kernels::Recipe::UpstreamSelftest,
        arch,
        ..Default::default()
    };
    Ok(plan::build_kernel(&req, sink).await?.boot_image)
}

pub async fn roundtrip(
    a: &RoundtripOptions,
    sink: &dyn EventSink,
) -> Result<RoundtripFigures, BenchError> {
    let on = |arch| PlanRequest {
        kernel: a.kernel.clone().unwrap_or_else(plan::default_spec),
        accel: Some(a.accel),
        ..plan::request_on_arch(arch)
    };
    let p = plan::resolve(&on(a.arch), &Needs::default(), sink).await?;
    let other = a.arch != luo_kernels::Arch::X86_64;
    let x86 = match other {
        true => Some(plan::resolve(&on(luo_kernels::Arch::X86_64), &Needs::default(), sink).await?),
        false => None,
    };
    let mut flows = Vec::new();
    // vmtest.sh's flow for the measured architecture (its arm64 flow for an arm64 run).
    if !a.no_upstream {
        let same = super::upstream::UpstreamFlow::prepare(&p, &p.boot.boot_image, sink).await?;
        flows.push(("vmtest.sh flow, same kernel", same, Vec::new()));
        let theirs = upstream_recipe_kernel(a.arch, sink).await?;
        let own = super::upstream::UpstreamFlow::prepare(&p, &theirs, sink).await?;
        flows.push(("vmtest.sh flow, its own kernel", own, Vec::new()));
    }
    let (mut ours, mut cold) = (Vec::new(), Vec::new());
    let mut bare_cfg = p.vm_config("bench-bare");
    bare_cfg.extra_cmdline = a.cmdline.clone();
    let mut bare_boots = Vec::new();
    // Untimed: saves the booted VM if this configuration has none yet (a cold boot and a save,
    // once per kernel, image and command line; what a first run on a fresh machine pays).
    one_roundtrip(&p, &a.cmdline, false).await?;
    if let Some(x) = &x86 {
        one_roundtrip(x, &a.cmdline, false).await?;
    }
    let mut x86_times = Vec::new();
    for i in 0..a.runs {
        ours.push(one_roundtrip(&p, &a.cmdline, false).await?);
        if let Some(x) = &x86 {
            x86_times.push(one_roundtrip(x, &a.cmdline, false).await?);
        }
        cold.push(one_roundtrip(&p, &a.cmdline, true).await?);
        bare_boots.push(bare::boot_to_hello(&bare_cfg).await?);
        for (_, flow, times) in flows.iter_mut() {
            times.push(flow.run().await.map_err(BenchError::Flow)?);
        }
        sink.emit(crate::events::Event::Progress {
            task: "round trips".into(),
            done: i as u64 + 1,
            total: a.runs as u64,
            what: String::new(),
        });
    }
    Ok(RoundtripFigures {
        runs: a.runs,
        accel: p.accel.to_string(),
        kernel: p.boot.boot_image.display().to_string(),
        ours,
        cold,
        bare: bare_boots,
        upstream: flows.into_iter().map(|(n, _, t)| (n, t)).collect(),
        arch: a.arch,
        x86: x86_times,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median_of(timings: &[RoundtripTiming], g: &dyn Fn(&RoundtripTiming) -> Duration) -> Duration {
    median(&mut timings.iter().map(g).collect::<Vec<_>>())
}

/// One path's block: its median and range, and where the time went.
fn path_block(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    timings: &[RoundtripTiming],
) -> std::fmt::Result {
    let mut totals: Vec<_> = timings.iter().map(|t| t.total).collect();
    let med = median(&mut totals);
    let (lo, hi) = (
        totals.first().copied().unwrap_or_default(),
        totals.last().copied().unwrap_or_default(),
    );
    let phase = |g: &dyn Fn(&RoundtripTiming) -> Duration| ms(median_of(timings, g));
    writeln!(
        f,
        "  {name:<29} median {}  (min {}, max {})",
        ms(med),
        ms(lo),
        ms(hi)
    )?;
    writeln!(
        f,
        "    QEMU start -> first hello  median {}",
        phase(&|t| t.first_hello)
    )?;
    if timings.first().is_some_and(|t| t.first_phases.restored) {
        writeln!(
            f,
            "      restored from the saved VM: QEMU start-up, loading the state, the agent's resume"
        )?;
    } else {
        writeln!(
            f,
            "      QEMU start-up {}, firmware and kernel loading {}, kernel {}, agent {}",
            phase(&|t| t.first_phases.qemu_start.unwrap_or_default()),
            phase(&|t| t
                .first_phases
                .before_kernel
                .saturating_sub(t.first_phases.qemu_start.unwrap_or_default())),
            phase(&|t| t.first_phases.kernel),
            phase(&|t| t.first_phases.agent)
        )?;
    }
    writeln!(
        f,
        "    reboot call -> new hello   median {}  (blackout seen from the host)",
        phase(&|t| t.blackout)
    )?;
    writeln!(
        f,
        "      old kernel shutdown, purgatory, decompression {}, kernel {}, agent {}",
        phase(&|t| t.kexec_phases.before_kernel),
        phase(&|t| t.kexec_phases.kernel),
        phase(&|t| t.kexec_phases.agent)
    )?;
    let mut reqs: Vec<_> = timings
        .iter()
        .flat_map(|t| t.requests.iter().copied())
        .collect();
    let req_median = median(&mut reqs);
    let req_p90 = reqs.get(reqs.len() * 9 / 10).copied().unwrap_or_default();
    writeln!(
        f,
        "    request round trip         median {}  (p90 {})",
        ms(req_median),
        ms(req_p90)
    )?;
    writeln!(
        f,
        "    power off -> QEMU exit     median {}",
        phase(&|t| t.power_off)
    )
}

impl std::fmt::Display for RoundtripFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let med = median_of(&self.ours, &|t| t.total);
        let cold = median_of(&self.cold, &|t| t.total);
        let faster = |other: Duration| other.as_secs_f64() / med.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "memfd round trip, {} runs each, alternating, {}, accel {}, kernel {}",
            self.runs, self.arch, self.accel, self.kernel
        )?;
        path_block(f, "luo-harness", &self.ours)?;
        path_block(f, "luo-harness --cold-boot", &self.cold)?;
        let runner = median_of(&self.cold, &|t| t.boot_call);
        let bare = median(&mut self.bare.clone());
        writeln!(
            f,
            "    guest layer overhead       median {:+.0} ms  (Guest::boot to hello {} vs the VM layer alone {})",
            (runner.as_secs_f64() - bare.as_secs_f64()) * 1000.0,
            ms(runner),
            ms(bare)
        )?;
        for (name, times) in &self.upstream {
            let mut t = times.clone();
            let tm = median(&mut t);
            writeln!(
                f,
                "  {name:<29} median {}  (min {}, max {})",
                ms(tm),
                ms(t.first().copied().unwrap_or_default()),
                ms(t.last().copied().unwrap_or_default()),
            )?;
        }
        if !self.x86.is_empty() {
            path_block(f, "luo-harness on x86_64", &self.x86)?;
            let x = median_of(&self.x86, &|t| t.total);
            writeln!(
                f,
                "  {} round trip / x86_64's: {:.2}x  (same run, alternated)",
                self.arch,
                med.as_secs_f64() / x.as_secs_f64().max(1e-9)
            )?;
        }
        writeln!(f, "  luo-harness is")?;
        writeln!(
            f,
            "    {:.2}x faster than luo-harness --cold-boot",
            faster(cold)
        )?;
        for (name, times) in &self.upstream {
            writeln!(
                f,
                "    {:.2}x faster than the {name}",
                faster(median(&mut times.clone()))
            )?;
        }
        Ok(())
    }
}
