//! What the validator knows while it walks a scenario's steps before any VM: which handles exist in
//! which boot, which sessions were open at the last kexec. Each step says what it uses and creates
//! (steps/*.rs); this module keeps the state and words the problems.

use super::limits;
use crate::plan::GuestImage;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where a step stands in its file.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub line: u64,
    pub column: u64,
    pub keyword: &'static str,
}

#[derive(Debug)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Device,
    Session,
    File,
}

#[derive(Debug, Clone)]
struct HandleInfo {
    kind: Kind,
    line: u64,
}

impl Validator {
    /// A validator for a scenario in `dir`, with or without busybox in its image.
    pub fn for_files_in(dir: PathBuf, shell: bool, image: GuestImage) -> Validator {
        Validator {
            dir,
            shell,
            image,
            ..Validator::default()
        }
    }
}

/// `x`, `./x`, `../x`, `sub/x`: not absolute, not empty.
fn is_relative(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/')
}

/// Symbolic execution of the steps.
pub struct Validator {
    pub problems: Vec<Problem>,
    boot: u32,
    handles: BTreeMap<String, HandleInfo>,
    /// Handles of earlier kernels: name -> (boot, line of the kexec that ended it).
    gone: BTreeMap<String, (u32, u64)>,
    closed: BTreeMap<String, u64>,
    /// Created sessions open now: session name -> handle.
    open_sessions: BTreeMap<String, String>,
    /// Handle -> the handle it is a dup of (the first of its open file's fds).
    dups: BTreeMap<String, String>,
    /// Sessions that were open at the last kexec.
    carried: BTreeSet<String>,
    last_kexec: Option<u64>,
    /// Created sessions closed before the last kexec: name -> line of the close.
    closed_sessions: BTreeMap<String, u64>,
    /// Kernel names the scenario declares (`kernels:`), bound on the command line.
    declared: BTreeSet<String>,
    /// The guest's memory, for sizes that must fit in it.
    pub memory_mib: u64,
    /// The scenario file's directory: `./prog`, `files` and `source` are relative to it.
    pub dir: PathBuf,
    /// `shell: true`: busybox is in the image.
    pub shell: bool,
    /// The image the guest runs: under systemd the agent's own sessions do not cross a kexec.
    pub image: GuestImage,
    /// Names staged into the share's programs/ directory, with the host path each came from.
    staged: BTreeMap<String, String>,
    /// The machine the run is for: a program beside the scenario must be built for it.
    pub arch: luo_kernels::Arch,
}

impl Default for Validator {
    fn default() -> Self {
        Validator {
            problems: vec![],
            boot: 0,
            handles: BTreeMap::new(),
            gone: BTreeMap::new(),
            closed: BTreeMap::new(),
            open_sessions: BTreeMap::new(),
            dups: BTreeMap::new(),
            carried: BTreeSet::new(),
            last_kexec: None,
            closed_sessions: BTreeMap::new(),
            declared: BTreeSet::new(),
            memory_mib: crate::vm::DEFAULT_MEMORY_MIB as u64,
            dir: PathBuf::from("."),
            shell: false,
            image: GuestImage::Default,
            staged: BTreeMap::new(),
            arch: luo_kernels::Arch::X86_64,
        }
    }
}

impl Validator {
    pub fn problem(&mut self, at: &Site, message: String, help: Option<String>) {
        self.problems.push(Problem {
            line: at.line,
            column: at.column,
            message,
            label: at.keyword.to_string(),
            help,
        });
    }

    /// `expect:` must name an errno the protocol knows.
    pub fn expect(&mut self, at: &Site, expect: Option<&str>) {
        if let Some(e) = expect
            && luo_protocol::errno_value(e).is_none()
        {
            self.problem(
                at,
                format!("unknown errno name `{e}` in expect"),
                Some("use a name like EINVAL, ENOENT, EEXIST, EBUSY".into()),
            );
        }
    }

    /// `name` must be an open handle (of `kind`, unless the step expects the mismatch to fail).
    pub fn need(&mut self, at: &Site, name: &str, kind: Option<Kind>, expects_error: bool) {
        match self.handles.get(name).cloned() {
            Some(h) => {
                if let Some(k) = kind
                    && h.kind != k
                    && !expects_error
                {
                    let msg = format!(
                        "`{name}` (line {}) is a {:?} handle, but this needs a {k:?} handle",
                        h.line, h.kind
                    );
                    self.problem(
                        at,
                        msg,
                        Some("set `expect:` to the errno if the mismatch is the point".into()),
                    );
                }
            }
            None => {
                let (msg, help) = if let Some((boot, kexec)) = self.gone.get(name) {
                    (
                        format!(
                            "`{name}` belonged to boot {boot}, which ended with the kexec at line {kexec}"
                        ),
                        Some(
                            "retrieve it again in this boot (retrieve_session / retrieve_fd)"
                                .to_string(),
                        ),
                    )
                } else if let Some(line) = self.closed.get(name) {
                    (format!("`{name}` was closed at line {line}"), None)
                } else {
                    (
                        format!("`{name}` is used before it exists"),
                        Some(format!("create it first with `as: {name}`")),
                    )
                };
                self.problem(at, msg, help);
            }
        }
    }

    /// The kind of a live handle.
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        self.handles.get(name).map(|h| h.kind)
    }

    /// The step opens `name`; a step expected to fail opens nothing.
    pub fn define(&mut self, at: &Site, name: &str, kind: Kind, expects_error: bool) {
        self.handle_name(at, "the handle", name);
        if expects_error {
            return;
        }
        if let Some(h) = self.handles.get(name) {
            let msg = format!(
                "`{name}` already names a handle (line {}); close it first or pick another name",
                h.line
            );
            self.problem(at, msg, None);
            return;
        }
        self.closed.remove(name);
        self.handles.insert(
            name.to_string(),
            HandleInfo {
                kind,
                line: at.line,
            },
        );
    }

    pub fn session_created(&mut self, name: &str, handle: &str) {
        self.open_sessions
            .insert(name.to_string(), handle.to_string());
        self.closed_sessions.remove(name);
    }

    /// A session can be retrieved only if it was open at the last kexec.
    pub fn retrievable(&mut self, at: &Site, name: &str) {
        match self.last_kexec {
            None => self.problem(
                at,
                format!("session `{name}` is retrieved, but no kexec comes before this step"),
                Some("add `- kexec: {}` before it, or `expect: ENOENT`".into()),
            ),
            Some(k) if !self.carried.contains(name) => {
                let why = match self.closed_sessions.get(name) {
                    Some(c) => format!("it was closed at line {c}, before the kexec at line {k}"),
                    None if self.image == GuestImage::Systemd => format!(
                        "under `image: systemd` the kexec at line {k} is `systemctl kexec`, which stops the agent first: its own sessions close and are not preserved (only systemd's fd stores cross)"
                    ),
                    None => format!("no session of that name was open at the kexec at line {k}"),
                };
                self.problem(
                    at,
                    format!("session `{name}` cannot be retrieved: {why}"),
                    Some(
                        "keep the session open across the kexec, or write `expect: ENOENT`".into(),
                    ),
                );
            }
            _ => {}
        }
    }

    /// A file can be retrieved only after a kexec.
    pub fn after_a_kexec(&mut self, at: &Site, what: &str) {
        if self.last_kexec.is_none() {
            self.problem(
                at,
                format!("{what} before any kexec: nothing can have been preserved"),
                Some("add `- kexec: {}` before it, or `expect:` the errno".into()),
            );
        }
    }

    /// `to` is a dup of `from`: the same open file, of the same kind, which stays open (a
    /// session too) until the last of its fds is closed.
    pub fn dup(&mut self, at: &Site, from: &str, to: &str, expects_error: bool) {
        self.need(at, from, None, expects_error);
        let kind = self.kind_of(from).unwrap_or(Kind::File);
        self.define(at, to, kind, expects_error);
        if !expects_error {
            let first = self.dups.get(from).cloned().unwrap_or(from.to_string());
            self.dups.insert(to.to_string(), first);
        }
    }

    pub fn close(&mut self, at: &Site, handle: &str) {
        if self.handles.remove(handle).is_some() {
            self.closed.insert(handle.to_string(), at.line);
            let file = self.dups.remove(handle).unwrap_or(handle.to_string());
            let other = self
                .handles
                .keys()
                .find(|h| **h == file || self.dups.get(*h) == Some(&file))
                .cloned();
            if let Some(other) = other {
                for h in self.open_sessions.values_mut().filter(|h| *h == handle) {
                    *h = other.clone();
                }
                return;
            }
            let names: Vec<String> = self
                .open_sessions
                .iter()
                .filter(|(_, h)| *h == handle)
                .map(|(n, _)| n.clone())
                .collect();
            for n in names {
                self.open_sessions.remove(&n);
                self.closed_sessions.insert(n, at.line);
            }
        }
    }

    /// `name` must be able to name a handle.
    pub fn handle_name(&mut self, at: &Site, what: &str, name: &str) {
        if !limits::is_handle(name) {
            self.problem(
                at,
                format!(
                    "{what} `{name}` is not a name: letters, digits and _-.:+=, 1 to {} bytes",
                    limits::MAX_NAME_BYTES
                ),
                None,
            );
        }
    }

    /// A session name the kernel can accept, unless the step expects the errno (`errno`) it
    /// will get.
    pub fn session_name(&mut self, at: &Site, name: &str, expect: Option<&str>, errno: &str) {
        let n = name.len();
        if !limits::SESSION_NAME_BYTES.contains(&n) && expect != Some(errno) {
            self.problem(
                at,
                format!(
                    "a session name is 1 to 63 bytes; this one is {n}, so the call can only \
                     fail ({errno})"
                ),
                Some(format!("write `expect: {errno}` if that is the point")),
            );
        }
    }

    /// A byte count within `max`, and (when `filled`) within half the guest's memory.
    pub fn size(&mut self, at: &Site, what: &str, bytes: u64, filled: bool) {
        let mem = self.memory_mib << 20;
        if bytes > limits::MAX_MEMFD_BYTES {
            self.problem(
                at,
                format!(
                    "{what} of {bytes} bytes: at most {} (1G)",
                    limits::MAX_MEMFD_BYTES
                ),
                None,
            );
        } else if filled && bytes > mem / 2 {
            self.problem(
                at,
                format!("{what} of {bytes} bytes is filled, but the guest has {} MiB: at most half of it", self.memory_mib),
                Some("raise `memory_mib`, or make it smaller".into()),
            );
        }
    }

    /// `./prog` beside the scenario: a static x86-64 executable (or a `#!/bin/sh` script with
    /// `shell: true`), staged as programs/<its name>.
    pub fn program_beside(&mut self, at: &Site, rel: &str) {
        let host = self.dir.join(rel);
        match crate::plan::guest_program::inspect(&host, self.shell, self.arch) {
            Ok(_) => {
                self.size_to_stage(at, rel);
                self.staged_name(at, rel, rel.rsplit('/').next().unwrap_or(rel));
            }
            Err(why) => self.problem(
                at,
                format!("`{rel}` cannot run in the guest: {why}"),
                Some("the guest has no libc or loader: a static program, or `source: ./prog.c` to have it built".into()),
            ),
        }
    }

    /// An absolute path: the default image holds only the agent; with `shell: true` busybox's
    /// applets are in /bin.
    pub fn program_in_image(&mut self, at: &Site, path: &str) {
        if self.shell && path.starts_with("/bin/") && !path.contains("..") {
            return;
        }
        // A Debian system: what its packages installed is there.
        if self.image == GuestImage::Systemd {
            return;
        }
        self.problem(
            at,
            format!("`{path}` is not a program the guest image has"),
            Some(if self.shell {
                "the shell image has busybox's applets in /bin (/bin/sh, /bin/cat, ...)".into()
            } else {
                "the default image holds only the agent: bring ./prog beside the scenario, or set `shell: true` for /bin/sh".into()
            }),
        );
    }

    /// A step that talks to systemd (`unit`, `journal`) needs the image that has it.
    pub fn needs_systemd(&mut self, at: &Site, keyword: &str) {
        if self.image != GuestImage::Systemd {
            self.problem(
                at,
                format!("`{keyword}` talks to systemd, which only `image: systemd` runs"),
                Some("add `image: systemd` at the top of the scenario".into()),
            );
        }
    }

    /// A C source of `exec: {source: ...}`: a file beside the scenario.
    pub fn c_source(&mut self, at: &Site, rel: &str) {
        if self.beside(at, "source", rel) && !rel.ends_with(".c") {
            self.problem(at, format!("`{rel}` is not a C file (*.c)"), None);
        }
    }

    /// One of an `exec`'s `files`: a file beside the scenario, staged next to the program.
    pub fn file_beside(&mut self, at: &Site, rel: &str) {
        if self.beside(at, "files", rel) {
            self.size_to_stage(at, rel);
            self.staged_name(at, rel, rel.rsplit('/').next().unwrap_or(rel));
        }
    }

    /// Whether `rel` (of the field `what`) is a file relative to the scenario; a problem if not.
    fn beside(&mut self, at: &Site, what: &str, rel: &str) -> bool {
        let host = self.dir.join(rel);
        let why = if !is_relative(rel) {
            format!("{what}: `{rel}` is a path relative to the scenario (./{rel})")
        } else if !host.is_file() {
            format!("{what}: `{rel}`: no such file ({})", host.display())
        } else {
            return true;
        };
        self.problem(at, why, None);
        false
    }

    fn size_to_stage(&mut self, at: &Site, rel: &str) {
        let size = std::fs::metadata(self.dir.join(rel)).map_or(0, |m| m.len());
        if size > limits::MAX_STAGED_BYTES {
            self.problem(
                at,
                format!(
                    "`{rel}` is {size} bytes; a staged file is at most {}",
                    limits::MAX_STAGED_BYTES
                ),
                None,
            );
        }
    }

    /// Two different host files may not land on one name in programs/.
    pub fn staged_name(&mut self, at: &Site, rel: &str, name: &str) {
        let host = std::fs::canonicalize(self.dir.join(rel))
            .unwrap_or_else(|_| self.dir.join(rel))
            .display()
            .to_string();
        match self.staged.get(name) {
            Some(other) if *other != host => self.problem(
                at,
                format!("`{rel}` is staged as programs/{name}, like {other}: give one of them another name"),
                None,
            ),
            _ => {
                self.staged.insert(name.to_string(), host);
            }
        }
    }

    pub fn declare_kernel(&mut self, name: &str) {
        self.declared.insert(name.to_string());
    }

    /// What a `kexec: {kernel: NAME}` may name: a variant, a kernel source, a declared name.
    pub fn kernel_name(&mut self, at: &Site, name: &str) {
        if luo_kernels::variant::find(name).is_ok() || self.declared.contains(name) {
            return;
        }
        if luo_kernels::spec::KernelSpec::looks_like(name) {
            if let Err(e) = luo_kernels::spec::KernelSpec::parse(name) {
                self.problem(at, e.to_string(), None);
            }
            return;
        }
        let variants: Vec<&str> = luo_kernels::variant::designs().map(|v| v.name).collect();
        self.problem(
            at,
            format!("`{name}` is not a kernel variant, a kernel source, or a name this scenario declares"),
            Some(format!(
                "variants: {}; sources: debian:7.3, tree:PATH, git:PATH@REV, file:BZIMAGE; or declare it with `kernels: [{name}]` and bind it with --kernel-as {name}=SPEC",
                variants.join(", ")
            )),
        );
    }

    /// Every handle ends with its kernel; the sessions open now are carried to the next one.
    pub fn kexec(&mut self, at: &Site) {
        for (name, _) in std::mem::take(&mut self.handles) {
            self.gone.insert(name, (self.boot, at.line));
        }
        self.closed.clear();
        self.carried = match self.image {
            GuestImage::Default => self.open_sessions.keys().cloned().collect(),
            // systemctl kexec stops the agent's service before the reboot.
            GuestImage::Systemd => BTreeSet::new(),
        };
        self.open_sessions.clear();
        self.dups.clear();
        self.closed_sessions
            .retain(|n, _| !self.carried.contains(n));
        self.last_kexec = Some(at.line);
        self.boot += 1;
    }
}
