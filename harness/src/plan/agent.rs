//! The guest agent binary. For x86_64: the static build embedded at compile time
//! (harness/build.rs), or the file `LUO_HARNESS_AGENT` names (a development or fault-injecting
//! build). For arm64: the file `LUO_HARNESS_AGENT_AARCH64` names, or the cross-built one
//! (luo-cross), which the resolver finds or builds (plan/mod.rs).

use luo_kernels::Arch;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/luo-agent"));

/// The agent's bytes and where they came from.
pub struct Agent {
    pub bytes: Cow<'static, [u8]>,
    pub from: String,
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
            from: "embedded".into(),
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
        from: path.display().to_string(),
    })
}

/// Where the workspace the harness was built from is: the arm64 agent is built from its sources.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ is inside the workspace")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_agent_is_a_static_x86_64_executable() {
        let elf = super::EMBEDDED;
        assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
        assert_eq!(elf[4], 2, "not 64-bit");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 62, "not x86-64");
        // No program interpreter: it runs as PID 1 in an initramfs without a libc.
        let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (
            u16::from_le_bytes([elf[54], elf[55]]) as usize,
            u16::from_le_bytes([elf[56], elf[57]]) as usize,
        );
        for i in 0..phnum {
            let p_type = u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().unwrap());
            assert_ne!(p_type, 3, "PT_INTERP: the agent is dynamically linked");
        }
    }
}
