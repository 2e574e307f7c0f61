//! What a step sees while it runs: the guest, the plan, and the report being written. Each step
//! (steps/*.rs) turns itself into requests through [`StepContext::call`]; checks.rs adds what the
//! report learns from the replies.

use super::driver::GuestDriver;
use super::report::{Metrics, Report};
use super::requires::Requires;
use super::template::Template;
use crate::guest::GuestError;
use crate::plan::Plan;
use luo_protocol::{AgentError, MemorySnapshot, Reply, Request};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Why a step did not go as the scenario says.
#[derive(Debug)]
pub enum StepFailure {
    /// The scenario's expectation was not met; the run stops here.
    Check(String),
    /// The same, inside a repeat: the failing step's line and keyword, and the iteration of each
    /// enclosing repeat, innermost first.
    InRepeat {
        line: u64,
        keyword: &'static str,
        iterations: Vec<(u64, u64)>,
        message: String,
    },
    /// A kernel the scenario kexec'd into lacks what it requires.
    Skip(String),
    /// The VM itself failed (boxed: it is the largest failure and the rarest).
    Vm(Box<GuestError>),
}

impl StepFailure {
    /// The report's line for an unmet expectation: `L7 create_session: ...`, or inside repeats
    /// `L14 create_session (repeat iteration 3 of 8): ...` with outer iterations after the inner.
    pub fn located(&self, line: u64, keyword: &str) -> Option<String> {
        match self {
            StepFailure::Check(m) => Some(format!("L{line} {keyword}: {m}")),
            StepFailure::InRepeat {
                line,
                keyword,
                iterations,
                message,
            } => {
                let mut at = iterations.iter();
                let (i, n) = at.next().expect("a repeat failure has its iteration");
                let mut s = format!("L{line} {keyword} (repeat iteration {i} of {n}");
                for (i, n) in at {
                    s.push_str(&format!(", within iteration {i} of {n}"));
                }
                Some(format!("{s}): {message}"))
            }
            StepFailure::Skip(_) | StepFailure::Vm(_) => None,
        }
    }
}

impl From<GuestError> for StepFailure {
    fn from(e: GuestError) -> Self {
        StepFailure::Vm(Box::new(e))
    }
}

/// A step's one-line summary for the report, or why it failed.
pub type StepResult = Result<String, StepFailure>;

pub struct StepContext<'a, G> {
    pub(crate) guest: G,
    pub(crate) plan: &'a Plan,
    pub(crate) requires: &'a Requires,
    pub(crate) report: Report,
    pub(crate) metrics: Metrics,
    /// Labels of (boot, st_dev, st_ino) in order of first appearance.
    pub(crate) inodes: BTreeMap<(u32, u64, u64), String>,
    /// Handles that are session fds, in the current boot.
    pub(crate) session_handles: BTreeSet<String>,
    /// Per boot: the inode labels of observed session fds.
    pub(crate) session_inodes: BTreeMap<u32, Vec<String>>,
    pub(crate) last_memory: Option<(String, MemorySnapshot)>,
    /// The indices of the repeats around the step that runs.
    pub(crate) template: Template,
    /// The scenario line of the step that runs (inside a repeat, the inner step's).
    pub(crate) line: u64,
    /// The scenario file's directory, where its own programs and files are.
    pub(crate) dir: std::path::PathBuf,
    /// The guest image the scenario boots (and kexecs with).
    pub(crate) initrd: std::path::PathBuf,
    /// What each boot's kernel said about itself, read at every checkpoint; the last is running.
    pub(crate) watch: Vec<super::watch::BootWatch>,
}

impl<'a, G: GuestDriver> StepContext<'a, G> {
    pub(crate) fn new(
        guest: G,
        plan: &'a Plan,
        requires: &'a Requires,
        report: Report,
        metrics: Metrics,
    ) -> Self {
        StepContext {
            guest,
            plan,
            requires,
            report,
            metrics,
            inodes: BTreeMap::new(),
            session_handles: BTreeSet::new(),
            session_inodes: BTreeMap::new(),
            last_memory: None,
            template: Template::none(),
            line: 0,
            dir: ".".into(),
            initrd: plan.initrd.clone(),
            watch: vec![super::watch::BootWatch::new(0, plan.boot.clone())],
        }
    }

    /// The running boot's watch.
    pub(crate) fn watching(&mut self) -> &mut super::watch::BootWatch {
        self.watch
            .last_mut()
            .expect("a scenario watches from its first boot")
    }

    /// The VM's console log so far (empty where the guest keeps none).
    pub(crate) fn console(&self) -> String {
        self.guest
            .artifacts()
            .and_then(|d| std::fs::read_to_string(d.join("console.log")).ok())
            .unwrap_or_default()
    }

    /// What the running boot's kernel reported on the console before the VM failed, rendered.
    pub(crate) fn console_reports(&self) -> Vec<String> {
        match self.watch.last() {
            Some(w) => w.console_reports(&self.console()),
            None => vec![],
        }
    }

    /// The step that starts now: reports from its requests on are its.
    pub(crate) fn enter_step(&mut self, label: String) {
        let first = self.guest.next_request_id();
        self.watching().step(first, label);
    }

    /// One request with the step's `expect` applied: Ok(Some(reply)) when it succeeded as it
    /// should, Ok(None) when it failed with the expected errno.
    pub async fn call(
        &mut self,
        req: Request,
        expect: Option<&str>,
    ) -> Result<Option<Reply>, StepFailure> {
        self.call_within(req, expect, None).await
    }

    /// [`StepContext::call`] with the host's wait for the reply set by the step.
    pub async fn call_within(
        &mut self,
        req: Request,
        expect: Option<&str>,
        within: Option<Duration>,
    ) -> Result<Option<Reply>, StepFailure> {
        let outcome = self.guest.try_request(req, within).await?;
        match (outcome, expect) {
            (Ok(r), None) => Ok(Some(r)),
            (Ok(_), Some(e)) => Err(StepFailure::Check(format!(
                "expected {e}, but the call succeeded"
            ))),
            (Err(err), Some(e)) if err.errno.as_deref() == Some(e) => Ok(None),
            (Err(err), _) => Err(StepFailure::Check(describe(&err, expect))),
        }
    }

    /// Forgets what belonged to the kernel that just ended.
    pub(crate) fn new_boot(&mut self) {
        self.session_handles.clear();
    }
}

/// `kw what: ok`, or `kw what: EEXIST as expected`.
pub fn done(kw: &str, what: &str, reply: &Option<Reply>, expect: Option<&str>) -> String {
    match (reply, expect) {
        (None, Some(e)) => format!("{kw} {what}: {e} as expected"),
        _ => format!("{kw} {what}: ok"),
    }
}

fn describe(err: &AgentError, expect: Option<&str>) -> String {
    match (expect, &err.errno) {
        (Some(e), Some(got)) => format!("expected {e}, got {got} from {}", err.call),
        _ => err.to_string(),
    }
}
