//! The static busybox of another architecture's image with a shell (`shell: true`): Debian
//! bookworm's `busybox-static` for that architecture, the same package the x86 image takes from the
//! host, fetched through a private apt state (the system's sources are never touched) and cached
//! per suite, with the Debian version it fetched recorded beside it. Nothing of it runs on the host.

use crate::{CrossError, io, run};
use luo_kernels::Arch;
use luo_kernels::apt::{PrivateApt, system_mirror};
use std::path::{Path, PathBuf};
use std::process::Command;

const SUITE: &str = "bookworm";
const PACKAGE: &str = "busybox-static";

/// The version of `package` in a `madison` listing (one suite, one architecture: one line).
pub fn version_in(madison: &str) -> Option<String> {
    madison
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// The busybox for `arch`, downloaded once into `<cache>/busybox/<arch>-<version>/`.
pub fn busybox(
    cache: &luo_kernels::Cache,
    arch: Arch,
    on_step: &mut dyn FnMut(&str),
) -> Result<PathBuf, CrossError> {
    // Keyed by the suite, not the version: finding it must not cost an apt-cache call (half a
    // second) on every plan; the version fetched is recorded beside it.
    let dir = cache.root().join("busybox").join(format!("{arch}-{SUITE}"));
    let file = dir.join("busybox");
    let ready = || file.is_file().then(|| file.clone());
    cache.get_or_make(&format!("busybox-{arch}"), ready, || {
        download(cache, arch, &dir, on_step)?;
        Ok(file.clone())
    })
}

/// Downloads the busybox for `arch` from Debian into `dir`.
fn download(
    cache: &luo_kernels::Cache,
    arch: Arch,
    dir: &Path,
    on_step: &mut dyn FnMut(&str),
) -> Result<(), CrossError> {
    let apt = PrivateApt::new(
        &cache.root().join(format!("apt-{}", arch.debian_name())),
        &system_mirror()?,
        SUITE,
    )?
    .for_architecture(arch.debian_name());
    let mut madison = apt.madison(PACKAGE)?;
    if version_in(&madison).is_none() {
        on_step("apt-get update");
        apt.update()?;
        madison = apt.madison(PACKAGE)?;
    }
    let version = version_in(&madison).ok_or_else(|| CrossError::Command {
        what: format!(
            "apt-cache madison {PACKAGE} ({SUITE}, {})",
            arch.debian_name()
        ),
        detail: "no such package".into(),
    })?;
    on_step(&format!(
        "apt-get download {PACKAGE}:{} {version}",
        arch.debian_name()
    ));
    let tmp = cache
        .root()
        .join("busybox")
        .join(format!(".tmp-{arch}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let deb = apt.download(PACKAGE, &version, &tmp)?;
    let unpacked = tmp.join("root");
    run(
        "dpkg-deb -x",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
    )?;
    let bin = unpacked.join("bin/busybox");
    let bytes = std::fs::read(&bin).map_err(io(&bin))?;
    luo_kernels::executable::check_static(&bytes, arch)
        .map_err(|why| CrossError::WrongBusybox { arch, why })?;
    publish(&tmp, &bytes, &version, dir)
}

/// Puts `bytes` at `dir/busybox` (and its Debian `version` beside it) in one rename, and drops
/// the download.
fn publish(tmp: &Path, bytes: &[u8], version: &str, dir: &Path) -> Result<(), CrossError> {
    let ready = tmp.join("ready");
    std::fs::create_dir_all(&ready).map_err(io(&ready))?;
    let recorded = ready.join("version");
    std::fs::write(&recorded, format!("{PACKAGE} {version}\n")).map_err(io(&recorded))?;
    let file = ready.join("busybox");
    std::fs::write(&file, bytes).map_err(io(&file))?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io(&file))?;
    std::fs::create_dir_all(dir.parent().expect("a dir under busybox/")).map_err(io(dir))?;
    std::fs::rename(&ready, dir).map_err(io(dir))?;
    let _ = std::fs::remove_dir_all(tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_madison() {
        let m = " busybox-static | 1:1.35.0-4+deb12u1+b1 | http://deb.debian.org/debian bookworm/main arm64 Packages\n";
        assert_eq!(version_in(m).as_deref(), Some("1:1.35.0-4+deb12u1+b1"));
        assert_eq!(version_in(""), None);
    }
}
