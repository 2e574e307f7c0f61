//! One test per scenario file in scenarios/, run on the real kernel and compared with its reviewed
//! snapshot in snapshots/<variant>/ (the same comparison `luo-harness run` makes): the whole set on
//! `stock`, and the session identity and systemd scenarios on each of the other session-inode
//! designs (kernels/variants/), whose snapshots differ exactly where the designs do. Outside CI a differing
//! or missing snapshot is written as `.snap.new` for `cargo insta review`.
//!
//! The same on the debug flavour (`debug_*`): the whole set on all four designs, compared with the
//! same snapshots less memory figures (snapshots/README.md); where a design keeps no snapshot of a
//! scenario, the debug run must pass with no finding. systemd-fd-store runs on the debug stock
//! kernel only: systemd under KASAN and lockdep takes four minutes a run under TCG, and its
//! behaviour on the other designs is the plain tests' to show. A debug scenario takes about 18 s
//! (a KASAN boot per kexec, two kmemleak scans per checkpoint): the 89 take 18 min on two cores.

mod common;

use luo_harness::events::Silent;
use luo_harness::outcome::Outcome;
use luo_harness::plan::{self, Needs, PlanRequest};
use luo_harness::scenario::{self, snapshot::SnapshotStatus, snapshot::Snapshots};
use luo_kernels::{Arch, Flavour};
use std::path::Path;

/// Every scenario but systemd's (the debug designs besides stock).
const NOT_SYSTEMD: &str = r"^([^s]|s[^y]|sy[^s])[^/]*\.ya?ml$";

const PLAIN: Flavour = Flavour::PLAIN;
const DEBUG: Flavour = Flavour::DEBUG;

fn stock(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "stock", PLAIN)
}
fn anon_unique(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "anon-unique", PLAIN)
}
fn magic_shared(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "magic-shared", PLAIN)
}
fn magic_unique(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "magic-unique", PLAIN)
}
fn debug_stock(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "stock", DEBUG)
}
fn debug_anon_unique(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "anon-unique", DEBUG)
}
fn debug_magic_shared(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "magic-shared", DEBUG)
}
fn debug_magic_unique(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "magic-unique", DEBUG)
}

// arm64 (QEMU's virt board under TCG, kernels cross-built): the whole set on stock and the session
// identity scenarios on the other designs, compared with the same snapshots as x86's except where
// arm64 keeps its own (snapshots/aarch64/, snapshots/README.md).
fn aarch64_stock(path: &Path) -> datatest_stable::Result<()> {
    run_on(path, "stock", PLAIN, Arch::Aarch64)
}
fn aarch64_anon_unique(path: &Path) -> datatest_stable::Result<()> {
    run_on(path, "anon-unique", PLAIN, Arch::Aarch64)
}
fn aarch64_magic_shared(path: &Path) -> datatest_stable::Result<()> {
    run_on(path, "magic-shared", PLAIN, Arch::Aarch64)
}
fn aarch64_magic_unique(path: &Path) -> datatest_stable::Result<()> {
    run_on(path, "magic-unique", PLAIN, Arch::Aarch64)
}

fn run_scenario(path: &Path, variant: &str, flavour: Flavour) -> datatest_stable::Result<()> {
    run_on(path, variant, flavour, Arch::X86_64)
}

fn run_on(path: &Path, variant: &str, flavour: Flavour, arch: Arch) -> datatest_stable::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (s, _) = scenario::load(path).map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        let mut needs = Needs::default();
        s.needs(arch, &mut needs);
        let req = PlanRequest {
            build: luo_kernels::BuildRequest {
                arch,
                ..Default::default()
            }
            .with_variant(variant)
            .with_flavour(flavour),
            ..Default::default()
        };
        if arch != Arch::X86_64 {
            needs = plan::needs_on_arch(&needs);
        }
        let plan = plan::resolve(&req, &needs, &Silent)
            .await
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        let ran = scenario::run(&s, &plan).await.map_err(|e| e.to_string())?;
        // The image built for x86_64 only (systemd): the scenario must be skipped, saying why,
        // before any VM.
        if arch != Arch::X86_64 && s.image == plan::GuestImage::Systemd {
            return match &ran.outcome {
                Outcome::Skip { reason } if reason.contains("amd64") => Ok(()),
                other => {
                    Err(format!("expected a skip for the x86-only image, got {other:?}").into())
                }
            };
        }
        let snapshots = Snapshots {
            root: common::project("snapshots"),
            write_new: std::env::var_os("CI").is_none(),
        };
        match snapshots.check(&ran.report, path)? {
            SnapshotStatus::Matched { .. } => {}
            // The designs keep snapshots only where they differ from stock; on a debug kernel
            // what matters there is that the scenario passes and nothing was found.
            SnapshotStatus::Missing { .. } if flavour.debug && variant != "stock" => {}
            SnapshotStatus::Missing { path } => {
                return Err(format!(
                    "no snapshot {}; review the .snap.new beside it",
                    path.display()
                )
                .into());
            }
            SnapshotStatus::Differs { diff, .. } => {
                return Err(format!("the report differs from its snapshot:\n{diff}").into());
            }
            SnapshotStatus::NotCompared => return Err("the snapshot was not compared".into()),
        }
        if !ran.outcome.passed() {
            return Err(format!("scenario did not pass: {:?}", ran.outcome).into());
        }
        Ok(())
    })
}

datatest_stable::harness! {
    { test = stock, root = "../scenarios", pattern = r"^[^/]+\.ya?ml$" },
    { test = anon_unique, root = "../scenarios", pattern = r"^(session-identity|systemd)-[^/]+\.yaml$" },
    { test = magic_shared, root = "../scenarios", pattern = r"^(session-identity|systemd)-[^/]+\.yaml$" },
    { test = magic_unique, root = "../scenarios", pattern = r"^(session-identity|systemd)-[^/]+\.yaml$" },
    { test = debug_stock, root = "../scenarios", pattern = r"^[^/]+\.ya?ml$" },
    { test = debug_anon_unique, root = "../scenarios", pattern = NOT_SYSTEMD },
    { test = debug_magic_shared, root = "../scenarios", pattern = NOT_SYSTEMD },
    { test = debug_magic_unique, root = "../scenarios", pattern = NOT_SYSTEMD },
    { test = aarch64_stock, root = "../scenarios", pattern = r"^[^/]+\.ya?ml$" },
    { test = aarch64_anon_unique, root = "../scenarios", pattern = r"^session-identity-[^/]+\.yaml$" },
    { test = aarch64_magic_shared, root = "../scenarios", pattern = r"^session-identity-[^/]+\.yaml$" },
    { test = aarch64_magic_unique, root = "../scenarios", pattern = r"^session-identity-[^/]+\.yaml$" },
}
