//! Host tools a kernel build needs, each with the Debian package that provides it.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTool {
    pub tool: String,
    pub package: String,
}

/// (what to look for, package). Paths starting with '/' are files (headers); others are commands.
pub const KERNEL_BUILD: &[(&str, &str)] = &[
    ("gcc", "build-essential"),
    ("make", "make"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("cpio", "cpio"),
    ("rsync", "rsync"),
    ("lz4", "lz4"),
    ("xz", "xz-utils"),
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/openssl/ssl.h", "libssl-dev"),
];

pub const DEBIAN_SOURCE: &[(&str, &str)] =
    &[("apt-get", "apt"), ("dpkg-deb", "dpkg"), ("tar", "tar")];

pub const VM: &[(&str, &str)] = &[(
    "qemu-system-x86_64",
    "qemu-system-x86 (bookworm-backports: see ci/install-deps)",
)];

pub fn check(tools: &[(&'static str, &'static str)]) -> Vec<MissingTool> {
    tools
        .iter()
        .filter(|(tool, _)| {
            if tool.starts_with('/') {
                !Path::new(tool).exists()
            } else {
                which(tool).is_none()
            }
        })
        .map(|&(tool, package)| MissingTool {
            tool: tool.into(),
            package: package.into(),
        })
        .collect()
}

/// GCC's plugin headers, which the debug flavour's KSTACK_ERASE is built with (Kconfig offers
/// GCC_PLUGINS only where `gcc -print-file-name=plugin` holds them): missing, with its package.
pub fn gcc_plugins() -> Option<MissingTool> {
    let out = std::process::Command::new("gcc")
        .arg("-print-file-name=plugin")
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let header = Path::new(&dir).join("include/plugin-version.h");
    if header.is_file() {
        return None;
    }
    let version = std::process::Command::new("gcc")
        .arg("-dumpversion")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let major = version.split('.').next().unwrap_or("12");
    Some(MissingTool {
        tool: header.display().to_string(),
        package: format!("gcc-{major}-plugin-dev"),
    })
}

pub fn which(cmd: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

pub fn require(tools: &[(&'static str, &'static str)]) -> Result<(), crate::KernelError> {
    let missing = check(tools);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(crate::KernelError::MissingTools(missing))
    }
}
