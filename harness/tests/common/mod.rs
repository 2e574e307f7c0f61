//! Shared set-up for tests that boot the real default kernel.

#![allow(dead_code)]

use luo_harness::events::Silent;
use luo_harness::plan::{self, Needs, Plan, PlanRequest};
use luo_harness::{Guest, GuestError};
use luo_protocol::{Reply, Request};
use std::path::PathBuf;

/// The default kernel (built or cached) and the guest image. Panics with the reason if either
/// cannot be had: a VM test without a kernel is a failure, never a skip.
pub async fn plan() -> Plan {
    match plan::resolve(&PlanRequest::default(), &Needs::default(), &Silent).await {
        Ok(p) => p,
        Err(e) => panic!("cannot prepare the default kernel and image: {e:?}"),
    }
}

pub async fn boot(name: &str) -> Guest {
    let p = plan().await;
    Guest::boot(p.vm_config(name))
        .await
        .unwrap_or_else(|e: GuestError| panic!("{e}"))
}

pub async fn req(g: &mut Guest, r: Request) -> Reply {
    let what = format!("{r:?}");
    g.request(r).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub fn s(x: &str) -> String {
    x.to_string()
}

/// The project's directories, for tests that run the command line on them.
pub fn project(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
}
