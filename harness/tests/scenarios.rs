//! One test per scenario file in scenarios/, run on the real kernel and compared with its reviewed
//! snapshot in snapshots/<variant>/ (the same comparison `luo-harness run` makes): the whole set on
//! `stock`, and the session identity and systemd scenarios on each of the other session-inode
//! designs (kernels/variants/), whose snapshots differ exactly where the designs do. Outside CI a differing
//! or missing snapshot is written as `.snap.new` for `cargo insta review`.

mod common;

use luo_harness::events::Silent;
use luo_harness::plan::{self, Needs, PlanRequest};
use luo_harness::scenario::{self, snapshot::SnapshotStatus, snapshot::Snapshots};
use std::path::Path;

fn stock(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "stock")
}
fn anon_unique(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "anon-unique")
}
fn magic_shared(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "magic-shared")
}
fn magic_unique(path: &Path) -> datatest_stable::Result<()> {
    run_scenario(path, "magic-unique")
}

fn run_scenario(path: &Path, variant: &str) -> datatest_stable::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (s, _) = scenario::load(path).map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        let mut needs = Needs::default();
        s.needs(&mut needs);
        let req = PlanRequest {
            build: luo_kernels::BuildRequest::default().with_variant(variant),
            ..Default::default()
        };
        let plan = plan::resolve(&req, &needs, &Silent)
            .await
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?;
        let ran = scenario::run(&s, &plan).await.map_err(|e| e.to_string())?;
        let snapshots = Snapshots {
            root: common::project("snapshots"),
            write_new: std::env::var_os("CI").is_none(),
        };
        match snapshots.check(&ran.report, path)? {
            SnapshotStatus::Matched { .. } => {}
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
}
