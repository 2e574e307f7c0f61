//! The scenario file format. Steps are externally tagged (`- create_session: {name: a}`) so parse
//! errors keep exact positions; every struct denies unknown keys.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier; defaults to the file name.
    #[serde(default)]
    pub name: Option<String>,
    pub description: String,
    #[serde(default)]
    pub requires: Requires,
    /// Guest memory in MiB (default 256).
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Request timeout in seconds for every step (default 30).
    #[serde(default)]
    pub step_timeout_s: Option<u64>,
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
}

/// What the kernel under test must offer; a scenario whose requirements are not met fails with
/// the reason (it is never silently skipped).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Kernel options that must be `y` (read from /proc/config.gz in the guest).
    #[serde(default)]
    pub config: Vec<String>,
    /// Minimum kernel version, e.g. "7.2" (LIVEUPDATE_SESSION_GET_NAME).
    #[serde(default)]
    pub kernel: Option<String>,
}

/// An errno name the step must fail with, e.g. `EEXIST`.
pub type Expect = Option<String>;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// open("/dev/liveupdate").
    OpenDevice(OpenDevice),
    CreateSession(SessionStep),
    RetrieveSession(SessionStep),
    GetName(OnSession),
    Finish(OnSession),
    Close(OnHandle),
    CreateMemfd(CreateMemfd),
    /// Open any path (e.g. /dev/null, an unsupported fd type).
    OpenPath(OpenPath),
    WritePattern(Pattern),
    Verify(Pattern),
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
    /// Run a program from the share.
    Exec(Exec),
    /// A raw LUO ioctl with a hand-made argument (errno contract).
    RawIoctl(RawIoctl),
    /// Run `steps` `count` times; `{i}` in any string is replaced by the iteration (0-based).
    Repeat(Repeat),
}

fn dev() -> String {
    "dev".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDevice {
    #[serde(default = "dev", rename = "as")]
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStep {
    pub name: String,
    /// Handle for the session fd (default: the name).
    #[serde(default, rename = "as")]
    pub handle: Option<String>,
    #[serde(default = "dev")]
    pub device: String,
    #[serde(default)]
    pub expect: Expect,
}

impl SessionStep {
    pub fn handle(&self) -> &str {
        self.handle.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnSession {
    pub session: String,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnHandle {
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemfd {
    #[serde(rename = "as")]
    pub handle: String,
    /// Bytes; suffixes K, M (KiB, MiB) allowed: "4M".
    pub size: Size,
    /// Fill [0, size) with the pattern of this seed.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub hugetlb: bool,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPath {
    pub path: String,
    #[serde(rename = "as")]
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    pub fd: String,
    pub seed: u64,
    #[serde(default)]
    pub offset: Option<Size>,
    /// Default: the rest of the file (from offset to its size).
    #[serde(default)]
    pub len: Option<Size>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub fd: String,
    /// Any of: seal, shrink, grow, write, future_write.
    pub seals: Vec<String>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    pub fd: String,
    pub size: Size,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Seek {
    pub fd: String,
    pub offset: Size,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preserve {
    pub session: String,
    pub fd: String,
    pub token: u64,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrieveFd {
    pub session: String,
    pub token: u64,
    #[serde(rename = "as")]
    pub handle: String,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    pub handle: String,
    /// Name in the report (default: the handle).
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeasureMemory {
    pub label: String,
    /// Objects created since the previous measurement, for bytes-per-object figures.
    #[serde(default)]
    pub objects: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kexec {
    /// Extra kernel command line for the next kernel.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Kexec into this kernel variant (kernels/variants/) of the same source instead of the running one.
    #[serde(default)]
    pub kernel: Option<String>,
}

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
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIoctl {
    pub handle: String,
    /// The command number (0x00..0xff), e.g. 0x40 for PRESERVE_FD.
    pub nr: u8,
    /// The value put in the leading `size` field.
    pub size: u32,
    /// Bytes of the argument buffer (at least 8); the rest is zero unless `fill` is given.
    pub len: u32,
    /// (offset, value) pairs of u32 written into the buffer after the size.
    #[serde(default)]
    pub words: Vec<(u32, u32)>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub count: u32,
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
}

/// A byte count: a number, or a string with a K/M/G suffix (binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "SizeRepr")]
pub struct Size(pub u64);

#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(untagged)]
enum SizeRepr {
    Bytes(u64),
    WithSuffix(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {s:?}: expected bytes, or a number with K, M or G"
                ))
            }),
        }
    }
}

pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

impl Step {
    /// The step's name as written in the file.
    pub fn keyword(&self) -> &'static str {
        match self {
            Step::OpenDevice(_) => "open_device",
            Step::CreateSession(_) => "create_session",
            Step::RetrieveSession(_) => "retrieve_session",
            Step::GetName(_) => "get_name",
            Step::Finish(_) => "finish",
            Step::Close(_) => "close",
            Step::CreateMemfd(_) => "create_memfd",
            Step::OpenPath(_) => "open_path",
            Step::WritePattern(_) => "write_pattern",
            Step::Verify(_) => "verify",
            Step::Seal(_) => "seal",
            Step::Truncate(_) => "truncate",
            Step::Seek(_) => "seek",
            Step::Preserve(_) => "preserve",
            Step::RetrieveFd(_) => "retrieve_fd",
            Step::Observe(_) => "observe",
            Step::MeasureMemory(_) => "measure_memory",
            Step::Kexec(_) => "kexec",
            Step::Exec(_) => "exec",
            Step::RawIoctl(_) => "raw_ioctl",
            Step::Repeat(_) => "repeat",
        }
    }

    pub fn expect(&self) -> Option<&str> {
        let e = match self {
            Step::OpenDevice(s) => &s.expect,
            Step::CreateSession(s) | Step::RetrieveSession(s) => &s.expect,
            Step::GetName(s) | Step::Finish(s) => &s.expect,
            Step::Close(s) => &s.expect,
            Step::CreateMemfd(s) => &s.expect,
            Step::OpenPath(s) => &s.expect,
            Step::WritePattern(s) | Step::Verify(s) => &s.expect,
            Step::Seal(s) => &s.expect,
            Step::Truncate(s) => &s.expect,
            Step::Seek(s) => &s.expect,
            Step::Preserve(s) => &s.expect,
            Step::RetrieveFd(s) => &s.expect,
            Step::Observe(s) => &s.expect,
            Step::Exec(s) => &s.expect,
            Step::RawIoctl(s) => &s.expect,
            Step::MeasureMemory(_) | Step::Kexec(_) | Step::Repeat(_) => return None,
        };
        e.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("16K"), Some(16 << 10));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999G"), None);
    }
}
