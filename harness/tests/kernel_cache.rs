//! The kernel cache under faults: a published kernel truncated since is found by its hash, never
//! booted, and rebuilt once, by one of two `setup` processes started at the same moment.
//!
//! The test uses a private cache whose kernels/ holds links to the shared cache's entries (a copy
//! for the default kernel, which it damages) and whose sources, staged trees, build directories,
//! ccache and locks are the shared ones, so the rebuild is incremental and takes the same locks as
//! every other process.

mod common;

use common::session;
use luo_kernels::cache::Lookup;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn shared_cache() -> PathBuf {
    luo_kernels::Cache::from_env().root().to_path_buf()
}

/// The default kernel's published directory, built if it has to be.
fn default_kernel_dir() -> PathBuf {
    let out = common::building()
        .args(["kernel", "build"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "building the default kernel");
    let bz = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    bz.parent().unwrap().to_path_buf()
}

/// A private cache beside the shared one, as described above; `damaged` is copied, not linked.
fn private_cache(damaged: &Path) -> tempfile::TempDir {
    let shared = shared_cache();
    let private = tempfile::Builder::new()
        .prefix("luo-cache")
        .tempdir_in(shared.parent().unwrap())
        .unwrap();
    for e in std::fs::read_dir(&shared).unwrap().flatten() {
        let name = e.file_name();
        if name == "kernels" {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), private.path().join(&name)).unwrap();
    }
    let kernels = private.path().join("kernels");
    for k in std::fs::read_dir(shared.join("kernels")).unwrap().flatten() {
        if k.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let dest = kernels.join(k.file_name());
        std::fs::create_dir_all(&dest).unwrap();
        for f in std::fs::read_dir(k.path()).unwrap().flatten() {
            // A gcov kernel keeps its notes in a directory: directories cannot be
            // hard-linked, and only the damaged kernel's files are written to.
            if f.file_type().unwrap().is_dir() {
                std::os::unix::fs::symlink(f.path(), dest.join(f.file_name())).unwrap();
            } else if k.path() == damaged {
                std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
            } else {
                std::fs::hard_link(f.path(), dest.join(f.file_name())).unwrap();
            }
        }
    }
    private
}

fn setup_in(cache: &Path) -> std::process::Child {
    let mut cmd = common::building();
    cmd.arg("setup")
        .current_dir(common::project(""))
        .env("LUO_HARNESS_CACHE", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    session::spawn(cmd)
}

#[test]
fn a_truncated_kernel_is_rebuilt_once_by_two_setups_at_once_and_never_booted() {
    let shared_dir = default_kernel_dir();
    let key = shared_dir.file_name().unwrap().to_owned();
    let private = private_cache(&shared_dir);
    let damaged = private.path().join("kernels").join(&key);
    let bz = damaged.join("bzImage");
    let len = std::fs::metadata(&bz).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&bz)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let cache = luo_kernels::Cache::at(private.path());
    assert!(
        matches!(cache.lookup(&key.to_string_lossy()), Lookup::Damaged { .. }),
        "the truncated bzImage must not be served"
    );

    let (a, b) = (setup_in(private.path()), setup_in(private.path()));
    let (sa, sb) = (a.id() as i32, b.id() as i32);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    session::assert_empty(sa);
    session::assert_empty(sb);
    let text = |o: &std::process::Output| {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let (ta, tb) = (text(&a), text(&b));
    assert!(a.status.success(), "first setup:\n{ta}");
    assert!(b.status.success(), "second setup:\n{tb}");
    let entry = damaged.display().to_string();
    for t in [&ta, &tb] {
        assert!(
            t.contains(&format!(
                "cached entry {entry} not served: bzImage does not match its SHA-256"
            )),
            "each setup must say why it does not use the entry:\n{t}"
        );
    }
    let builds = [&ta, &tb]
        .iter()
        .filter(|t| t.contains("stock: built in"))
        .count();
    assert_eq!(
        builds, 1,
        "exactly one of the two builds; the other waits and finds it:\n{ta}\n---\n{tb}"
    );

    let rebuilt = match cache.lookup(&key.to_string_lossy()) {
        Lookup::Hit(k) => k,
        other => panic!("the rebuilt kernel must be served: {other:?}"),
    };
    assert!(std::fs::metadata(rebuilt.boot_image()).unwrap().len() > len / 2);

    // And it boots: the scenario passes on the private cache.
    let run = common::building()
        .args(["run", "--out"])
        .arg(private.path().join("reports"))
        .arg(common::project("scenarios/memfd-roundtrip.yaml"))
        .env("LUO_HARNESS_CACHE", private.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
}
