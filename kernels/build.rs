//! Embeds kernels/fragments/ (and fragments/flavours/), kernels/variants/*/ and
//! kernels/flavours/*/ into the crate, so the luo-harness binary carries the exact inputs that its
//! cache keys hash.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // Read at run time: a build script compiled for another checkout (a shared target directory)
    // must still read this one's files.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = root.as_path();
    let mut out = String::new();
    // Every kernel's fragments, then the ones a flavour (`--debug`, gcov) adds.
    for (name, dir) in [
        ("FRAGMENTS", root.join("fragments")),
        ("FLAVOUR_FRAGMENTS", root.join("fragments/flavours")),
        ("AARCH64_FRAGMENTS", root.join("fragments/aarch64")),
    ] {
        writeln!(out, "pub static {name}: &[(&str, &str)] = &[").unwrap();
        for f in sorted(&dir) {
            if f.extension().is_some_and(|e| e == "config") {
                writeln!(
                    out,
                    "    ({:?}, include_str!({:?})),",
                    f.file_name().unwrap().to_str().unwrap(),
                    f.display()
                )
                .unwrap();
            }
        }
        out.push_str("];\n\n");
    }
    // Patch sets: a variant's (kernels/variants/<name>/), a flavour's (kernels/flavours/<name>/).
    for (name, dir) in [
        ("VARIANTS", root.join("variants")),
        ("FLAVOUR_PATCHES", root.join("flavours")),
    ] {
        patch_sets(&mut out, name, &dir);
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(dest, out).unwrap();
    println!("cargo:rerun-if-changed=fragments");
    println!("cargo:rerun-if-changed=variants");
    println!("cargo:rerun-if-changed=flavours");
}

fn patch_sets(out: &mut String, name: &str, dir: &Path) {
    writeln!(out, "pub static {name}: &[(&str, &[(&str, &str)])] = &[").unwrap();
    for v in sorted(dir) {
        if !v.is_dir() {
            continue;
        }
        writeln!(
            out,
            "    ({:?}, &[",
            v.file_name().unwrap().to_str().unwrap()
        )
        .unwrap();
        for p in sorted(&v) {
            if p.extension().is_some_and(|e| e == "patch") {
                writeln!(
                    out,
                    "        ({:?}, include_str!({:?})),",
                    p.file_name().unwrap().to_str().unwrap(),
                    p.display()
                )
                .unwrap();
            }
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n\n");
}

fn sorted(dir: &Path) -> Vec<std::path::PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    // A missing directory would embed nothing and every variant would be "unknown" at run time.
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    for p in &v {
        if p.is_dir() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    v
}
