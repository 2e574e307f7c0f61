//! The core loop on the real default kernel: preserve, kexec, retrieve.

mod common;

use common::{req, s};
use luo_protocol::{Reply, Request};

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn patterned_memfd_survives_kexec() {
    let mut g = common::boot("memfd-roundtrip").await;
    req(&mut g, Request::OpenDevice { handle: s("dev") }).await;
    req(
        &mut g,
        Request::CreateSession {
            device: s("dev"),
            handle: s("s"),
            name: s("roundtrip"),
        },
    )
    .await;
    req(
        &mut g,
        Request::CreateMemfd {
            handle: s("m"),
            name: s("data"),
            size: 4 * MIB,
            hugetlb: false,
        },
    )
    .await;
    req(
        &mut g,
        Request::WritePattern {
            handle: s("m"),
            seed: 0x5eed,
            offset: 0,
            len: 4 * MIB,
        },
    )
    .await;
    let Reply::Hash {
        sha256: before,
        size,
    } = req(&mut g, Request::HashContents { handle: s("m") }).await
    else {
        panic!()
    };
    assert_eq!(size, 4 * MIB);
    req(
        &mut g,
        Request::PreserveFd {
            session: s("s"),
            fd: s("m"),
            token: 42,
        },
    )
    .await;

    g.kexec_same().await.unwrap();
    let boot = &g.hello().boot;
    assert_eq!(boot.boot_index, Some(1));
    assert_eq!(
        boot.liveupdate_number,
        Some(1),
        "the new kernel must report the incoming live update"
    );
    assert_eq!(boot.kho_exec_from.as_deref(), Some(boot.release.as_str()));

    req(&mut g, Request::OpenDevice { handle: s("dev") }).await;
    req(
        &mut g,
        Request::RetrieveSession {
            device: s("dev"),
            handle: s("s"),
            name: s("roundtrip"),
        },
    )
    .await;
    req(
        &mut g,
        Request::RetrieveFd {
            session: s("s"),
            handle: s("m"),
            token: 42,
        },
    )
    .await;
    let v = req(
        &mut g,
        Request::VerifyPattern {
            handle: s("m"),
            seed: 0x5eed,
            offset: 0,
            len: 4 * MIB,
        },
    )
    .await;
    assert_eq!(v, Reply::Verified { bytes: 4 * MIB });
    let Reply::Hash {
        sha256: after,
        size,
    } = req(&mut g, Request::HashContents { handle: s("m") }).await
    else {
        panic!()
    };
    assert_eq!((after, size), (before, 4 * MIB));
    // A pattern with another seed must not verify: the check can fail.
    let wrong = g
        .request(Request::VerifyPattern {
            handle: s("m"),
            seed: 0x5eee,
            offset: 0,
            len: MIB,
        })
        .await;
    assert!(wrong.is_err(), "verification with the wrong seed passed");
    req(&mut g, Request::FinishSession { session: s("s") }).await;
    g.power_off().await.unwrap();
}

#[tokio::test]
async fn two_sessions_held_across_kexec_and_a_closed_one_is_gone() {
    let mut g = common::boot("sessions").await;
    req(&mut g, Request::OpenDevice { handle: s("dev") }).await;
    for (h, name) in [("a", "alpha"), ("b", "beta"), ("c", "closed")] {
        req(
            &mut g,
            Request::CreateSession {
                device: s("dev"),
                handle: s(h),
                name: s(name),
            },
        )
        .await;
    }
    req(
        &mut g,
        Request::CreateMemfd {
            handle: s("m"),
            name: s("in-beta"),
            size: 8192,
            hugetlb: false,
        },
    )
    .await;
    req(
        &mut g,
        Request::WritePattern {
            handle: s("m"),
            seed: 9,
            offset: 0,
            len: 8192,
        },
    )
    .await;
    req(
        &mut g,
        Request::PreserveFd {
            session: s("b"),
            fd: s("m"),
            token: 7,
        },
    )
    .await;
    req(&mut g, Request::Close { handle: s("c") }).await;

    g.kexec_same().await.unwrap();

    req(&mut g, Request::OpenDevice { handle: s("dev") }).await;
    req(
        &mut g,
        Request::RetrieveSession {
            device: s("dev"),
            handle: s("a"),
            name: s("alpha"),
        },
    )
    .await;
    req(
        &mut g,
        Request::RetrieveSession {
            device: s("dev"),
            handle: s("b"),
            name: s("beta"),
        },
    )
    .await;
    assert_eq!(
        req(&mut g, Request::GetSessionName { session: s("a") }).await,
        Reply::Name { name: s("alpha") }
    );
    req(
        &mut g,
        Request::RetrieveFd {
            session: s("b"),
            handle: s("m"),
            token: 7,
        },
    )
    .await;
    req(
        &mut g,
        Request::VerifyPattern {
            handle: s("m"),
            seed: 9,
            offset: 0,
            len: 8192,
        },
    )
    .await;
    let gone = g
        .request(Request::RetrieveSession {
            device: s("dev"),
            handle: s("c"),
            name: s("closed"),
        })
        .await;
    assert_eq!(
        gone.as_ref().err().and_then(|e| e.errno()),
        Some("ENOENT"),
        "closed session after kexec: {gone:?}"
    );
    g.power_off().await.unwrap();
}
