//! `luo-harness setup`: everything after the system packages, once: the default kernel and every
//! variant (built or cached), the programs the scenarios run, the guest image, and the accelerator
//! verdict for this host.

use super::collect;
use super::failed::Failed;
use super::terminal::Terminal;
use clap::Args;
use luo_harness::plan::{self, Needs, PlanRequest};
use luo_kernels::spec::KernelSpec;
use std::path::PathBuf;

#[derive(Args)]
pub struct SetupArgs {
    /// Scenario files or directories whose programs to build too (default: scenarios/, if there).
    paths: Vec<PathBuf>,
    /// Other kernels to build now (the test suite's matrix runs debian:7.2 beside the default).
    #[arg(long, value_name = "SPEC", default_value = "debian:7.2",
          value_parser = |s: &str| KernelSpec::parse(s).map_err(|e| e.to_string()))]
    also: Vec<KernelSpec>,
}

pub async fn setup(args: SetupArgs) -> Result<u8, Failed> {
    let missing = luo_kernels::hosttools::check(luo_kernels::hosttools::VM);
    if !missing.is_empty() {
        return Err(luo_kernels::KernelError::MissingTools(missing).into());
    }
    if luo_harness::vm::virtiofsd::binary().is_none() {
        return Err(Failed::infra(
            "virtiofsd not found: cargo install --locked virtiofsd (after apt-get install \
             libseccomp-dev libcap-ng-dev), or bash ci/install-deps"
                .into(),
        ));
    }
    luo_kernels::git::sweep_clones(&luo_kernels::Cache::from_env())?;
    let needs = suite_needs(&args, luo_kernels::Arch::X86_64)?;
    let t0 = std::time::Instant::now();
    announce(&needs);
    let terminal = Terminal::default();
    let p = plan::resolve(&PlanRequest::default(), &needs, &terminal).await?;
    let flavoured =
        plan::flavoured_kernels(&PlanRequest::default(), &plan::suite_flavours(), &terminal)
            .await?;
    eprintln!(
        "setup: kernels, programs and images ready in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    // The VM every scenario of the default configuration starts from: booted and saved now, so
    // the first run restores it like every later one (and a kernel that does not boot is found
    // here, not in the first test).
    let t1 = std::time::Instant::now();
    let start = boot_and_save(&p).await?;
    eprintln!(
        "setup: the default VM booted to its agent's hello and saved ({start}) in {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    println!("kernel:  {}", p.boot.boot_image.display());
    for (name, k) in &p.kernels {
        println!(
            "kernel {name:<14} {}  ({})",
            k.boot_image.display(),
            k.source
        );
    }
    for k in &flavoured {
        let name = format!("{} {}", k.variant, k.flavour);
        println!(
            "kernel {name:<14} {}  ({})",
            k.boot_image.display(),
            k.source
        );
    }
    for (name, path) in &p.selftests {
        println!("selftest {name:<12} {}", path.display());
    }
    for (program, path) in &p.programs {
        println!("program  {:<12} {}", program.name(), path.display());
    }
    println!("initrd:  {}", p.initrd.display());
    if let Some(shell) = &p.shell_initrd {
        println!("initrd with a shell: {}", shell.display());
    }
    if let Some(root) = &p.systemd_root {
        println!("systemd root: {}", root.display());
    }
    println!("accel:   {}", p.accel);
    // The same suite on the other architectures: their kernels cross-built, their agent and
    // programs too, and their default VM booted and saved.
    for &arch in plan::OTHER_ARCHES {
        let t2 = std::time::Instant::now();
        let req = plan::request_on_arch(arch);
        let a = plan::resolve(&req, &suite_needs(&args, arch)?, &terminal).await?;
        let start = boot_and_save(&a).await?;
        eprintln!(
            "setup: {arch}: kernels, agent and programs ready, its default VM booted and saved ({start}) in {:.0} s",
            t2.elapsed().as_secs_f64()
        );
        println!("{arch} kernel: {}", a.boot.boot_image.display());
        for (name, k) in &a.kernels {
            println!("{arch} kernel {name:<14} {}", k.boot_image.display());
        }
        println!("{arch} initrd: {}", a.initrd.display());
    }
    Ok(0)
}

/// Boots the plan's default VM to its agent's hello, which saves it (or restores the saved one),
/// and powers it off: how it started.
async fn boot_and_save(p: &luo_harness::Plan) -> Result<String, Failed> {
    let guest = luo_harness::Guest::boot(p.vm_config("setup")).await?;
    let start = guest.start().to_string();
    guest.power_off().await?;
    Ok(start)
}

/// What setup is about to do and how long that takes on a fresh machine, before any of it.
fn announce(needs: &Needs) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // Measured on 2-core machines with empty caches (README, "Set up"); compiling scales with
    // cores, fetching and unpacking the sources do not.
    let minutes = |two_core_s: f64| two_core_s * 2.0 / cores / 60.0;
    eprintln!(
        "setup: the default kernel and the kernels the suite kexecs into ({} of them: {}), {} selftests and programs, the guest images",
        needs.kernels.len(),
        needs.kernels.iter().cloned().collect::<Vec<_>>().join(", "),
        needs.selftests.len() + needs.programs.len(),
    );
    eprintln!(
        "setup: and the suite's other builds of the default kernel: {}",
        plan::suite_flavours()
            .iter()
            .map(|(f, v)| format!("{v} {}", f.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "setup: with empty caches, about {:.0} min for the default kernel, {:.0} min for its three \
         variants, {:.0} min for debian:7.2, {:.0} min for the debug flavours, under a minute for \
         the rest; cached parts take seconds",
        minutes(270.0),
        minutes(180.0),
        minutes(240.0),
        minutes(600.0)
    );
    for arch in plan::OTHER_ARCHES {
        // Measured 2026-12-05 (docs/arm64.md): 289 s for the cold kernel, 11-48 s a design after
        // it, 42 s for the agent with -Zbuild-std after fetching rust-src.
        eprintln!(
            "setup: then the same suite for {arch}, cross-built: about {:.0} min for its default \
             kernel, {:.0} min for its three variants, {:.0} min for its agent, with empty caches",
            minutes(290.0),
            minutes(90.0),
            minutes(60.0)
        );
    }
}

/// What the suite needs on `arch`: every variant (built incrementally after stock), the `--also`
/// kernels, and what the scenarios under `paths` (default: scenarios/) run; on another
/// architecture than x86_64, what plan::needs_on_arch keeps of that.
pub fn suite_needs(args: &SetupArgs, arch: luo_kernels::Arch) -> Result<Needs, Failed> {
    let mut needs = Needs {
        kernels: luo_kernels::variant::designs()
            .map(|v| v.name.to_string())
            .collect(),
        ..Default::default()
    };
    needs
        .kernels
        .extend(args.also.iter().map(|s| s.to_string()));
    let scenario_paths = if args.paths.is_empty() && std::path::Path::new("scenarios").is_dir() {
        vec![PathBuf::from("scenarios")]
    } else {
        args.paths.clone()
    };
    if !scenario_paths.is_empty() {
        let files = collect::files(&scenario_paths)?;
        // Invalid files are `check`'s to report; setup builds for the valid ones.
        for f in files {
            if let Ok((s, _)) = luo_harness::scenario::load(&f) {
                s.needs(arch, &mut needs);
            }
        }
    }
    Ok(match arch {
        luo_kernels::Arch::X86_64 => needs,
        _ => plan::needs_on_arch(&needs),
    })
}
