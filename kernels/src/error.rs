use std::path::PathBuf;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KernelError {
    #[diagnostic(
        code(luo::kernel::tools),
        help("run `bash ci/install-deps`, or install the packages named")
    )]
    #[error("missing host tools: {}", .0.iter().map(|t| format!("{} (apt-get install {})", t.tool, t.package)).collect::<Vec<_>>().join(", "))]
    MissingTools(Vec<crate::hosttools::MissingTool>),

    #[error("no Debian mirror found in the apt sources ({0})")]
    NoMirror(String),

    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[diagnostic(
        code(luo::kernel::config),
        help("enable what each option depends on in your fragment, or drop the option")
    )]
    #[error("the kernel configuration lacks options the fragments ask for:\n{}", .0.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n"))]
    MissingOptions(Vec<crate::config::MissingOption>),

    #[diagnostic(code(luo::kernel::build))]
    #[error("kernel build failed; last lines of {log}:\n{tail}")]
    BuildFailed { log: PathBuf, tail: String },

    #[error("unknown kernel variant {0:?} (known: {1})")]
    UnknownVariant(String, String),

    #[error("patch {patch} of variant {variant} does not apply to {tree}:\n{output}")]
    PatchFailed {
        variant: String,
        patch: String,
        tree: PathBuf,
        output: String,
    },

    #[error("{0} is not a kernel source tree (no Makefile and Kconfig)")]
    NotATree(PathBuf),

    #[error("no cached kernel for {0}; run `luo-harness kernel build` first")]
    NotBuilt(String),

    #[diagnostic(
        code(luo::kernel::version),
        help(
            "the archive keeps only current versions: name a series (debian:7.2) to get the newest"
        )
    )]
    #[error("{name} is not in the archive; it has: {}", if .available.is_empty() { "no version of that series".to_string() } else { .available.join(", ") })]
    NoSuchVersion {
        name: String,
        available: Vec<String>,
    },

    #[error(
        "not a kernel source: {0:?} (expected debian:7.3, debian:7.2.13, tree:PATH, git:PATH@REV or file:BZIMAGE)"
    )]
    BadSpec(String),

    #[error("{repo}: {message}")]
    Git { repo: PathBuf, message: String },

    /// A scenario's own C program did not compile: the compiler's message.
    #[error("{program} did not compile:\n{output}")]
    CompileFailed { program: String, output: String },

    #[diagnostic(code(luo::kernel::selftest))]
    #[error("this kernel source has no LUO selftest `{name}` (tools/testing/selftests/liveupdate has: {})", .available.join(", "))]
    NoSelftest {
        name: String,
        available: Vec<String>,
    },
}

/// What kind of failure a kernel error is, for the caller's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself cannot be met: an unknown variant, an option Kconfig cannot give, a
    /// path that is not a kernel tree, a selftest the tree does not have.
    BadInput,
    /// The source did not build (compiler or patch errors).
    BuildFailure,
    /// The host cannot do it: tools missing, no mirror, I/O errors.
    Host,
}

impl KernelError {
    pub fn class(&self) -> ErrorClass {
        match self {
            KernelError::MissingOptions(_)
            | KernelError::UnknownVariant(..)
            | KernelError::NotATree(_)
            | KernelError::NotBuilt(_)
            | KernelError::NoSelftest { .. }
            | KernelError::CompileFailed { .. }
            | KernelError::NoSuchVersion { .. }
            | KernelError::BadSpec(_)
            | KernelError::Git { .. } => ErrorClass::BadInput,
            KernelError::BuildFailed { .. } | KernelError::PatchFailed { .. } => {
                ErrorClass::BuildFailure
            }
            KernelError::Command { .. } => ErrorClass::BuildFailure,
            KernelError::MissingTools(_) | KernelError::NoMirror(_) | KernelError::Io { .. } => {
                ErrorClass::Host
            }
        }
    }
}

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, KernelError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, KernelError> {
        self.map_err(|source| KernelError::Io {
            path: path.into(),
            source,
        })
    }
}
