//! Builds the static guest agent (guest-images/agent) and embeds it in the luo-harness binary, so an
//! installed binary needs no source checkout, and no cargo, at run time.
//!
//! The agent needs `-C target-feature=+crt-static` with an explicit `--target`; set for the whole
//! workspace it would break every proc-macro, so it is a separate cargo invocation with its own
//! target directory (sharing the outer one would wait on the outer build's lock forever).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let agent = root.join("guest-images/agent");
    for dir in [agent.join("src"), root.join("protocol/src")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for file in [
        agent.join("Cargo.toml"),
        root.join("protocol/Cargo.toml"),
        root.join("Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out.join("agent-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(agent.join("Cargo.toml"))
        .args(["--profile", "agent", "--target", TARGET, "-p", "luo-agent"])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags are for the host crates; the agent gets exactly its own.
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    let status = cmd.status().expect("running cargo for the guest agent");
    assert!(
        status.success(),
        "building the static guest agent failed ({status})"
    );
    let built = target_dir.join(TARGET).join("agent/luo-agent");
    copy_if_changed(&built, &out.join("luo-agent"));
}

fn copy_if_changed(src: &Path, dst: &Path) {
    let new = std::fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    if std::fs::read(dst).ok().as_deref() != Some(&new[..]) {
        std::fs::write(dst, new).unwrap();
    }
}
