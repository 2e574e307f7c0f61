//! `luo-harness delta`: what a patch costs. A base and a patched kernel, each measured
//! alternately in one run ([`crate::measure`]); per figure and session count the medians, the
//! change with its interval, and a verdict corrected for the number of figures compared; the
//! scenarios' reports of both kernels side by side.

mod plot;
mod render;

pub use plot::svg;
pub use render::{email, table};

use crate::events::{Event, EventSink};
use crate::measure::metric::Per;
use crate::measure::stats::{self, Change, Level};
use crate::measure::{self, MeasureError, Sample, Side, metric};
use crate::plan::{self, Needs, Plan, PlanError, PlanRequest};
use crate::scenario::{self, Scenario};
use crate::vm::accel::AccelChoice;
use luo_kernels::BuildRequest;
use luo_kernels::spec::KernelSpec;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Which kernel, built how.
#[derive(Debug, Clone)]
pub struct KernelChoice {
    pub spec: KernelSpec,
    pub build: BuildRequest,
}

#[derive(Debug, Clone)]
pub struct DeltaOptions {
    pub base: KernelChoice,
    pub patched: KernelChoice,
    /// Scenarios whose reports are compared (behaviour), each run once on each kernel.
    pub scenarios: Vec<Scenario>,
    pub sessions: Vec<u32>,
    /// Memfds every VM preserves (0: no per-file figures).
    pub files: u32,
    /// Samples per kernel and session count.
    pub runs: u32,
    /// The table's confidence (e.g. 0.95), for all its figures together.
    pub confidence: f64,
    pub accel: AccelChoice,
}

impl DeltaOptions {
    /// The figures the table compares, each at the corrected level.
    pub fn level(&self) -> Level {
        Level {
            confidence: self.confidence,
            comparisons: figures(self.sessions.len(), self.files),
        }
    }

    /// Refuses a run too short to call any change at the level asked.
    pub fn check(&self) -> Result<(), TooFewRuns> {
        let level = self.level();
        let min = stats::min_runs(level.per_figure_alpha());
        if (self.runs as usize) < min {
            return Err(TooFewRuns {
                runs: self.runs,
                min,
                confidence: self.confidence,
                comparisons: level.comparisons,
            });
        }
        Ok(())
    }
}

/// How many figures a table compares: each per-session one at every session count, each per-file
/// one once (over all the VMs, which all preserve the same files).
pub fn figures(session_counts: usize, files: u32) -> usize {
    let of = |per| metric::ALL.iter().filter(|m| m.per == per).count();
    of(Per::Session) * session_counts + if files > 0 { of(Per::File) } else { 0 }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error(
    "--runs {runs} is too few: at {:.0}% confidence over {comparisons} figures (each tested at \
     {:.2}%) no change could be called with fewer than {min} runs a kernel",
    confidence * 100.0,
    100.0 - (1.0 - confidence) / *comparisons as f64 * 100.0
)]
#[diagnostic(help("--runs {min} or more, or fewer --sessions counts, or a lower --confidence"))]
pub struct TooFewRuns {
    pub runs: u32,
    pub min: usize,
    pub confidence: f64,
    pub comparisons: usize,
}

impl crate::outcome::Classify for TooFewRuns {
    fn kind(&self) -> crate::outcome::Kind {
        crate::outcome::Kind::BadInput
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DeltaError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    TooFewRuns(#[from] TooFewRuns),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Measure(#[from] MeasureError),
    #[error("{scenario} on the {side} kernel: {source}")]
    Scenario {
        scenario: String,
        side: &'static str,
        source: crate::guest::GuestError,
    },
}

impl crate::outcome::Classify for DeltaError {
    fn kind(&self) -> crate::outcome::Kind {
        match self {
            DeltaError::TooFewRuns(e) => e.kind(),
            DeltaError::Plan(e) => e.kind(),
            DeltaError::Measure(e) => e.kind(),
            DeltaError::Scenario { source, .. } => source.kind(),
        }
    }
}

/// A kernel as the report names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelInfo {
    pub spec: String,
    /// Exactly where it came from: `debian:<package>=<version>`, `git:<repo>@<commit>`, ...
    pub source: String,
    pub variant: String,
    pub release: Option<String>,
    pub bzimage: String,
}

impl KernelInfo {
    fn of(p: &Plan) -> KernelInfo {
        KernelInfo {
            spec: p.boot.spec.clone(),
            source: p.boot.source.clone(),
            variant: p.boot.variant.clone(),
            release: p.boot.release.clone(),
            bzimage: p.boot.boot_image.display().to_string(),
        }
    }
}

/// One figure at one session count, or over all of them for a per-file figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub metric: String,
    /// 0 for a per-file figure.
    pub sessions: u32,
    /// The files each VM preserved, for a per-file figure; 0 otherwise.
    #[serde(default)]
    pub files: u32,
    pub unit: String,
    pub change: Option<Change>,
}

impl Row {
    /// Where the figure was taken: `N=1000` sessions, or `F=100` files.
    pub fn at(&self) -> String {
        if self.files > 0 {
            format!("F={}", self.files)
        } else {
            format!("N={}", self.sessions)
        }
    }
}

/// The slab caches that grew on each side, in objects per session (at one count) or per file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Caches {
    /// As [`Row::at`]: `N=1000` or `F=100`.
    pub at: String,
    pub base: String,
    pub patched: String,
}

/// Each block's caches: per session at every count, then per file.
pub fn caches(samples: &[Sample], sessions: &[u32], files: u32) -> Vec<Caches> {
    let side = |label: &str, n: Option<u32>, per| {
        metric::grown_caches(
            samples
                .iter()
                .filter(|s| s.label == label && n.is_none_or(|n| s.sessions == n)),
            per,
        )
    };
    let mut v: Vec<Caches> = sessions
        .iter()
        .map(|&n| Caches {
            at: format!("N={n}"),
            base: side("base", Some(n), Per::Session),
            patched: side("patched", Some(n), Per::Session),
        })
        .collect();
    if files > 0 {
        v.push(Caches {
            at: format!("F={files}"),
            base: side("base", None, Per::File),
            patched: side("patched", None, Per::File),
        });
    }
    v
}

/// A scenario's reports on both kernels, compared as snapshots are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Behaviour {
    pub scenario: String,
    pub base_outcome: String,
    pub patched_outcome: String,
    /// Unified diff from the base's report to the patched one's; empty when they agree.
    pub diff: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaReport {
    pub base: KernelInfo,
    pub patched: KernelInfo,
    /// Both sides are the same build: the run measured its own noise.
    pub same_build: bool,
    pub machine: String,
    pub accel: String,
    pub runs: u32,
    pub sessions: Vec<u32>,
    #[serde(default)]
    pub files: u32,
    pub level: Level,
    pub method: String,
    pub rows: Vec<Row>,
    /// Which slab caches grew, per block of the table.
    #[serde(default)]
    pub caches: Vec<Caches>,
    pub behaviour: Vec<Behaviour>,
    pub samples: Vec<Sample>,
    /// Seconds: building and resolving both kernels, running the scenarios, measuring.
    pub prepare_s: f64,
    pub scenarios_s: f64,
    pub measure_s: f64,
}

pub const METHOD: &str = "Mann-Whitney U; interval: Hodges-Lehmann shift with Moses' \
    distribution-free interval; Bonferroni over the table's figures; a memory figure changes only \
    beyond a slab of each cache it touched (one boot's slabs set it for every VM restored from it)";

impl DeltaReport {
    /// Rows that got significantly worse by more than `threshold` (0.05 = 5%).
    pub fn worse_than(&self, threshold: f64) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| {
                r.change
                    .as_ref()
                    .is_some_and(|c| c.worse_by_more_than(threshold))
            })
            .collect()
    }
}

fn machine() -> String {
    let model = crate::vm::accel::cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores")
}

fn side_plan(k: &KernelChoice, accel: AccelChoice) -> PlanRequest {
    PlanRequest {
        kernel: k.spec.clone(),
        build: k.build.clone(),
        accel: Some(accel),
        ..Default::default()
    }
}

/// Builds both kernels, runs the scenarios on each, measures both alternately.
pub async fn delta(o: &DeltaOptions, sink: &dyn EventSink) -> Result<DeltaReport, DeltaError> {
    o.check()?;
    let t0 = Instant::now();
    let mut needs = Needs::default();
    for s in &o.scenarios {
        s.needs(o.base.build.arch, &mut needs);
    }
    let base = plan::resolve(&side_plan(&o.base, o.accel), &needs, sink).await?;
    let patched = plan::resolve(&side_plan(&o.patched, o.accel), &needs, sink).await?;
    let same_build = base.boot.boot_image == patched.boot.boot_image;
    if same_build {
        sink.emit(Event::Note(format!(
            "base and patched are the same build ({}): this run measures the noise",
            base.boot.boot_image.display()
        )));
    }
    let prepare_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut behaviour = Vec::new();
    for s in &o.scenarios {
        behaviour.push(compare_behaviour(s, &base, &patched).await?);
    }
    let scenarios_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let sides = [
        Side {
            label: "base".into(),
            plan: &base,
        },
        Side {
            label: "patched".into(),
            plan: &patched,
        },
    ];
    let samples = measure::alternate(&sides, &o.sessions, o.files, o.runs, "delta", sink).await?;
    let measure_s = t2.elapsed().as_secs_f64();
    let level = o.level();
    let rows = rows(&samples, &o.sessions, o.files, level);
    Ok(DeltaReport {
        base: KernelInfo::of(&base),
        patched: KernelInfo::of(&patched),
        same_build,
        machine: machine(),
        accel: base.accel.to_string(),
        runs: o.runs,
        sessions: o.sessions.clone(),
        files: o.files,
        level,
        method: METHOD.into(),
        rows,
        caches: caches(&samples, &o.sessions, o.files),
        behaviour,
        samples,
        prepare_s,
        scenarios_s,
        measure_s,
    })
}

/// Every figure, base against patched: the per-session ones at every session count, then the
/// per-file ones over all the runs.
pub fn rows(samples: &[Sample], sessions: &[u32], files: u32, level: Level) -> Vec<Row> {
    let alpha = level.per_figure_alpha();
    let row = |m: &metric::Metric, n: u32| {
        let b = metric::values(m, samples, "base", n);
        let p = metric::values(m, samples, "patched", n);
        Row {
            metric: m.name.into(),
            sessions: n,
            files: if m.per == Per::File { files } else { 0 },
            unit: m.unit.into(),
            change: stats::change(&b, &p, alpha, m.better, metric::resolution(m, samples, n)),
        }
    };
    let of = |per| metric::ALL.iter().filter(move |m| m.per == per);
    let mut rows = Vec::new();
    for &n in sessions {
        rows.extend(of(Per::Session).map(|m| row(m, n)));
    }
    if files > 0 {
        rows.extend(of(Per::File).map(|m| row(m, 0)));
    }
    rows
}

async fn compare_behaviour(
    s: &Scenario,
    base: &Plan,
    patched: &Plan,
) -> Result<Behaviour, DeltaError> {
    let run = async |plan: &Plan, side: &'static str| {
        scenario::run(s, plan)
            .await
            .map_err(|source| DeltaError::Scenario {
                scenario: s.name().to_string(),
                side,
                source,
            })
    };
    let a = run(base, "base").await?;
    let b = run(patched, "patched").await?;
    let text = |r: &scenario::Report| {
        let mut v = scenario::snapshot::redacted(r);
        // Which design is a fact about the build, not the behaviour.
        if let Some(k) = v.get_mut("kernel").and_then(|k| k.as_object_mut()) {
            k.remove("variant");
        }
        scenario::snapshot::render(&v)
    };
    let diff = scenario::snapshot::diff(&text(&a.report), &text(&b.report), "base", "patched");
    Ok(Behaviour {
        scenario: s.name().to_string(),
        base_outcome: a.outcome.label().to_string(),
        patched_outcome: b.outcome.label().to_string(),
        diff,
    })
}

#[cfg(test)]
mod tests;
