//! Coverage of the live-update code: the gcov counters every boot of a gcov kernel left (read
//! before each kexec, which discards them, and at the end: scenario/watch.rs) become lcov
//! tracefiles (Debian's geninfo runs gcov on them), merged per kernel over every boot and scenario,
//! limited to the files the kernel profiled, rendered by genhtml, and summed up per file.
//!
//! ```text
//! <out>/<kernel>.info          the merged tracefile of one kernel (source paths under src/)
//! <out>/html/index.html        genhtml's report of the run's first kernel (others: html-<kernel>/)
//! <out>/summary.json           lines, functions and branches per file, and the functions no
//!                              scenario reached
//! <out>/src/<kernel>/<file>    the profiled sources as that kernel was built from them
//! <out>/gcda/<kernel>/<scenario>/boot-<n>/   the raw counters and notes, for lcov by hand
//! ```

pub mod gcda;
pub mod summary;
mod tracefile;

use crate::plan::PlannedKernel;
use crate::result::ScenarioResult;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
pub use summary::{FileCoverage, KernelSummary, Summary};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CoverageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[diagnostic(help("install lcov (bash ci/install-deps does)"))]
    #[error("`{tool}` is needed for coverage and is not on PATH")]
    NoTool { tool: &'static str },
    #[error("`{command}` failed ({status}):\n{output}")]
    Tool {
        command: String,
        status: String,
        output: String,
    },
    #[error("{path}: not a tracefile lcov reads: {why}")]
    Tracefile { path: PathBuf, why: String },
    /// A boot of a gcov kernel without data: no counters were read (the scenario failed before
    /// its checkpoint, or the kernel lost them).
    #[error(
        "no scenario left gcov data: {}",
        if .0.is_empty() { "no scenario ran on a gcov kernel".to_string() } else { .0.join("; ") }
    )]
    NoData(Vec<String>),
}

impl crate::outcome::Classify for CoverageError {
    fn kind(&self) -> crate::outcome::Kind {
        match self {
            CoverageError::NoData(_) => crate::outcome::Kind::Fail,
            _ => crate::outcome::Kind::InfraFailure,
        }
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CoverageError + '_ {
    move |source| CoverageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `coverage` wrote for one kernel.
#[derive(Debug, Clone)]
pub struct KernelCoverage {
    pub kernel: String,
    pub tracefile: PathBuf,
    pub html: PathBuf,
    pub summary: KernelSummary,
}

/// The gcov data of one kernel, over every boot that ran it.
struct Group<'a> {
    kernel: &'a PlannedKernel,
    boots: Vec<(&'a str, u32, &'a [luo_protocol::GcovFile])>,
}

/// Tracefiles, HTML and the summary of `results`' gcov data under `out`.
pub fn write(results: &[ScenarioResult], out: &Path) -> Result<Vec<KernelCoverage>, CoverageError> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut missing = Vec::new();
    for r in results {
        if r.gcov.is_empty() {
            missing.push(format!("{}: {}", r.name, why_no_data(r)));
        }
        for c in &r.gcov {
            let Some(notes) = &c.kernel.gcov else {
                continue;
            };
            groups
                .entry(notes.dir.display().to_string())
                .or_insert_with(|| Group {
                    kernel: &c.kernel,
                    boots: vec![],
                })
                .boots
                .push((&r.name, c.boot, &c.files));
        }
    }
    if groups.is_empty() {
        return Err(CoverageError::NoData(missing));
    }
    for tool in ["geninfo", "genhtml", "gcov"] {
        if luo_kernels::hosttools::which(tool).is_none() {
            return Err(CoverageError::NoTool { tool });
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut written = Vec::new();
    let mut first = true;
    for group in groups.values() {
        let slug = slug(group.kernel);
        let html = match first {
            true => out.join("html"),
            false => out.join(format!("html-{slug}")),
        };
        first = false;
        written.push(tracefile::kernel(group, &slug, out, &html)?);
    }
    let summary = Summary {
        kernels: written.iter().map(|k| k.summary.clone()).collect(),
    };
    let path = out.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).expect("a summary serialises");
    std::fs::write(&path, json + "\n").map_err(io(&path))?;
    Ok(written)
}

/// Why a scenario brought no gcov data.
fn why_no_data(r: &ScenarioResult) -> String {
    match r
        .report
        .as_ref()
        .and_then(|rep| rep.failures.iter().find(|f| f.contains("gcov")))
    {
        Some(f) => f.clone(),
        None if r.report.is_none() => format!("it did not run to its end ({})", r.outcome.label()),
        None => "its kernel is not a gcov flavour".into(),
    }
}

/// A kernel's name in file names: variant and the key of its cache entry.
fn slug(k: &PlannedKernel) -> String {
    let key = k
        .boot_image
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().chars().take(12).collect::<String>())
        .unwrap_or_default();
    format!("{}-{key}", k.variant)
}
