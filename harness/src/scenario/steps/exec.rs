//! `exec`: run a program in the guest and check its exit code and output. `selftests/<name>` is the
//! kernel's own LUO selftest of that name, built by the run plan from the kernel's source; any
//! other relative path is in the share, an absolute one in the guest image.

use super::kind::StepKind;
use crate::plan::Needs;
use crate::scenario::context::{StepContext, StepFailure, StepResult, done};
use crate::scenario::driver::GuestDriver;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use crate::scenario::values::Expect;
use crate::timeouts::Timeouts;
use luo_protocol::{Reply, Request};
use schemars::JsonSchema;
use serde::Deserialize;
use std::time::Duration;

pub const SELFTESTS: &str = "selftests/";

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// A program in the share (`selftests/<name>` for the kernel's LUO selftests) or an absolute path.
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
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

impl Exec {
    fn selftest(&self) -> Option<&str> {
        self.path.strip_prefix(SELFTESTS)
    }
}

impl StepKind for Exec {
    const KEYWORD: &'static str = "exec";
    fn expect(&self) -> Option<&str> {
        self.expect.as_deref()
    }
    fn expand(&self, t: &Template) -> Self {
        Exec {
            path: t.text(&self.path),
            args: t.list(&self.args),
            background: t.opt(&self.background),
            output_contains: t.opt(&self.output_contains),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        if let Some(name) = self.selftest()
            && (name.is_empty() || name.contains('/'))
        {
            v.problem(
                at,
                format!("`{}` names no selftest", self.path),
                Some("selftests/<name> runs tools/testing/selftests/liveupdate/<name>.c".into()),
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
        if self.selftest().is_none() {
            v.program_path(at, &self.path);
        }
    }
    fn needs(&self, needs: &mut Needs) {
        if let Some(name) = self.selftest() {
            needs.selftests.insert(name.to_string());
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let kw = Self::KEYWORD;
        if let Some(name) = self.selftest() {
            let built = cx.plan.selftest(name).ok_or_else(|| {
                StepFailure::Check(format!("the run plan has no selftest {name}"))
            })?;
            cx.guest.stage(built, &self.path)?;
        }
        let limit = cx
            .guest
            .timeouts()
            .exec_limit(self.timeout_s.map(Duration::from_secs));
        let req = Request::Exec {
            path: self.path.clone(),
            args: self.args.clone(),
            env: vec![],
            background: self.background.clone(),
            timeout_ms: Some(limit.as_millis() as u64),
        };
        let r = cx
            .call_within(req, self.expect(), Some(Timeouts::host_wait(limit)))
            .await?;
        Ok(match &r {
            Some(Reply::Exited(x)) => {
                let want = self.exit_code.unwrap_or(0);
                if x.code != Some(want) {
                    return Err(StepFailure::Check(format!(
                        "{} exited with {:?} (signal {:?}), expected {want}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        self.path,
                        x.code,
                        x.signal,
                        tail(&x.stdout),
                        tail(&x.stderr)
                    )));
                }
                match &self.output_contains {
                    Some(text) if !x.stdout.contains(text.as_str()) => {
                        return Err(StepFailure::Check(format!(
                            "{} did not print {text:?}\n--- stdout ---\n{}",
                            self.path,
                            tail(&x.stdout)
                        )));
                    }
                    Some(text) => format!("{kw} {}: exit {want}, printed {text:?}", self.path),
                    None => format!("{kw} {}: exit {want}", self.path),
                }
            }
            Some(Reply::Started { .. }) => format!("{kw} {}: started in the background", self.path),
            _ => done(kw, &self.path, &r, self.expect()),
        })
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
