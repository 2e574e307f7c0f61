//! `luo-harness fuzz`: random LUO programs across kexecs, each checked against a model of the ABI
//! ([`model`]). A program is written as an ordinary scenario whose every step carries the model's
//! prediction ([`program`]), run in a VM restored from the kernel's saved booted state; a step the
//! kernel answers otherwise, a file that comes back different, a sanitizer report, a panic or a
//! hang is a finding, shrunk ([`shrink`]) to the fewest operations that still fail the same way
//! and written as a scenario that `run`, `bisect` and `matrix` take as they are.

pub mod guide;
pub mod model;
pub mod program;
pub mod shrink;

use crate::events::{Event, EventSink};
use crate::guest::GuestError;
use crate::outcome::{Classify, Kind, Outcome};
use crate::plan::{self, Needs, Plan, PlanError, PlanRequest};
use crate::result::ScenarioResult;
use crate::scenario;
use crate::vm::timeouts::Timeouts;
use model::Op;
use program::Shape;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub kernel: PlanRequest,
    /// The run's seed: program i is generated from (seed, i).
    pub seed: u64,
    /// Stop after this many programs...
    pub runs: Option<u64>,
    /// ... or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub shape: Shape,
    /// Programs a finding's shrinking may run at most.
    pub shrink_runs: u32,
    /// findings/ and coverage/ go here.
    pub out: PathBuf,
    /// Where the corpus is read from and kept (on a gcov kernel).
    pub corpus: PathBuf,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FuzzError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "the kernel contradicted the model on each of the first {programs} programs (the first: \
         {first}); the model is of Linux 7.3.4's LUO with memfd preservation: is this kernel \
         built with CONFIG_LIVEUPDATE and CONFIG_LIVEUPDATE_MEMFD, booted with liveupdate=on?"
    )]
    ModelRejected { programs: u64, first: String },
    #[error("program {program}: {source}")]
    Harness {
        program: u64,
        #[source]
        source: GuestError,
    },
    #[error(transparent)]
    Guide(#[from] guide::GuideError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Coverage(#[from] crate::coverage::CoverageError),
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Classify for FuzzError {
    fn kind(&self) -> Kind {
        match self {
            FuzzError::Plan(e) => e.kind(),
            FuzzError::ModelRejected { .. } => Kind::BadInput,
            FuzzError::Harness { source, .. } => source.kind(),
            FuzzError::Coverage(e) => e.kind(),
            FuzzError::Guide(guide::GuideError::Entry { .. }) => Kind::BadInput,
            FuzzError::Guide(_) | FuzzError::Io { .. } => Kind::InfraFailure,
        }
    }
}

/// A program the kernel and the model disagree on, shrunk and written as a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The program's seed (`fuzz --seed` of the run and its index give it too).
    pub program_seed: u64,
    /// What went wrong, as the run reported it, in the shrunk program.
    pub failure: String,
    /// ... and in the program as generated: what later programs are compared with.
    pub first_failure: String,
    pub operations: usize,
    pub shrunk_from: usize,
    pub scenario: PathBuf,
    /// Later programs that failed the same way (not shrunk again).
    pub duplicates: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FuzzReport {
    pub kernel: String,
    pub seed: u64,
    pub programs: u64,
    pub kexecs: u64,
    pub operations: u64,
    pub findings: Vec<Finding>,
    pub seconds: f64,
    /// Of those seconds, the ones spent shrinking findings.
    pub shrink_seconds: f64,
    /// On a gcov kernel: what the programs reached.
    pub guidance: Option<Guidance>,
}

/// What a guided run reached: arcs (the gcov counters the fuzzer steers by) and, from the corpus's
/// gcov data through lcov, the lines, functions and branches `coverage` counts for the scenarios.
#[derive(Debug, Clone, Serialize)]
pub struct Guidance {
    pub arcs_reached: usize,
    pub arcs_known: usize,
    /// Programs in the corpus now: those replayed from it and those this run added.
    pub corpus: usize,
    pub replayed: usize,
    pub added: usize,
    pub corpus_dir: PathBuf,
    /// Over every profiled file (lines, functions, branches); the per-file table is in
    /// `<out>/coverage/summary.json`.
    pub coverage: Option<crate::coverage::FileCoverage>,
}

/// How one program ended, and its run when it ran to an end (its gcov data for guidance).
#[derive(Debug)]
pub struct ProgramRun {
    pub verdict: Verdict,
    pub result: Option<ScenarioResult>,
    /// The scenario it ran as.
    pub yaml: String,
}

/// How a generated program describes itself (the corpus keeps it so).
const PROGRAM: &str = "A program luo-harness fuzz generated from its model of LUO: each step \
                       expects what the model predicts.";

/// How one program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Agrees,
    /// The kernel disagreed, panicked or hung: the reason, as `run` gives it.
    Disagrees(String),
}

/// The seed of program `i` of a run: consecutive runs of one seed share no program.
pub fn program_seed(seed: u64, i: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Runs one program as a scenario on `plan`. An error is the harness's own (QEMU, the host).
#[tracing::instrument(name = "fuzz_program", skip(ops, plan), fields(operations = ops.len()))]
pub async fn run_program(ops: &[Op], name: &str, plan: &Plan) -> Result<ProgramRun, GuestError> {
    let (yaml, _) = program::scenario(ops, PROGRAM);
    let s = scenario::parse(&format!("{name}.yaml"), &yaml)
        .expect("a program is written as a valid scenario");
    let limit = Timeouts::for_accel(plan.accel).scenario;
    let ran = tokio::time::timeout(limit, scenario::run(&s, plan)).await;
    let disagrees = |why: String| ProgramRun {
        verdict: Verdict::Disagrees(why),
        result: None,
        yaml: yaml.clone(),
    };
    match ran {
        Err(_) => Ok(disagrees(format!(
            "hang: the program did not finish within {limit:?}"
        ))),
        Ok(Ok(ran)) => {
            let verdict = match &ran.outcome {
                Outcome::Pass => Verdict::Agrees,
                o => Verdict::Disagrees(format!("{}: {}", o.label(), o.reason())),
            };
            Ok(ProgramRun {
                verdict,
                result: Some(ScenarioResult::from_ran(
                    format!("{name}.yaml").into(),
                    name.into(),
                    ran,
                )),
                yaml,
            })
        }
        Ok(Err(e)) if matches!(e.kind(), Kind::KernelFailure | Kind::Fail) => {
            Ok(disagrees(format!("kernel failure: {e}")))
        }
        Ok(Err(e)) => Err(e),
    }
}

/// Generates, runs and checks programs until `runs` or `duration`; shrinks and writes each
/// finding as it is found. On a gcov kernel, first replays the corpus, and keeps every program
/// that reaches new arcs in it.
pub async fn fuzz(o: &FuzzOptions, sink: &dyn EventSink) -> Result<FuzzReport, FuzzError> {
    let plan = plan::resolve(&o.kernel, &Needs::default(), sink).await?;
    let t0 = Instant::now();
    let dir = o.out.join("findings");
    let kernel = match &plan.next {
        Some(next) => format!("{} -> {}", plan.boot.label(), next.label()),
        None => plan.boot.label(),
    };
    let mut r = FuzzReport {
        kernel,
        seed: o.seed,
        programs: 0,
        kexecs: 0,
        operations: 0,
        findings: Vec::new(),
        seconds: 0.0,
        shrink_seconds: 0.0,
        guidance: None,
    };
    let guided = plan.boot.gcov.is_some();
    let mut arcs = guide::Arcs::default();
    let mut corpus = guide::Corpus::new(&o.corpus);
    let mut seeds = match guided {
        true => guide::Corpus::seeds(&o.corpus)?,
        false => vec![],
    };
    let replayed = seeds.len();
    let mut added = 0;
    seeds.reverse();
    let mut agreed = 0u64;
    // Each finding's signature, in the order of r.findings.
    let mut signatures: Vec<String> = Vec::new();
    loop {
        let i = r.programs;
        if o.runs.is_some_and(|n| i >= n) || o.duration.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        let pseed = program_seed(o.seed, i);
        // A corpus entry first, then mutants of the corpus and new programs.
        let (name, ops, from_corpus) = match seeds.pop() {
            Some((name, ops)) => (name, ops, true),
            None => {
                let ops = match corpus.pick(pseed) {
                    Some(base) => program::mutate(base, pseed, o.shape),
                    None => program::generate(pseed, o.shape),
                };
                (format!("fuzz-{pseed:016x}"), ops, false)
            }
        };
        let ran = run_program(&ops, &name, &plan)
            .await
            .map_err(|source| FuzzError::Harness { program: i, source })?;
        r.programs += 1;
        r.kexecs += ops.iter().filter(|op| op.is_kexec()).count() as u64;
        r.operations += ops.len() as u64;
        match ran.verdict {
            Verdict::Agrees => {
                agreed += 1;
                if let Some(result) = ran.result.filter(|_| guided)
                    && arcs.add(&result)? > 0
                {
                    added +=
                        usize::from(corpus.keep(&name, &ops, &ran.yaml, result, !from_corpus)?);
                }
            }
            Verdict::Disagrees(why) => {
                if agreed == 0 && r.programs >= MODEL_REJECTED_AFTER {
                    // No program agreed: the first one's failure is the first finding's.
                    let first = r.findings.first().map_or(why, |f| f.first_failure.clone());
                    return Err(FuzzError::ModelRejected {
                        programs: r.programs,
                        first,
                    });
                }
                let sig = shrink::signature(&why);
                if let Some(i) = signatures.iter().position(|s| *s == sig) {
                    r.findings[i].duplicates += 1;
                    continue;
                }
                signatures.push(sig);
                let t = Instant::now();
                sink.emit(Event::Note(format!(
                    "fuzz: program {name} ({} operations) disagrees: {why}; shrinking",
                    ops.len()
                )));
                let f = shrink_and_write(&ops, pseed, &why, o, &plan, &dir).await?;
                r.shrink_seconds += t.elapsed().as_secs_f64();
                sink.emit(Event::Note(format!(
                    "fuzz: finding written to {} ({} operations)",
                    f.scenario.display(),
                    f.operations
                )));
                r.findings.push(f);
            }
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-3);
        let reached = match guided {
            true => {
                let (hit, known) = arcs.reached();
                format!(", arcs {hit}/{known}, corpus {}", replayed + added)
            }
            false => String::new(),
        };
        sink.emit(Event::Progress {
            task: "fuzz".into(),
            done: r.programs,
            total: o.runs.unwrap_or(0),
            what: format!(
                "{} programs ({:.0}/min), {} kexecs ({:.0}/min){reached}, {} findings",
                r.programs,
                r.programs as f64 * 60.0 / secs,
                r.kexecs,
                r.kexecs as f64 * 60.0 / secs,
                r.findings.len()
            ),
        });
    }
    r.seconds = t0.elapsed().as_secs_f64();
    if guided {
        let (hit, known) = arcs.reached();
        let report = match corpus.results.is_empty() {
            true => None,
            false => Some(crate::coverage::write(
                &corpus.results,
                &o.out.join("coverage"),
            )?),
        };
        r.guidance = Some(Guidance {
            arcs_reached: hit,
            arcs_known: known,
            corpus: replayed + added,
            added,
            replayed,
            corpus_dir: corpus.dir().to_path_buf(),
            coverage: report
                .and_then(|k| k.into_iter().next())
                .map(|k| k.summary.total),
        });
    }
    Ok(r)
}

/// Programs in a row that disagree, with none agreeing, before the run stops: a kernel that is
/// not what the model describes, not a bug per program.
const MODEL_REJECTED_AFTER: u64 = 5;

async fn shrink_and_write(
    ops: &[Op],
    pseed: u64,
    why: &str,
    o: &FuzzOptions,
    plan: &Plan,
    dir: &Path,
) -> Result<Finding, FuzzError> {
    let want = shrink::signature(why);
    let mut runs = 0u32;
    let mut last = why.to_string();
    let small = shrink::shrink(ops, async |candidate: &[Op]| {
        if runs >= o.shrink_runs {
            return false;
        }
        runs += 1;
        match run_program(candidate, "fuzz-shrink", plan)
            .await
            .map(|r| r.verdict)
        {
            Ok(Verdict::Disagrees(w)) if shrink::signature(&w) == want => {
                last = w;
                true
            }
            _ => false,
        }
    })
    .await;
    let name = format!("fuzz-{pseed:016x}");
    let path = dir.join(format!("{name}.yaml"));
    let description = format!(
        "Found by luo-harness fuzz (program seed {pseed:#018x}) on {}: the kernel disagreed with \
         the model of LUO. Each step's expect, verify and observe is what the model predicts.",
        plan.boot.label()
    );
    let (yaml, kept) = program::scenario(&small, &description);
    let header = format!(
        "# luo-harness fuzz: {} operations, shrunk from {} ({runs} runs).\n\
         # The model expected each step as written; the kernel did this:\n#   {}\n\
         # Run it: luo-harness run {}\n",
        kept.len(),
        ops.len(),
        last.replace('\n', "\n#   "),
        path.display()
    );
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FuzzError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::write(&path, format!("{header}{yaml}")).map_err(io(&path))?;
    let (original, _) = program::scenario(ops, &description);
    let orig_path = dir.join(format!("{name}.original.yaml"));
    std::fs::write(&orig_path, original).map_err(io(&orig_path))?;
    Ok(Finding {
        program_seed: pseed,
        failure: last,
        first_failure: why.to_string(),
        operations: kept.len(),
        shrunk_from: ops.len(),
        scenario: path,
        duplicates: 0,
    })
}
