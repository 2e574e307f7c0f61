//! Command-line front end: parses arguments, sets up tracing, renders errors with miette.

mod boot;
mod drive;
mod kernel;
mod profile;
mod run;
mod setup;

use clap::{Args, Parser, Subcommand};
use luo_harness::prepare::KernelChoice;
use luo_harness::vm::accel::AccelChoice;
use luo_kernels::config::Fragment;
use luo_kernels::{BuildRequest, KernelSource};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "luo-harness",
    version,
    about = "Integration test harness for Linux live update (LUO / KHO) under QEMU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up after the system packages: default kernel, guest agent and image, accelerator verdict.
    Setup,
    /// Obtain, configure, build and cache guest kernels.
    #[command(subcommand)]
    Kernel(kernel::KernelCommand),
    /// Run scenario files on the real kernel (exit 0 pass, 1 a scenario failed, 2 bad input, 3 VM/kernel).
    Run(run::RunArgs),
    /// Validate scenario files without starting any VM (exit 2 on any problem).
    Check(run::CheckArgs),
    /// Print the JSON Schema of scenario files (for yaml-language-server).
    Schema,
    /// Boot a kernel with the agent, print the boot facts and the kernel log tail, power off.
    Boot(boot::BootArgs),
    /// Boot a guest and drive it with requests read from stdin (JSON, `kexec`, `quit`).
    Drive(drive::DriveArgs),
    /// Boot, kexec and show where each spent its time: the guest's instruction pointer sampled
    /// over QMP and named from the kernel's System.map (translation included under TCG).
    Profile(profile::ProfileArgs),
    /// Measure what each session-inode design costs: memory, creation, blackout, retrieval.
    Compare(luo_harness::compare::CompareArgs),
    /// Benchmarks (figures printed, never asserted in tests).
    #[command(subcommand)]
    Bench(boot::BenchCommand),
}

/// Which kernel to use; the default is Debian's linux-source, built with the embedded fragments.
#[derive(Args, Clone, Debug, Default)]
pub struct KernelArgs {
    /// A prebuilt bzImage, used as is.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tree", "variant", "fragment"])]
    kernel: Option<PathBuf>,
    /// Your kernel tree, built out of tree (O= in the cache) so it stays clean.
    #[arg(long, value_name = "PATH")]
    tree: Option<PathBuf>,
    /// Kernel variant (a patch set under kernels/variants/).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Extra config fragment(s), applied after the built-in ones.
    #[arg(long, value_name = "FILE")]
    fragment: Vec<PathBuf>,
    /// make -j (default: cores + 1).
    #[arg(long)]
    jobs: Option<usize>,
    /// How the configuration is made: `minimal` (allnoconfig + kernels/fragments) or
    /// `upstream-selftest` (what tools/testing/selftests/liveupdate/vmtest.sh builds).
    #[arg(long, default_value = "minimal", value_parser = ["minimal", "upstream-selftest"])]
    recipe: String,
}

impl KernelArgs {
    pub fn build_request(&self) -> miette::Result<BuildRequest> {
        let mut req = BuildRequest::default();
        if let Some(t) = &self.tree {
            req.source = KernelSource::Tree(t.clone());
        }
        if let Some(v) = &self.variant {
            req.variant = v.clone();
        }
        for f in &self.fragment {
            let text =
                std::fs::read_to_string(f).map_err(|e| miette::miette!("{}: {e}", f.display()))?;
            req.extra_fragments.push(Fragment {
                name: f.display().to_string(),
                text,
            });
        }
        req.jobs = self.jobs;
        if self.recipe == "upstream-selftest" {
            req.recipe = luo_kernels::Recipe::UpstreamSelftest;
        }
        Ok(req)
    }

    pub fn choice(&self) -> miette::Result<KernelChoice> {
        Ok(match &self.kernel {
            Some(k) => KernelChoice::Prebuilt(k.clone()),
            None => KernelChoice::Build(self.build_request()?),
        })
    }
}

#[derive(Args, Clone, Debug)]
pub struct VmArgs {
    /// Accelerator: auto uses KVM only once it has proven it runs a guest on this host.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Keep the run's artifacts (console, transcripts) even on success.
    #[arg(long)]
    keep: bool,
    /// Extra kernel command line.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Guest memory in MiB (default 256; a scenario's memory_mib wins).
    #[arg(long)]
    memory: Option<u32>,
    /// Machine model (default: microvm for kernels built here with the minimal recipe, pc for any
    /// other kernel).
    #[arg(long, value_enum)]
    machine: Option<luo_harness::vm::qemu::Machine>,
}

impl VmArgs {
    /// Prepares the kernel and image and applies these options to every VM of the run.
    pub async fn prepare(&self, kernel: &KernelArgs) -> miette::Result<luo_harness::Prepared> {
        let mut p = luo_harness::prepare(
            &kernel.choice()?,
            self.accel,
            &luo_harness::output::Terminal::default(),
        )
        .await?;
        p.vm = luo_harness::prepare::VmOptions {
            keep: self.keep,
            extra_cmdline: self.cmdline.clone(),
            memory_mib: self.memory,
        };
        if let Some(m) = self.machine {
            p.machine = m;
        }
        Ok(p)
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

pub fn main() -> ExitCode {
    init_tracing();
    // Reports wrap at the terminal's width; COLUMNS overrides it (CI logs, tests).
    if let Some(width) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        let _ = miette::set_hook(Box::new(move |_| {
            Box::new(miette::MietteHandlerOpts::new().width(width).build())
        }));
    }
    miette::set_panic_hook();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: miette::Result<ExitCode> = rt.block_on(async {
        match cli.command {
            Command::Setup => setup::setup().await,
            Command::Kernel(k) => kernel::run(k).await,
            Command::Run(r) => run::run(r).await,
            Command::Check(c) => run::check(c),
            Command::Schema => run::schema(),
            Command::Boot(b) => boot::boot(b).await,
            Command::Drive(d) => drive::drive(d).await,
            Command::Profile(p) => profile::profile(p).await,
            Command::Compare(c) => luo_harness::compare::compare(c)
                .await
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
            Command::Bench(b) => boot::bench(b).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(report_exit_code(&report))
        }
    }
}

/// 2: bad input; 3: the VM or kernel could not be brought up; 1: anything else.
fn report_exit_code(report: &miette::Report) -> u8 {
    if report.downcast_ref::<luo_kernels::KernelError>().is_some()
        || report
            .downcast_ref::<luo_harness::prepare::PrepareError>()
            .is_some()
        || report.downcast_ref::<luo_harness::GuestError>().is_some()
    {
        3
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
