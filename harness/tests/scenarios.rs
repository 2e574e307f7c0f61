//! One test per scenario file in scenarios/, run on the real kernel and compared with its reviewed
//! snapshot in snapshots/<variant>/: the whole set on `stock`, and the session identity scenarios on
//! each of the other session-inode designs (kernels/variants/), whose snapshots differ exactly
//! where the designs do.

mod common;

use luo_harness::prepare::KernelChoice;
use luo_harness::scenario;
use std::path::{Path, PathBuf};

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
        let (s, _) = scenario::load(path).map_err(|e| format!("{e:?}"))?;
        let variant = variant.to_string();
        let req = luo_kernels::BuildRequest {
            variant: variant.clone(),
            ..Default::default()
        };
        let prepared = luo_harness::prepare(
            &KernelChoice::Build(req),
            luo_harness::vm::accel::AccelChoice::Auto,
            &luo_harness::output::Silent,
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
        let (report, _metrics) = scenario::run(&s, &prepared, &variant)
            .await
            .map_err(|e| e.to_string())?;
        let snapshots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../snapshots")
            .join(&variant);
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(snapshots);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_input_file(path);
        let name = report.scenario.clone();
        settings.bind(|| insta::assert_yaml_snapshot!(name, report));
        if !report.passed {
            return Err(format!("scenario failed:\n{}", report.render_human()).into());
        }
        Ok(())
    })
}

datatest_stable::harness! {
    { test = stock, root = "../scenarios", pattern = r"^[^/]+\.ya?ml$" },
    { test = anon_unique, root = "../scenarios", pattern = r"^session-identity-[^/]+\.yaml$" },
    { test = magic_shared, root = "../scenarios", pattern = r"^session-identity-[^/]+\.yaml$" },
    { test = magic_unique, root = "../scenarios", pattern = r"^session-identity-[^/]+\.yaml$" },
}
