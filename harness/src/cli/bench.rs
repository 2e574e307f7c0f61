//! `luo-harness bench`: figures printed, never asserted.

use super::failed::Failed;
use super::terminal::Terminal;
use super::{check, collect};
use clap::{Args, Subcommand};
use luo_harness::bench;
use luo_harness::vm::accel::AccelChoice;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The memfd round trip (boot, create, preserve, kexec, retrieve, verify, power off), alternated
    /// with the kernel's own vmtest.sh flow for luo_kexec_simple on the same kernel.
    Roundtrip(RoundtripArgs),
    /// The whole scenario set on the default kernel, as many at once as there are cores, restored
    /// from saved booted VMs and with --cold-boot, alternated: wall times and the slowest scenarios.
    Scenarios {
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
        /// Passes of the set per path.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
        runs: u32,
        /// Leave out the scenario of this name (repeatable): e.g. systemd-fd-store, which always
        /// alone outlasts the rest of the set on two cores.
        #[arg(long, value_name = "NAME")]
        exclude: Vec<String>,
    },
}

#[derive(Args)]
pub struct RoundtripArgs {
    /// Round trips per flow.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Skip the kernel's own vmtest.sh flow.
    #[arg(long)]
    no_upstream: bool,
    /// Another kernel than the default (a spec: debian:7.2, tree:PATH, file:BZIMAGE...); the
    /// vmtest.sh flow still builds its programs from the default source.
    #[arg(long, value_name = "SPEC", value_parser = |s: &str| luo_kernels::spec::KernelSpec::parse(s).map_err(|e| e.to_string()))]
    kernel: Option<luo_kernels::spec::KernelSpec>,
    /// Extra kernel command line for both boots.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// The guest's architecture. aarch64: its round trip alternated with x86_64's and with
    /// vmtest.sh's own arm64 flow (`-M virt -cpu max`) in the same run.
    #[arg(long, value_name = "ARCH", value_parser = |s: &str| s.parse::<luo_kernels::Arch>().map_err(|e| e.to_string()))]
    arch: Option<luo_kernels::Arch>,
}

pub async fn bench(cmd: BenchCommand) -> Result<u8, Failed> {
    let terminal = Terminal::default();
    match cmd {
        BenchCommand::Roundtrip(a) => {
            let o = bench::roundtrip::RoundtripOptions {
                runs: a.runs as usize,
                accel: a.accel,
                no_upstream: a.no_upstream,
                kernel: a.kernel,
                cmdline: a.cmdline,
                arch: a.arch.unwrap_or_default(),
            };
            print!("{}", bench::roundtrip::roundtrip(&o, &terminal).await?);
        }
        BenchCommand::Scenarios { dir, runs, exclude } => {
            let files = collect::files(&[dir])?;
            let mut loaded = match collect::load_all(&files) {
                Ok(v) => v,
                Err(problems) => return Ok(check::report_invalid(problems, files.len())),
            };
            loaded.retain(|l| !exclude.iter().any(|x| x == l.scenario.name()));
            print!(
                "{}",
                bench::scenarios::scenarios(loaded, runs as usize, &terminal).await?
            );
        }
    }
    Ok(0)
}
