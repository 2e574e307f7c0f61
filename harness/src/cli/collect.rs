//! Scenario files from the command line: the files named, and the *.yaml directly inside the
//! directories named; all of them loaded and validated, every problem of every file reported.

use luo_harness::plan::Needs;
use luo_harness::run::Loaded;
use luo_harness::scenario::{self, LoadError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CollectError {
    #[error("{0}: no such file or directory")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no scenario files found in {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Empty(Vec<PathBuf>),
}

/// The paths given, or `scenarios/`.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CollectError> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for p in &paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| CollectError::Read {
                    path: p.clone(),
                    source,
                })?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            v.sort();
            files.extend(v);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(CollectError::Missing(p.clone()));
        }
    }
    if files.is_empty() {
        return Err(CollectError::Empty(paths));
    }
    Ok(files)
}

/// Every file loaded, or every problem of every file.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Loaded>, Vec<LoadError>> {
    load_all_for(files, luo_kernels::Arch::X86_64)
}

/// `load_all` for a run on `arch`: the programs the scenarios bring must be that machine's.
pub fn load_all_for(
    files: &[PathBuf],
    arch: luo_kernels::Arch,
) -> Result<Vec<Loaded>, Vec<LoadError>> {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        match scenario::load_for(f, arch) {
            Ok((scenario, _)) => ok.push(Loaded {
                file: f.clone(),
                scenario,
            }),
            Err(e) => bad.push(e),
        }
    }
    if bad.is_empty() { Ok(ok) } else { Err(bad) }
}

/// What the scenarios need on `arch` before any VM starts: kernels, selftests, programs, images.
pub fn needs(loaded: &[Loaded], arch: luo_kernels::Arch) -> Needs {
    let mut needs = Needs::default();
    for l in loaded {
        l.scenario.needs(arch, &mut needs);
    }
    needs
}

/// Scenarios run at once: as asked, or one per core.
pub fn parallel(asked: Option<u32>) -> usize {
    asked
        .map(|p| p as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The snapshot directory for scenarios in `dir`: `snapshots/` beside it (the project's layout).
pub fn default_snapshots(first_file: &Path) -> Option<PathBuf> {
    let dir = first_file.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let parent = std::fs::canonicalize(dir).ok()?.parent()?.to_path_buf();
    let candidate = parent.join("snapshots");
    candidate.is_dir().then_some(candidate)
}
