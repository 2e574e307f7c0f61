//! The one channel from the library to whoever shows a run: the library never prints, it emits
//! [`Event`]s, and a sink decides how they look (progress bars and a table on a terminal, KTAP,
//! JUnit, JSON, nothing in tests). Tracing spans and events are for diagnostics and go wherever
//! `RUST_LOG` sends them.
//!
//! Events are plain data and this module needs no other: it is the bottom of the library, under
//! the plan that emits build progress and the run whose results a renderer takes through a
//! `ResultSink` (result.rs).

use luo_kernels::BuildEvent;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Event {
    /// A kernel the run needs, named by its plan label (`debian:...=7.3.4 stock`).
    Kernel {
        label: String,
        event: BuildEvent,
    },
    /// A program the run needs (a selftest) is being built or found.
    Program {
        name: String,
        label: String,
    },
    /// A root filesystem the run needs (`image: systemd`) is being built, or was.
    Image {
        name: String,
        message: String,
    },
    /// A kernel, program or image the run needs came from the stage (plan/stage.rs): not built.
    Staged {
        what: String,
        path: std::path::PathBuf,
    },
    AccelProbe {
        kvm_works: bool,
        detail: String,
    },
    AccelChosen {
        accel: String,
        cached: bool,
    },
    /// Every kernel and program is at hand; the scenarios start.
    RunStarted {
        scenarios: Vec<String>,
    },
    ScenarioStarted {
        name: String,
    },
    /// A scenario ended; its whole result goes to the run's `ResultSink` (result.rs).
    ScenarioFinished {
        name: String,
        /// Its outcome's label (`pass`, `FAIL`, ...).
        outcome: String,
        duration: Duration,
    },
    RunFinished,
    /// Long work that is neither a build nor a scenario (`compare`, `bench`): `done` of `total`.
    Progress {
        task: String,
        done: u64,
        total: u64,
        what: String,
    },
    Note(String),
}

pub trait EventSink: Send + Sync {
    fn emit(&self, e: Event);
}

/// Emits nothing (library use, tests).
pub struct Silent;
impl EventSink for Silent {
    fn emit(&self, _: Event) {}
}

/// Keeps every event (tests).
#[derive(Default)]
pub struct Collected(pub Mutex<Vec<Event>>);
impl EventSink for Collected {
    fn emit(&self, e: Event) {
        self.0.lock().unwrap().push(e);
    }
}
