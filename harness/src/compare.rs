//! `luo-harness compare`: what each session-inode design costs, measured on real kernels.
//!
//! For every variant, session count N and repetition, one VM: memory before and after creating N
//! sessions (timed inside the guest), a kexec (the blackout seen from the host, and the guest's own
//! split from kernel log timestamps), then retrieving and finishing the N sessions in the new kernel.

use crate::guest::Guest;
use crate::output::Terminal;
use crate::prepare::{KernelChoice, prepare};
use crate::vm::Vm;
use crate::vm::accel::AccelChoice;
use luo_protocol::{KEXEC_MARK, MemorySnapshot, Reply, Request};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Kernel variants to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "stock,anon-unique,magic-shared,magic-unique"
    )]
    pub variants: Vec<String>,
    /// Session counts.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub sessions: Vec<u32>,
    /// Repetitions per point.
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Where compare.json and compare.svg are written.
    #[arg(long, default_value = "luo-reports")]
    pub out: PathBuf,
    /// Do not measure: print the table and write the plot from a saved compare.json.
    #[arg(long, value_name = "FILE")]
    pub from_json: Option<PathBuf>,
}

/// The comparison fails the way a benchmark does.
pub use crate::bench::BenchError as CompareError;

/// One VM run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sample {
    pub variant: String,
    pub sessions: u32,
    pub rep: u32,
    /// Growth of Slab (meminfo) over creating the sessions, bytes.
    pub slab_bytes: i64,
    /// Growth of SUnreclaim, bytes.
    pub sunreclaim_bytes: i64,
    /// Drop of MemFree, bytes (all kernel memory the sessions took, slab or pages).
    pub memfree_drop_bytes: i64,
    /// Slab caches whose active objects grew, by objects.
    pub grown_caches: BTreeMap<String, i64>,
    pub create_ns: u64,
    pub blackout_host_ms: f64,
    /// Old kernel: agent's reboot(KEXEC) mark -> "Starting new kernel" (kernel log timestamps).
    pub old_kernel_ms: Option<f64>,
    /// New kernel: boot -> agent hello (CLOCK_BOOTTIME in the new kernel).
    pub new_kernel_ms: f64,
    pub retrieve_finish_ns: u64,
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
    let Reply::Memory(before) = guest.request(Request::MemorySnapshot).await? else {
        return Err(CompareError::Other("memory".into()));
    };
    let Reply::Timed { ns: create_ns, .. } = guest
        .request(Request::CreateSessions {
            device: dev.clone(),
            prefix: "s".into(),
            count: n,
        })
        .await?
    else {
        return Err(CompareError::Other("create".into()));
    };
    let Reply::Memory(after) = guest.request(Request::MemorySnapshot).await? else {
        return Err(CompareError::Other("memory".into()));
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
    let console_before = std::fs::read_to_string(guest.vm.artifacts.console())
        .unwrap_or_default()
        .len();
    let blackout = guest.kexec_same().await?;
    let console = std::fs::read(guest.vm.artifacts.console())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let old_kernel_ms = old_kernel_split(&console[console_before.min(console.len())..]);
    let new_kernel_ms = guest.hello().boot.uptime_us as f64 / 1000.0;
    guest
        .request(Request::OpenDevice {
            handle: dev.clone(),
        })
        .await?;
    let Reply::Timed {
        ns: retrieve_finish_ns,
        ..
    } = guest
        .request(Request::RetrieveSessions {
            device: dev,
            prefix: "s".into(),
            count: n,
            finish: true,
        })
        .await?
    else {
        return Err(CompareError::Other("retrieve".into()));
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    (
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    )
}

#[derive(Debug, Clone, Serialize)]
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
            .entry((s.variant.clone(), s.sessions))
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
            let caches = g[0]
                .grown_caches
                .iter()
                .map(|(c, d)| format!("{c} x{:.1}", *d as f64 / n as f64))
                .collect::<Vec<_>>()
                .join(", ");
            Point {
                variant,
                sessions: n,
                slab_bytes_per_session: median(slab.clone()),
                slab_bytes_per_session_range: spread(&slab),
                memfree_bytes_per_session: median(per(&|s| s.memfree_drop_bytes as f64)),
                create_us_per_session: median(per(&|s| s.create_ns as f64 / 1000.0)),
                blackout_host_ms: median(blackout.clone()),
                blackout_host_ms_range: spread(&blackout),
                old_kernel_ms: median(g.iter().filter_map(|s| s.old_kernel_ms).collect()),
                new_kernel_ms: median(g.iter().map(|s| s.new_kernel_ms).collect()),
                retrieve_finish_us_per_session: median(per(&|s| {
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

pub async fn compare(a: CompareArgs) -> Result<(), CompareError> {
    if let Some(path) = &a.from_json {
        #[derive(serde::Deserialize)]
        struct Saved {
            samples: Vec<Sample>,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| CompareError::Other(format!("{}: {e}", path.display())))?;
        let saved: Saved = serde_json::from_str(&text)
            .map_err(|e| CompareError::Other(format!("{}: {e}", path.display())))?;
        let points = summarise(&saved.samples);
        print!("{}", table(&points));
        let sp = path.with_file_name("compare.svg");
        std::fs::write(&sp, crate::plot::svg(&points))
            .map_err(|e| CompareError::Other(e.to_string()))?;
        println!("wrote {}", sp.display());
        return Ok(());
    }
    let mut prepared = Vec::new();
    for v in &a.variants {
        let req = luo_kernels::BuildRequest {
            variant: v.clone(),
            ..Default::default()
        };
        prepared.push((
            v.clone(),
            prepare(&KernelChoice::Build(req), a.accel, &Terminal::default()).await?,
        ));
    }
    let total = a.variants.len() * a.sessions.len() * a.reps as usize;
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} compare [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
        )
        .unwrap(),
    );
    let mut samples = Vec::new();
    // Repetitions outermost and variants innermost: drift of the host affects every design alike.
    for rep in 0..a.reps {
        for &n in &a.sessions {
            for (variant, p) in &prepared {
                bar.set_message(format!("{variant} N={n} rep {rep}"));
                let mut cfg = p.vm_config(&format!("compare-{variant}"));
                cfg.request_timeout = std::time::Duration::from_secs(120);
                let mut guest = Vm::boot(cfg).await?;
                let s = one(&mut guest, variant, n, rep).await?;
                guest.power_off().await?;
                samples.push(s);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let points = summarise(&samples);
    print!("{}", table(&points));
    std::fs::create_dir_all(&a.out).map_err(|e| CompareError::Other(e.to_string()))?;
    let json = serde_json::json!({ "samples": samples, "points": points });
    let jp = a.out.join("compare.json");
    std::fs::write(&jp, serde_json::to_string_pretty(&json).unwrap())
        .map_err(|e| CompareError::Other(e.to_string()))?;
    let sp = a.out.join("compare.svg");
    std::fs::write(&sp, crate::plot::svg(&points))
        .map_err(|e| CompareError::Other(e.to_string()))?;
    println!("wrote {} and {}", jp.display(), sp.display());
    Ok(())
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
