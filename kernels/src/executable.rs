//! Whether a file can run as a program in a guest of an architecture: the guests have no libc and
//! no loader, so only a static executable (static-pie included) for that machine. One check for
//! every guest binary, whoever built it: the harness's agents, the scenarios' own programs.

use crate::Arch;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Architecture, Endianness, Object};

/// Why a file is not a static executable for the guest's architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotGuestExecutable {
    #[error("is not a 64-bit ELF executable")]
    NotElf64,
    #[error("is built for {found}; the guest is {wanted}")]
    OtherMachine { found: String, wanted: Arch },
    #[error("is an ELF file but not an executable (a library or an object?)")]
    NotExecutable,
    #[error(
        "is dynamically linked (its interpreter is {interpreter}); the guest has no libc: link it statically (-static, or RUSTFLAGS=\"-C target-feature=+crt-static\")"
    )]
    Dynamic { interpreter: String },
}

/// `Ok` when `data` is a static executable that runs on `arch`.
pub fn check_static(data: &[u8], arch: Arch) -> Result<(), NotGuestExecutable> {
    let file = ElfFile64::<Endianness>::parse(data).map_err(|_| NotGuestExecutable::NotElf64)?;
    let wanted = match arch {
        Arch::X86_64 => Architecture::X86_64,
        Arch::Aarch64 => Architecture::Aarch64,
    };
    if file.architecture() != wanted {
        let found = match file.architecture() {
            Architecture::X86_64 => Arch::X86_64.to_string(),
            Architecture::Aarch64 => Arch::Aarch64.to_string(),
            other => format!("{other:?}"),
        };
        return Err(NotGuestExecutable::OtherMachine {
            found,
            wanted: arch,
        });
    }
    let (header, endian) = (file.elf_header(), file.endian());
    let kind = header.e_type(endian);
    // A static-pie is ET_DYN with an entry point; a shared library has none.
    if !(kind == elf::ET_EXEC || (kind == elf::ET_DYN && header.e_entry(endian) != 0)) {
        return Err(NotGuestExecutable::NotExecutable);
    }
    if let Some(ph) = file
        .elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(endian) == elf::PT_INTERP)
    {
        let interpreter = ph
            .data(endian, data)
            .map(|d| {
                String::from_utf8_lossy(d)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_default();
        return Err(NotGuestExecutable::Dynamic { interpreter });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-program-header ELF64 executable for `machine`, with a PT_INTERP or a PT_LOAD.
    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // ELFCLASS64
        e[5] = 1; // little-endian
        e[6] = 1; // EV_CURRENT
        e[16..18].copy_from_slice(&elf::ET_EXEC.0.to_le_bytes());
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        e[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        e[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        e[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let kind = if interp { elf::PT_INTERP } else { elf::PT_LOAD };
        e[64..68].copy_from_slice(&kind.0.to_le_bytes());
        e
    }

    #[test]
    fn only_a_static_executable_of_the_architecture_is_accepted() {
        assert_eq!(check_static(&elf(183, false), Arch::Aarch64), Ok(()));
        assert_eq!(check_static(&elf(62, false), Arch::X86_64), Ok(()));
        assert_eq!(
            check_static(&elf(62, false), Arch::Aarch64)
                .unwrap_err()
                .to_string(),
            "is built for x86_64; the guest is aarch64"
        );
        assert!(matches!(
            check_static(&elf(183, true), Arch::Aarch64),
            Err(NotGuestExecutable::Dynamic { .. })
        ));
        assert_eq!(
            check_static(b"#!/bin/sh\n", Arch::Aarch64),
            Err(NotGuestExecutable::NotElf64)
        );
    }
}
