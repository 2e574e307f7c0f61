//! The kernel's own LUO selftests (tools/testing/selftests/liveupdate), built from the same tree the
//! guest kernel came from, the way vmtest.sh builds them: static, against nolibc and the tree's
//! installed headers.

use crate::cache::Cache;
use crate::error::{IoContext, KernelError};
use crate::make::BuildRequest;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct SelftestBinaries {
    /// The test program (e.g. luo_kexec_simple).
    pub test: PathBuf,
    /// vmtest.sh's init.c: mounts, runs /test_binary, kexecs with `luo_stage=2`.
    pub init: PathBuf,
    pub source_tree: PathBuf,
}

pub fn build(
    req: &BuildRequest,
    cache: &Cache,
    test: &str,
) -> Result<SelftestBinaries, KernelError> {
    let tree = req.source.prepare(cache)?;
    let build_dir = cache.build_dir(&req.source.location(), req.recipe.name());
    let _lock = cache.lock(&format!(
        "selftests-{}",
        build_dir.file_name().unwrap().to_string_lossy()
    ))?;
    let dir = tree.join("tools/testing/selftests/liveupdate");
    let out = build_dir.join("luo-selftests");
    let headers = out.join("headers");
    std::fs::create_dir_all(&out).at(&out)?;
    if !headers.join("include/linux/liveupdate.h").is_file() {
        crate::apt::run(
            Command::new("make")
                .current_dir(&tree)
                .args(["-s", "ARCH=x86_64"])
                .arg(format!("O={}", out.join("hdr-build").display()))
                .arg("headers_install")
                .arg(format!("INSTALL_HDR_PATH={}", headers.display())),
        )?;
    }
    let nolibc = tree.join("tools/include/nolibc");
    let inc = |c: &mut Command| {
        c.arg("-I")
            .arg(headers.join("include"))
            .arg("-I")
            .arg(&nolibc)
            .arg("-I")
            .arg(dir.join("lib/include"));
    };
    let test_bin = out.join(test);
    if is_stale(
        &test_bin,
        &[&dir.join(format!("{test}.c")), &dir.join("lib/lu_utils.c")],
    ) {
        let mut c = Command::new("gcc");
        c.args(["-static", "-O2", "-nostdinc", "-nostdlib"]);
        inc(&mut c);
        c.arg("-o")
            .arg(&test_bin)
            .arg(dir.join(format!("{test}.c")))
            .arg(dir.join("lib/lu_utils.c"));
        crate::apt::run(&mut c)?;
    }
    let init_bin = out.join("init");
    if is_stale(&init_bin, &[&dir.join("init.c")]) {
        let mut c = Command::new("gcc");
        c.args([
            "-s",
            "-static",
            "-Os",
            "-nostdinc",
            "-nostdlib",
            "-fno-asynchronous-unwind-tables",
            "-fno-ident",
            "-fno-stack-protector",
        ]);
        inc(&mut c);
        c.arg("-o").arg(&init_bin).arg(dir.join("init.c"));
        crate::apt::run(&mut c)?;
    }
    Ok(SelftestBinaries {
        test: test_bin,
        init: init_bin,
        source_tree: tree,
    })
}

fn is_stale(out: &Path, inputs: &[&Path]) -> bool {
    let Ok(t) = out.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    inputs.iter().any(|i| {
        i.metadata()
            .and_then(|m| m.modified())
            .map_or(true, |m| m > t)
    })
}
