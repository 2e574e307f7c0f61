//! A fragment that asks for what Kconfig cannot give fails the build before make runs, listing each
//! unmet option with what it depends on.

mod common;

#[test]
fn unsatisfiable_fragment_options_are_listed_with_their_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let frag = dir.path().join("impossible.config");
    // E1000 lives under NETDEVICES, which needs NET (off); the first symbol does not
    // exist; the second contradicts a built-in fragment (KHO is required by LIVEUPDATE).
    std::fs::write(
        &frag,
        "CONFIG_LUO_HARNESS_NO_SUCH_OPTION=y\n# CONFIG_KEXEC_HANDOVER is not set\nCONFIG_E1000=y\n",
    )
    .unwrap();
    let out = common::building()
        .args(["kernel", "build", "--fragment"])
        .arg(&frag)
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an option Kconfig cannot give is bad input; stderr:\n{raw}"
    );
    // The report is wrapped to the terminal's width; compare the words, not the layout.
    let stderr = raw
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        stderr.contains("CONFIG_LUO_HARNESS_NO_SUCH_OPTION=y"),
        "{stderr}"
    );
    assert!(stderr.contains("no such symbol in this tree"), "{stderr}");
    assert!(stderr.contains("CONFIG_E1000=y"), "{stderr}");
    assert!(
        stderr.contains("depends on"),
        "dependencies must be shown:\n{stderr}"
    );
    // Turning KHO off is honoured (the user's fragment comes last) and what needs it is reported.
    assert!(!stderr.contains("CONFIG_KEXEC_HANDOVER=n"), "{stderr}");
    assert!(stderr.contains("CONFIG_LIVEUPDATE=y (from liveupdate.config) but the final .config has it not set; it depends on: depends on KEXEC_HANDOVER"), "{stderr}");
    assert!(stderr.contains("inside `if NET_VENDOR_INTEL`"), "{stderr}");
    assert!(
        !stderr.contains("if DEBUG_INFO"),
        "a closed if-block must not be reported:\n{stderr}"
    );
    assert!(
        stderr.contains(frag.to_str().unwrap()),
        "the fragment must be named:\n{stderr}"
    );
}
