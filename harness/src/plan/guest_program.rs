//! What an `exec: {path: ./prog}` may bring from beside the scenario: the guest has no libc and no
//! loader, so a static ELF executable for the run's architecture (luo_kernels::executable), or with
//! `shell: true` a `#!/bin/sh` script. Checked by `check`, before any VM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    StaticElf,
    Script,
}

/// What `path` is, or why the guest cannot run it.
pub fn inspect(path: &Path, shell: bool, arch: luo_kernels::Arch) -> Result<Program, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{} is not executable (chmod +x it)",
            path.display()
        ));
    }
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(rest) = data.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let interpreter = String::from_utf8_lossy(line).trim().to_string();
        let sh = interpreter == "/bin/sh" || interpreter.starts_with("/bin/sh ");
        return match (sh, shell) {
            (true, true) => Ok(Program::Script),
            (true, false) => Err(format!(
                "{} is a #!/bin/sh script, and the guest has no shell without `shell: true`",
                path.display()
            )),
            (false, _) => Err(format!(
                "{} is a script for `{interpreter}`; the guest has only busybox's /bin/sh (with `shell: true`)",
                path.display()
            )),
        };
    }
    luo_kernels::executable::check_static(&data, arch).map_err(|e| match e {
        luo_kernels::executable::NotGuestExecutable::NotElf64 => format!(
            "{} is not a 64-bit ELF executable (nor a #!/bin/sh script)",
            path.display()
        ),
        e @ luo_kernels::executable::NotGuestExecutable::OtherMachine { .. } => {
            format!("{} {e} (this run's --arch)", path.display())
        }
        e => format!("{} {e}", path.display()),
    })?;
    Ok(Program::StaticElf)
}

#[cfg(test)]
mod tests {
    use super::*;
    const X86: luo_kernels::Arch = luo_kernels::Arch::X86_64;

    fn write(dir: &Path, name: &str, data: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn dynamic_programs_are_refused_with_their_interpreter() {
        // Any dynamically linked program of the host.
        let e = inspect(Path::new("/bin/ls"), false, X86).unwrap_err();
        assert!(
            e.contains("is dynamically linked (its interpreter is /lib64/ld-linux-x86-64.so.2)"),
            "{e}"
        );
    }

    /// `path` is refused for a reason that says `words`.
    fn refused(path: &Path, shell: bool, words: &str) {
        let why = inspect(path, shell, X86).unwrap_err();
        assert!(why.contains(words), "{why}");
    }

    #[test]
    fn scripts_need_the_shell_and_sh() {
        let d = tempfile::tempdir().unwrap();
        let sh = write(d.path(), "a.sh", b"#!/bin/sh\necho hi\n", 0o755);
        assert_eq!(inspect(&sh, true, X86), Ok(Program::Script));
        refused(&sh, false, "without `shell: true`");
        let py = write(d.path(), "a.py", b"#!/usr/bin/python3\n", 0o755);
        refused(&py, true, "for `/usr/bin/python3`");
        let plain = write(d.path(), "x", b"#!/bin/sh\n", 0o644);
        refused(&plain, true, "not executable");
        let text = write(d.path(), "t", b"hello", 0o755);
        refused(&text, true, "not a 64-bit ELF");
        refused(&d.path().join("missing"), true, "No such file");
    }

    #[test]
    fn a_static_program_passes() {
        // gcc -static is how the harness builds C programs; the host has it (ci/install-deps).
        let d = tempfile::tempdir().unwrap();
        let c = write(d.path(), "m.c", b"int main(void){return 0;}\n", 0o644);
        let out = d.path().join("m");
        let ok = std::process::Command::new("gcc")
            .args(["-static", "-o"])
            .arg(&out)
            .arg(&c)
            .status()
            .unwrap()
            .success();
        assert!(ok, "gcc -static");
        assert_eq!(inspect(&out, false, X86), Ok(Program::StaticElf));
        // The same program on an arm64 run is refused, naming both machines.
        let why = inspect(&out, false, luo_kernels::Arch::Aarch64).unwrap_err();
        assert!(
            why.contains("built for x86_64; the guest is aarch64"),
            "{why}"
        );
        let arm = d.path().join("arm");
        let ok = std::process::Command::new("aarch64-linux-gnu-gcc")
            .args(["-static", "-o"])
            .arg(&arm)
            .arg(&c)
            .status()
            .unwrap()
            .success();
        assert!(ok, "aarch64-linux-gnu-gcc -static (ci/install-deps)");
        assert_eq!(
            inspect(&arm, false, luo_kernels::Arch::Aarch64),
            Ok(Program::StaticElf)
        );
        assert!(
            inspect(&arm, false, X86)
                .unwrap_err()
                .contains("built for aarch64; the guest is x86_64")
        );
        let lib = d.path().join("m.o");
        assert!(
            std::process::Command::new("gcc")
                .arg("-c")
                .arg("-o")
                .arg(&lib)
                .arg(&c)
                .status()
                .unwrap()
                .success()
        );
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            inspect(&lib, false, X86)
                .unwrap_err()
                .contains("not an executable")
        );
    }
}
