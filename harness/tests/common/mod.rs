//! Shared set-up for tests that boot the real default kernel.

#![allow(dead_code)]

use luo_harness::output::Silent;
use luo_harness::vm::accel::AccelChoice;
use luo_harness::{Guest, KernelChoice, Prepared, Vm, prepare};
use luo_protocol::{Reply, Request};

/// The default kernel (built or cached) and the guest image. Panics with the reason if either
/// cannot be had: a VM test without a kernel is a failure, never a skip.
pub async fn prepared() -> Prepared {
    match prepare(
        &KernelChoice::Build(Default::default()),
        AccelChoice::Auto,
        &Silent,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => panic!("cannot prepare the default kernel and image: {e:?}"),
    }
}

pub async fn boot(name: &str) -> Guest {
    let p = prepared().await;
    Vm::boot(p.vm_config(name))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn req(g: &mut Guest, r: Request) -> Reply {
    let what = format!("{r:?}");
    g.request(r).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub fn s(x: &str) -> String {
    x.to_string()
}
