//! How starting a VM can fail.

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum VmError {
    #[error("qemu-system-{0} not found (install it with ci/install-deps)")]
    NoQemu(luo_kernels::Arch),
    #[error("creating an artifacts directory under {base}: {source}")]
    NoArtifacts {
        base: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}\n--- artifacts kept in {artifacts} ---")]
    Setup {
        what: &'static str,
        source: std::io::Error,
        artifacts: String,
    },
    #[error("QEMU did not start: {message}\n{stderr}\n--- artifacts kept in {artifacts} ---")]
    Start {
        message: String,
        stderr: String,
        artifacts: String,
    },
    /// A saved VM that QEMU would not load (the caller can boot afresh instead).
    #[error(
        "QEMU did not load the saved VM {state}: {message}\n{stderr}\n--- artifacts kept in {artifacts} ---"
    )]
    Restore {
        state: String,
        message: String,
        stderr: String,
        artifacts: String,
    },
}

impl crate::outcome::Classify for VmError {
    fn kind(&self) -> crate::outcome::Kind {
        crate::outcome::Kind::InfraFailure
    }
}
