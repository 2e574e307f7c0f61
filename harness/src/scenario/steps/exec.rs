//! `exec`: run a program in the guest and check its exit code, output and KTAP/TAP sub-results.
//! The program is one of: `selftests/<name>`, the kernel's own LUO selftest built by the run plan
//! from the kernel's source; `./prog` (or `../`), a static program beside the scenario, staged
//! into the share with its `files`; `source: ./prog.c`, a C program built by the plan against the
//! kernel's headers and selftest library; an absolute path in the image (busybox's, with
//! `shell: true`).

use super::kind::StepKind;
use crate::plan::{CProgram, Needs};
use crate::scenario::context::{StepContext, StepFailure, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::report::SubtestGroup;
use crate::scenario::subtests;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use crate::scenario::values::Expect;
use crate::vm::Timeouts;
use luo_protocol::{ExitStatus as Exited, PROGRAMS_DIR, Reply, Request};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::time::Duration;

pub const SELFTESTS: &str = "selftests/";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Libc {
    /// Static glibc (stdio, threads: what a reproducer uses).
    #[default]
    Glibc,
    /// The kernel tree's nolibc, as vmtest.sh builds the selftests.
    Nolibc,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// `./prog` beside the scenario (static x86-64), `selftests/<name>` (the kernel's LUO
    /// selftests), or an absolute path in the image (with `shell: true`, busybox's /bin/*).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// A C file beside the scenario, built statically for the guest before any VM starts.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub source: Option<Spanned<String>>,
    /// More C files built into the same program as `source`.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The C library `source` is linked with: glibc (default) or nolibc.
    #[serde(default)]
    pub libc: Libc,
    /// Files beside the scenario staged next to the program (its working directory).
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables, over the guest's (PATH=/bin:/sbin, LUO_HARNESS_SHARE=/share,
    /// LUO_HARNESS_BOOT=<this boot's index>).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Text written to the program's standard input (default: none, /dev/null).
    #[serde(default)]
    pub stdin: Option<String>,
    /// Expected exit code (default 0).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Text its standard output must contain.
    #[serde(default)]
    pub output_contains: Option<String>,
    /// Leave it running under this name (it keeps its fds across a following kexec).
    #[serde(default)]
    pub background: Option<String>,
    /// Seconds the program may run before the agent kills it (default 60).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    #[serde(default)]
    pub expect: Expect,
}

/// What an `exec` runs, by where it comes from.
#[derive(Debug, PartialEq, Eq)]
enum Program<'a> {
    Selftest(&'a str),
    Beside(&'a str),
    Source(&'a str),
    InImage(&'a str),
    /// A relative path of no known kind, or neither `path` nor `source`: refused by `check`.
    Unknown(&'a str),
}

fn is_beside(p: &str) -> bool {
    p.starts_with("./") || p.starts_with("../")
}

pub(crate) fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

impl Exec {
    fn program(&self) -> Program<'_> {
        match (&self.path, &self.source) {
            (Some(p), None) => {
                let p = p.value.as_str();
                if let Some(name) = p.strip_prefix(SELFTESTS) {
                    Program::Selftest(name)
                } else if is_beside(p) {
                    Program::Beside(p)
                } else if p.starts_with('/') {
                    Program::InImage(p)
                } else {
                    Program::Unknown(p)
                }
            }
            (None, Some(s)) => Program::Source(s.value.as_str()),
            _ => Program::Unknown(""),
        }
    }

    /// What the report calls the program: its path, or its source.
    fn shown(&self) -> &str {
        self.path
            .as_ref()
            .or(self.source.as_ref())
            .map_or("", |s| s.value.as_str())
    }

    /// The C program `source` names, its paths as the scenario writes them (relative to its file).
    fn c_program(&self) -> Option<CProgram> {
        let first = self.source.as_ref()?;
        let sources = std::iter::once(first.value.as_str())
            .chain(self.sources.iter().map(String::as_str))
            .map(std::path::PathBuf::from)
            .collect();
        let libc = match self.libc {
            Libc::Glibc => luo_kernels::programs::Libc::Glibc,
            Libc::Nolibc => luo_kernels::programs::Libc::Nolibc,
        };
        Some(CProgram { sources, libc })
    }
}

fn site_of(s: &Spanned<String>, keyword: &'static str) -> Site {
    Site {
        line: s.referenced.line(),
        column: s.referenced.column(),
        keyword,
    }
}

impl StepKind for Exec {
    const KEYWORD: &'static str = "exec";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        let text = |s: &Option<Spanned<String>>| {
            s.as_ref().map(|s| Spanned {
                value: t.text(&s.value),
                ..s.clone()
            })
        };
        Exec {
            path: text(&self.path),
            args: t.list(&self.args),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), t.text(v)))
                .collect(),
            stdin: t.opt(&self.stdin),
            background: t.opt(&self.background),
            output_contains: t.opt(&self.output_contains),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        let path_at = self.path.as_ref().map_or(*at, |p| site_of(p, "path"));
        match self.program() {
            Program::Selftest(name) if name.is_empty() || name.contains('/') => v.problem(
                &path_at,
                format!("`{}` names no selftest", self.shown()),
                Some("selftests/<name> runs tools/testing/selftests/liveupdate/<name>.c".into()),
            ),
            Program::Selftest(_) => {}
            Program::Beside(p) => v.program_beside(&path_at, p),
            Program::InImage(p) => v.program_in_image(&path_at, p),
            Program::Source(_) => {
                let src_at = self.source.as_ref().map_or(*at, |s| site_of(s, "source"));
                let first = self.source.as_ref().map(|s| s.value.as_str());
                for s in first.into_iter().chain(self.sources.iter().map(String::as_str)) {
                    v.c_source(&src_at, s);
                }
                if let Some(first) = first {
                    v.staged_name(&src_at, first, &stem(first));
                }
            }
            Program::Unknown("") => v.problem(
                at,
                "an exec names its program with `path` or `source` (one of them)".into(),
                None,
            ),
            Program::Unknown(p) => v.problem(
                &path_at,
                format!("`{p}` is not a program the guest has"),
                Some("use ./prog (a static program beside the scenario), selftests/<name>, source: ./prog.c, or an absolute path in the image (with `shell: true`, /bin/sh)".into()),
            ),
        }
        if self.source.is_none() && (!self.sources.is_empty() || self.libc != Libc::default()) {
            v.problem(at, "`sources` and `libc` go with `source`".into(), None);
        }
        for f in &self.files {
            v.file_beside(at, f);
        }
        for (k, val) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) || val.contains('\0') {
                v.problem(
                    at,
                    format!(
                        "env {k:?}: a name is non-empty without `=` or NUL, a value without NUL"
                    ),
                    None,
                );
            }
        }
        if let Some(text) = &self.stdin
            && text.len() > crate::scenario::limits::MAX_STDIN_BYTES
        {
            v.problem(
                at,
                format!(
                    "stdin of {} bytes: at most {}",
                    text.len(),
                    crate::scenario::limits::MAX_STDIN_BYTES
                ),
                None,
            );
        }
        let range = crate::scenario::limits::TIMEOUT_S;
        if let Some(t) = self.timeout_s
            && !range.contains(&t)
        {
            v.problem(
                at,
                format!(
                    "timeout_s {t}: {} to {} seconds",
                    range.start(),
                    range.end()
                ),
                None,
            );
        }
        if let Some(b) = &self.background {
            v.handle_name(at, "the background name", b);
        }
    }
    fn needs(&self, needs: &mut Needs) {
        match self.program() {
            Program::Selftest(name) => {
                needs.selftests.insert(name.to_string());
            }
            Program::Source(_) => {
                let at = self.source.as_ref().map_or(String::new(), |s| {
                    format!("{}:{}", s.referenced.line(), s.referenced.column())
                });
                // Relative to the scenario: Scenario::needs makes them absolute.
                if let Some(p) = self.c_program() {
                    needs.programs.entry(p).or_insert(at);
                }
            }
            _ => {}
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let kw = Self::KEYWORD;
        let guest_path = match self.program() {
            Program::Selftest(name) => {
                let built = cx.plan.selftest(name).ok_or_else(|| {
                    StepFailure::Check(format!("the run plan has no selftest {name}"))
                })?;
                let rel = self.shown().to_string();
                cx.guest.stage(built, &rel)?;
                rel
            }
            Program::Beside(p) => {
                let rel = format!("{PROGRAMS_DIR}/{}", base_name(p));
                cx.guest.stage(&cx.dir.join(p), &rel)?;
                rel
            }
            Program::Source(s) => {
                let key = self.c_program().expect("a source").against(&cx.dir);
                let built = cx.plan.program(&key).ok_or_else(|| {
                    StepFailure::Check(format!("the run plan has no program built from {s}"))
                })?;
                let rel = format!("{PROGRAMS_DIR}/{}", stem(s));
                cx.guest.stage(built, &rel)?;
                rel
            }
            Program::InImage(p) | Program::Unknown(p) => p.to_string(),
        };
        for f in &self.files {
            let rel = format!("{PROGRAMS_DIR}/{}", base_name(f));
            cx.guest.stage(&cx.dir.join(f), &rel)?;
        }
        let limit = cx
            .guest
            .timeouts()
            .exec_limit(self.timeout_s.map(Duration::from_secs));
        let req = Request::Exec {
            path: guest_path,
            args: self.args.clone(),
            env: self.env.clone().into_iter().collect(),
            stdin: self.stdin.clone(),
            background: self.background.clone(),
            timeout_ms: Some(limit.as_millis() as u64),
        };
        let r = cx
            .call_within(req, self.expect(), Some(Timeouts::host_wait(limit)))
            .await?;
        Ok(match &r {
            Some(Reply::Exited(x)) => self.judge(cx, x)?,
            Some(Reply::Started { .. }) => {
                format!("{kw} {}: started in the background", self.shown())
            }
            _ => done(kw, self.shown(), &r, self.expect()),
        })
    }
}

/// A C file's program name: `./fdstore.c` is `fdstore`.
fn stem(source: &str) -> String {
    let base = base_name(source);
    base.strip_suffix(".c").unwrap_or(base).to_string()
}

/// kselftest's exit code for "skipped" (tools/testing/selftests/kselftest.h).
pub const KSFT_SKIP: i32 = 4;

impl Exec {
    /// A finished program against the step: its sub-results (each `not ok` fails the step, named),
    /// a kselftest skip, the exit code, the text it must print.
    fn judge<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>, x: &Exited) -> StepResult {
        let kw = Self::KEYWORD;
        let path = self.shown();
        let parsed = subtests::parse(&x.stdout);
        if let Some(p) = &parsed {
            cx.report.subtests.push(SubtestGroup {
                step: format!("L{} {kw} {path}", cx.line),
                parsed: p.clone(),
            });
        }
        let want = self.exit_code.unwrap_or(0);
        let failed = parsed.as_ref().map_or_else(Vec::new, |p| p.not_oks());
        // With a non-zero `exit_code` the author expects the program to fail: its `not ok`s
        // are then recorded (in the report's subtests), not a failure of the step.
        if !failed.is_empty() && want == 0 {
            return Err(StepFailure::Check(format!(
                "{path}: {} ({})\n--- stdout ---\n{}",
                failed.join(", "),
                ended(x),
                tail(&x.stdout)
            )));
        }
        if x.code == Some(KSFT_SKIP)
            && want != KSFT_SKIP
            && parsed
                .as_ref()
                .is_none_or(|p| p.all_skipped() || p.cases.is_empty())
        {
            let reasons: Vec<String> = parsed
                .iter()
                .flat_map(|p| &p.cases)
                .map(|c| match &c.reason {
                    Some(r) => format!("{}: {r}", c.name),
                    None => c.name.clone(),
                })
                .collect();
            let why = if reasons.is_empty() {
                last_line(&x.stdout, &x.stderr)
            } else {
                reasons.join("; ")
            };
            return Err(StepFailure::Skip(format!(
                "L{} {kw} {path}: skipped (exit {KSFT_SKIP}): {why}",
                cx.line
            )));
        }
        if x.code != Some(want) {
            return Err(StepFailure::Check(format!(
                "{path}: {}, expected exit {want}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                ended(x),
                tail(&x.stdout),
                tail(&x.stderr)
            )));
        }
        let mut summary = format!("{kw} {path}: exit {want}");
        if let Some(p) = &parsed {
            summary.push_str(&format!(", {}", p.counts()));
        }
        match &self.output_contains {
            Some(text) if !x.stdout.contains(text.as_str()) => Err(StepFailure::Check(format!(
                "{path} did not print {text:?}\n--- stdout ---\n{}",
                tail(&x.stdout)
            ))),
            Some(text) => Ok(format!("{summary}, printed {text:?}")),
            None => Ok(summary),
        }
    }
}

/// `exit 1`, `killed by signal 9`.
fn ended(x: &Exited) -> String {
    match (x.code, x.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "ended without a status".into(),
    }
}

/// The last non-empty line a program wrote, for a skip's reason.
fn last_line(stdout: &str, stderr: &str) -> String {
    fn last(s: &str) -> Option<&str> {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::trim)
    }
    last(stderr)
        .or_else(|| last(stdout))
        .unwrap_or("no reason given")
        .to_string()
}

pub(crate) fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
