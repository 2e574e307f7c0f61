//! How a command ends when it cannot do its work: the error to show and what kind of end it is
//! (which decides the exit code, in luo_harness::outcome).

use super::{args, collect};
use luo_harness::outcome::{Classify, Kind};

/// A command that could not do its work: the error to show and what kind of end it is.
pub struct Failed {
    pub report: miette::Report,
    pub kind: Kind,
}

impl<E> From<E> for Failed
where
    E: Classify + miette::Diagnostic + Send + Sync + 'static,
{
    fn from(e: E) -> Failed {
        Failed {
            kind: e.kind(),
            report: miette::Report::new(e),
        }
    }
}

impl Failed {
    pub fn io(path: &std::path::Path, e: std::io::Error) -> Failed {
        Failed {
            report: miette::miette!("{}: {e}", path.display()),
            kind: Kind::InfraFailure,
        }
    }
    pub fn bad_input(message: String) -> Failed {
        Failed {
            report: miette::miette!("{message}"),
            kind: Kind::BadInput,
        }
    }
    pub fn infra(message: String) -> Failed {
        Failed {
            report: miette::miette!("{message}"),
            kind: Kind::InfraFailure,
        }
    }
}

impl Classify for collect::CollectError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

impl Classify for args::FragmentError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}
