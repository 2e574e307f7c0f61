//! The first stage of the systemd image. With `luo_harness.root=<tag>` on the command line the
//! agent, PID 1 of the initramfs, does what an initrd does for a real system: it mounts the
//! root image QEMU serves over 9p and makes a fresh writable root of it (so every boot, the one
//! after a kexec too, starts from the image as built: state crosses only through LUO),
//! installs itself and the scenario's units and programs, and hands PID 1 to the root's
//! /sbin/init. The agent then runs again as a systemd service.

use crate::sys;
use luo_protocol::{
    PROGRAMS_DIR, ROOT_ARCHIVE, ROOT_PARAM, ROOT_TREE, SHARE_MOUNT, SHARE_TAG, UNITS_DIR,
};
use std::path::Path;

const IMAGE: &str = "/sysroot/image";
const RW: &str = "/sysroot/rw";
const ROOT: &str = "/sysroot/root";
/// Where the agent puts itself in the root, and what its unit runs.
pub const AGENT_PATH: &str = "/usr/local/libexec/luo-agent";
/// The scenario's programs, copied out of the share on every boot.
pub const PROGRAMS_PATH: &str = "/usr/local/bin";
/// The names of the scenario's units, one per line, as installed: what the agent reports on,
/// without mounting the share for it.
pub const SCENARIO_UNITS_PATH: &str = "/usr/local/share/luo-harness/units";

/// The agent's own unit. Default dependencies: it starts after basic.target like any service,
/// and is stopped with the others when systemd shuts down for a kexec, closing its own fds first.
const AGENT_UNIT: &str = "[Unit]
Description=luo-harness guest agent

[Service]
Type=exec
ExecStart=/usr/local/libexec/luo-agent
LimitNOFILE=1048576
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
";

/// Units the image does not need and that would only slow every boot or fail without hardware
/// it lacks: no logins (no D-Bus for logind, no getty on the harness's console).
const MASKED: &[&str] = &[
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "systemd-logind.service",
];

/// What systemd-update-done leaves after the first boot of an installed system: newer than /usr, so
/// the units with `ConditionNeedsUpdate=` (ldconfig, the journal catalog, update-done itself) do
/// not run again on every boot as if the packages had just been upgraded; every boot here starts
/// from the image as built, so without them each one was such a boot.
const UPDATED_STAMPS: &[&str] = &["etc/.updated", "var/.updated"];

/// The same machine ID on every boot: systemd does not take a boot for a first boot, and the
/// journal of one boot is the next one's too.
const MACHINE_ID: &str = "4c554f6861726e657373000000000001\n";

/// The tag `luo_harness.root=` names, if the command line has one.
pub fn root_tag(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(ROOT_PARAM)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
}

/// Builds the root and executes its init; returns only on failure, with what failed.
/// `first_boot`: the VM's first kernel, the boot a saved VM holds.
pub fn hand_over(tag: &str, first_boot: bool) -> String {
    match prepare(tag, first_boot) {
        Ok(()) => exec_init(),
        Err(e) => e,
    }
}

fn prepare(tag: &str, first_boot: bool) -> Result<(), String> {
    let m = |src: &str, dst: &str, fs: &str, flags: libc::c_ulong, data: Option<&str>| {
        sys::mount_with(src, dst, fs, flags, data)
            .map_err(|e| format!("mount {fs} {src} on {dst}: {}", luo_protocol::errno_name(e)))
    };
    // First boot: cache=none, the archive is read once, in msize chunks straight into the
    // unpacker's buffer, leaving no page cache to save. After a kexec: cache=loose, the tree does
    // not change under a boot, and every file is read through it.
    let cache = if first_boot { "none" } else { "loose" };
    let opts = format!("trans=virtio,version=9p2000.L,cache={cache},msize=524288");
    m(tag, IMAGE, "9p", libc::MS_RDONLY, Some(&opts))?;
    if first_boot {
        // The archive unpacked into a tmpfs, and the export unmounted before systemd starts: QEMU
        // refuses to migrate a VM while a 9p export is mounted, and a booted systemd VM is what
        // the harness saves and restores (vm/saved.rs).
        m("tmpfs", ROOT, "tmpfs", 0, Some("mode=0755"))?;
        unpack(&format!("{IMAGE}/{ROOT_ARCHIVE}"), ROOT)?;
        umount(IMAGE)?;
    } else {
        // After a kexec nothing saves the VM: a tmpfs over the tree reads only what systemd uses
        // (about 2 s less under TCG than unpacking all of it).
        m("tmpfs", RW, "tmpfs", 0, Some("mode=0755"))?;
        for d in ["upper", "work"] {
            mkdir(&format!("{RW}/{d}"))?;
        }
        let layers = format!("lowerdir={IMAGE}/{ROOT_TREE},upperdir={RW}/upper,workdir={RW}/work");
        m("overlay", ROOT, "overlay", 0, Some(&layers))?;
    }
    let share = format!("{ROOT}{SHARE_MOUNT}");
    m(SHARE_TAG, &share, "virtiofs", 0, None)?;
    install(Path::new(ROOT), Path::new(&share))?;
    // Unmounted like the default image's share until a request needs it (boot::ensure_share):
    // a restored VM's virtiofsd is a new process that has no state for an open FUSE session.
    umount(&share)?;
    // systemd finds /dev, /proc and /sys mounted, as it does after an initrd.
    for d in ["/dev", "/proc", "/sys"] {
        m(d, &format!("{ROOT}{d}"), "", libc::MS_MOVE, None)?;
    }
    Ok(())
}

/// The archive into `dir` with its owners, modes and times, as the image was built.
fn unpack(archive: &str, dir: &str) -> Result<(), String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("open {archive}: {e}"))?;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_preserve_mtime(true);
    tar.unpack(dir)
        .map_err(|e| format!("unpack {archive} into {dir}: {e}"))
}

fn umount(path: &str) -> Result<(), String> {
    sys::umount(path).map_err(|e| format!("umount {path}: {}", luo_protocol::errno_name(e)))
}

/// The agent, its unit, the scenario's units and programs, and the masks, into `root`.
fn install(root: &Path, share: &Path) -> Result<(), String> {
    let agent = std::fs::read("/init").map_err(|e| format!("read /init: {e}"))?;
    write(&root.join(&AGENT_PATH[1..]), &agent, 0o755)?;
    let units = root.join("etc/systemd/system");
    write(
        &units.join("luo-agent.service"),
        AGENT_UNIT.as_bytes(),
        0o644,
    )?;
    enable(&units, "luo-agent.service", AGENT_UNIT)?;
    for unit in MASKED {
        link("/dev/null", &units.join(unit))?;
    }
    write(&root.join("etc/machine-id"), MACHINE_ID.as_bytes(), 0o444)?;
    for stamp in UPDATED_STAMPS {
        write(&root.join(stamp), b"", 0o644)?;
    }
    let mut names = String::new();
    for (name, bytes) in files_in(&share.join(UNITS_DIR))? {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        write(&units.join(&name), &bytes, 0o644)?;
        enable(&units, &name, &text)?;
        names += &format!("{name}\n");
    }
    write(
        &root.join(&SCENARIO_UNITS_PATH[1..]),
        names.as_bytes(),
        0o644,
    )?;
    // Copies written by the guest's CPU, not served from the share: see exec::copy_out.
    for (name, bytes) in files_in(&share.join(PROGRAMS_DIR))? {
        write(&root.join(&PROGRAMS_PATH[1..]).join(&name), &bytes, 0o755)?;
    }
    Ok(())
}

/// `systemctl enable` for the targets a unit's [Install] section names in `WantedBy=`.
fn enable(units: &Path, name: &str, text: &str) -> Result<(), String> {
    for target in wanted_by(text) {
        let dir = units.join(format!("{target}.wants"));
        mkdir(&dir.to_string_lossy())?;
        link(&format!("../{name}"), &dir.join(name))?;
    }
    Ok(())
}

/// The targets of every `WantedBy=` in a unit's [Install] section.
pub fn wanted_by(text: &str) -> Vec<String> {
    let mut section = "";
    let mut targets = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Install]"
            && let Some(v) = line.strip_prefix("WantedBy=")
        {
            targets.extend(v.split_whitespace().map(str::to_string));
        }
    }
    targets
}

fn files_in(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() {
            let bytes = std::fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
            out.push((e.file_name().to_string_lossy().into_owned(), bytes));
        }
    }
    out.sort();
    Ok(out)
}

fn mkdir(p: &str) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(|e| format!("mkdir {p}: {e}"))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        mkdir(&dir.to_string_lossy())?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn link(target: &str, at: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at)
        .map_err(|e| format!("symlink {} -> {target}: {e}", at.display()))
}

/// What switch_root does: the new root becomes /, and its init PID 1.
fn exec_init() -> String {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (root, dot, slash, init) = (c(ROOT), c("."), c("/"), c("/sbin/init"));
    // SAFETY: valid C strings; PID 1 may chroot and exec.
    unsafe {
        if libc::chdir(root.as_ptr()) != 0
            || libc::mount(
                dot.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            ) != 0
            || libc::chroot(dot.as_ptr()) != 0
            || libc::chdir(slash.as_ptr()) != 0
        {
            return format!("switching to {ROOT}: errno {}", sys::errno());
        }
        let argv = [init.as_ptr(), std::ptr::null()];
        libc::execv(init.as_ptr(), argv.as_ptr());
    }
    format!("exec /sbin/init: errno {}", sys::errno())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_tag_is_read_from_the_command_line() {
        assert_eq!(
            root_tag("quiet luo_harness.root=luoroot luo_harness.boot=1"),
            Some("luoroot")
        );
        assert_eq!(root_tag("quiet luo_harness.root= x"), None);
        assert_eq!(root_tag("quiet"), None);
    }

    #[test]
    fn wanted_by_reads_only_the_install_section() {
        let unit = "[Unit]\nWantedBy=nothing.target\n[Service]\nExecStart=/x\n\
                    [Install]\nWantedBy=multi-user.target  other.target\nAlso=y.service\n";
        assert_eq!(wanted_by(unit), ["multi-user.target", "other.target"]);
        assert!(wanted_by("[Service]\nExecStart=/x\n").is_empty());
    }
}
