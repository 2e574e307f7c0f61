//! Kernel variants: named patch sets from kernels/variants/, embedded at compile time.
//!
//! Patches are applied to the family's staged tree (see staging.rs) for a build, under the family's
//! lock; the next build's sync restores what they changed.

use crate::error::{IoContext, KernelError};
use crate::staging::Staging;
use std::io::Write;
use std::path::Path;
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

/// Variants that plant a bug for the harness's own tests (`test-*`): built on demand, never
/// among the designs.
pub fn is_test_only(name: &str) -> bool {
    name.starts_with("test-")
}

/// What a test-only variant plants, which decides the flavour it is tested in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planted {
    /// A bug a sanitizer or kmemleak reports: tested on the debug flavour.
    Bug,
    /// A cost (memory, time) that `delta` measures: tested on the plain flavour, whose figures
    /// are the ones users see.
    Cost,
    /// A break of the ABI's contract (an errno, a file's state) that only a program can see,
    /// which `fuzz` must find: tested on the plain flavour.
    Contract,
}

/// What the test-only variant `name` plants; None for a design.
pub fn planted(name: &str) -> Option<Planted> {
    match name {
        "test-fat-session" | "test-slow-kexec" => Some(Planted::Cost),
        "test-retrieve-twice" => Some(Planted::Contract),
        n if is_test_only(n) => Some(Planted::Bug),
        _ => None,
    }
}

/// The session-inode designs: every variant but the test-only ones.
pub fn designs() -> impl Iterator<Item = Variant> {
    all().filter(|v| !is_test_only(v.name))
}

pub fn find(name: &str) -> Result<Variant, KernelError> {
    all().find(|v| v.name == name).ok_or_else(|| {
        KernelError::UnknownVariant(
            name.to_string(),
            all().map(|v| v.name).collect::<Vec<_>>().join(", "),
        )
    })
}

pub(crate) fn patch(tree: &Path, text: &str, args: &[&str]) -> std::io::Result<(bool, String)> {
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

/// The files a unified diff writes (`+++ b/<path>`), relative to the tree.
pub(crate) fn touched_files(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| l.strip_prefix("+++ "))
        .map(|p| p.split('\t').next().unwrap_or(p).trim())
        .filter(|p| *p != "/dev/null")
        .map(|p| p.strip_prefix("b/").unwrap_or(p).to_string())
        .collect()
}

/// Every file `variant`'s patches write, relative to the tree.
pub fn touched(variant: &Variant) -> Vec<String> {
    variant
        .patches
        .iter()
        .flat_map(|(_, text)| touched_files(text))
        .collect()
}

/// Applies `variant`'s patches to the staged tree. Each file a patch writes is made private first,
/// so the patch cannot reach a linked source, and the next sync puts the source's version back:
/// nothing needs reversing, and an interrupted build leaves nothing behind that the next one keeps.
pub fn apply(variant: &Variant, staging: &mut Staging) -> Result<(), KernelError> {
    let tree = staging.tree();
    for (name, text) in variant.patches {
        for f in touched_files(text) {
            staging.make_private(&f)?;
        }
        let (ok, output) = patch(&tree, text, &[]).at(&tree)?;
        if !ok {
            return Err(KernelError::PatchFailed {
                variant: variant.name.into(),
                patch: name.to_string(),
                tree: tree.clone(),
                output,
            });
        }
    }
    Ok(())
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
    fn the_designs_are_the_four_and_test_variants_are_found_by_name() {
        let designs: Vec<_> = designs().map(|v| v.name).collect();
        assert_eq!(
            designs,
            ["anon-unique", "magic-shared", "magic-unique", "stock"]
        );
        assert!(find("test-uaf-session").is_ok() && is_test_only("test-uaf-session"));
        assert_eq!(planted("test-uaf-session"), Some(Planted::Bug));
        assert_eq!(planted("test-fat-session"), Some(Planted::Cost));
        assert_eq!(planted("test-retrieve-twice"), Some(Planted::Contract));
        assert!(find("test-slow-kexec").is_ok() && planted("stock").is_none());
        assert!(
            touched(&find("test-leak-session").unwrap()) == ["kernel/liveupdate/luo_session.c"]
        );
    }

    #[test]
    fn a_variant_patches_only_private_copies_and_the_next_sync_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("kernel")).unwrap();
        std::fs::write(src.join("kernel/f.c"), "a\nb\nc\n").unwrap();
        const P: &str = "--- a/kernel/f.c\n+++ b/kernel/f.c\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n--- /dev/null\n+++ b/kernel/new.c\n@@ -0,0 +1 @@\n+new\n";
        assert_eq!(touched_files(P), ["kernel/f.c", "kernel/new.c"]);
        static PATCHES: &[(&str, &str)] = &[("0001.patch", P)];
        let v = Variant {
            name: "t",
            patches: PATCHES,
        };
        let mut staging = Staging::open(&dir.path().join("stage")).unwrap();
        staging.sync(&src, true).unwrap();
        apply(&v, &mut staging).unwrap();
        let staged = staging.tree();
        assert_eq!(
            std::fs::read_to_string(staged.join("kernel/f.c")).unwrap(),
            "a\nB\nc\n"
        );
        assert_eq!(
            std::fs::read_to_string(src.join("kernel/f.c")).unwrap(),
            "a\nb\nc\n",
            "the linked source must not change"
        );
        staging.sync(&src, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(staged.join("kernel/f.c")).unwrap(),
            "a\nb\nc\n"
        );
        assert!(
            !staged.join("kernel/new.c").exists(),
            "a file a patch added is gone again"
        );
    }
}
