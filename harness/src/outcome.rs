//! What came of a scenario (or of a whole command), and the exit codes each command maps it to.
//!
//! Exit codes of `luo-harness run` (and `check`, which only ever reaches 0 or 2):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every scenario passed (or was skipped: its kernel lacks what it requires) |
//! | 1 | a scenario failed: an expectation, a kernel log finding or its snapshot |
//! | 2 | bad input: scenario files, arguments, fragments; nothing was started |
//! | 3 | a kernel or VM could not be brought up or died: build failure, panic, QEMU, host |
//! | 130 | interrupted (SIGINT, SIGTERM, SIGHUP); artifacts kept |
//!
//! The worst outcome of a run decides: interrupted, then kernel/VM, then bad input, then failure.

use serde::{Deserialize, Serialize};

/// How one scenario (or one command) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// The kernel under test lacks what the scenario requires; nothing is claimed about it.
    Skip {
        reason: String,
    },
    /// An expectation was not met (a step, the kernel log, the snapshot).
    Fail {
        reason: String,
    },
    /// The kernel under test failed: a panic, an oops, no hello after a boot or kexec while QEMU
    /// itself was fine, a request it never answered.
    KernelFailure {
        reason: String,
    },
    /// A kernel or program the run needs could not be built.
    BuildFailure {
        reason: String,
    },
    /// The harness or the host failed: QEMU or virtiofsd, the agent protocol, disk, a panic in the
    /// harness itself.
    InfraFailure {
        reason: String,
    },
    /// The input cannot be run as given.
    BadInput {
        reason: String,
    },
    Interrupted,
}

/// The outcome without its details, ordered from best to worst for a run's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Pass,
    Skip,
    Fail,
    BadInput,
    KernelFailure,
    BuildFailure,
    InfraFailure,
    Interrupted,
}

impl Outcome {
    pub fn kind(&self) -> Kind {
        match self {
            Outcome::Pass => Kind::Pass,
            Outcome::Skip { .. } => Kind::Skip,
            Outcome::Fail { .. } => Kind::Fail,
            Outcome::KernelFailure { .. } => Kind::KernelFailure,
            Outcome::BuildFailure { .. } => Kind::BuildFailure,
            Outcome::InfraFailure { .. } => Kind::InfraFailure,
            Outcome::BadInput { .. } => Kind::BadInput,
            Outcome::Interrupted => Kind::Interrupted,
        }
    }

    /// The one-line reason, empty for a pass.
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Interrupted => "interrupted",
            Outcome::Skip { reason }
            | Outcome::Fail { reason }
            | Outcome::KernelFailure { reason }
            | Outcome::BuildFailure { reason }
            | Outcome::InfraFailure { reason }
            | Outcome::BadInput { reason } => reason,
        }
    }

    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Pass)
    }

    /// pass / skip / FAIL / KERNEL / BUILD / ERROR / BAD INPUT / INTERRUPTED, for tables.
    pub fn label(&self) -> &'static str {
        self.kind().label()
    }
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Pass => "pass",
            Kind::Skip => "skip",
            Kind::Fail => "FAIL",
            Kind::KernelFailure => "KERNEL",
            Kind::BuildFailure => "BUILD",
            Kind::InfraFailure => "ERROR",
            Kind::BadInput => "BAD INPUT",
            Kind::Interrupted => "INTERRUPTED",
        }
    }
}

/// Sorts an error into an outcome kind; every library error type says what it is.
pub trait Classify {
    fn kind(&self) -> Kind;
}

impl Classify for luo_kernels::KernelError {
    fn kind(&self) -> Kind {
        match self.class() {
            luo_kernels::error::ErrorClass::BadInput => Kind::BadInput,
            luo_kernels::error::ErrorClass::BuildFailure => Kind::BuildFailure,
            luo_kernels::error::ErrorClass::Host => Kind::InfraFailure,
        }
    }
}

/// Exit codes, one function per command.
pub mod exit {
    use super::Kind;

    pub const PASS: u8 = 0;
    pub const FAIL: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const KERNEL_OR_VM: u8 = 3;
    pub const INTERRUPTED: u8 = 130;

    /// `run`, `check`, and every other command: the worst kind decides.
    pub fn run(kinds: impl IntoIterator<Item = Kind>) -> u8 {
        match kinds.into_iter().max().unwrap_or(Kind::Pass) {
            Kind::Pass | Kind::Skip => PASS,
            Kind::Fail => FAIL,
            Kind::BadInput => BAD_INPUT,
            Kind::KernelFailure | Kind::BuildFailure | Kind::InfraFailure => KERNEL_OR_VM,
            Kind::Interrupted => INTERRUPTED,
        }
    }

    /// Skip, for `git bisect run`: the commit cannot be tested.
    pub const BISECT_SKIP: u8 = 125;
    /// Above 127, `git bisect run` stops instead of marking the commit.
    pub const BISECT_ABORT: u8 = 128;

    /// A bisect step, in `git bisect run`'s terms: 0 good, 1 bad (a scenario failed, or the
    /// kernel panicked or stopped answering), 125 skip (the commit does not build, lacks an option
    /// the harness needs, or lacks what a scenario requires), 128 abort (QEMU, the host, the
    /// harness: the commit says nothing), 130 interrupted.
    pub fn bisect(kinds: impl IntoIterator<Item = Kind>) -> u8 {
        let kinds: Vec<Kind> = kinds.into_iter().collect();
        let any = |k: &[Kind]| kinds.iter().any(|x| k.contains(x));
        if any(&[Kind::Interrupted]) {
            INTERRUPTED
        } else if any(&[Kind::InfraFailure]) {
            BISECT_ABORT
        } else if any(&[Kind::Fail, Kind::KernelFailure]) {
            FAIL
        } else if any(&[Kind::Skip, Kind::BuildFailure, Kind::BadInput]) {
            BISECT_SKIP
        } else {
            PASS
        }
    }

    /// The table in `--help` and README.
    pub const TABLE: &str = "Exit codes: 0 every scenario passed or was skipped, 1 a scenario failed \
(step, kernel log or snapshot), 2 bad input (scenario files, arguments, fragments; nothing started), \
3 a kernel or VM could not be brought up or died (build failure, panic, QEMU, host), 130 interrupted.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_outcome_decides_the_exit_code() {
        assert_eq!(exit::run([]), 0);
        assert_eq!(
            exit::run([Kind::Pass, Kind::Skip]),
            0,
            "a skip is not a failure"
        );
        assert_eq!(exit::run([Kind::Pass, Kind::Fail]), 1);
        assert_eq!(exit::run([Kind::Fail, Kind::BadInput]), 2);
        assert_eq!(exit::run([Kind::Fail, Kind::KernelFailure]), 3);
        assert_eq!(exit::run([Kind::BuildFailure]), 3);
        assert_eq!(
            exit::run([Kind::InfraFailure, Kind::Interrupted, Kind::Pass]),
            130
        );
    }

    #[test]
    fn bisect_steps_follow_git_bisect_runs_contract() {
        assert_eq!(exit::bisect([Kind::Pass, Kind::Pass]), 0);
        assert_eq!(exit::bisect([Kind::Pass, Kind::Fail]), 1);
        assert_eq!(
            exit::bisect([Kind::KernelFailure]),
            1,
            "a panic is the commit's fault"
        );
        assert_eq!(exit::bisect([Kind::BuildFailure]), 125);
        assert_eq!(
            exit::bisect([Kind::Skip, Kind::Pass]),
            125,
            "a requirement it lacks: untestable"
        );
        assert_eq!(
            exit::bisect([Kind::Fail, Kind::Skip]),
            1,
            "one failure is enough"
        );
        assert_eq!(
            exit::bisect([Kind::Fail, Kind::InfraFailure]),
            128,
            "never poison the bisect"
        );
        assert!(exit::bisect([Kind::InfraFailure]) > 127);
    }

    #[test]
    fn kernel_errors_are_sorted_by_what_went_wrong() {
        use luo_kernels::KernelError;
        let missing = KernelError::MissingOptions(vec![]);
        assert_eq!(
            Classify::kind(&missing),
            Kind::BadInput,
            "an option Kconfig cannot give is bad input"
        );
        let failed = KernelError::BuildFailed {
            log: "/l".into(),
            tail: String::new(),
        };
        assert_eq!(Classify::kind(&failed), Kind::BuildFailure);
        assert_eq!(
            Classify::kind(&KernelError::NoMirror("x".into())),
            Kind::InfraFailure
        );
    }
}
