//! Choosing the accelerator. `/dev/kvm` existing proves nothing (nested KVM here initialises and then
//! hangs or aborts), so KVM is used only after it booted a real guest to the agent's hello within a
//! short deadline. The verdict is cached per host (QEMU version, host kernel, CPU model), so the
//! probe costs once.

use super::qemu::Accel;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub host: String,
    pub kvm_works: bool,
    pub detail: String,
}

/// What identifies "this host" for the verdict.
pub fn host_identity(qemu_version: &str) -> String {
    let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} | {} | {}",
        qemu_version.trim(),
        osrelease.trim(),
        cpu_model().unwrap_or_default()
    )
}

/// The host CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_string())
}

pub fn kvm_device_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

pub fn load(path: &Path, host: &str) -> Option<Verdict> {
    let v: Verdict = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (v.host == host).then_some(v)
}

pub fn store(path: &Path, v: &Verdict) {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap()).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

/// The forced choice, or the cached/probed verdict for `Auto`.
pub fn pick(choice: AccelChoice, cached: Option<&Verdict>) -> Option<Accel> {
    match choice {
        AccelChoice::Kvm => Some(Accel::Kvm),
        AccelChoice::Tcg => Some(Accel::Tcg),
        AccelChoice::Auto if !kvm_device_usable() => Some(Accel::Tcg),
        AccelChoice::Auto => cached.map(|v| if v.kvm_works { Accel::Kvm } else { Accel::Tcg }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_choices_win_and_cached_verdict_decides_auto() {
        assert_eq!(pick(AccelChoice::Tcg, None), Some(Accel::Tcg));
        assert_eq!(pick(AccelChoice::Kvm, None), Some(Accel::Kvm));
        if kvm_device_usable() {
            let no = Verdict {
                host: "h".into(),
                kvm_works: false,
                detail: String::new(),
            };
            assert_eq!(pick(AccelChoice::Auto, Some(&no)), Some(Accel::Tcg));
            assert_eq!(pick(AccelChoice::Auto, None), None, "unknown: must probe");
        }
    }

    #[test]
    fn verdict_is_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("accel.json");
        store(
            &p,
            &Verdict {
                host: "a".into(),
                kvm_works: false,
                detail: "hung".into(),
            },
        );
        assert!(load(&p, "a").is_some());
        assert!(
            load(&p, "b").is_none(),
            "another QEMU or host kernel must be probed again"
        );
    }
}
