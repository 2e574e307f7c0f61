//! `luo-harness profile` on the default kernel: samples from both boots, named from System.map,
//! with the kexec'd boot showing the code that runs before its kernel (purgatory, decompressor).

mod common;

use std::process::Command;

#[test]
fn profile_names_where_a_boot_and_a_kexec_spend_their_time() {
    let out = Command::new(common::bin())
        .args(["profile", "--top", "40"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (boot0, boot1) = stdout
        .split_once("boot 1: kexec load, reboot and boot to hello")
        .unwrap_or_else(|| panic!("no kexec window:\n{stdout}"));
    assert!(boot0.contains("boot 0: QEMU start to hello"), "{stdout}");
    for (name, window) in [("boot 0", boot0), ("boot 1", boot1)] {
        assert!(
            window.contains("kernel ") && window.contains("agent "),
            "{name} lacks its phases:\n{window}"
        );
        // Every boot frees its init memory; a symbol map that failed to load would show raw
        // addresses instead.
        assert!(
            window.contains("__free_reserved_area"),
            "{name}: kernel functions are not named:\n{window}"
        );
        assert!(
            window.contains("user space"),
            "{name}: no agent samples:\n{window}"
        );
    }
    assert!(
        boot1.contains("(purgatory, decompressor)"),
        "the kexec'd boot runs purgatory and the decompressor first:\n{boot1}"
    );
}
