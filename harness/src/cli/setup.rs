//! `luo-harness setup`: everything after the system packages, once: the default kernel (built or
//! cached), the static guest agent and its initramfs, and the accelerator verdict for this host.

use luo_harness::output::Terminal;
use luo_harness::prepare::{KernelChoice, prepare};
use luo_harness::vm::accel::AccelChoice;
use std::process::ExitCode;

pub async fn setup() -> miette::Result<ExitCode> {
    let missing = luo_kernels::hosttools::check(luo_kernels::hosttools::VM);
    if !missing.is_empty() {
        return Err(luo_kernels::KernelError::MissingTools(missing).into());
    }
    if luo_harness::vm::virtiofsd::binary().is_none() {
        return Err(miette::miette!(
            help = "cargo install --locked virtiofsd (after apt-get install libseccomp-dev libcap-ng-dev), or bash ci/install-deps",
            "virtiofsd not found"
        ));
    }
    let p = prepare(
        &KernelChoice::Build(Default::default()),
        AccelChoice::Auto,
        &Terminal::default(),
    )
    .await?;
    println!("kernel:  {}", p.kernel.display());
    println!("initrd:  {}", p.initrd.display());
    println!("accel:   {}", p.accel);
    // The session-inode designs the test suite also runs (built incrementally after stock).
    for v in luo_kernels::variant::all().filter(|v| v.name != luo_kernels::variant::DEFAULT) {
        let req = luo_kernels::BuildRequest {
            variant: v.name.to_string(),
            ..Default::default()
        };
        let reporter = Terminal::default();
        let k = tokio::task::spawn_blocking(move || {
            use luo_harness::output::{Output, Reporter};
            luo_kernels::build(&req, &luo_kernels::Cache::from_env(), &mut |e| {
                reporter.emit(Output::Kernel(e))
            })
        })
        .await
        .map_err(|e| miette::miette!("{e}"))??;
        println!("variant {:<13} {}", v.name, k.bzimage().display());
    }
    Ok(ExitCode::SUCCESS)
}
