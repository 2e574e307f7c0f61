//! The kernel's own LUO selftests (tools/testing/selftests/liveupdate), built from the same source as
//! the kernel under test, the way vmtest.sh builds them: static, against nolibc and the tree's
//! installed uapi headers. Cached by the source's identity, like kernels.

use crate::cache::Cache;
use crate::error::{IoContext, KernelError};
use crate::make::Make;
use crate::pipeline::{BuildEvent, stage};
use crate::request::{BuildRequest, toolchain};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct SelftestBinaries {
    /// The test program (e.g. luo_kexec_simple).
    pub test: PathBuf,
    /// vmtest.sh's init.c: mounts, runs /test_binary, kexecs with `luo_stage=2`.
    pub init: PathBuf,
}

const DIR: &str = "tools/testing/selftests/liveupdate";

fn key(identity: &str, test: &str) -> String {
    let mut h = Sha256::new();
    for part in ["luo-selftests-v1", identity, test, &toolchain()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// `test` built from `req`'s source (its variant does not matter: selftests are user space).
pub fn build(
    req: &BuildRequest,
    cache: &Cache,
    test: &str,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<SelftestBinaries, KernelError> {
    let dir = cache
        .selftests_dir()
        .join(key(&req.source.identity()?, test));
    let found = |dir: &Path| {
        let b = SelftestBinaries {
            test: dir.join(test),
            init: dir.join("init"),
        };
        (b.test.is_file() && b.init.is_file()).then_some(b)
    };
    if let Some(b) = found(&dir) {
        return Ok(b);
    }
    let staged = stage(req, cache, on_event)?;
    if let Some(b) = found(&dir) {
        return Ok(b);
    }
    let tree = staged.staging.tree();
    let sources = tree.join(DIR);
    if !sources.join(format!("{test}.c")).is_file() {
        return Err(KernelError::NoSelftest {
            name: test.to_string(),
            available: available(&sources),
        });
    }
    let tmp = cache
        .selftests_dir()
        .join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    let headers = tmp.join("headers");
    let mut make = Make::new(
        cache,
        &tree,
        &cache.build_dir(&staged.family, "uapi-headers"),
    )?;
    make.run(
        &[
            "-s",
            "headers_install",
            &format!("INSTALL_HDR_PATH={}", headers.display()),
        ],
        &mut |_| {},
    )?;
    compile(
        &tree,
        &headers,
        &["-static", "-O2"],
        &[
            &sources.join(format!("{test}.c")),
            &sources.join("lib/lu_utils.c"),
        ],
        &tmp.join(test),
    )?;
    compile(
        &tree,
        &headers,
        &[
            "-s",
            "-static",
            "-Os",
            "-fno-asynchronous-unwind-tables",
            "-fno-ident",
            "-fno-stack-protector",
        ],
        &[&sources.join("init.c")],
        &tmp.join("init"),
    )?;
    let _ = std::fs::remove_dir_all(&headers);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).at(&dir)?;
    found(&dir).ok_or_else(|| KernelError::NoSelftest {
        name: test.to_string(),
        available: vec![],
    })
}

/// gcc against nolibc and the installed headers, as vmtest.sh does.
fn compile(
    tree: &Path,
    headers: &Path,
    flags: &[&str],
    sources: &[&Path],
    out: &Path,
) -> Result<(), KernelError> {
    let dir = tree.join(DIR);
    let mut c = Command::new("gcc");
    c.args(flags)
        .args(["-nostdinc", "-nostdlib"])
        .arg("-I")
        .arg(headers.join("include"))
        .arg("-I")
        .arg(tree.join("tools/include/nolibc"))
        .arg("-I")
        .arg(dir.join("lib/include"))
        .arg("-o")
        .arg(out)
        .args(sources);
    crate::apt::run(&mut c)
}

/// The selftest programs a tree has (`<name>.c` beside its Makefile).
fn available(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let stem = n.strip_suffix(".c")?.to_string();
                    (stem != "init").then_some(stem)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
