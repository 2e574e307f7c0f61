//! The guest architectures: what kbuild, the cross compiler and the published boot image are for
//! each. The host is always x86_64; an arm64 kernel is cross-built.

use std::fmt;
use std::str::FromStr;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    X86_64,
    Aarch64,
}

/// Every architecture, in the order `--arch` lists them.
pub const ALL: &[Arch] = &[Arch::X86_64, Arch::Aarch64];

impl Arch {
    /// The name `--arch`, `arch:` and the rust/GNU triples use.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for it (its packages' `Architecture:`).
    pub fn debian_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// kbuild's ARCH= and, for a cross build, CROSS_COMPILE=.
    pub fn make_args(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["ARCH=x86_64"],
            Arch::Aarch64 => &["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"],
        }
    }

    /// The C compiler that builds this architecture's kernel and guest programs.
    pub fn gcc(self) -> &'static str {
        match self {
            Arch::X86_64 => "gcc",
            Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        }
    }

    pub fn ld(self) -> &'static str {
        match self {
            Arch::X86_64 => "ld",
            Arch::Aarch64 => "aarch64-linux-gnu-ld",
        }
    }

    /// The Debian package that provides `gcc()`.
    pub fn gcc_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "build-essential",
            Arch::Aarch64 => "gcc-aarch64-linux-gnu (ci/install-deps)",
        }
    }

    /// The make target that builds the image kexec_file_load takes: x86's bzImage; arm64's
    /// uncompressed Image (its kexec has no loader for Image.gz or EFI zboot).
    pub fn image_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "bzImage",
            Arch::Aarch64 => "Image",
        }
    }

    /// Where `image_target()` lands in the build directory.
    pub fn image_path(self) -> &'static str {
        match self {
            Arch::X86_64 => "arch/x86/boot/bzImage",
            Arch::Aarch64 => "arch/arm64/boot/Image",
        }
    }

    /// The ELF `e_machine` of its programs (EM_X86_64, EM_AARCH64).
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }

    /// The Rust target its static guest binaries are built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Whether the `image: systemd` root exists for this machine (it is amd64 Debian; docs/arm64.md
    /// says what an arm64 one needs). Where it does not, the scenarios that use it are skipped and
    /// the kernels leave out systemd.config, whose options only that image needs.
    pub fn has_systemd_image(self) -> bool {
        self == Arch::X86_64
    }

    /// What an architecture adds to the name of a directory it has beside x86_64's: nothing for
    /// x86_64, whose directories (build trees, caches, stages) kept the names they had before
    /// there was a second architecture; `-<name>` for the others.
    pub fn dir_suffix(self) -> String {
        match self {
            Arch::X86_64 => String::new(),
            other => format!("-{other}"),
        }
    }

    /// The architecture an ELF `e_machine` is for, if it is one of ours.
    pub fn from_elf_machine(machine: u16) -> Option<Arch> {
        ALL.iter().copied().find(|a| a.elf_machine() == machine)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An architecture name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported architecture `{0}`: expected one of x86_64, aarch64 (arm64)")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Arch, UnknownArch> {
        match s {
            "x86_64" | "x86-64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(UnknownArch(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_debian_and_kernel_spellings_are_accepted() {
        for a in ALL {
            assert_eq!(a.name().parse::<Arch>().unwrap(), *a);
            assert_eq!(Arch::from_elf_machine(a.elf_machine()), Some(*a));
        }
        assert_eq!("arm64".parse::<Arch>().unwrap(), Arch::Aarch64);
        assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::X86_64);
        let err = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("riscv64") && err.contains("aarch64"), "{err}");
    }

    #[test]
    fn x86_keeps_the_make_arguments_its_cached_kernels_were_keyed_with() {
        assert_eq!(Arch::X86_64.make_args(), ["ARCH=x86_64"]);
    }

    #[test]
    fn x86_directories_keep_their_names_and_the_others_say_their_architecture() {
        assert_eq!(Arch::X86_64.dir_suffix(), "");
        assert_eq!(Arch::Aarch64.dir_suffix(), "-aarch64");
    }
}
