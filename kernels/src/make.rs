//! Configure and build a kernel out of tree, and publish it to the cache.

use crate::cache::{BuiltKernel, Cache, KernelMeta, KeyInputs, key};
use crate::config::{self, Fragment};
use crate::error::{IoContext, KernelError};
use crate::hosttools;
use crate::source::KernelSource;
use crate::variant::{self, Variant};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// How the .config is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// `allnoconfig` + the embedded fragments: small, fast to build and to boot.
    #[default]
    Minimal,
    /// What tools/testing/selftests/liveupdate/vmtest.sh builds: its config.x86_64 + config
    /// fragments + `olddefconfig`. Used as the benchmark baseline.
    UpstreamSelftest,
}

#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub source: KernelSource,
    pub recipe: Recipe,
    pub variant: String,
    /// Extra fragments after the built-in ones (a developer's own options).
    pub extra_fragments: Vec<Fragment>,
    /// make -j; default: cores + 1.
    pub jobs: Option<usize>,
}

impl Default for BuildRequest {
    fn default() -> Self {
        BuildRequest {
            source: KernelSource::default(),
            recipe: Recipe::Minimal,
            variant: variant::DEFAULT.into(),
            extra_fragments: vec![],
            jobs: None,
        }
    }
}

/// What a build reports as it goes (the CLI turns these into a progress bar).
#[derive(Debug, Clone)]
pub enum BuildEvent {
    CacheHit {
        key: String,
    },
    Waiting {
        lock: String,
    },
    FetchingSource,
    Configuring {
        build_dir: PathBuf,
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

const ARCH_ARGS: &[&str] = &["ARCH=x86_64"];
const COLD_BUILD_STEPS: u64 = 1800;

impl Recipe {
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Minimal => "minimal",
            Recipe::UpstreamSelftest => "upstream-selftest",
        }
    }
}

impl BuildRequest {
    fn fragments(&self) -> Vec<Fragment> {
        let mut f = config::builtin_fragments();
        f.extend(self.extra_fragments.iter().cloned());
        f
    }

    /// The cache key, if the source has a cheap identity.
    pub fn key(&self) -> Result<Option<String>, KernelError> {
        let variant = variant::find(&self.variant)?;
        let Some(identity) = self.source.identity()? else {
            return Ok(None);
        };
        Ok(Some(self.key_for(&identity, &variant, &toolchain())))
    }

    fn key_for(&self, identity: &str, variant: &Variant, toolchain: &str) -> String {
        let merged = match self.recipe {
            Recipe::Minimal => config::merge(&self.fragments()),
            // The fragments live in the tree, so the source identity already covers them.
            Recipe::UpstreamSelftest => "recipe:upstream-selftest".to_string(),
        };
        let make_args: Vec<String> = ARCH_ARGS.iter().map(|s| s.to_string()).collect();
        key(&KeyInputs {
            source: identity,
            variant: variant.name,
            fragments: &merged,
            patches: variant.patches.to_vec(),
            toolchain,
            make_args: &make_args,
        })
    }

    /// The published kernel for this request, if it is cached (never builds).
    pub fn cached(&self, cache: &Cache) -> Result<Option<BuiltKernel>, KernelError> {
        Ok(self.key()?.and_then(|k| cache.lookup(&k)))
    }
}

/// `gcc --version` and `ld --version` first lines: a compiler upgrade must not serve stale objects.
pub fn toolchain() -> String {
    ["gcc", "ld"]
        .iter()
        .map(|t| {
            Command::new(t)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| format!("{t}: none"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Builds (or finds in the cache) the kernel `req` describes.
pub fn build(
    req: &BuildRequest,
    cache: &Cache,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<BuiltKernel, KernelError> {
    let started = Instant::now();
    let variant = variant::find(&req.variant)?;
    let toolchain = toolchain();
    let identity = req.source.identity()?;
    if let Some(id) = &identity {
        let k = req.key_for(id, &variant, &toolchain);
        if let Some(hit) = cache.lookup(&k) {
            on_event(BuildEvent::CacheHit { key: k });
            return Ok(hit);
        }
    }
    hosttools::require(hosttools::KERNEL_BUILD)?;
    let location = req.source.location();
    // One build directory per source and recipe, shared by the variants: a variant's patches are
    // applied for its build and reversed after, and make rebuilds exactly what they touch (a copy
    // of the directory would not do: objtool records absolute output paths and would relink,
    // dragging every object with it).
    let build_dir = cache.build_dir(&location, req.recipe.name());
    // One lock per source location: variants of one source patch the same tree, one at a time.
    let lock_name = format!(
        "source-{}",
        cache
            .build_dir(&location, "")
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('-')
    );
    on_event(BuildEvent::Waiting {
        lock: lock_name.clone(),
    });
    let _lock = cache.lock(&lock_name)?;
    // Another process may have published it while we waited.
    if let Some(id) = &identity
        && let Some(hit) = cache.lookup(&req.key_for(id, &variant, &toolchain))
    {
        on_event(BuildEvent::CacheHit {
            key: hit.meta.key.clone(),
        });
        return Ok(hit);
    }
    on_event(BuildEvent::FetchingSource);
    let tree = req.source.prepare(cache)?;
    if !variant.patches.is_empty() {
        crate::variant::check_applies(&variant, &tree)?;
    }
    std::fs::create_dir_all(&build_dir).at(&build_dir)?;
    let log_path = build_dir.join("build.log");
    let mut log = std::fs::File::create(&log_path).at(&log_path)?;

    on_event(BuildEvent::Configuring {
        build_dir: build_dir.clone(),
    });
    let fragments = match req.recipe {
        Recipe::Minimal => req.fragments(),
        Recipe::UpstreamSelftest => {
            let dir = tree.join("tools/testing/selftests/liveupdate");
            ["config.x86_64", "config"]
                .iter()
                .map(|f| {
                    Ok(Fragment {
                        name: format!("selftests/liveupdate/{f}"),
                        text: std::fs::read_to_string(dir.join(f)).at(dir.join(f))?,
                    })
                })
                .collect::<Result<Vec<_>, KernelError>>()?
        }
    };
    let merged_path = build_dir.join("luo-harness-fragments.config");
    write_if_changed(&merged_path, &config::merge(&fragments))?;
    let jobs = req
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) + 1);
    let ccache = ccache_env(cache, &build_dir)?;
    let make = |target: &[&str]| {
        let mut c = Command::new("make");
        c.current_dir(&tree)
            .args(ARCH_ARGS)
            .arg(format!("O={}", build_dir.display()))
            .args(target);
        c.envs(ccache.iter().cloned());
        c
    };
    match req.recipe {
        Recipe::Minimal => run_logged(
            make(&[
                &format!("KCONFIG_ALLCONFIG={}", merged_path.display()),
                "allnoconfig",
            ]),
            &mut log,
            &log_path,
            &mut |_| {},
        )?,
        Recipe::UpstreamSelftest => {
            // vmtest.sh: `cat config.x86_64 config > .config; make olddefconfig`.
            std::fs::copy(&merged_path, build_dir.join(".config")).at(build_dir.join(".config"))?;
            run_logged(make(&["olddefconfig"]), &mut log, &log_path, &mut |_| {})?
        }
    }
    let final_config =
        std::fs::read_to_string(build_dir.join(".config")).at(build_dir.join(".config"))?;
    let mut missing = config::verify(&fragments, &config::parse_dot_config(&final_config));
    if !missing.is_empty() {
        config::explain(&mut missing, &tree);
        return Err(KernelError::MissingOptions(missing));
    }

    let marker = cache
        .root()
        .join("locks")
        .join(format!("{lock_name}.patched"));
    let with_patches = crate::variant::Applied::apply(&variant, &tree, &marker)?;
    let steps_file = build_dir.join(".luo-harness-steps");
    let estimate = std::fs::read_to_string(&steps_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(COLD_BUILD_STEPS);
    let mut done = 0u64;
    let result = run_logged(
        make(&[&format!("-j{jobs}"), "bzImage"]),
        &mut log,
        &log_path,
        &mut |line| {
            if let Some(what) = build_step(line) {
                done += 1;
                on_event(BuildEvent::Step {
                    done,
                    estimate,
                    what,
                });
            }
        },
    );
    drop(with_patches);
    result?;
    let _ = std::fs::write(&steps_file, format!("{}\n", done.max(1)));

    let release = std::fs::read_to_string(build_dir.join("include/config/kernel.release"))
        .unwrap_or_default()
        .trim()
        .to_string();
    // Without a key (tree outside git) the result is published under the bzImage's own hash.
    let key = match &identity {
        Some(id) => req.key_for(id, &variant, &toolchain),
        None => {
            let bytes = std::fs::read(build_dir.join("arch/x86/boot/bzImage")).at(&build_dir)?;
            req.key_for(
                &format!("{location}#{}", hex::encode(sha2::Sha256::digest(&bytes))),
                &variant,
                &toolchain,
            )
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let meta = KernelMeta {
        key: key.clone(),
        source: location,
        variant: variant.name.to_string(),
        release,
        toolchain,
        built_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        build_seconds: seconds,
    };
    log.flush().at(&log_path)?;
    let built = cache.publish(
        meta,
        &[
            ("bzImage", &build_dir.join("arch/x86/boot/bzImage")),
            ("vmlinux", &build_dir.join("vmlinux")),
            ("System.map", &build_dir.join("System.map")),
            ("config", &build_dir.join(".config")),
            ("build.log", &log_path),
        ],
    )?;
    on_event(BuildEvent::Published { key, seconds });
    Ok(built)
}

use sha2::Digest;

/// ccache for incremental builds only. A variant's patch applied and reversed makes make recompile
/// everything that includes a touched file although most of it did not change: ccache turns those
/// into hits. On a cold build it would only add its own cost (measured: 454 s instead of about
/// 300 s), so an empty build directory gets none. It runs in masquerade mode (a `gcc` link first
/// in PATH) so the compiler command kbuild records is `gcc` either way, and in depend mode, which
/// needs no extra preprocessor pass. It does not change the output, so it is not part of the key.
fn ccache_env(cache: &Cache, build_dir: &Path) -> Result<Vec<(String, String)>, KernelError> {
    let Some(ccache) = hosttools::which("ccache") else {
        return Ok(vec![]);
    };
    if !build_dir.join("vmlinux").exists() {
        return Ok(vec![]);
    }
    let bin = cache.root().join("ccache-bin");
    std::fs::create_dir_all(&bin).at(&bin)?;
    let gcc = bin.join("gcc");
    if std::fs::read_link(&gcc).ok().as_deref() != Some(ccache.as_path()) {
        let _ = std::fs::remove_file(&gcc);
        std::os::unix::fs::symlink(&ccache, &gcc).at(&gcc)?;
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ok(vec![
        ("PATH".into(), path),
        (
            "CCACHE_DIR".into(),
            cache.root().join("ccache").display().to_string(),
        ),
        ("CCACHE_MAXSIZE".into(), "4G".into()),
        ("CCACHE_DEPEND".into(), "1".into()),
    ])
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), KernelError> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).at(path)?;
    }
    Ok(())
}

/// `  CC      kernel/liveupdate/luo_session.o` -> Some("CC kernel/liveupdate/luo_session.o").
fn build_step(line: &str) -> Option<String> {
    let mut w = line.split_whitespace();
    let tag = w.next()?;
    let what = w.next()?;
    let is_tag = line.starts_with("  ")
        && tag.len() <= 8
        && tag.chars().all(|c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '[' || c == ']'
        });
    is_tag.then(|| format!("{tag} {what}"))
}

/// Runs a command with stdout and stderr merged into the log, calling `on_line` for each line. On
/// failure the error carries the log's last 40 lines.
fn run_logged(
    mut cmd: Command,
    log: &mut std::fs::File,
    log_path: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), KernelError> {
    let (reader, writer) = std::io::pipe().at(log_path)?;
    let writer2 = writer.try_clone().at(log_path)?;
    let _ = writeln!(log, "$ {cmd:?}");
    tracing::debug!(?cmd, "running");
    let mut child = cmd
        .stdout(writer)
        .stderr(writer2)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| KernelError::Command {
            command: format!("{cmd:?}"),
            status: e.to_string(),
            output: String::new(),
        })?;
    drop(cmd); // closes our copies of the pipe's write end, so EOF arrives when make exits
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        on_line(&line);
    }
    let status = child.wait().at(log_path)?;
    if status.success() {
        return Ok(());
    }
    let _ = log.flush();
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    Err(KernelError::BuildFailed {
        log: log_path.to_path_buf(),
        tail,
    })
}

#[cfg(test)]
mod tests {
    use super::build_step;
    #[test]
    fn recognises_build_steps_only() {
        assert_eq!(
            build_step("  CC      kernel/liveupdate/luo_session.o").as_deref(),
            Some("CC kernel/liveupdate/luo_session.o")
        );
        assert_eq!(build_step("  LD [M]  foo.ko").as_deref(), Some("LD [M]"));
        assert_eq!(build_step("make[1]: Entering directory '/x'"), None);
        assert_eq!(build_step("kernel/x.c:1:2: warning: unused"), None);
    }
}
