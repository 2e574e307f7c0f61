//! `luo-harness stage`: what `setup` builds, staged under target/ so that `cargo nextest archive`
//! carries it to machines that build nothing (plan/stage.rs).

use super::failed::Failed;
use super::setup::{SetupArgs, suite_needs};
use super::terminal::Terminal;
use clap::Args;
use luo_harness::plan::{self, PlanRequest, stage};
use std::path::PathBuf;

#[derive(Args)]
pub struct StageArgs {
    /// Where to stage (default: $CARGO_TARGET_DIR/luo-stage, else target/luo-stage), emptied
    /// first.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    suite: SetupArgs,
}

/// The suite's plans on the other architectures, as `setup` made them.
async fn other_arches(
    suite: &SetupArgs,
    terminal: &Terminal,
) -> Result<Vec<(plan::Plan, luo_kernels::BuildRequest)>, Failed> {
    let mut v = Vec::new();
    for &arch in plan::OTHER_ARCHES {
        let req = plan::request_on_arch(arch);
        let p = plan::resolve(&req, &suite_needs(suite, arch)?, terminal).await?;
        v.push((p, req.build));
    }
    Ok(v)
}

pub async fn stage(args: StageArgs) -> Result<u8, Failed> {
    let needs = suite_needs(&args.suite, luo_kernels::Arch::X86_64)?;
    let req = PlanRequest::default();
    let terminal = Terminal::default();
    let p = plan::resolve(&req, &needs, &terminal).await?;
    let flavoured = plan::flavoured_kernels(&req, &plan::suite_flavours(), &terminal).await?;
    let out = args.out.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from)
            .join(stage::TARGET_SUBDIR)
    });
    // kunit.py, which the tests read `--format ktap` with, from the boot kernel's source.
    let source = plan::source_of(&req.kernel)?;
    let root = source.fetch(&luo_kernels::Cache::from_env())?;
    let kunit = std::path::Path::new("tools/testing/kunit");
    let kunit = root
        .join(kunit)
        .join("kunit.py")
        .is_file()
        .then_some(("kunit", root, kunit));
    let extras = stage::Extras {
        systemd: needs.systemd,
        trees: kunit.into_iter().collect(),
        kernels: flavoured,
        other_arches: other_arches(&args.suite, &terminal).await?,
    };
    let (build, boot_spec) = (req.build.clone(), req.kernel.to_string());
    let staged =
        tokio::task::spawn_blocking(move || stage::write(&p, &build, &boot_spec, &extras, &out))
            .await
            .expect("staging panicked")?;
    let m = &staged.manifest;
    for k in &m.kernels {
        println!(
            "kernel   {:<14} {:<18} {:<6} {}",
            k.spec,
            k.variant,
            k.flavour.name(),
            k.source
        );
    }
    for s in &m.selftests {
        println!("selftest {} ({})", s.key, s.arch);
    }
    for a in &m.agents {
        println!("agent    {}", a.arch);
    }
    for p in &m.programs {
        println!("program  {}", p.file.path.display());
    }
    for t in &m.trees {
        println!("tree     {} ({} files)", t.name, t.files.len());
    }
    for r in &m.roots {
        println!("image    {} ({} MB tarball)", r.name, r.tarball.bytes >> 20);
    }
    println!("staged in {}", staged.dir.display());
    Ok(0)
}
