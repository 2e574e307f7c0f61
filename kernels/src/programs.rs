//! A scenario's own C programs, built for the guest against a kernel source: statically, with the
//! tree's installed uapi headers and its LUO selftest library (libliveupdate, or 7.2's
//! luo_test_utils.c) so a test written for the kernel's selftests builds unchanged; with static
//! glibc by default or the tree's nolibc. Cached by the sources' contents (and the headers beside
//! them), the tree's identity and the toolchain.

use crate::cache::Cache;
use crate::error::{IoContext, KernelError};
use crate::pipeline::{BuildEvent, stage};
use crate::request::{BuildRequest, toolchain};
use crate::selftests::{DIR, compile, install_headers, library};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Which C library a program is linked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Libc {
    /// Static glibc: stdio, threads, everything a reproducer from a bug report uses.
    Glibc,
    /// The tree's tools/include/nolibc, as vmtest.sh builds the selftests.
    Nolibc,
}

/// What goes into the cache key: every source and every header beside one, by content.
fn key(
    identity: &str,
    name: &str,
    sources: &[PathBuf],
    libc: Libc,
    arch: crate::Arch,
) -> Result<String, KernelError> {
    hash(&[identity, &toolchain(arch)], name, sources, libc)
}

/// The program's own inputs (sources and headers by content, name, C library), not the tree or
/// toolchain it is built with: what a program staged on another machine is found by. Paths do
/// not count, so the same scenario checked out elsewhere has the same key.
pub fn sources_key(name: &str, sources: &[PathBuf], libc: Libc) -> Result<String, KernelError> {
    hash(&[], name, sources, libc)
}

fn hash(
    context: &[&str],
    name: &str,
    sources: &[PathBuf],
    libc: Libc,
) -> Result<String, KernelError> {
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(b"luo-program-v1");
    for c in context {
        part(c.as_bytes());
    }
    part(name.as_bytes());
    part(format!("{libc:?}").as_bytes());
    let mut inputs: Vec<PathBuf> = sources.to_vec();
    for s in sources {
        let dir = s.parent().unwrap_or(Path::new("."));
        if let Ok(rd) = std::fs::read_dir(dir) {
            inputs.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "h")),
            );
        }
    }
    inputs.sort();
    inputs.dedup();
    for p in &inputs {
        part(p.file_name().unwrap_or_default().as_encoded_bytes());
        part(&std::fs::read(p).at(p)?);
    }
    Ok(hex::encode(&h.finalize()[..16]))
}

/// `sources` built as the guest program `name` against `req`'s tree; the path of the binary.
pub fn build(
    req: &BuildRequest,
    cache: &Cache,
    name: &str,
    sources: &[PathBuf],
    libc: Libc,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<PathBuf, KernelError> {
    let dir = cache.root().join("programs").join(key(
        &req.source.identity()?,
        name,
        sources,
        libc,
        req.arch,
    )?);
    let out = dir.join(name);
    if out.is_file() {
        return Ok(out);
    }
    let staged = stage(req, cache, on_event)?;
    let tree = staged.staging.tree();
    let tmp = cache
        .root()
        .join("programs")
        .join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    let headers = tmp.join("headers");
    install_headers(cache, req.arch, &staged, &headers)?;
    let mut inputs: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
    let lib = library(&tree.join(DIR));
    inputs.extend(lib.iter().map(PathBuf::as_path));
    let flags: &[&str] = match libc {
        Libc::Glibc => &["-static", "-O2", "-pthread", "-Wall"],
        Libc::Nolibc => &["-static", "-O2", "-Wall"],
    };
    let built = tmp.join(name);
    let result = compile(
        req.arch,
        &tree,
        &headers,
        libc == Libc::Nolibc,
        flags,
        &inputs,
        &built,
    );
    if let Err(KernelError::Command { output, .. }) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(KernelError::CompileFailed {
            program: name.to_string(),
            output,
        });
    }
    result?;
    let _ = std::fs::remove_dir_all(&headers);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).at(&dir)?;
    Ok(out)
}
