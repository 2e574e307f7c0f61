//! Benchmarks: figures printed, never asserted.

pub mod bare;

use crate::guest::{BootPhases, GuestError};
use crate::output::Terminal;
use crate::prepare::{KernelChoice, PrepareError, prepare};
use crate::vm::Vm;
use crate::vm::accel::AccelChoice;
use luo_protocol::{Reply, Request};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct RoundtripArgs {
    /// Round trips per flow.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Skip the kernel's own vmtest.sh flow.
    #[arg(long)]
    pub no_upstream: bool,
    /// A prebuilt bzImage instead of the default kernel (the vmtest.sh flow still needs the default
    /// kernel's source tree for its binaries).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<std::path::PathBuf>,
    /// Extra kernel command line for both boots.
    #[arg(long, default_value = "")]
    pub cmdline: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BenchError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Guest(#[from] GuestError),
    #[error("{0}")]
    Other(String),
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

/// Boot, create a session with a 1 MiB patterned memfd, kexec, retrieve, verify, power off.
pub async fn one_roundtrip(
    p: &crate::Prepared,
    extra_cmdline: &str,
) -> Result<RoundtripTiming, GuestError> {
    let t0 = Instant::now();
    let mut cfg = p.vm_config("bench-roundtrip");
    cfg.extra_cmdline = extra_cmdline.to_string();
    let mut g = Vm::boot(cfg).await?;
    let mut t = RoundtripTiming {
        boot_call: t0.elapsed(),
        first_hello: g.boots()[0].to_hello,
        first_phases: g.boots()[0].phases,
        ..Default::default()
    };
    let timed = async |g: &mut crate::Guest,
                       r: Request,
                       t: &mut RoundtripTiming|
           -> Result<Reply, GuestError> {
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

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    if v.is_empty() {
        Duration::ZERO
    } else {
        v[v.len() / 2]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The kernel vmtest.sh itself would build: the selftest fragments + olddefconfig (minutes, once).
async fn upstream_recipe_kernel() -> Result<std::path::PathBuf, BenchError> {
    use crate::output::Reporter;
    let req = luo_kernels::BuildRequest {
        recipe: luo_kernels::Recipe::UpstreamSelftest,
        ..Default::default()
    };
    let reporter = Terminal::default();
    let built = tokio::task::spawn_blocking(move || {
        luo_kernels::build(&req, &luo_kernels::Cache::from_env(), &mut |e| {
            reporter.emit(crate::output::Output::Kernel(e))
        })
    })
    .await
    .map_err(|e| BenchError::Other(e.to_string()))?
    .map_err(|e| BenchError::Other(e.to_string()))?;
    Ok(built.bzimage())
}

pub async fn roundtrip(a: RoundtripArgs) -> Result<(), BenchError> {
    let choice = match &a.kernel {
        Some(k) => KernelChoice::Prebuilt(k.clone()),
        None => KernelChoice::Build(Default::default()),
    };
    let p = prepare(&choice, a.accel, &Terminal::default()).await?;
    let mut flows = Vec::new();
    if !a.no_upstream {
        let same = crate::upstream::UpstreamFlow::prepare(&p, &p.kernel)
            .await
            .map_err(BenchError::Other)?;
        flows.push(("vmtest.sh flow, same kernel", same, Vec::new()));
        let theirs = upstream_recipe_kernel().await?;
        let own = crate::upstream::UpstreamFlow::prepare(&p, &theirs)
            .await
            .map_err(BenchError::Other)?;
        flows.push(("vmtest.sh flow, its own kernel", own, Vec::new()));
    }
    let mut ours = Vec::new();
    let mut bare_cfg = p.vm_config("bench-bare");
    bare_cfg.extra_cmdline = a.cmdline.clone();
    let mut bare_boots = Vec::new();
    for i in 0..a.runs {
        ours.push(one_roundtrip(&p, &a.cmdline).await?);
        bare_boots.push(
            bare::boot_to_hello(&bare_cfg)
                .await
                .map_err(BenchError::Other)?,
        );
        for (_, flow, times) in flows.iter_mut() {
            times.push(flow.run().await.map_err(BenchError::Other)?);
        }
        eprint!("\rrun {}/{}", i + 1, a.runs);
    }
    eprintln!();
    let mut totals: Vec<_> = ours.iter().map(|t| t.total).collect();
    let mut hellos: Vec<_> = ours.iter().map(|t| t.first_hello).collect();
    let mut blackouts: Vec<_> = ours.iter().map(|t| t.blackout).collect();
    let mut reqs: Vec<_> = ours
        .iter()
        .flat_map(|t| t.requests.iter().copied())
        .collect();
    let mut offs: Vec<_> = ours.iter().map(|t| t.power_off).collect();
    let mut boot_calls: Vec<_> = ours.iter().map(|t| t.boot_call).collect();
    let med = median(&mut totals);
    println!(
        "memfd round trip, {} runs each, alternating, accel {}, kernel {}",
        a.runs,
        p.accel,
        p.kernel.display()
    );
    println!(
        "  luo-harness                  median {}  (min {}, max {})",
        ms(med),
        ms(totals[0]),
        ms(*totals.last().unwrap())
    );
    println!(
        "    QEMU start -> first hello  median {}",
        ms(median(&mut hellos))
    );
    let phase = |f: &dyn Fn(&RoundtripTiming) -> Duration| {
        ms(median(&mut ours.iter().map(f).collect::<Vec<_>>()))
    };
    let qemu_start = phase(&|t| t.first_phases.qemu_start.unwrap_or_default());
    let first_before = phase(&|t| {
        let p = t.first_phases;
        p.before_kernel
            .saturating_sub(p.qemu_start.unwrap_or_default())
    });
    println!(
        "      QEMU start-up {qemu_start}, firmware and kernel loading {first_before}, kernel {}, agent {}",
        phase(&|t| t.first_phases.kernel),
        phase(&|t| t.first_phases.agent)
    );
    println!(
        "    reboot call -> new hello   median {}  (blackout seen from the host)",
        ms(median(&mut blackouts))
    );
    println!(
        "      old kernel shutdown, purgatory, decompression {}, kernel {}, agent {}",
        phase(&|t| t.kexec_phases.before_kernel),
        phase(&|t| t.kexec_phases.kernel),
        phase(&|t| t.kexec_phases.agent)
    );
    println!(
        "    request round trip         median {}  (p90 {})",
        ms(median(&mut reqs)),
        ms(reqs[reqs.len() * 9 / 10])
    );
    println!(
        "    power off -> QEMU exit     median {}",
        ms(median(&mut offs))
    );
    let (runner, bare) = (median(&mut boot_calls), median(&mut bare_boots));
    println!(
        "    runner overhead per boot   median {:+.0} ms  (Vm::boot to hello {} vs bare QEMU + virtiofsd {})",
        (runner.as_secs_f64() - bare.as_secs_f64()) * 1000.0,
        ms(runner),
        ms(bare)
    );
    for (name, _, times) in flows.iter_mut() {
        let tm = median(times);
        println!(
            "  {name:<29} median {}  (min {}, max {})  -> luo-harness is {:.2}x faster",
            ms(tm),
            ms(times[0]),
            ms(*times.last().unwrap()),
            tm.as_secs_f64() / med.as_secs_f64()
        );
    }
    Ok(())
}
