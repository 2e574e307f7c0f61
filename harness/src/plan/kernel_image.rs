//! What a `file:` kernel is, read from its first bytes. The guest kexecs with kexec_file_load,
//! which on x86 takes a bzImage and on arm64 the uncompressed Image, and nothing else on either;
//! anything else would boot into a QEMU error or, worse, a guest that never prints, so it is
//! refused before any VM, named by what it is and what the run's architecture wanted.

use luo_kernels::Arch;
use std::io::Read;
use std::path::Path;

/// What the first bytes of a kernel file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An x86 bzImage (the boot protocol's `HdrS` header) that starts in 64-bit mode.
    BzImage,
    /// A bzImage without XLF_KERNEL_64: a 32-bit kernel.
    BzImage32,
    /// arm64's uncompressed `Image` (`ARM\x64` at 0x38).
    Arm64Image,
    /// An EFI zboot image (`zimg` at 4): arm64's `vmlinuz.efi`.
    Zboot,
    Gzip,
    /// An ELF file (a vmlinux), by its e_machine.
    Elf(u16),
    Unknown,
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// Enough of the file for every header [`identify`] reads.
const HEAD: usize = 0x240;

pub fn identify(head: &[u8]) -> Format {
    let at = |off: usize, len: usize| head.get(off..off + len);
    let le16 = |off: usize| at(off, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    if at(0x1fe, 2) == Some(&[0x55, 0xaa]) && at(0x202, 4) == Some(b"HdrS") {
        // xloadflags exists from boot protocol 2.12 on; an older header predates 64-bit entry.
        let version = le16(0x206).unwrap_or(0);
        let xloadflags = le16(0x236).unwrap_or(0);
        return if version >= 0x020c && xloadflags & 1 == 1 {
            Format::BzImage
        } else {
            Format::BzImage32
        };
    }
    if at(0x38, 4) == Some(b"ARM\x64") {
        return Format::Arm64Image;
    }
    if at(0, 2) == Some(b"MZ") && at(4, 4) == Some(b"zimg") {
        return Format::Zboot;
    }
    if at(0, 2) == Some(&[0x1f, 0x8b]) {
        return Format::Gzip;
    }
    if at(0, 4) == Some(b"\x7fELF") {
        // e_machine's byte order is the file's (EI_DATA: 1 little, 2 big).
        let machine = match (at(5, 1), at(18, 2)) {
            (Some([2]), Some(b)) => u16::from_be_bytes([b[0], b[1]]),
            (_, Some(b)) => u16::from_le_bytes([b[0], b[1]]),
            _ => 0,
        };
        return Format::Elf(machine);
    }
    Format::Unknown
}

/// Why a guest of `arch` cannot boot this format, or nothing when it is that architecture's image.
pub fn refusal(format: Format, arch: Arch) -> Option<String> {
    let why = match (arch, format) {
        (Arch::X86_64, Format::BzImage) | (Arch::Aarch64, Format::Arm64Image) => return None,
        (_, Format::BzImage32) => format!("a bzImage of a 32-bit kernel; the guest is {arch}"),
        (Arch::X86_64, Format::Arm64Image) => {
            "an arm64 Image; the guest is x86_64 (run it with --arch aarch64)".into()
        }
        (Arch::Aarch64, Format::BzImage) => {
            "an x86-64 bzImage; the guest is aarch64 (run it with --arch x86_64)".into()
        }
        (Arch::X86_64, Format::Zboot) => {
            "an EFI zboot image (arm64's vmlinuz.efi); the guest is x86_64".into()
        }
        (Arch::Aarch64, Format::Zboot) => "an EFI zboot image (vmlinuz.efi); arm64's \
            kexec_file_load takes only the uncompressed Image (arch/arm64/boot/Image)"
            .into(),
        (Arch::X86_64, Format::Gzip) => "gzip-compressed (an Image.gz or a vmlinux.gz?); the \
            guest boots a bzImage, which carries its own compression"
            .into(),
        (Arch::Aarch64, Format::Gzip) => "gzip-compressed (an Image.gz?); arm64's \
            kexec_file_load takes only the uncompressed Image (arch/arm64/boot/Image)"
            .into(),
        (Arch::X86_64, Format::Elf(EM_X86_64)) => "an ELF vmlinux; kexec on x86 loads a bzImage \
            (arch/x86/boot/bzImage of the same build)"
            .into(),
        (Arch::Aarch64, Format::Elf(EM_AARCH64)) => "an ELF vmlinux; kexec on arm64 loads the \
            Image (arch/arm64/boot/Image of the same build)"
            .into(),
        (_, Format::Elf(m)) => match Arch::from_elf_machine(m) {
            Some(other) => format!("an ELF vmlinux for {other}; the guest is {arch}"),
            None => format!("an ELF file for machine {m}; the guest is {arch}"),
        },
        (Arch::X86_64, Format::Unknown) => {
            "not a kernel image the harness knows (no bzImage header)".into()
        }
        (Arch::Aarch64, Format::Unknown) => {
            "not a kernel image the harness knows (no arm64 Image header)".into()
        }
    };
    Some(why)
}

/// Reads the head of `path` and says why it cannot be the guest's kernel, if it cannot.
pub fn check(path: &Path, arch: Arch) -> Result<(), String> {
    let mut head = Vec::with_capacity(HEAD);
    std::fs::File::open(path)
        .and_then(|f| f.take(HEAD as u64).read_to_end(&mut head))
        .map_err(|e| format!("cannot be read: {e}"))?;
    refusal(identify(&head), arch).map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(version: u16, xloadflags: u16) -> Vec<u8> {
        let mut b = vec![0u8; HEAD];
        b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        b
    }

    #[test]
    fn a_64_bit_bzimage_is_the_only_thing_accepted() {
        assert_eq!(identify(&bzimage(0x020f, 0x7f)), Format::BzImage);
        assert_eq!(refusal(Format::BzImage, Arch::X86_64), None);
        assert_eq!(identify(&bzimage(0x020f, 0x7e)), Format::BzImage32);
        assert_eq!(identify(&bzimage(0x020a, 0x01)), Format::BzImage32);
    }

    #[test]
    fn other_architectures_and_forms_are_named() {
        let mut arm = vec![0u8; 0x40];
        arm[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(identify(&arm), Format::Arm64Image);
        assert_eq!(identify(b"MZ\0\0zimg\0\0"), Format::Zboot);
        assert_eq!(identify(&[0x1f, 0x8b, 8, 0]), Format::Gzip);
        let mut elf = vec![0u8; 20];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[5] = 1;
        elf[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        assert_eq!(identify(&elf), Format::Elf(EM_AARCH64));
        elf[5] = 2;
        elf[18..20].copy_from_slice(&EM_X86_64.to_be_bytes());
        assert_eq!(identify(&elf), Format::Elf(EM_X86_64));
        assert_eq!(identify(b""), Format::Unknown);
        assert_eq!(identify(b"bzImage bytes"), Format::Unknown);
        for f in [
            Format::BzImage32,
            Format::Arm64Image,
            Format::Zboot,
            Format::Gzip,
            Format::Elf(EM_X86_64),
            Format::Elf(EM_AARCH64),
            Format::Elf(8),
            Format::Unknown,
        ] {
            assert!(refusal(f, Arch::X86_64).is_some(), "{f:?} refused");
        }
        assert!(
            refusal(Format::Arm64Image, Arch::X86_64)
                .unwrap()
                .contains("arm64 Image")
        );
    }

    #[test]
    fn an_arm64_guest_takes_only_the_uncompressed_image_and_says_why_for_the_others() {
        assert_eq!(refusal(Format::Arm64Image, Arch::Aarch64), None);
        for f in [
            Format::BzImage,
            Format::BzImage32,
            Format::Zboot,
            Format::Gzip,
            Format::Elf(EM_X86_64),
            Format::Elf(EM_AARCH64),
            Format::Unknown,
        ] {
            assert!(refusal(f, Arch::Aarch64).is_some(), "{f:?} refused");
        }
        let gz = refusal(Format::Gzip, Arch::Aarch64).unwrap();
        assert!(
            gz.contains("Image.gz") && gz.contains("uncompressed Image"),
            "{gz}"
        );
        let x86 = refusal(Format::BzImage, Arch::Aarch64).unwrap();
        assert!(
            x86.contains("x86-64 bzImage") && x86.contains("aarch64"),
            "{x86}"
        );
    }

    #[test]
    fn a_file_too_short_for_a_header_is_refused_and_an_unreadable_one_says_so() {
        let d = tempfile::tempdir().unwrap();
        let short = d.path().join("short");
        std::fs::write(&short, b"\x7fEL").unwrap();
        assert!(
            check(&short, Arch::X86_64)
                .unwrap_err()
                .contains("no bzImage header")
        );
        let good = d.path().join("bzImage");
        std::fs::write(&good, bzimage(0x020f, 1)).unwrap();
        assert_eq!(check(&good, Arch::X86_64), Ok(()));
        assert!(check(&good, Arch::Aarch64).is_err());
        assert!(
            check(&d.path().join("absent"), Arch::X86_64)
                .unwrap_err()
                .starts_with("cannot be read")
        );
    }
}
