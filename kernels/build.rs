//! Embeds kernels/fragments/*.config and kernels/variants/*/ into the crate, so the luo-harness
//! binary carries the exact inputs that its cache keys hash.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = String::new();
    out.push_str("pub static FRAGMENTS: &[(&str, &str)] = &[\n");
    for f in sorted(&root.join("fragments")) {
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
    out.push_str("];\n\npub static VARIANTS: &[(&str, &[(&str, &str)])] = &[\n");
    for v in sorted(&root.join("variants")) {
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
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(dest, out).unwrap();
    println!("cargo:rerun-if-changed=fragments");
    println!("cargo:rerun-if-changed=variants");
}

fn sorted(dir: &Path) -> Vec<std::path::PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    for p in &v {
        if p.is_dir() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    v
}
