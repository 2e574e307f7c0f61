//! `build()`: a kernel from the cache, or through the phases that make one: fetch the source, stage
//! it into its family's tree, apply the variant, configure and verify, compile, publish.

use crate::cache::{BuiltKernel, Cache, GCOV_DIR, KernelMeta, Lookup};
use crate::error::KernelError;
use crate::flavour;
use crate::make::{Make, build_step};
use crate::request::{BuildRequest, toolchain};
use crate::staging::{self, Staging};
use crate::variant;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a build reports as it goes (the CLI turns these into a progress bar).
#[derive(Debug, Clone)]
pub enum BuildEvent {
    CacheHit {
        key: String,
    },
    /// A published entry that is not served (a file truncated or changed since): built again.
    CacheDamaged {
        dir: PathBuf,
        damage: crate::cache::Damage,
    },
    Waiting {
        lock: String,
    },
    FetchingSource,
    /// The source was synced into its family's staged tree; `changed` files differ from the
    /// source built there before (what make will recompile from).
    Staged {
        family: String,
        files: usize,
        changed: usize,
        /// Nothing was staged before: every file is new, and the build is a cold one.
        first: bool,
    },
    Configuring {
        build_dir: PathBuf,
    },
    /// A flavour's patch does not apply to this tree: built without it (what it gives is then
    /// done another way).
    PatchSkipped {
        patch: String,
        why: String,
    },
    /// One line of make output that is a build step (CC, LD, AR...); `estimate` is the number of
    /// steps of the previous build in this directory (a guess for the first build).
    Step {
        done: u64,
        estimate: u64,
        what: String,
    },
    Published {
        key: String,
        seconds: f64,
    },
}

const COLD_BUILD_STEPS: u64 = 1800;

/// A source fetched and staged into its family's tree, with the family's lock held.
pub(crate) struct StagedSource {
    pub family: String,
    pub staging: Staging,
    _lock: crate::cache::Lock,
}

/// Fetches `req`'s source and syncs it into its family's staged tree, under the family's lock.
pub(crate) fn stage(
    req: &BuildRequest,
    cache: &Cache,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<StagedSource, KernelError> {
    on_event(BuildEvent::FetchingSource);
    let pristine = req.source.fetch(cache)?;
    let family = staging::family(&pristine)?;
    let lock_name = format!("staging-{family}");
    on_event(BuildEvent::Waiting {
        lock: lock_name.clone(),
    });
    let lock = cache.lock(&lock_name)?;
    let mut staging = Staging::open(&cache.staging_dir(&family))?;
    let first = staging.is_fresh();
    if first {
        // Objects built before the staged tree was lost may be newer than the files about to be
        // linked in, so make would trust them: start those build directories afresh.
        cache.remove_build_dirs(&family)?;
    }
    let stats = staging.sync(&pristine, req.source.is_owned())?;
    on_event(BuildEvent::Staged {
        family: family.clone(),
        files: stats.files,
        changed: stats.changed + stats.removed,
        first,
    });
    Ok(StagedSource {
        family,
        staging,
        _lock: lock,
    })
}

/// Builds (or finds in the cache) the kernel `req` describes.
pub fn build(
    req: &BuildRequest,
    cache: &Cache,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<BuiltKernel, KernelError> {
    let started = Instant::now();
    let variant = variant::find(&req.variant)?;
    let toolchain = toolchain(req.arch);
    let key = req.key_for(&req.source.identity()?, &variant, &toolchain);
    match cache.lookup(&key) {
        Lookup::Hit(hit) => {
            on_event(BuildEvent::CacheHit { key });
            return Ok(hit);
        }
        Lookup::Damaged { dir, damage } => on_event(BuildEvent::CacheDamaged { dir, damage }),
        Lookup::Miss => {}
    }
    crate::hosttools::require(crate::hosttools::KERNEL_BUILD)?;
    crate::hosttools::require(&[(req.arch.gcc(), req.arch.gcc_package())])?;
    if req.flavour.debug
        && let Some(missing) = crate::hosttools::gcc_plugins()
    {
        return Err(KernelError::MissingTools(vec![missing]));
    }
    let mut staged = stage(req, cache, on_event)?;
    // Another process may have published it while we waited for the family's lock.
    if let Lookup::Hit(hit) = cache.lookup(&key) {
        on_event(BuildEvent::CacheHit { key });
        return Ok(hit);
    }
    variant::apply(&variant, &mut staged.staging)?;
    for (patch, why) in flavour::apply(req.flavour, &mut staged.staging)? {
        on_event(BuildEvent::PatchSkipped { patch, why });
    }
    let tree = staged.staging.tree();
    let build_dir = cache.build_dir(
        &staged.family,
        &format!(
            "{}{}{}",
            req.recipe.name(),
            req.flavour.dir_suffix(),
            req.arch.dir_suffix()
        ),
    );
    let mut make = Make::new(cache, req.arch, &tree, &build_dir)?;
    on_event(BuildEvent::Configuring {
        build_dir: build_dir.clone(),
    });
    crate::configure::configure(req, &mut make)?;
    let profiled = match req.flavour.gcov {
        true => flavour::profiled(&tree, &variant::touched(&variant)),
        false => vec![],
    };
    compile(
        req,
        &mut make,
        &flavour::gcov_make_args(&profiled),
        on_event,
    )?;
    make.flush()?;
    let meta = KernelMeta {
        key: key.clone(),
        source: req.source.location(),
        variant: variant.name.to_string(),
        release: release(&build_dir),
        toolchain,
        built_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        build_seconds: started.elapsed().as_secs_f64(),
        sha256: Default::default(),
        flavour: req.flavour,
        source_root: tree.display().to_string(),
        profiled,
        arch: req.arch,
    };
    let built = publish(cache, meta, req.arch, &tree, &build_dir, &make.log_path)?;
    on_event(BuildEvent::Published {
        key,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(built)
}

/// `make bzImage` (with `extra` variables), with a progress estimate from the previous build in
/// this directory.
fn compile(
    req: &BuildRequest,
    make: &mut Make,
    extra: &[String],
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<(), KernelError> {
    let jobs = req
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) + 1);
    let steps_file = make.build_dir.join(".luo-harness-steps");
    let estimate = std::fs::read_to_string(&steps_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(COLD_BUILD_STEPS);
    let mut done = 0u64;
    let jobs = format!("-j{jobs}");
    let mut args = vec![jobs.as_str(), req.arch.image_target()];
    args.extend(extra.iter().map(String::as_str));
    make.run(&args, &mut |line| {
        if let Some(what) = build_step(line) {
            done += 1;
            on_event(BuildEvent::Step {
                done,
                estimate,
                what,
            });
        }
    })?;
    let _ = std::fs::write(&steps_file, format!("{}\n", done.max(1)));
    Ok(())
}

fn release(build_dir: &Path) -> String {
    std::fs::read_to_string(build_dir.join("include/config/kernel.release"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The kernel's files into the cache; a gcov kernel's notes (`.gcno`, written beside each
/// profiled object) and profiled sources go under `gcov/`, so its coverage can be read after the
/// staged tree has moved on to another source or variant.
fn publish(
    cache: &Cache,
    meta: KernelMeta,
    arch: crate::Arch,
    tree: &Path,
    build_dir: &Path,
    log: &Path,
) -> Result<BuiltKernel, KernelError> {
    let mut files: Vec<(String, PathBuf)> = vec![
        (
            arch.image_target().into(),
            build_dir.join(arch.image_path()),
        ),
        ("vmlinux".into(), build_dir.join("vmlinux")),
        ("System.map".into(), build_dir.join("System.map")),
        ("config".into(), build_dir.join(".config")),
        ("build.log".into(), log.to_path_buf()),
    ];
    for f in &meta.profiled {
        let notes = Path::new(f).with_extension("gcno");
        files.push((
            format!("{GCOV_DIR}/{}", notes.display()),
            build_dir.join(&notes),
        ));
        files.push((format!("{GCOV_DIR}/{f}"), tree.join(f)));
    }
    let files: Vec<(&str, &Path)> = files
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path()))
        .collect();
    cache.publish(meta, &files)
}
