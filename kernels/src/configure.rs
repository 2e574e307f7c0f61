//! Making the .config for a request and checking that it holds every option asked for.

use crate::config::{self, Fragment};
use crate::error::{IoContext, KernelError};
use crate::make::Make;
use crate::request::{BuildRequest, Recipe};
use std::path::Path;

/// The fragments the recipe configures with: the embedded ones (plus the user's), or the tree's
/// own selftest fragments for the upstream recipe.
fn fragments(req: &BuildRequest, tree: &Path) -> Result<Vec<Fragment>, KernelError> {
    match req.recipe {
        Recipe::Minimal => {
            let version = crate::staging::version(tree)?;
            Ok(req
                .fragments()
                .into_iter()
                .filter(|f| f.applies_to(version))
                .collect())
        }
        Recipe::UpstreamSelftest => {
            let dir = tree.join("tools/testing/selftests/liveupdate");
            // vmtest.sh: `cat config.$target config`, $target being x86_64 or aarch64.
            let arch_config = format!("config.{}", req.arch.name());
            let mut own = [arch_config.as_str(), "config"]
                .iter()
                .map(|f| {
                    Ok(Fragment {
                        name: format!("selftests/liveupdate/{f}"),
                        text: std::fs::read_to_string(dir.join(f)).at(dir.join(f))?,
                    })
                })
                .collect::<Result<Vec<_>, KernelError>>()?;
            own.extend(req.flavour.fragments());
            Ok(own)
        }
    }
}

/// Writes the .config in the build directory and verifies it against the fragments; a missing
/// option is an error naming it, its fragment and what Kconfig says it needs.
pub(crate) fn configure(req: &BuildRequest, make: &mut Make) -> Result<(), KernelError> {
    let fragments = fragments(req, &make.tree)?;
    let merged_path = make.build_dir.join("luo-harness-fragments.config");
    write_if_changed(&merged_path, &config::merge(&fragments))?;
    match (&req.base_config, req.recipe) {
        (Some(base), _) => {
            // The user's own .config, the harness's options after it (a later assignment wins).
            let dot = make.build_dir.join(".config");
            std::fs::write(
                &dot,
                format!("{}\n{}", base.text, config::merge(&fragments)),
            )
            .at(&dot)?;
            make.run(&["olddefconfig"], &mut |_| {})?
        }
        (None, Recipe::Minimal) => make.run(
            &[
                &format!("KCONFIG_ALLCONFIG={}", merged_path.display()),
                "allnoconfig",
            ],
            &mut |_| {},
        )?,
        (None, Recipe::UpstreamSelftest) => {
            // vmtest.sh: `cat config.$target config > .config; make olddefconfig`.
            let dot = make.build_dir.join(".config");
            std::fs::copy(&merged_path, &dot).at(&dot)?;
            make.run(&["olddefconfig"], &mut |_| {})?
        }
    }
    let dot = make.build_dir.join(".config");
    let final_config = std::fs::read_to_string(&dot).at(&dot)?;
    let final_config = config::parse_dot_config(&final_config);
    let mut missing = config::verify(&fragments, &final_config);
    if !missing.is_empty() {
        config::explain(&mut missing, &make.tree, &final_config);
        return Err(KernelError::MissingOptions(missing));
    }
    Ok(())
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), KernelError> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).at(path)?;
    }
    Ok(())
}
