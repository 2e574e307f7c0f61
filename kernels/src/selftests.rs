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

#[cfg(test)]
mod tests {
    #[test]
    fn the_shared_code_is_found_in_either_layout() {
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(
            old.join("Makefile"),
            "LIB_C += luo_test_utils.c\nTEST_GEN_PROGS += liveupdate\n",
        )
        .unwrap();
        assert_eq!(super::library(&old), [old.join("luo_test_utils.c")]);
        let new = d.path().join("new");
        std::fs::create_dir_all(new.join("lib")).unwrap();
        std::fs::write(new.join("lib/lu_utils.c"), "").unwrap();
        std::fs::write(new.join("Makefile"), "include lib/libliveupdate.mk\n").unwrap();
        assert_eq!(super::library(&new), [new.join("lib/lu_utils.c")]);
    }
}
use std::process::Command;

#[derive(Debug, Clone)]
pub struct SelftestBinaries {
    /// The test program (e.g. luo_kexec_simple).
    pub test: PathBuf,
    /// vmtest.sh's init.c (mounts, runs /test_binary, kexecs with `luo_stage=2`), where the tree
    /// has one (7.3 on).
    pub init: Option<PathBuf>,
}

pub(crate) const DIR: &str = "tools/testing/selftests/liveupdate";

fn key(identity: &str, test: &str, arch: crate::Arch) -> String {
    let mut h = Sha256::new();
    for part in ["luo-selftests-v1", identity, test, &toolchain(arch)] {
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
        .join(key(&req.source.identity()?, test, req.arch));
    let found = |dir: &Path| {
        let b = SelftestBinaries {
            test: dir.join(test),
            init: Some(dir.join("init")).filter(|p| p.is_file()),
        };
        b.test.is_file().then_some(b)
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
    install_headers(cache, req.arch, &staged, &headers)?;
    let mut inputs = vec![sources.join(format!("{test}.c"))];
    inputs.extend(library(&sources));
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    // vmtest.sh (7.3 on) builds them against nolibc; before it they are ordinary programs, which
    // the guest (no libc) runs when linked statically with glibc.
    let nolibc = sources.join("vmtest.sh").is_file();
    compile(
        req.arch,
        &tree,
        &headers,
        nolibc,
        &["-static", "-O2"],
        &inputs,
        &tmp.join(test),
    )?;
    if sources.join("init.c").is_file() {
        compile(
            req.arch,
            &tree,
            &headers,
            true,
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
    }
    let _ = std::fs::remove_dir_all(&headers);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).at(&dir)?;
    found(&dir).ok_or_else(|| KernelError::NoSelftest {
        name: test.to_string(),
        available: vec![],
    })
}

/// `make headers_install` of the staged tree into `dest` (its `include/` is what programs use).
pub(crate) fn install_headers(
    cache: &Cache,
    arch: crate::Arch,
    staged: &crate::pipeline::StagedSource,
    dest: &Path,
) -> Result<(), KernelError> {
    let tree = staged.staging.tree();
    let dir = format!("uapi-headers{}", arch.dir_suffix());
    let mut make = Make::new(cache, arch, &tree, &cache.build_dir(&staged.family, &dir))?;
    make.run(
        &[
            "-s",
            "headers_install",
            &format!("INSTALL_HDR_PATH={}", dest.display()),
        ],
        &mut |_| {},
    )
}

/// The selftests' shared code, in whichever layout the tree has: `lib/*.c` (7.3: libliveupdate)
/// or what the Makefile adds to `LIB_C` (7.2: luo_test_utils.c).
pub(crate) fn library(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("lib"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "c"))
                .collect()
        })
        .unwrap_or_default();
    let makefile = std::fs::read_to_string(dir.join("Makefile")).unwrap_or_default();
    for line in makefile.lines() {
        if let Some(rest) = line.trim().strip_prefix("LIB_C") {
            let files = rest.trim_start_matches([' ', '+', ':', '=']);
            v.extend(files.split_whitespace().map(|f| dir.join(f)));
        }
    }
    v.sort();
    v.dedup();
    v
}

/// gcc against the installed headers, and nolibc as vmtest.sh does.
pub(crate) fn compile(
    arch: crate::Arch,
    tree: &Path,
    headers: &Path,
    nolibc: bool,
    flags: &[&str],
    sources: &[&Path],
    out: &Path,
) -> Result<(), KernelError> {
    let dir = tree.join(DIR);
    crate::hosttools::require(&[(arch.gcc(), arch.gcc_package())])?;
    let mut c = Command::new(arch.gcc());
    c.args(flags);
    if nolibc {
        c.args(["-nostdinc", "-nostdlib"])
            .arg("-I")
            .arg(tree.join("tools/include/nolibc"));
    }
    c.arg("-I")
        .arg(headers.join("include"))
        .arg("-I")
        .arg(dir.join("lib/include"))
        .arg("-I")
        .arg(&dir)
        .arg("-o")
        .arg(out)
        .args(sources);
    if nolibc && arch == crate::Arch::Aarch64 {
        // GCC calls arm64's atomics out of line by default (__aarch64_swp1_relax and friends,
        // in libgcc, which picks LSE through glibc's getauxval): without a libc, inline them.
        c.arg("-mno-outline-atomics");
    }
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
                    (stem != "init" && !stem.ends_with("_utils")).then_some(stem)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
