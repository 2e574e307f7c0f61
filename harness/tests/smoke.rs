//! The default kernel boots under QEMU with `liveupdate=on` and exposes LUO and KHO.

mod common;

#[tokio::test]
async fn default_kernel_boots_with_luo_and_kho() {
    let g = common::boot("smoke").await;
    let boot = &g.hello().boot;
    assert!(
        boot.cmdline
            .split_whitespace()
            .any(|w| w == "liveupdate=on"),
        "{}",
        boot.cmdline
    );
    assert!(
        boot.liveupdate_device,
        "/dev/liveupdate is missing: the kernel lacks LUO (boot facts: {boot:?})"
    );
    assert!(
        boot.kho_enabled,
        "KHO is not enabled (boot facts: {boot:?})"
    );
    assert_eq!(boot.boot_index, Some(0));
    assert_eq!(
        boot.liveupdate_number, None,
        "a cold boot has no incoming live update"
    );
    g.power_off().await.unwrap();
}
