//! The list of steps (the file format's `steps:`), and `repeat`, which holds steps of its own.

use super::device::OpenDevice;
use super::exec::Exec;
use super::handle::{Close, Dup, OpenPath, ReadFile};
use super::kexec::Kexec;
use super::kind::StepKind;
use super::memfd::{self, CreateMemfd, Pattern, Seal, Seek, Truncate};
use super::memory::MeasureMemory;
use super::observe::Observe;
use super::preserve::{Preserve, RetrieveFd};
use super::raw_ioctl::RawIoctl;
use super::session::{self, OnSession, SessionStep};
use super::unit::{Journal, Unit};
use crate::plan::Needs;
use crate::scenario::context::{StepContext, StepFailure, StepResult};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A step's run, boxed.
pub type BoxedRun<'s> =
    std::pin::Pin<Box<dyn std::future::Future<Output = StepResult> + Send + 's>>;

macro_rules! steps {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty), )*) => {
        /// A step, externally tagged in the file (`- create_session: {name: a}`) so parse errors
        /// keep exact positions.
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        pub enum Step {
            $( $(#[$doc])* $variant($ty), )*
        }

        impl Step {
            /// Every step's keyword, in the order of the format's documentation.
            pub const KEYWORDS: &[&str] = &[$( <$ty as StepKind>::KEYWORD, )*];

            pub fn keyword(&self) -> &'static str {
                match self { $( Step::$variant(_) => <$ty as StepKind>::KEYWORD, )* }
            }
            pub fn expect(&self) -> Option<&str> {
                match self { $( Step::$variant(s) => s.expect(), )* }
            }
            pub fn expand(&self, t: &Template) -> Step {
                match self { $( Step::$variant(s) => Step::$variant(s.expand(t)), )* }
            }
            pub fn check(&self, v: &mut Validator, at: &Site, t: &Template) {
                v.expect(at, self.expect());
                match self { $( Step::$variant(s) => s.check(v, at, t), )* }
            }
            pub fn needs(&self, needs: &mut Needs) {
                match self { $( Step::$variant(s) => s.needs(needs), )* }
            }
            /// Boxed: a repeat runs steps, some of them repeats.
            pub fn run<'s, G: GuestDriver>(&'s self, cx: &'s mut StepContext<'_, G>) -> BoxedRun<'s> {
                Box::pin(async move {
                    match self { $( Step::$variant(s) => s.run(cx).await, )* }
                })
            }
        }
    };
}

steps! {
    /// open("/dev/liveupdate").
    OpenDevice(OpenDevice),
    CreateSession(SessionStep<session::Create>),
    RetrieveSession(SessionStep<session::Retrieve>),
    GetName(OnSession<session::GetName>),
    Finish(OnSession<session::Finish>),
    Close(Close),
    CreateMemfd(CreateMemfd),
    /// Open any path (e.g. /dev/null, an unsupported fd type).
    OpenPath(OpenPath),
    /// dup(2) of any handle.
    Dup(Dup),
    /// Read a file of proc, sys or debugfs; it must contain each of `contains`.
    ReadFile(ReadFile),
    WritePattern(Pattern<memfd::Write>),
    Verify(Pattern<memfd::Verify>),
    Seal(Seal),
    Truncate(Truncate),
    Seek(Seek),
    Preserve(Preserve),
    RetrieveFd(RetrieveFd),
    /// fstat, fstatfs, readlink of a handle, recorded in the report.
    Observe(Observe),
    /// /proc/meminfo and /proc/slabinfo under a label; consecutive labels are compared.
    MeasureMemory(MeasureMemory),
    /// kexec_file_load + reboot into the next kernel, holding every open fd.
    Kexec(Kexec),
    /// Run a program: the scenario's own, a kernel selftest, or the image's.
    Exec(Box<Exec>),
    /// A raw LUO ioctl with a hand-made argument (errno contract).
    RawIoctl(RawIoctl),
    /// Start, stop, restart or read a systemd unit and check its state (`image: systemd`).
    Unit(Unit),
    /// This boot's journal, of one unit: what it must contain, and its TAP lines as sub-results.
    Journal(Journal),
    /// Run `steps` `count` times; `{i}` (or the index named with `as`) in any string becomes the
    /// iteration (0-based).
    Repeat(Repeat),
}

/// The most steps a scenario may unroll to: room for the kernel's 2000-session stress test several
/// steps deep, and a bound on what `check` walks.
pub const MAX_UNROLLED_STEPS: u64 = 100_000;
/// The deepest nesting of repeats.
pub const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub count: u32,
    /// The index's name in templates (default `i`); nested repeats each need their own.
    #[serde(default, rename = "as")]
    pub index: Option<String>,
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
}

impl Repeat {
    pub fn index(&self) -> &str {
        self.index.as_deref().unwrap_or("i")
    }

    pub fn unrolled(&self) -> u64 {
        let inner = self
            .steps
            .iter()
            .fold(0u64, |n, s| n.saturating_add(s.value.unrolled()));
        inner.saturating_mul(self.count as u64)
    }
}

impl StepKind for Repeat {
    const KEYWORD: &'static str = "repeat";
    /// The inner steps are expanded with every enclosing index when they run.
    fn expand(&self, _: &Template) -> Self {
        self.clone()
    }
    fn check(&self, v: &mut Validator, at: &Site, t: &Template) {
        let before = v.problems.len();
        let name = self.index();
        if self.count == 0 {
            v.problem(at, "repeat with count 0 does nothing".into(), None);
        }
        // An empty body unrolls to nothing at any count, but would still be walked count times.
        if self.steps.is_empty() {
            v.problem(at, "a repeat needs at least one step".into(), None);
        } else if self.count as u64 > MAX_UNROLLED_STEPS {
            v.problem(
                at,
                format!(
                    "count {} is more than a scenario's {MAX_UNROLLED_STEPS} steps",
                    self.count
                ),
                None,
            );
        }
        if !crate::scenario::template::is_index_name(name) {
            v.problem(
                at,
                format!("`{name}` cannot name an index"),
                Some("use lower-case letters, digits and _, starting with a letter".into()),
            );
        }
        if t.names().any(|n| n == name) {
            v.problem(
                at,
                format!("an enclosing repeat already names its index `{name}`"),
                Some("name this one's index with `as:`, e.g. `as: j`, and use `{j}`".into()),
            );
        }
        if t.names().count() >= MAX_DEPTH {
            v.problem(at, format!("repeats nest at most {MAX_DEPTH} deep"), None);
        }
        if self.unrolled() > MAX_UNROLLED_STEPS {
            v.problem(
                at,
                format!(
                    "this repeat unrolls to {} steps; a scenario may have at most {MAX_UNROLLED_STEPS}",
                    self.unrolled()
                ),
                Some("measure fewer objects, or make the loop's body smaller".into()),
            );
        }
        if v.problems.len() > before {
            return;
        }
        let count = self.count as u64;
        for i in 0..count {
            let inner = t.nested(name, i, count);
            let before = v.problems.len();
            check_all(&self.steps, v, &inner);
            if v.problems.len() > before {
                return; // one report per faulty step, not one per iteration
            }
        }
    }
    fn needs(&self, needs: &mut Needs) {
        needs_of(&self.steps, needs);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let t = cx.template.clone();
        let count = self.count as u64;
        for i in 0..count {
            let inner = t.nested(self.index(), i, count);
            for s in &self.steps {
                let step = s.value.expand(&inner);
                cx.template = inner.clone();
                let outer_line = std::mem::replace(&mut cx.line, s.referenced.line());
                let r = step.run(cx).await;
                cx.line = outer_line;
                cx.template = t.clone();
                match r {
                    Ok(_) => {}
                    Err(StepFailure::Check(message)) => {
                        return Err(StepFailure::InRepeat {
                            line: s.referenced.line(),
                            keyword: s.value.keyword(),
                            iterations: vec![(i, count)],
                            message,
                        });
                    }
                    Err(StepFailure::InRepeat {
                        line,
                        keyword,
                        mut iterations,
                        message,
                    }) => {
                        iterations.push((i, count));
                        return Err(StepFailure::InRepeat {
                            line,
                            keyword,
                            iterations,
                            message,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(format!(
            "{} x{count} ({} step(s) each): ok",
            Self::KEYWORD,
            self.steps.len()
        ))
    }
}

/// Where a step of the file stands.
pub fn site(s: &Spanned<Step>) -> Site {
    Site {
        line: s.referenced.line(),
        column: s.referenced.column(),
        keyword: s.value.keyword(),
    }
}

impl Step {
    /// How many steps this one runs once repeats are unrolled (saturating).
    pub fn unrolled(&self) -> u64 {
        match self {
            Step::Repeat(r) => r.unrolled(),
            _ => 1,
        }
    }
}

/// Walks `steps` through the validator, expanding each with `t` first.
pub fn check_all(steps: &[Spanned<Step>], v: &mut Validator, t: &Template) {
    for s in steps {
        let at = site(s);
        let expanded = s.value.expand(t);
        for word in t.take_unknown() {
            let names: Vec<&str> = t.names().collect();
            let msg = if names.is_empty() {
                format!("`{{{word}}}` is not inside a repeat")
            } else {
                format!(
                    "no enclosing repeat names its index `{word}` (they name: {})",
                    names.join(", ")
                )
            };
            v.problem(
                &at,
                msg,
                Some("a repeat names its index with `as:` (default `i`)".into()),
            );
        }
        expanded.check(v, &at, t);
    }
}

/// Whether a kexec among `steps` (repeats included) names no kernel.
pub fn unnamed_kexec(steps: &[Spanned<Step>]) -> bool {
    steps.iter().any(|s| match &s.value {
        Step::Kexec(k) => k.kernel.is_none(),
        Step::Repeat(r) => unnamed_kexec(&r.steps),
        _ => false,
    })
}

/// What every step of `steps` needs built.
pub fn needs_of(steps: &[Spanned<Step>], needs: &mut Needs) {
    for s in steps {
        s.value.needs(needs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_is_the_name_the_file_format_uses() {
        let schema = serde_json::to_string(&schemars::schema_for!(Step)).unwrap();
        for kw in Step::KEYWORDS {
            assert!(
                schema.contains(&format!("\"{kw}\"")),
                "{kw} is not in the schema"
            );
        }
        let unique: std::collections::BTreeSet<_> = Step::KEYWORDS.iter().collect();
        assert_eq!(unique.len(), Step::KEYWORDS.len());
    }
}
