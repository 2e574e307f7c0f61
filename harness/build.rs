//! Builds the static guest agent (guest-images/agent) and embeds it in the luo-harness binary, so an
//! installed binary needs no source checkout, and no cargo, at run time. Embeds the agent's sources
//! too, as a tar archive: the agents for other architectures are built from them when a run first
//! needs one (guest-images/cross), so they are the same agent, of the same protocol, as the x86
//! one, with or without the checkout.
//!
//! The agent needs `-C target-feature=+crt-static` with an explicit `--target`; set for the whole
//! workspace it would break every proc-macro, so it is a separate cargo invocation with its own
//! target directory (sharing the outer one would wait on the outer build's lock forever).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// What the agent is built from, relative to the workspace (the root manifest for its
/// `[workspace.package]`, `[workspace.dependencies]` and `[profile.agent]`).
const AGENT_SOURCES: &[&str] = &[
    "guest-images/agent/Cargo.toml",
    "guest-images/agent/src",
    "protocol/Cargo.toml",
    "protocol/src",
    "Cargo.lock",
    "Cargo.toml",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let agent = root.join("guest-images/agent");
    for s in AGENT_SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(s).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    write_if_changed(&out.join("agent-sources.tar"), &sources_archive(root));
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
    let agent_bytes = std::fs::read(&built).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    write_if_changed(&out.join("luo-agent"), &agent_bytes);
}

fn write_if_changed(dst: &Path, new: &[u8]) {
    if std::fs::read(dst).ok().as_deref() != Some(new) {
        std::fs::write(dst, new).unwrap();
    }
}

/// AGENT_SOURCES as a tar archive that builds on its own: the root manifest's members cut to the
/// agent and the protocol (cargo then keeps their part of Cargo.lock). Entries sorted, with no
/// times or owners, so the same sources make the same bytes (luo-cross keys its cache by them).
fn sources_archive(root: &Path) -> Vec<u8> {
    let mut files = Vec::new();
    for s in AGENT_SOURCES {
        collect(root, &root.join(s), &mut files);
    }
    files.sort();
    let mut tar = tar::Builder::new(Vec::new());
    for rel in files {
        let path = root.join(&rel);
        let mut data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if rel == Path::new("Cargo.toml") {
            data = agent_workspace(&String::from_utf8(data).expect("Cargo.toml is UTF-8"))
                .into_bytes();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, &rel, &data[..])
            .unwrap_or_else(|e| panic!("archiving {}: {e}", rel.display()));
    }
    tar.into_inner().expect("an in-memory archive")
}

/// The root manifest with the agent and the protocol as its only members.
fn agent_workspace(manifest: &str) -> String {
    let mut members = 0;
    let lines: Vec<&str> = manifest
        .lines()
        .filter(|l| !l.starts_with("default-members"))
        .map(|l| match l.starts_with("members = [") && l.ends_with(']') {
            true => {
                members += 1;
                r#"members = ["guest-images/agent", "protocol"]"#
            }
            false => l,
        })
        .collect();
    assert_eq!(
        members, 1,
        "Cargo.toml: expected one one-line `members = [...]`"
    );
    lines.join("\n") + "\n"
}

fn collect(root: &Path, path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            collect(root, &e.path(), out);
        }
    } else {
        out.push(path.strip_prefix(root).unwrap().to_path_buf());
    }
}
