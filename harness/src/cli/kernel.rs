//! `luo-harness kernel`: build, find, list and collect cached kernels.

use super::args::KernelArgs;
use super::failed::Failed;
use super::terminal::Terminal;
use clap::Subcommand;
use luo_kernels::Cache;

#[derive(Subcommand)]
pub enum KernelCommand {
    /// Build the kernel (or find it in the cache) and print the bzImage path.
    Build(KernelArgs),
    /// Print the cached bzImage path for these arguments; fails if it is not built.
    Path(KernelArgs),
    /// Print the cache key these arguments build under (the Debian archive is asked, nothing is
    /// built): what a CI cache of the kernels is keyed by.
    Key(KernelArgs),
    /// List cached kernels.
    List,
    /// Remove interrupted builds' leftovers and all but the newest kernels per source and variant.
    Gc {
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
        keep: u32,
    },
    /// List the kernel variants this binary knows.
    Variants,
}

pub async fn run(cmd: KernelCommand) -> Result<u8, Failed> {
    let cache = Cache::from_env();
    match cmd {
        KernelCommand::Build(args) => {
            let req = args.build_request()?;
            let built = luo_harness::plan::build_kernel(&req, &Terminal::default()).await?;
            println!("{}", built.boot_image.display());
        }
        KernelCommand::Path(args) => {
            let req = args.build_request()?;
            let location = req.source.location();
            match req.cached(&cache)? {
                Some(k) => println!("{}", k.boot_image().display()),
                None => {
                    return Err(luo_kernels::KernelError::NotBuilt(format!(
                        "{location} variant {}",
                        req.variant
                    ))
                    .into());
                }
            }
        }
        KernelCommand::Key(args) => println!("{}", args.build_request()?.key()?),
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
            for p in cache.gc(keep as usize)? {
                println!("removed {}", p.display());
            }
        }
        KernelCommand::Variants => {
            for v in luo_kernels::variant::all() {
                let note = match luo_kernels::variant::is_test_only(v.name) {
                    true => "  (test only: a planted bug)",
                    false => "",
                };
                println!("{:<18} {} patch(es){note}", v.name, v.patches.len());
            }
        }
    }
    Ok(0)
}
