//! The fixed limits a scenario file is checked against, the same on every machine (README: "What is
//! guaranteed"). Anything past them is bad input, found by `check` before any VM.

/// A scenario file's size.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// A line of a scenario file.
pub const MAX_LINE_BYTES: usize = 4096;
/// YAML aliases (`*name`) in one file: enough for shared step lists, not for a billion laughs.
pub const MAX_ALIASES: usize = 64;
/// YAML nesting depth.
pub const MAX_YAML_DEPTH: usize = 48;
/// YAML nodes in one file.
pub const MAX_YAML_NODES: usize = 200_000;
/// Steps once repeats are unrolled, and repeat nesting: see steps::{MAX_UNROLLED_STEPS, MAX_DEPTH}.
pub use super::steps::{MAX_DEPTH, MAX_UNROLLED_STEPS};

/// Guest memory, MiB: KHO's scratch areas need room below, QEMU's and the host's above.
pub const MEMORY_MIB: std::ops::RangeInclusive<u64> = 128..=16384;
/// One memfd's size.
pub const MAX_MEMFD_BYTES: u64 = 1 << 30;
/// A request's own timeout (`step_timeout_s`) and a program's (`exec.timeout_s`), seconds.
pub const TIMEOUT_S: std::ops::RangeInclusive<u64> = 1..=3600;
/// A kexec's extra command line: x86 allows 2048 bytes in all, and the harness's own parameters
/// (console, boot index, TSC rate, devices) take up to about 600 of them.
pub const MAX_CMDLINE_BYTES: usize = 1024;
/// A LUO session name: 1 to 63 bytes (LIVEUPDATE_SESSION_NAME_LENGTH 64, with the NUL).
pub const SESSION_NAME_BYTES: std::ops::RangeInclusive<usize> = 1..=63;
/// A handle, label or background name.
pub const MAX_NAME_BYTES: usize = 128;
/// A raw ioctl's argument buffer.
/// An `exec`'s stdin: it travels in one request (a file is the way for more).
pub const MAX_STDIN_BYTES: usize = 64 << 10;
/// A file staged beside a program (programs and `files`): the share is for programs, not data sets.
pub const MAX_STAGED_BYTES: u64 = 256 << 20;
pub const RAW_IOCTL_BYTES: std::ops::RangeInclusive<u32> = 4..=4096;

/// Whether `s` can name a handle: letters, digits and `_ - . : + =` (after template expansion).
pub fn is_handle(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:+=".contains(c))
}

/// `CONFIG_FOO_BAR` or `FOO_BAR`.
pub fn is_kconfig_symbol(s: &str) -> bool {
    let sym = s.strip_prefix("CONFIG_").unwrap_or(s);
    !sym.is_empty()
        && sym
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !sym.starts_with(|c: char| c.is_ascii_digit())
}

/// `7.2`, `7.2.13`, `6.19`.
pub fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_symbols_and_versions() {
        assert!(
            is_handle("m0-1")
                && is_handle("s.a")
                && !is_handle("")
                && !is_handle("a b")
                && !is_handle(&"x".repeat(129))
        );
        assert!(is_kconfig_symbol("CONFIG_LIVEUPDATE") && is_kconfig_symbol("KEXEC_FILE"));
        assert!(
            !is_kconfig_symbol("config_x")
                && !is_kconfig_symbol("CONFIG_")
                && !is_kconfig_symbol("A-B")
        );
        assert!(
            is_version("7.2")
                && is_version("7.2.13")
                && !is_version("banana")
                && !is_version("7")
                && !is_version("7.2.13.1")
        );
    }
}
