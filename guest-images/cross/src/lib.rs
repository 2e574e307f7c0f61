//! The guest agent for an architecture other than the host's (arm64), built when a run first needs
//! it and cached by its sources, the compiler and the architecture.
//!
//! rustup here has only the x86_64 standard library and cannot download another, so std is
//! compiled for the target with `-Zbuild-std` from its sources: Debian's `rust-src` of exactly
//! the installed rustc's version (trixie-backports carries one per stable release), placed where
//! rustup's own rust-src component goes (`<sysroot>/lib/rustlib/src/rust`), so cargo finds it with
//! no internal variables. `RUSTC_BOOTSTRAP=1` is what lets stable cargo take `-Z`; it is set for
//! this one build only. The x86 agent (harness/build.rs) never sees any of it.

mod rust_src;

pub use rust_src::RustSrc;

use luo_kernels::Arch;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CrossError {
    #[diagnostic(help(
        "the arm64 agent is built from the luo-harness checkout the binary was built from; run \
         it from that checkout, or give a prebuilt agent in LUO_HARNESS_AGENT_AARCH64"
    ))]
    #[error("the agent's sources are not at {0}")]
    NoSources(PathBuf),
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
    #[error("the agent built for {arch} is not a static {arch} executable: {why}")]
    WrongBinary { arch: Arch, why: String },
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

/// What the agent is built from, relative to the workspace: a change to any of it is a new key.
const SOURCES: &[&str] = &[
    "guest-images/agent/Cargo.toml",
    "guest-images/agent/src",
    "protocol/Cargo.toml",
    "protocol/src",
    "Cargo.lock",
    "Cargo.toml",
];

/// The cache key of the agent for `arch` built by `rustc` from the workspace at `root`.
pub fn key(root: &Path, arch: Arch, rustc: &str) -> Result<String, CrossError> {
    let mut files = Vec::new();
    for s in SOURCES {
        collect(&root.join(s), &mut files)?;
    }
    files.sort();
    let mut h = Sha256::new();
    for part in [
        b"luo-cross-agent-v1".as_slice(),
        arch.name().as_bytes(),
        rustc.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&f).map_err(io(&f))?;
        for part in [rel.as_bytes(), &bytes] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    Ok(hex::encode(h.finalize())[..16].to_string())
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), CrossError> {
    if path.is_dir() {
        for e in std::fs::read_dir(path).map_err(io(path))?.flatten() {
            collect(&e.path(), out)?;
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    } else {
        return Err(CrossError::NoSources(path.to_path_buf()));
    }
    Ok(())
}

/// The installed rustc's version line (`rustc 1.95.0 (59807616e 2026-04-14)`).
pub fn rustc_version() -> Result<String, CrossError> {
    let out = run("rustc --version", Command::new("rustc").arg("--version"))?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The static agent for `arch`, built from the workspace at `root` (or found in the cache under
/// `cache_root/agents/`). `on_step` hears what is being done, for a progress line.
pub fn agent(
    cache: &luo_kernels::Cache,
    root: &Path,
    arch: Arch,
    on_step: &mut dyn FnMut(&str),
) -> Result<PathBuf, CrossError> {
    if !root.join("guest-images/agent/Cargo.toml").is_file() {
        return Err(CrossError::NoSources(root.join("guest-images/agent")));
    }
    let rustc = rustc_version()?;
    let dir = cache.root().join("agents");
    let built = dir
        .join(format!("{arch}-{}", key(root, arch, &rustc)?))
        .join("luo-agent");
    if built.is_file() {
        return Ok(built);
    }
    let _lock = cache.lock(&format!("agent-{arch}"))?;
    if built.is_file() {
        return Ok(built);
    }
    if luo_kernels::hosttools::which(arch.gcc()).is_none() {
        return Err(CrossError::MissingTool {
            tool: arch.gcc(),
            package: "gcc-aarch64-linux-gnu",
            arch,
        });
    }
    on_step("rust-src");
    RustSrc::for_rustc(&rustc)?.install(cache)?;
    on_step("cargo build -Zbuild-std");
    let target_dir = dir.join("target");
    let triple = arch.rust_target();
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace('-', "_")
    );
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("guest-images/agent/Cargo.toml"))
        .args([
            "--locked",
            "--profile",
            "agent",
            "-p",
            "luo-agent",
            "--target",
            triple,
        ])
        .args(["-Zbuild-std=std,panic_abort"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(linker_var, arch.gcc())
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
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
    check_static(&bytes, arch).map_err(|why| CrossError::WrongBinary { arch, why })?;
    let parent = built.parent().expect("a file under agents/");
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    std::fs::write(tmp.join("luo-agent"), &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, parent).map_err(io(parent))?;
    Ok(built)
}

/// Why `elf` is not a static executable for `arch`, if it is not.
pub fn check_static(elf: &[u8], arch: Arch) -> Result<(), String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return Err("not a 64-bit ELF file".into());
    }
    let machine = u16::from_le_bytes([elf[18], elf[19]]);
    if machine != arch.elf_machine() {
        let what =
            Arch::from_elf_machine(machine).map_or(format!("machine {machine}"), |a| a.to_string());
        return Err(format!("it is for {what}"));
    }
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes([elf[54], elf[55]]) as usize;
    let phnum = u16::from_le_bytes([elf[56], elf[57]]) as usize;
    for i in 0..phnum {
        let Some(p) = elf.get(phoff + i * phentsize..phoff + i * phentsize + 4) else {
            return Err("truncated program headers".into());
        };
        if u32::from_le_bytes(p.try_into().unwrap()) == 3 {
            return Err("dynamically linked (PT_INTERP)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
        e
    }

    #[test]
    fn only_a_static_executable_of_the_architecture_is_accepted() {
        assert_eq!(check_static(&elf(183, false), Arch::Aarch64), Ok(()));
        assert!(
            check_static(&elf(62, false), Arch::Aarch64)
                .unwrap_err()
                .contains("x86_64")
        );
        assert!(
            check_static(&elf(183, true), Arch::Aarch64)
                .unwrap_err()
                .contains("dynamic")
        );
        assert!(check_static(b"#!/bin/sh\n", Arch::Aarch64).is_err());
    }

    #[test]
    fn the_key_follows_the_sources_the_compiler_and_the_architecture() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for s in SOURCES {
            let p = r.join(s);
            if s.ends_with("src") {
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("main.rs"), s.as_bytes()).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, s.as_bytes()).unwrap();
            }
        }
        let base = key(r, Arch::Aarch64, "rustc 1.95.0").unwrap();
        assert_eq!(base, key(r, Arch::Aarch64, "rustc 1.95.0").unwrap());
        assert_ne!(base, key(r, Arch::Aarch64, "rustc 1.96.0").unwrap());
        assert_ne!(base, key(r, Arch::X86_64, "rustc 1.95.0").unwrap());
        std::fs::write(r.join("protocol/src/main.rs"), b"changed").unwrap();
        assert_ne!(base, key(r, Arch::Aarch64, "rustc 1.95.0").unwrap());
        std::fs::remove_dir_all(r.join("protocol/src")).unwrap();
        assert!(matches!(
            key(r, Arch::Aarch64, "rustc 1.95.0"),
            Err(CrossError::NoSources(_))
        ));
    }
}
