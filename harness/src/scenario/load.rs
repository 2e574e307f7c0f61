//! Reading a scenario file: YAML parse errors and semantic errors both become diagnostics with
//! file:line:column and a caret under the offending step, before any VM starts.

use super::model::{Scenario, Step};
use super::subst::expand;
use miette::{NamedSource, SourceSpan};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(luo::scenario))]
pub struct Diagnostic {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

/// All problems of one file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} has {} problem(s)", .file, .problems.len())]
pub struct InvalidScenario {
    pub file: String,
    #[related]
    pub problems: Vec<Diagnostic>,
}

fn byte_offset(src: &str, line: u64, column: u64) -> usize {
    let mut off = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = (column.max(1) - 1) as usize;
            return off
                + l.char_indices()
                    .nth(col)
                    .map_or(l.len().saturating_sub(1), |(b, _)| b);
        }
        off += l.len();
    }
    src.len().saturating_sub(1)
}

fn diagnostic(
    file: &str,
    src: &str,
    line: u64,
    column: u64,
    message: String,
    label: &str,
    help: Option<String>,
) -> Diagnostic {
    let off = byte_offset(src, line, column);
    let len = src[off..].find('\n').unwrap_or(src.len() - off).max(1);
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        message,
        src: NamedSource::new(file, src.to_string()),
        span: (off, len).into(),
        label: label.to_string(),
        help,
    }
}

pub fn parse(file: &str, src: &str) -> Result<Scenario, InvalidScenario> {
    let mut scenario: Scenario = serde_saphyr::from_str(src).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        let message = first_sentence(&e.to_string());
        InvalidScenario {
            file: file.into(),
            problems: vec![diagnostic(file, src, line, column, message, "here", None)],
        }
    })?;
    if scenario.name.is_none() {
        scenario.name = Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
    }
    let problems = validate(&scenario)
        .into_iter()
        .map(|p| diagnostic(file, src, p.line, p.column, p.message, &p.label, p.help))
        .collect::<Vec<_>>();
    if problems.is_empty() {
        Ok(scenario)
    } else {
        Err(InvalidScenario {
            file: file.into(),
            problems,
        })
    }
}

pub fn load(path: &Path) -> Result<(Scenario, String), miette::Report> {
    let src =
        std::fs::read_to_string(path).map_err(|e| miette::miette!("{}: {e}", path.display()))?;
    let file = path.display().to_string();
    let s = parse(&file, &src)?;
    Ok((s, src))
}

/// serde-saphyr's message without the snippet it renders itself (ours comes from miette).
fn first_sentence(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    // "error: line 3 column 7: message" -> "message": the location is ours to print.
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((loc, m)) if loc.contains("column") => m.to_string(),
        _ => rest.to_string(),
    }
}

pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Device,
    Session,
    File,
}

#[derive(Debug, Clone)]
struct HandleInfo {
    kind: Kind,
    line: u64,
}

/// Symbolic execution of the steps: which handles exist in which boot.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
    boot: u32,
    handles: BTreeMap<String, HandleInfo>,
    /// Handles of earlier kernels: name -> (boot, line of the kexec that ended it).
    gone: BTreeMap<String, (u32, u64)>,
    closed: BTreeMap<String, u64>,
    /// Created sessions open now: session name -> handle.
    open_sessions: BTreeMap<String, String>,
    /// Sessions that were open at the last kexec, and that kexec's line.
    carried: BTreeSet<String>,
    last_kexec: Option<u64>,
    /// Created sessions closed before the last kexec: name -> line of the close.
    closed_sessions: BTreeMap<String, u64>,
}

fn errno_known(name: &str) -> bool {
    luo_protocol::errno_value(name).is_some()
}

impl Validator {
    fn problem(&mut self, at: &Spanned<Step>, message: String, help: Option<String>) {
        self.problems.push(Problem {
            line: at.referenced.line(),
            column: at.referenced.column(),
            message,
            label: at.value.keyword().to_string(),
            help,
        });
    }

    fn need(&mut self, at: &Spanned<Step>, name: &str, kind: Option<Kind>) {
        let expects_error = at.value.expect().is_some();
        match self.handles.get(name).cloned() {
            Some(h) => {
                if let Some(k) = kind
                    && h.kind != k
                    && !expects_error
                {
                    let msg = format!(
                        "`{name}` (line {}) is a {:?} handle, but this needs a {k:?} handle",
                        h.line, h.kind
                    );
                    self.problem(
                        at,
                        msg,
                        Some("set `expect:` to the errno if the mismatch is the point".into()),
                    );
                }
            }
            None => {
                let (msg, help) = if let Some((boot, kexec)) = self.gone.get(name) {
                    (
                        format!(
                            "`{name}` belonged to boot {boot}, which ended with the kexec at line {kexec}"
                        ),
                        Some(
                            "retrieve it again in this boot (retrieve_session / retrieve_fd)"
                                .to_string(),
                        ),
                    )
                } else if let Some(line) = self.closed.get(name) {
                    (format!("`{name}` was closed at line {line}"), None)
                } else {
                    (
                        format!("`{name}` is used before it exists"),
                        Some("create it first with `as: {name}`".replace("{name}", name)),
                    )
                };
                self.problem(at, msg, help);
            }
        }
    }

    fn define(&mut self, at: &Spanned<Step>, name: &str, kind: Kind) {
        if at.value.expect().is_some() {
            return; // the call is expected to fail: no handle comes of it
        }
        if let Some(h) = self.handles.get(name) {
            let msg = format!(
                "`{name}` already names a handle (line {}); close it first or pick another name",
                h.line
            );
            self.problem(at, msg, None);
            return;
        }
        self.closed.remove(name);
        self.handles.insert(
            name.to_string(),
            HandleInfo {
                kind,
                line: at.referenced.line(),
            },
        );
    }

    fn step(&mut self, at: &Spanned<Step>) {
        if let Some(e) = at.value.expect()
            && !errno_known(e)
        {
            self.problem(
                at,
                format!("unknown errno name `{e}` in expect"),
                Some("use a name like EINVAL, ENOENT, EEXIST, EBUSY".into()),
            );
        }
        let exp = at.value.expect().is_some();
        match &at.value {
            Step::OpenDevice(s) => self.define(at, &s.handle, Kind::Device),
            Step::CreateSession(s) => {
                self.need(at, &s.device, Some(Kind::Device));
                if !exp {
                    self.open_sessions
                        .insert(s.name.clone(), s.handle().to_string());
                    self.closed_sessions.remove(&s.name);
                }
                self.define(at, s.handle(), Kind::Session);
            }
            Step::RetrieveSession(s) => {
                self.need(at, &s.device, Some(Kind::Device));
                if !exp {
                    match self.last_kexec {
                        None => self.problem(
                            at,
                            format!(
                                "session `{}` is retrieved, but no kexec comes before this step",
                                s.name
                            ),
                            Some("add `- kexec: {}` before it, or `expect: ENOENT`".into()),
                        ),
                        Some(k) if !self.carried.contains(&s.name) => {
                            let why = match self.closed_sessions.get(&s.name) {
                                Some(c) => format!(
                                    "it was closed at line {c}, before the kexec at line {k}"
                                ),
                                None => format!(
                                    "no session of that name was open at the kexec at line {k}"
                                ),
                            };
                            self.problem(
                                at,
                                format!("session `{}` cannot be retrieved: {why}", s.name),
                                Some("keep the session open across the kexec, or write `expect: ENOENT`".into()),
                            );
                        }
                        _ => {}
                    }
                }
                self.define(at, s.handle(), Kind::Session);
            }
            Step::GetName(s) | Step::Finish(s) => self.need(at, &s.session, Some(Kind::Session)),
            Step::Close(s) => {
                self.need(at, &s.handle, None);
                if !exp && self.handles.remove(&s.handle).is_some() {
                    self.closed.insert(s.handle.clone(), at.referenced.line());
                    let names: Vec<String> = self
                        .open_sessions
                        .iter()
                        .filter(|(_, h)| **h == s.handle)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for n in names {
                        self.open_sessions.remove(&n);
                        self.closed_sessions.insert(n, at.referenced.line());
                    }
                }
            }
            Step::CreateMemfd(s) => self.define(at, &s.handle, Kind::File),
            Step::OpenPath(s) => self.define(at, &s.handle, Kind::File),
            Step::WritePattern(s) | Step::Verify(s) => self.need(at, &s.fd, None),
            Step::Seal(s) => self.need(at, &s.fd, None),
            Step::Truncate(s) => self.need(at, &s.fd, None),
            Step::Seek(s) => self.need(at, &s.fd, None),
            Step::Preserve(s) => {
                self.need(at, &s.session, Some(Kind::Session));
                self.need(at, &s.fd, None);
            }
            Step::RetrieveFd(s) => {
                self.need(at, &s.session, Some(Kind::Session));
                if self.last_kexec.is_none() && !exp {
                    self.problem(
                        at,
                        "retrieve_fd before any kexec: nothing can have been preserved".into(),
                        Some("add `- kexec: {}` before it, or `expect:` the errno".into()),
                    );
                }
                self.define(at, &s.handle, Kind::File);
            }
            Step::Observe(s) => self.need(at, &s.handle, None),
            Step::RawIoctl(s) => self.need(at, &s.handle, None),
            Step::MeasureMemory(_) | Step::Exec(_) => {}
            Step::Kexec(k) => {
                if let Some(v) = &k.kernel
                    && let Err(e) = luo_kernels::variant::find(v)
                {
                    self.problem(at, e.to_string(), None);
                }
                let line = at.referenced.line();
                for (name, _) in std::mem::take(&mut self.handles) {
                    self.gone.insert(name, (self.boot, line));
                }
                self.closed.clear();
                self.carried = self.open_sessions.keys().cloned().collect();
                self.open_sessions.clear();
                self.closed_sessions
                    .retain(|n, _| !self.carried.contains(n));
                self.last_kexec = Some(line);
                self.boot += 1;
            }
            Step::Repeat(r) => {
                if r.count == 0 {
                    self.problem(at, "repeat with count 0 does nothing".into(), None);
                }
                for i in 0..r.count {
                    for s in &r.steps {
                        let expanded = Spanned {
                            value: expand(&s.value, i),
                            referenced: s.referenced,
                            defined: s.defined,
                        };
                        let before = self.problems.len();
                        self.step(&expanded);
                        if self.problems.len() > before {
                            return; // one report per faulty step, not one per iteration
                        }
                    }
                }
            }
        }
    }
}

pub fn validate(s: &Scenario) -> Vec<Problem> {
    let mut v = Validator::default();
    if s.steps.is_empty() {
        v.problems.push(Problem {
            line: 1,
            column: 1,
            message: "a scenario needs at least one step".into(),
            label: "here".into(),
            help: None,
        });
    }
    for step in &s.steps {
        v.step(step);
    }
    v.problems
}
