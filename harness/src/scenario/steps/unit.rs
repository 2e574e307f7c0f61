//! `unit` and `journal` (`image: systemd`): start, stop or read a systemd unit and check its state;
//! read a unit's journal of this boot, check what it says and take its KTAP/TAP lines as
//! sub-results, as `exec` does with a program's output.

use super::kind::StepKind;
use super::tail;
use crate::scenario::context::{StepContext, StepFailure, StepResult};
use crate::scenario::driver::GuestDriver;
use crate::scenario::report::SubtestGroup;
use crate::scenario::subtests;
use crate::scenario::template::Template;
use crate::scenario::validate::{Site, Validator};
use luo_protocol::{Reply, Request, UnitAction, UnitState};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
    /// Only read its state.
    #[default]
    Show,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    /// The unit, e.g. `luo-memfd-store.service`.
    pub name: String,
    /// What systemctl does with it first (waiting for the job): start, stop, restart, show.
    #[serde(default)]
    pub action: Action,
    /// ActiveState it must then be in (`active`, `inactive`, `failed`).
    #[serde(default)]
    pub active: Option<String>,
    /// SubState (`running`, `exited`, `dead`).
    #[serde(default)]
    pub sub: Option<String>,
    /// Result (`success`, `exit-code`, ...).
    #[serde(default)]
    pub result: Option<String>,
    /// How many fds its fd store must hold.
    #[serde(default)]
    pub fd_store: Option<u32>,
}

/// A unit name systemd would take: a known suffix, no path.
fn unit_name_problem(name: &str) -> Option<String> {
    const SUFFIXES: &[&str] = &[
        ".service", ".socket", ".target", ".timer", ".path", ".mount",
    ];
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Some(format!("`{name}` is not a unit name"));
    }
    (!SUFFIXES.iter().any(|s| name.ends_with(s)))
        .then(|| format!("`{name}` has no unit type ({})", SUFFIXES.join(", ")))
}

fn check_name(v: &mut Validator, at: &Site, name: &str) {
    if let Some(p) = unit_name_problem(name) {
        v.problem(at, p, Some("name it as systemctl does: foo.service".into()));
    }
}

/// The state as the report shows it: `active (exited), result success, fd store 1, exit 0`.
pub fn describe(s: &UnitState) -> String {
    format!(
        "{} ({}), result {}, fd store {}, exit {}",
        s.active, s.sub, s.result, s.fd_store, s.exit_status
    )
}

impl Unit {
    fn unmet(&self, s: &UnitState) -> Vec<String> {
        let mut out = Vec::new();
        let mut want = |what: &str, wanted: &Option<String>, got: &str| {
            if let Some(w) = wanted
                && w != got
            {
                out.push(format!("{what} {got}, expected {w}"));
            }
        };
        want("active", &self.active, &s.active);
        want("sub", &self.sub, &s.sub);
        want("result", &self.result, &s.result);
        if let Some(n) = self.fd_store
            && n != s.fd_store
        {
            out.push(format!("fd store {}, expected {n}", s.fd_store));
        }
        out
    }
}

impl StepKind for Unit {
    const KEYWORD: &'static str = "unit";
    fn expand(&self, t: &Template) -> Self {
        Unit {
            name: t.text(&self.name),
            ..self.clone()
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.needs_systemd(at, Self::KEYWORD);
        check_name(v, at, &self.name);
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let action = match self.action {
            Action::Start => UnitAction::Start,
            Action::Stop => UnitAction::Stop,
            Action::Restart => UnitAction::Restart,
            Action::Show => UnitAction::Show,
        };
        let req = Request::Unit {
            unit: self.name.clone(),
            action,
        };
        let verb = action.verb().unwrap_or("show");
        match cx.call(req, None).await? {
            Some(Reply::Unit(s)) => {
                let unmet = self.unmet(&s);
                if !unmet.is_empty() {
                    return Err(StepFailure::Check(format!(
                        "{} {verb} {}: {}",
                        Self::KEYWORD,
                        self.name,
                        unmet.join(", ")
                    )));
                }
                Ok(format!(
                    "{} {verb} {}: {}",
                    Self::KEYWORD,
                    self.name,
                    describe(&s)
                ))
            }
            other => Err(StepFailure::Check(format!(
                "a unit's state was expected, the agent answered {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// The unit whose messages to read (`journalctl -u`); all of this boot's when absent.
    #[serde(default)]
    pub unit: Option<String>,
    /// Texts that must each appear in some line.
    #[serde(default)]
    pub contains: Vec<String>,
    /// What a `not ok` among its TAP lines does: `fail` the step (default), or `record` it in the
    /// report only, for a scenario whose snapshots say what each kernel does (the four
    /// session-inode designs under systemd).
    #[serde(default)]
    pub not_ok: NotOk,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotOk {
    #[default]
    Fail,
    Record,
}

impl StepKind for Journal {
    const KEYWORD: &'static str = "journal";
    fn expand(&self, t: &Template) -> Self {
        Journal {
            unit: t.opt(&self.unit),
            contains: t.list(&self.contains),
            not_ok: self.not_ok,
        }
    }
    fn check(&self, v: &mut Validator, at: &Site, _: &Template) {
        v.needs_systemd(at, Self::KEYWORD);
        if let Some(u) = &self.unit {
            check_name(v, at, u);
        }
    }
    async fn run<G: GuestDriver>(&self, cx: &mut StepContext<'_, G>) -> StepResult {
        let kw = Self::KEYWORD;
        let what = self.unit.as_deref().unwrap_or("this boot");
        let req = Request::Journal {
            unit: self.unit.clone(),
        };
        let lines = match cx.call(req, None).await? {
            Some(Reply::Log { lines }) => lines,
            other => {
                return Err(StepFailure::Check(format!(
                    "journal lines were expected, the agent answered {other:?}"
                )));
            }
        };
        let text = lines.join("\n");
        let missing: Vec<&str> = self
            .contains
            .iter()
            .filter(|c| !text.contains(c.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(StepFailure::Check(format!(
                "{kw} {what}: no line contains {missing:?}\n--- journal ---\n{}",
                tail(&text)
            )));
        }
        let parsed = subtests::parse(&text);
        if let Some(p) = &parsed {
            cx.report.subtests.push(SubtestGroup {
                step: format!("L{} {kw} {what}", cx.line),
                parsed: p.clone(),
            });
            let failed = p.not_oks();
            if !failed.is_empty() && self.not_ok == NotOk::Fail {
                return Err(StepFailure::Check(format!(
                    "{kw} {what}: {}\n--- journal ---\n{}",
                    failed.join(", "),
                    tail(&text)
                )));
            }
            if !failed.is_empty() {
                return Ok(format!("{kw} {what}: {} (recorded)", failed.join(", ")));
            }
        }
        // Not the line count: systemd's own lines about the unit vary (CPU time consumed, ...).
        Ok(match parsed {
            Some(p) => format!("{kw} {what}: {} sub-results: ok", p.cases.len()),
            None => format!("{kw} {what}: ok"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_need_a_type_and_no_path() {
        assert_eq!(unit_name_problem("a.service"), None);
        assert_eq!(unit_name_problem("multi-user.target"), None);
        assert!(unit_name_problem("a").unwrap().contains("no unit type"));
        assert!(unit_name_problem("/etc/a.service").is_some());
        assert!(unit_name_problem("").is_some());
    }

    #[test]
    fn only_the_fields_a_step_names_are_checked() {
        let state = UnitState {
            unit: "a.service".into(),
            active: "inactive".into(),
            sub: "dead".into(),
            result: "success".into(),
            fd_store: 1,
            exit_status: 0,
        };
        let step = Unit {
            name: "a.service".into(),
            action: Action::Show,
            active: Some("inactive".into()),
            sub: None,
            result: Some("exit-code".into()),
            fd_store: Some(2),
        };
        assert_eq!(
            step.unmet(&state),
            [
                "result success, expected exit-code",
                "fd store 1, expected 2"
            ]
        );
        assert_eq!(
            describe(&state),
            "inactive (dead), result success, fd store 1, exit 0"
        );
    }
}
