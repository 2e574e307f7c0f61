//! The guest agent for an architecture other than the host's (arm64), built when a run first needs
//! it from the sources the harness embeds (a tar archive, harness/build.rs), and cached by those
//! sources, the compiler and the architecture.
//!
//! rustup here has only the x86_64 standard library and cannot download another, so std is
//! compiled for the target with `-Zbuild-std` from its sources: Debian's `rust-src` of exactly
//! the installed rustc's version (trixie-backports carries one per stable release), placed where
//! rustup's own rust-src component goes (`<sysroot>/lib/rustlib/src/rust`), so cargo finds it with
//! no internal variables. `RUSTC_BOOTSTRAP=1` is what lets stable cargo take `-Z`; it is set for
//! this one build only. The x86 agent (harness/build.rs) never sees any of it.

mod busybox;
mod rust_src;

pub use busybox::busybox;
pub use rust_src::RustSrc;

use luo_kernels::Arch;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CrossError {
    #[diagnostic(help("bash ci/install-deps installs it"))]
    #[error("{tool} not found: building the {arch} agent needs it ({package})")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
        arch: Arch,
    },
    #[error("{what}: {detail}")]
    Command { what: String, detail: String },
    #[diagnostic(help(
        "Debian's rust-src must be the installed rustc's version exactly; install a rustc that \
         trixie-backports has a rust-src for, or the rust-src component with rustup"
    ))]
    #[error("no rust-src {rustc} in Debian's trixie-backports (it has: {available})")]
    NoRustSrc { rustc: String, available: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Kernel(#[from] luo_kernels::KernelError),
    #[error("Debian's busybox-static for {arch} {why}")]
    WrongBusybox {
        arch: Arch,
        why: luo_kernels::executable::NotGuestExecutable,
    },
    #[error("the agent built for {arch} {why}")]
    WrongBinary {
        arch: Arch,
        why: luo_kernels::executable::NotGuestExecutable,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CrossError + '_ {
    move |source| CrossError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `cmd` to completion; its output goes into the error when it fails.
pub(crate) fn run(what: &str, cmd: &mut Command) -> Result<Vec<u8>, CrossError> {
    let out = cmd.output().map_err(|e| CrossError::Command {
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        let tail: Vec<&str> = std::str::from_utf8(&out.stderr)
            .unwrap_or("")
            .lines()
            .rev()
            .take(30)
            .collect();
        return Err(CrossError::Command {
            what: what.to_string(),
            detail: format!(
                "{}\n{}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    Ok(out.stdout)
}

/// The cache key of the agent for `arch` built by `rustc` from `sources` (the archive).
pub fn key(sources: &[u8], arch: Arch, rustc: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        b"luo-cross-agent-v2".as_slice(),
        arch.name().as_bytes(),
        rustc.as_bytes(),
        sources,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// The installed rustc's version line (`rustc 1.95.0 (59807616e 2026-04-14)`).
pub fn rustc_version() -> Result<String, CrossError> {
    let out = run("rustc --version", Command::new("rustc").arg("--version"))?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The static agent for `arch`, built from `sources`, a tar archive of a workspace holding the
/// agent (or found in the cache under `cache_root/agents/`). `on_step` hears what is being done,
/// for a progress line.
pub fn agent(
    cache: &luo_kernels::Cache,
    sources: &[u8],
    arch: Arch,
    on_step: &mut dyn FnMut(&str),
) -> Result<PathBuf, CrossError> {
    let rustc = rustc_version()?;
    let dir = cache.root().join("agents");
    let key = key(sources, arch, &rustc);
    let built = dir.join(format!("{arch}-{key}")).join("luo-agent");
    let ready = || built.is_file().then(|| built.clone());
    cache.get_or_make(&format!("agent-{arch}"), ready, || {
        build_agent(cache, sources, arch, &rustc, &built, on_step)?;
        Ok(built.clone())
    })
}

/// Builds the agent from `sources` and puts it at `built`, through a directory of its own
/// renamed into place.
fn build_agent(
    cache: &luo_kernels::Cache,
    sources: &[u8],
    arch: Arch,
    rustc: &str,
    built: &Path,
    on_step: &mut dyn FnMut(&str),
) -> Result<(), CrossError> {
    let dir = cache.root().join("agents");
    let key = key(sources, arch, rustc);
    if luo_kernels::hosttools::which(arch.gcc()).is_none() {
        return Err(CrossError::MissingTool {
            tool: arch.gcc(),
            package: "gcc-aarch64-linux-gnu",
            arch,
        });
    }
    on_step("rust-src");
    RustSrc::for_rustc(rustc)?.install(cache)?;
    let root = dir.join(format!(".src-{arch}-{key}"));
    let _ = std::fs::remove_dir_all(&root);
    let mut archive = tar::Archive::new(sources);
    // The archive's files all say 1970 (harness/build.rs makes it reproducible), and cargo
    // finds a crate fresh when its files are older than its last build in the shared target
    // directory, wherever the workspace was: so changed sources would give the old agent under
    // the new key. Unpacked now, they are newer than any earlier build.
    archive.set_preserve_mtime(false);
    archive.unpack(&root).map_err(io(&root))?;
    on_step("cargo build -Zbuild-std");
    let target_dir = dir.join("target");
    let triple = arch.rust_target();
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace('-', "_")
    );
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Not --locked: the archive's workspace has fewer members than Cargo.lock was made for, so
    // cargo drops their part of it; the agent's own dependencies keep their locked versions.
    cmd.current_dir(&root)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("guest-images/agent/Cargo.toml"))
        .args(["--profile", "agent", "-p", "luo-agent", "--target", triple])
        .args(["-Zbuild-std=std,panic_abort"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(linker_var, arch.gcc())
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    // The outer build's flags are for the host; the agent gets exactly its own (the same list as
    // harness/build.rs removes for the x86 agent: a build script cannot share this crate's code).
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    tracing::info!(?cmd, "building the {arch} agent");
    run(&format!("building the {arch} agent"), &mut cmd)?;
    let out = target_dir.join(triple).join("agent/luo-agent");
    let bytes = std::fs::read(&out).map_err(io(&out))?;
    luo_kernels::executable::check_static(&bytes, arch)
        .map_err(|why| CrossError::WrongBinary { arch, why })?;
    let parent = built.parent().expect("a file under agents/");
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    std::fs::write(tmp.join("luo-agent"), &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, parent).map_err(io(parent))?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_sources_the_compiler_and_the_architecture() {
        let base = key(b"sources", Arch::Aarch64, "rustc 1.95.0");
        assert_eq!(base, key(b"sources", Arch::Aarch64, "rustc 1.95.0"));
        assert_ne!(base, key(b"sources", Arch::Aarch64, "rustc 1.96.0"));
        assert_ne!(base, key(b"sources", Arch::X86_64, "rustc 1.95.0"));
        assert_ne!(base, key(b"sourcez", Arch::Aarch64, "rustc 1.95.0"));
    }
}
