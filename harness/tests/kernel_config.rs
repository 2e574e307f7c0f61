//! A fragment that asks for what Kconfig cannot give fails the build before make runs, listing each
//! unmet option with what it depends on.

mod common;

/// The report is wrapped to the terminal's width: its words, not its layout.
fn words(stderr: &str) -> String {
    stderr
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

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
    let stderr = words(&raw);
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

#[test]
fn the_debug_flavour_names_an_unknown_sanitizer_option_and_what_forbids_one() {
    let dir = tempfile::tempdir().unwrap();
    let frag = dir.path().join("my-sanitizers.config");
    // A KASAN mode this tree does not have, and KASAN_VMALLOC without what it depends on
    // switched on in a way the fragment forbids (the debug fragment asks for KASAN, which
    // KASAN_VMALLOC needs; turning KASAN off on top forbids it).
    std::fs::write(
        &frag,
        "CONFIG_KASAN_TURBO=y\n# CONFIG_KASAN is not set\nCONFIG_KASAN_VMALLOC=y\n",
    )
    .unwrap();
    let out = common::building()
        .args(["kernel", "build", "--debug", "--fragment"])
        .arg(&frag)
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "bad input; stderr:\n{raw}");
    let stderr = words(&raw);
    assert!(
        stderr.contains("CONFIG_KASAN_TURBO=y (from")
            && stderr.contains("no such symbol in this tree"),
        "{stderr}"
    );
    // What forbids it, with the values that do: KASAN_VMALLOC sits inside `if KASAN`.
    assert!(stderr.contains("CONFIG_KASAN_VMALLOC=y (from"), "{stderr}");
    assert!(
        stderr.contains("KASAN=n"),
        "the value that forbids it is named:\n{stderr}"
    );
    // The debug fragment's own requests that the user's turned off are named as such.
    assert!(
        stderr.contains("CONFIG_KASAN_GENERIC=y (from flavours/debug.config)"),
        "{stderr}"
    );
}
