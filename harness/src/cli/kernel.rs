use super::KernelArgs;
use clap::Subcommand;
use luo_harness::output::{Output, Reporter, Terminal};
use luo_kernels::Cache;
use miette::IntoDiagnostic;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum KernelCommand {
    /// Build the kernel (or find it in the cache) and print the bzImage path.
    Build(KernelArgs),
    /// Print the cached bzImage path for these arguments; fails if it is not built.
    Path(KernelArgs),
    /// List cached kernels.
    List,
    /// Remove interrupted builds' leftovers and all but the newest kernels per source and variant.
    Gc {
        #[arg(long, default_value_t = 2)]
        keep: usize,
    },
    /// List the kernel variants this binary knows.
    Variants,
}

pub async fn run(cmd: KernelCommand) -> miette::Result<ExitCode> {
    let cache = Cache::from_env();
    match cmd {
        KernelCommand::Build(args) => {
            let req = args.build_request()?;
            let reporter = Terminal::default();
            let built = tokio::task::spawn_blocking(move || {
                luo_kernels::build(&req, &Cache::from_env(), &mut |e| {
                    reporter.emit(Output::Kernel(e))
                })
            })
            .await
            .into_diagnostic()??;
            println!("{}", built.bzimage().display());
        }
        KernelCommand::Path(args) => {
            let req = args.build_request()?;
            let location = req.source.location();
            match req.cached(&cache)? {
                Some(k) => println!("{}", k.bzimage().display()),
                None => {
                    return Err(luo_kernels::KernelError::NotBuilt(format!(
                        "{location} variant {}",
                        req.variant
                    ))
                    .into());
                }
            }
        }
        KernelCommand::List => {
            println!(
                "{:<32}  {:<10}  {:<12}  {:>7}  source",
                "key", "variant", "release", "build s"
            );
            for k in cache.list() {
                println!(
                    "{:<32}  {:<10}  {:<12}  {:>7.1}  {}",
                    k.meta.key, k.meta.variant, k.meta.release, k.meta.build_seconds, k.meta.source
                );
            }
        }
        KernelCommand::Gc { keep } => {
            for p in cache.gc(keep)? {
                println!("removed {}", p.display());
            }
        }
        KernelCommand::Variants => {
            for v in luo_kernels::variant::all() {
                println!("{:<14} {} patch(es)", v.name, v.patches.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
