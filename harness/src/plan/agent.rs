//! The guest agent binary. For x86_64: the static build embedded at compile time
//! (harness/build.rs), or the file `LUO_HARNESS_AGENT` names (a development or fault-injecting
//! build). For arm64: the file `LUO_HARNESS_AGENT_AARCH64` names, or the one luo-cross builds from
//! the embedded sources (`SOURCES`), which the resolver finds or builds (plan/mod.rs).

use luo_kernels::Arch;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/luo-agent"));

/// The agent's bytes and the file they came from (none: the embedded build).
pub struct Agent {
    pub bytes: Cow<'static, [u8]>,
    pub file: Option<PathBuf>,
}

impl Agent {
    /// Where it came from, for messages.
    pub fn from(&self) -> String {
        self.file
            .as_ref()
            .map_or("embedded".into(), |p| p.display().to_string())
    }
}

/// `LUO_HARNESS_AGENT` names a file that cannot be read.
pub struct Unreadable {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The variable that names a prebuilt agent for `arch`.
pub fn override_var(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "LUO_HARNESS_AGENT",
        Arch::Aarch64 => "LUO_HARNESS_AGENT_AARCH64",
    }
}

/// The agent file the environment names for `arch`, if any.
pub fn overridden(arch: Arch) -> Option<PathBuf> {
    std::env::var_os(override_var(arch))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The x86_64 agent: the named file, or the embedded build.
pub fn agent() -> Result<Agent, Unreadable> {
    match overridden(Arch::X86_64) {
        Some(path) => from_file(&path),
        None => Ok(Agent {
            bytes: Cow::Borrowed(EMBEDDED),
            file: None,
        }),
    }
}

/// The agent at `path` (for `arch`: named by the environment, staged or cross-built).
pub fn from_file(path: &Path) -> Result<Agent, Unreadable> {
    let bytes = std::fs::read(path).map_err(|source| Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Agent {
        bytes: Cow::Owned(bytes),
        file: Some(path.to_path_buf()),
    })
}

/// The agent's sources as harness/build.rs archived them: what the other architectures' agents
/// are built from (luo-cross), so they match the embedded x86 agent with or without a checkout.
pub static SOURCES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agent-sources.tar"));

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_sources_are_a_workspace_of_the_agent_and_the_protocol_alone() {
        let mut names = Vec::new();
        let mut manifest = String::new();
        for e in tar::Archive::new(super::SOURCES).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name == "Cargo.toml" {
                std::io::Read::read_to_string(&mut e, &mut manifest).unwrap();
            }
            names.push(name);
        }
        for needed in [
            "Cargo.lock",
            "guest-images/agent/Cargo.toml",
            "guest-images/agent/src/main.rs",
            "protocol/Cargo.toml",
            "protocol/src/lib.rs",
        ] {
            assert!(
                names.iter().any(|n| n == needed),
                "{needed} not in {names:?}"
            );
        }
        assert!(
            manifest.contains(r#"members = ["guest-images/agent", "protocol"]"#)
                && !manifest.contains("default-members")
                && manifest.contains("[profile.agent]"),
            "{manifest}"
        );
    }

    #[test]
    fn the_embedded_agent_is_a_static_x86_64_executable() {
        // No program interpreter: it runs as PID 1 in an initramfs without a libc.
        assert_eq!(
            luo_kernels::executable::check_static(super::EMBEDDED, luo_kernels::Arch::X86_64),
            Ok(())
        );
    }
}
