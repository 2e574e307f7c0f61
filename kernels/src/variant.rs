//! Kernel variants: named patch sets from kernels/variants/, embedded at compile time.
//!
//! Patches are applied to the shared source tree only for the duration of a build, under the source's
//! lock, and reversed afterwards. A marker file records what is applied, so a build killed midway is
//! reversed by the next one before anything else happens.

use crate::error::{IoContext, KernelError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: &'static str,
    /// (file name, patch text), applied in this order.
    pub patches: &'static [(&'static str, &'static str)],
}

pub const DEFAULT: &str = "stock";

pub fn all() -> impl Iterator<Item = Variant> {
    crate::embedded::VARIANTS
        .iter()
        .map(|(name, patches)| Variant { name, patches })
}

pub fn find(name: &str) -> Result<Variant, KernelError> {
    all().find(|v| v.name == name).ok_or_else(|| {
        KernelError::UnknownVariant(
            name.to_string(),
            all().map(|v| v.name).collect::<Vec<_>>().join(", "),
        )
    })
}

fn patch(tree: &Path, text: &str, args: &[&str]) -> std::io::Result<(bool, String)> {
    let mut child = Command::new("patch")
        .current_dir(tree)
        .args([
            "-p1",
            "--batch",
            "--silent",
            "--no-backup-if-mismatch",
            "-r",
            "-",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Fails with the patch's own words if any patch of `variant` does not apply cleanly to `tree`.
pub fn check_applies(variant: &Variant, tree: &Path) -> Result<(), KernelError> {
    // Patches may build on each other, so only the first can be dry-run against the pristine tree;
    // the others are checked for real by `Applied::apply`.
    if let Some((name, text)) = variant.patches.first() {
        let (ok, output) = patch(tree, text, &["--dry-run"]).at(tree)?;
        if !ok {
            return Err(KernelError::PatchFailed {
                variant: variant.name.into(),
                patch: name.to_string(),
                tree: tree.into(),
                output,
            });
        }
    }
    Ok(())
}

/// Patches applied to a tree; reversed on drop.
pub struct Applied {
    tree: PathBuf,
    marker: PathBuf,
    applied: Vec<&'static str>,
}

impl Applied {
    /// Reverses whatever an interrupted build left applied (per `marker`), then applies `variant`.
    pub fn apply(variant: &Variant, tree: &Path, marker: &Path) -> Result<Applied, KernelError> {
        if let Ok(left) = std::fs::read_to_string(marker)
            && let Some(v) = left.lines().next().and_then(|name| find(name).ok())
        {
            tracing::warn!(
                variant = v.name,
                "reversing patches left applied by an interrupted build"
            );
            drop(Applied {
                tree: tree.into(),
                marker: marker.into(),
                applied: v.patches.iter().map(|(_, t)| *t).collect(),
            });
        }
        let mut done = Applied {
            tree: tree.into(),
            marker: marker.into(),
            applied: vec![],
        };
        if variant.patches.is_empty() {
            return Ok(done);
        }
        std::fs::write(marker, format!("{}\n", variant.name)).at(marker)?;
        for (name, text) in variant.patches {
            let (ok, output) = patch(tree, text, &[]).at(tree)?;
            if !ok {
                return Err(KernelError::PatchFailed {
                    variant: variant.name.into(),
                    patch: name.to_string(),
                    tree: tree.into(),
                    output,
                });
            }
            done.applied.push(text);
        }
        Ok(done)
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        for text in self.applied.iter().rev() {
            match patch(&self.tree, text, &["-R"]) {
                Ok((true, _)) => {}
                Ok((false, out)) => {
                    tracing::error!(tree = %self.tree.display(), "reversing a variant patch failed: {out}")
                }
                Err(e) => tracing::error!(tree = %self.tree.display(), "running patch -R: {e}"),
            }
        }
        let _ = std::fs::remove_file(&self.marker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_exists_and_has_no_patches() {
        assert_eq!(find("stock").unwrap().patches.len(), 0);
        assert!(matches!(find("nope"), Err(KernelError::UnknownVariant(..))));
    }

    #[test]
    fn applied_patches_are_reversed_on_drop_and_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f.c"), "a\nb\nc\n").unwrap();
        const P: &str = "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n";
        static PATCHES: &[(&str, &str)] = &[("0001.patch", P)];
        let v = Variant {
            name: "t",
            patches: PATCHES,
        };
        let marker = dir.path().join("marker");
        check_applies(&v, &tree).unwrap();
        let applied = Applied::apply(&v, &tree, &marker).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("f.c")).unwrap(),
            "a\nB\nc\n"
        );
        assert!(marker.exists());
        drop(applied);
        assert_eq!(
            std::fs::read_to_string(tree.join("f.c")).unwrap(),
            "a\nb\nc\n"
        );
        assert!(!marker.exists());
    }
}
