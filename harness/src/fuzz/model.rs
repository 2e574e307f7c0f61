//! What LUO should do, as userspace sees it: a model of the ABI of Linux 7.3.4
//! (../shared/docs/luo-facts.md, kernel/liveupdate/luo_session.c, luo_file.c, mm/memfd_luo.c), fed
//! one operation at a time across kexecs. For each operation it says whether it applies at all
//! (its handles exist and are of the right kind: otherwise a shrunk program simply drops it) and
//! what the kernel must answer; for each file, what its contents, size and seals must be.
//!
//! Where the model and the kernel disagree, either is wrong: a finding is triaged (docs/fuzzing.md).

use crate::scenario::steps::device::DEVICE;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One operation of a program. Handles are the program's names for fds (`s3`, `m5`), chosen when
/// the program is generated, so removing an operation leaves the others' names intact. Serialised
/// beside each corpus entry, so a corpus is read back as the programs it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    CreateSession {
        name: String,
        handle: String,
    },
    RetrieveSession {
        name: String,
        handle: String,
    },
    /// close(2) of a session or a file.
    Close {
        handle: String,
    },
    Finish {
        session: String,
    },
    GetName {
        session: String,
    },
    CreateMemfd {
        handle: String,
        size: u64,
        seed: u64,
    },
    /// Rewrites the whole file with the pattern of `seed`.
    Write {
        fd: String,
        seed: u64,
    },
    Truncate {
        fd: String,
        size: u64,
    },
    /// lseek(2) to `offset`: a position the next kernel must give the retrieved file.
    Seek {
        fd: String,
        offset: u64,
    },
    Seal {
        fd: String,
        #[serde(deserialize_with = "known_seals")]
        seals: Vec<&'static str>,
    },
    Preserve {
        session: String,
        fd: String,
        token: u64,
    },
    RetrieveFd {
        session: String,
        token: u64,
        handle: String,
    },
    /// Check a file's contents, size and seals against the model.
    Check {
        fd: String,
    },
    /// kexec into the next kernel, holding every fd; /dev/liveupdate is opened again there.
    Kexec,
    /// The same, with KHO's parameters (or malformed ones, which the next kernel ignores) on
    /// its command line: the state crosses all the same.
    KexecWith {
        cmdline: String,
    },
    /// dup(2) of a session or a memfd: a session closes (is unpreserved, or finished) only
    /// when its last fd is closed.
    Dup {
        handle: String,
        new_handle: String,
    },
    /// open("/dev/null"): a file no LUO handler preserves.
    OpenNull {
        handle: String,
    },
    /// Read one of KHO's debugfs files (its scratch areas); it must list at least one.
    ReadKho {
        file: String,
    },
    /// A LUO ioctl on the device (`dev`) or a session with an argument it must refuse.
    Raw {
        handle: String,
        call: Call,
        bad: Bad,
    },
    /// A valid LUO command whose argument lies in read-only memory: the kernel reads it, does
    /// the work and cannot write its answer (EFAULT). What is left of the work differs by
    /// command (see [`Model::unanswerable`]).
    Unanswerable {
        handle: String,
        request: Request,
    },
    /// `count` sessions, each named and held as `{prefix}-{i}`, created in a row: more than one
    /// of KHO's serialization blocks holds (kho_block.c), which a few sessions never fill.
    ManySessions {
        prefix: String,
        count: u32,
    },
    /// `count` one-page memfds `{prefix}-{i}` (contents of `seed`), each preserved in `session`
    /// as token `token + i`: a session's file set over more than one block.
    ManyFiles {
        session: String,
        prefix: String,
        count: u32,
        token: u64,
        seed: u64,
    },
    /// open("/dev/liveupdate") as `dev` when it is closed, as `busy` (EBUSY: one opener at a time)
    /// when it is open. `close` of `dev` closes it.
    OpenDevice,
}

/// A LUO command, by its number (include/uapi/linux/liveupdate.h of 7.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    CreateSession,
    RetrieveSession,
    PreserveFd,
    RetrieveFd,
    Finish,
    GetName,
    /// A number neither table has.
    Unknown(u8),
}

impl Call {
    pub const ALL: [Call; 10] = [
        Call::CreateSession,
        Call::RetrieveSession,
        Call::PreserveFd,
        Call::RetrieveFd,
        Call::Finish,
        Call::GetName,
        Call::Unknown(0x02),
        Call::Unknown(0x3f),
        Call::Unknown(0x44),
        Call::Unknown(0xff),
    ];

    pub fn nr(self) -> u8 {
        match self {
            Call::CreateSession => 0x00,
            Call::RetrieveSession => 0x01,
            Call::PreserveFd => 0x40,
            Call::RetrieveFd => 0x41,
            Call::Finish => 0x42,
            Call::GetName => 0x43,
            Call::Unknown(nr) => nr,
        }
    }

    /// (the struct's size, the smallest size accepted: the end of its last field).
    pub fn sizes(self) -> (u32, u32) {
        match self {
            Call::CreateSession | Call::RetrieveSession | Call::GetName => (72, 72),
            Call::PreserveFd | Call::RetrieveFd => (16, 16),
            Call::Finish => (8, 8),
            Call::Unknown(_) => (16, 16),
        }
    }

    /// Whether its struct has a `reserved` word after the size.
    pub fn has_reserved(self) -> bool {
        matches!(self, Call::Finish | Call::GetName)
    }
}

/// A command's valid request, for [`Op::Unanswerable`]: on the device (create, retrieve) or on a
/// session (the other four).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    CreateSession { name: String },
    RetrieveSession { name: String },
    PreserveFd { fd: String, token: u64 },
    RetrieveFd { token: u64 },
    Finish,
    GetName,
}

impl Request {
    pub fn call(&self) -> Call {
        match self {
            Request::CreateSession { .. } => Call::CreateSession,
            Request::RetrieveSession { .. } => Call::RetrieveSession,
            Request::PreserveFd { .. } => Call::PreserveFd,
            Request::RetrieveFd { .. } => Call::RetrieveFd,
            Request::Finish => Call::Finish,
            Request::GetName => Call::GetName,
        }
    }
}

/// What is wrong with the argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bad {
    /// In unmapped memory: the size cannot be read.
    Unmapped,
    /// `size` one byte short of the last field's end.
    Short,
    /// `size` 8 bytes past the struct, with a non-zero byte in the tail.
    LongTail,
    /// The `reserved` word is not zero.
    Reserved,
    /// PRESERVE_FD of an fd number no file has (token 0).
    BadFd,
}

/// The seals a program may add, by the names scenarios give them.
pub const SEALS: &[&str] = &["seal", "shrink", "grow", "write", "future_write"];

fn known_seals<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            SEALS.iter().copied().find(|k| k == s).ok_or_else(|| {
                serde::de::Error::custom(format!("no seal {s:?}: one of {}", SEALS.join(", ")))
            })
        })
        .collect()
}

/// KHO's command-line parameters a kexec may pass: scales of scratch memory, and values its
/// parser refuses (too long, one size of three, a zero total, a bad number, a trailing byte).
pub const KHO_CMDLINES: &[&str] = &[
    "kho=on",
    "kho_scratch=50%",
    "kho_scratch=25%",
    "kho_scratch=123456789012%",
    "kho_scratch=64M",
    "kho_scratch=0,0,0",
    "kho_scratch=16M,x",
    "kho_scratch=16M,64M,16Mz",
];

/// KHO's debugfs files a program reads (under /sys/kernel/debug/kho/out/).
pub const KHO_FILES: &[&str] = &["scratch_len", "scratch_phys"];

impl Op {
    pub fn is_kexec(&self) -> bool {
        matches!(self, Op::Kexec | Op::KexecWith { .. })
    }

    /// The handle this operation opens, if it opens one.
    pub fn opens(&self) -> Option<&str> {
        match self {
            Op::CreateSession { handle, .. }
            | Op::RetrieveSession { handle, .. }
            | Op::CreateMemfd { handle, .. }
            | Op::RetrieveFd { handle, .. }
            | Op::Dup {
                new_handle: handle, ..
            } => Some(handle),
            Op::ManySessions { prefix, .. } | Op::ManyFiles { prefix, .. } => Some(prefix),
            _ => None,
        }
    }
}

/// What the kernel must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Ok,
    Errno(&'static str),
}

/// A memfd's state as userspace can see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub size: u64,
    /// The pattern seed of its contents, over [0, pattern_len); beyond that, zeroes.
    pub seed: u64,
    pub pattern_len: u64,
    pub seals: BTreeSet<&'static str>,
    /// Its position, which its dups share, and which crosses a kexec as it was then.
    pub pos: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Handle {
    Created(String),
    Retrieved(String),
    Memfd(usize),
    /// /dev/null, by the handle it was opened as (its dups are equal to it).
    Null(String),
}

#[derive(Debug, Clone, Default)]
struct Created {
    /// Token -> the file, and its seals when it was preserved.
    files: BTreeMap<u64, (usize, BTreeSet<&'static str>)>,
}

#[derive(Debug, Clone)]
enum Incoming {
    Waiting,
    Retrieved {
        finished: bool,
        /// Token -> the file of this kernel its first retrieve made.
        retrieved: BTreeMap<u64, usize>,
    },
    /// Its session fd was closed: gone from the kernel's list.
    Closed,
}

/// The longest session name: 63 bytes and the NUL.
pub const MAX_NAME: usize = 63;

/// LUO's state as the program has made it so far.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Every file of this kernel, by id; handles point into it (two retrieves: one file).
    files: Vec<File>,
    handles: BTreeMap<String, Handle>,
    /// Sessions created in this kernel and still open, by name.
    created: BTreeMap<String, Created>,
    /// Sessions handed over by the previous kernel: their files as they were at the kexec.
    incoming_files: BTreeMap<String, BTreeMap<u64, File>>,
    incoming: BTreeMap<String, Incoming>,
    /// Files the kernel holds as preserved or retrieved-not-finished (luo_preserved_files): a
    /// second preserve of one of them is EBUSY, and a preserved one cannot change size.
    held: BTreeSet<usize>,
    /// Files preserved in an open created session: frozen (no size change).
    frozen: BTreeSet<usize>,
    pub kexecs: u32,
    /// The program closed `dev` (it is open at the start and after every kexec).
    device_closed: bool,
}

fn err(e: &'static str) -> Option<Expect> {
    Some(Expect::Errno(e))
}

impl Model {
    /// The file behind a memfd handle.
    pub fn file(&self, handle: &str) -> Option<&File> {
        match self.handles.get(handle)? {
            Handle::Memfd(id) => self.files.get(*id),
            _ => None,
        }
    }

    /// Live handles of each kind, for the generator.
    pub fn memfds(&self) -> Vec<&str> {
        self.of(|h| matches!(h, Handle::Memfd(_)))
    }
    /// Handles of /dev/null.
    pub fn nulls(&self) -> Vec<&str> {
        self.of(|h| matches!(h, Handle::Null(_)))
    }
    pub fn created_sessions(&self) -> Vec<&str> {
        self.of(|h| matches!(h, Handle::Created(_)))
    }
    pub fn retrieved_sessions(&self) -> Vec<&str> {
        self.of(|h| matches!(h, Handle::Retrieved(_)))
    }
    fn of(&self, f: impl Fn(&Handle) -> bool) -> Vec<&str> {
        self.handles
            .iter()
            .filter(|(_, h)| f(h))
            .map(|(n, _)| n.as_str())
            .collect()
    }
    /// Names of sessions the previous kernel handed over (whatever became of them since).
    pub fn incoming_names(&self) -> Vec<&str> {
        self.incoming.keys().map(String::as_str).collect()
    }
    /// Tokens a session holds (created) or held at the kexec (retrieved).
    pub fn tokens(&self, session: &str) -> Vec<u64> {
        match self.handles.get(session) {
            Some(Handle::Created(n)) => self.created[n].files.keys().copied().collect(),
            Some(Handle::Retrieved(n)) => self.incoming_files[n].keys().copied().collect(),
            _ => Vec::new(),
        }
    }
    /// Handed-over sessions not retrieved yet.
    pub fn waiting(&self) -> Vec<&str> {
        self.incoming
            .iter()
            .filter(|(_, i)| matches!(i, Incoming::Waiting))
            .map(|(n, _)| n.as_str())
            .collect()
    }
    /// Tokens of a retrieved, unfinished session not retrieved yet.
    pub fn unretrieved(&self, session: &str) -> Vec<u64> {
        let Some(Handle::Retrieved(name)) = self.handles.get(session) else {
            return Vec::new();
        };
        match &self.incoming[name] {
            Incoming::Retrieved {
                finished: false,
                retrieved,
            } => self.incoming_files[name]
                .keys()
                .filter(|t| !retrieved.contains_key(t))
                .copied()
                .collect(),
            _ => Vec::new(),
        }
    }
    /// Memfds no session holds.
    pub fn device_open(&self) -> bool {
        !self.device_closed
    }
    pub fn free_memfds(&self) -> Vec<&str> {
        self.handles
            .iter()
            .filter(|(_, h)| matches!(h, Handle::Memfd(id) if !self.held.contains(id)))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Applies `op`: None when it does not apply (a handle it needs is not there, or is of
    /// another kind; a new handle's name is taken), else what the kernel must answer.
    pub fn apply(&mut self, op: &Op) -> Option<Expect> {
        match op {
            Op::CreateSession { name, handle } => {
                if self.handles.contains_key(handle) || self.device_closed {
                    return None;
                }
                if name.is_empty() || name.len() > MAX_NAME {
                    return err("EINVAL");
                }
                if self.created.contains_key(name) {
                    return err("EEXIST");
                }
                self.created.insert(name.clone(), Created::default());
                self.handles
                    .insert(handle.clone(), Handle::Created(name.clone()));
                Some(Expect::Ok)
            }
            Op::RetrieveSession { name, handle } => {
                if self.handles.contains_key(handle) || self.device_closed {
                    return None;
                }
                // The name is only looked up (no check of its length): ENOENT for a bad one.
                match self.incoming.get(name) {
                    None | Some(Incoming::Closed) => err("ENOENT"),
                    Some(Incoming::Retrieved { .. }) => err("EINVAL"),
                    Some(Incoming::Waiting) => {
                        self.incoming.insert(
                            name.clone(),
                            Incoming::Retrieved {
                                finished: false,
                                retrieved: BTreeMap::new(),
                            },
                        );
                        self.handles
                            .insert(handle.clone(), Handle::Retrieved(name.clone()));
                        Some(Expect::Ok)
                    }
                }
            }
            Op::Close { handle } if handle == DEVICE => match self.device_closed {
                true => None,
                false => {
                    // luo_release() only lets the next opener in: sessions stay as they are.
                    self.device_closed = true;
                    Some(Expect::Ok)
                }
            },
            Op::OpenDevice => match self.device_closed {
                true => {
                    self.device_closed = false;
                    Some(Expect::Ok)
                }
                false => err("EBUSY"),
            },
            Op::Dup { handle, new_handle } => {
                let h = self.handles.get(handle)?.clone();
                if self.handles.contains_key(new_handle) {
                    return None;
                }
                self.handles.insert(new_handle.clone(), h);
                Some(Expect::Ok)
            }
            Op::OpenNull { handle } => {
                if self.handles.contains_key(handle) {
                    return None;
                }
                self.handles
                    .insert(handle.clone(), Handle::Null(handle.clone()));
                Some(Expect::Ok)
            }
            Op::ReadKho { file } => KHO_FILES.contains(&file.as_str()).then_some(Expect::Ok),
            Op::KexecWith { cmdline } => {
                if !KHO_CMDLINES.contains(&cmdline.as_str()) {
                    return None;
                }
                self.apply(&Op::Kexec)
            }
            Op::Close { handle } => {
                let h = self.handles.remove(handle)?;
                // Another fd of the same file keeps it open.
                if self.handles.values().any(|o| *o == h) {
                    return Some(Expect::Ok);
                }
                match h {
                    // Un-preserves everything in it.
                    Handle::Created(name) => {
                        let c = self
                            .created
                            .remove(&name)
                            .expect("a created handle's session");
                        for (id, _) in c.files.values() {
                            self.held.remove(id);
                            self.frozen.remove(id);
                        }
                    }
                    // An implicit FINISH; then the session is gone.
                    Handle::Retrieved(name) => {
                        self.finish(&name);
                        self.incoming.insert(name, Incoming::Closed);
                    }
                    Handle::Memfd(_) | Handle::Null(_) => {}
                }
                Some(Expect::Ok)
            }
            Op::Finish { session } => match self.handles.get(session)? {
                Handle::Created(_) => err("EINVAL"),
                Handle::Retrieved(name) => {
                    let name = name.clone();
                    self.finish(&name);
                    Some(Expect::Ok)
                }
                Handle::Memfd(_) | Handle::Null(_) => None,
            },
            Op::GetName { session } => match self.handles.get(session)? {
                Handle::Memfd(_) | Handle::Null(_) => None,
                _ => Some(Expect::Ok),
            },
            Op::CreateMemfd { handle, size, seed } => {
                if self.handles.contains_key(handle) {
                    return None;
                }
                self.files.push(File {
                    size: *size,
                    seed: *seed,
                    pattern_len: *size,
                    seals: BTreeSet::new(),
                    pos: 0,
                });
                self.handles
                    .insert(handle.clone(), Handle::Memfd(self.files.len() - 1));
                Some(Expect::Ok)
            }
            Op::Write { fd, seed } => {
                let id = self.memfd(fd)?;
                let f = &mut self.files[id];
                if f.size == 0 {
                    return None;
                }
                if f.seals.contains("write") || f.seals.contains("future_write") {
                    return err("EPERM");
                }
                f.seed = *seed;
                f.pattern_len = f.size;
                Some(Expect::Ok)
            }
            Op::Truncate { fd, size } => {
                let id = self.memfd(fd)?;
                let f = &self.files[id];
                if *size == f.size {
                    return None;
                }
                let shrink = *size < f.size;
                if (shrink && f.seals.contains("shrink")) || (!shrink && f.seals.contains("grow")) {
                    return err("EPERM");
                }
                if self.frozen.contains(&id) {
                    return err("EPERM");
                }
                let f = &mut self.files[id];
                f.pattern_len = f.pattern_len.min(*size);
                f.size = *size;
                Some(Expect::Ok)
            }
            Op::Seal { fd, seals } => {
                let id = self.memfd(fd)?;
                if self.files[id].seals.contains("seal") {
                    return err("EPERM");
                }
                // F_SEAL_WRITE waits for the pages' extra references to go; preserving pins
                // every page (memfd_pin_folios) until the session lets go of the file. An empty
                // file has no page to pin, and a file sealed so already is not waited on
                // (memfd_add_seals(); docs/fuzzing.md, finding 6).
                let f = &self.files[id];
                if seals.contains(&"write")
                    && !f.seals.contains("write")
                    && self.frozen.contains(&id)
                    && f.size > 0
                {
                    return err("EBUSY");
                }
                let f = &mut self.files[id];
                f.seals.extend(seals.iter().copied());
                Some(Expect::Ok)
            }
            Op::Preserve { session, fd, token } => {
                let s = self.handles.get(session)?.clone();
                let file = self.handles.get(fd)?.clone();
                let name = match s {
                    Handle::Created(name) => name,
                    Handle::Retrieved(_) => return err("EINVAL"),
                    Handle::Memfd(_) | Handle::Null(_) => return None,
                };
                if self.created[&name].files.contains_key(token) {
                    return err("EEXIST");
                }
                // No handler's can_preserve() takes it (luo_preserve_file()).
                let Handle::Memfd(id) = file else {
                    return err("ENOENT");
                };
                if self.held.contains(&id) {
                    return err("EBUSY");
                }
                let seals = self.files[id].seals.clone();
                self.created
                    .get_mut(&name)
                    .expect("open")
                    .files
                    .insert(*token, (id, seals));
                self.held.insert(id);
                self.frozen.insert(id);
                Some(Expect::Ok)
            }
            Op::RetrieveFd {
                session,
                token,
                handle,
            } => {
                if self.handles.contains_key(handle) {
                    return None;
                }
                let name = match self.handles.get(session)? {
                    Handle::Created(_) => return err("EINVAL"),
                    Handle::Retrieved(name) => name.clone(),
                    Handle::Memfd(_) | Handle::Null(_) => return None,
                };
                let Some(Incoming::Retrieved {
                    finished,
                    retrieved,
                }) = self.incoming.get(&name)
                else {
                    unreachable!("a retrieved handle's session is retrieved");
                };
                if *finished {
                    return err("ENOENT");
                }
                let id = match retrieved.get(token) {
                    Some(id) => *id,
                    None => {
                        let Some(file) = self.incoming_files[&name].get(token) else {
                            return err("ENOENT");
                        };
                        self.files.push(file.clone());
                        let id = self.files.len() - 1;
                        self.held.insert(id);
                        if let Some(Incoming::Retrieved { retrieved, .. }) =
                            self.incoming.get_mut(&name)
                        {
                            retrieved.insert(*token, id);
                        }
                        id
                    }
                };
                self.handles.insert(handle.clone(), Handle::Memfd(id));
                Some(Expect::Ok)
            }
            Op::Check { fd } => self.memfd(fd).map(|_| Expect::Ok),
            Op::Seek { fd, offset } => {
                let id = self.memfd(fd)?;
                self.files[id].pos = *offset;
                Some(Expect::Ok)
            }
            Op::Raw { handle, call, bad } => self.raw(handle, *call, *bad),
            Op::Unanswerable { handle, request } => self.unanswerable(handle, request),
            Op::ManySessions { .. } | Op::ManyFiles { .. } => self.batch(op),
            Op::Kexec => {
                self.incoming_files = self
                    .created
                    .iter()
                    .map(|(name, c)| {
                        // Contents, size and position as they are now (memfd_luo_freeze()
                        // records the position again); the seals as they were
                        // at PRESERVE_FD: memfd_luo records them then and F_ADD_SEALS stays
                        // allowed after it, so later seals do not reach the next kernel
                        // (docs/fuzzing.md, finding 1).
                        let files = c
                            .files
                            .iter()
                            .map(|(t, (id, seals))| {
                                let mut f = self.files[*id].clone();
                                f.seals = seals.clone();
                                (*t, f)
                            })
                            .collect();
                        (name.clone(), files)
                    })
                    .collect();
                self.incoming = self
                    .incoming_files
                    .keys()
                    .map(|n| (n.clone(), Incoming::Waiting))
                    .collect();
                self.files.clear();
                self.handles.clear();
                self.created.clear();
                self.held.clear();
                self.frozen.clear();
                self.kexecs += 1;
                self.device_closed = false;
                Some(Expect::Ok)
            }
        }
    }

    /// The order of luo_ioctl() and luo_session_ioctl(): the number is looked up in the
    /// device's or the session's table (EINVAL when it is in neither), the size read (EFAULT),
    /// for a session whether the command is for an outgoing or an incoming one (EINVAL), the size
    /// checked against the last field (EINVAL), a longer struct's tail (E2BIG), then the command
    /// itself: a non-zero reserved word (EINVAL), a used token (EEXIST), an fd number with no
    /// file (EBADF). Nothing changes.
    fn raw(&self, handle: &str, call: Call, bad: Bad) -> Option<Expect> {
        if (bad == Bad::Reserved && !call.has_reserved())
            || (bad == Bad::BadFd && call != Call::PreserveFd)
        {
            return None;
        }
        let nr = call.nr();
        let known = match (handle, self.handles.get(handle)) {
            (DEVICE, _) if self.device_closed => return None,
            (DEVICE, _) => nr < 0x02,
            (_, Some(Handle::Created(_) | Handle::Retrieved(_))) => (0x40..0x44).contains(&nr),
            _ => return None,
        };
        if !known {
            return err("EINVAL");
        }
        if bad == Bad::Unmapped {
            return err("EFAULT");
        }
        let incoming = matches!(self.handles.get(handle), Some(Handle::Retrieved(_)));
        let wrong_direction = match call {
            Call::PreserveFd => incoming,
            Call::RetrieveFd | Call::Finish => !incoming,
            _ => false,
        };
        if handle != DEVICE && wrong_direction {
            return err("EINVAL");
        }
        match bad {
            Bad::Short | Bad::Reserved => err("EINVAL"),
            Bad::LongTail => err("E2BIG"),
            // luo_preserve_file(): the token first, then fget().
            Bad::BadFd => match self.handles.get(handle) {
                Some(Handle::Created(name)) if self.created[name].files.contains_key(&0) => {
                    err("EEXIST")
                }
                _ => err("EBADF"),
            },
            Bad::Unmapped => unreachable!("answered above"),
        }
    }

    /// The command as the ordinary operation would do it; when that succeeds, the answer cannot
    /// be written, and each command leaves its work as luo_core.c and luo_session.c do on a
    /// failed luo_ucmd_respond() (scenarios/ioctl-faults.yaml shows each):
    /// - create_session: the new session's file is put, its release removes it: undone;
    /// - retrieve_session: the same put releases the retrieved session, an implicit finish of
    ///   nothing: the session is consumed, gone from the kernel's list;
    /// - preserve_fd: kept (only a warning);
    /// - retrieve_fd: the fd is not installed, but the session holds the file as retrieved, so
    ///   the next retrieve of the token gets it;
    /// - finish: done; get_name: nothing to undo.
    pub fn unanswerable(&mut self, handle: &str, request: &Request) -> Option<Expect> {
        // A handle no program names: the fd the kernel made and could not hand out.
        const UNANSWERED: &str = "\0unanswered";
        let on_device = matches!(
            request,
            Request::CreateSession { .. } | Request::RetrieveSession { .. }
        );
        if on_device != (handle == DEVICE) {
            return None;
        }
        let op = match request.clone() {
            Request::CreateSession { name } => Op::CreateSession {
                name,
                handle: UNANSWERED.into(),
            },
            Request::RetrieveSession { name } => Op::RetrieveSession {
                name,
                handle: UNANSWERED.into(),
            },
            Request::PreserveFd { fd, token } => Op::Preserve {
                session: handle.into(),
                fd,
                token,
            },
            Request::RetrieveFd { token } => Op::RetrieveFd {
                session: handle.into(),
                token,
                handle: UNANSWERED.into(),
            },
            Request::Finish => Op::Finish {
                session: handle.into(),
            },
            Request::GetName => Op::GetName {
                session: handle.into(),
            },
        };
        let mut done = self.clone();
        if let Expect::Errno(e) = done.apply(&op)? {
            return err(e);
        }
        match request {
            Request::CreateSession { .. } => {}
            Request::RetrieveSession { name } => {
                self.incoming.insert(name.clone(), Incoming::Closed);
            }
            _ => {
                done.handles.remove(UNANSWERED);
                *self = done;
            }
        }
        err("EFAULT")
    }

    /// A batch as the operations it repeats. It applies when each of them does and the kernel
    /// must answer each the same (one `expect` for the repeat), which is then the answer.
    fn batch(&mut self, op: &Op) -> Option<Expect> {
        let each: Vec<Op> = match op {
            Op::ManySessions { prefix, count } => (0..*count)
                .map(|i| Op::CreateSession {
                    name: format!("{prefix}-{i}"),
                    handle: format!("{prefix}-{i}"),
                })
                .collect(),
            Op::ManyFiles {
                session,
                prefix,
                count,
                token,
                seed,
            } => (0..*count as u64)
                .flat_map(|i| {
                    let fd = format!("{prefix}-{i}");
                    [
                        Op::CreateMemfd {
                            handle: fd.clone(),
                            size: 4096,
                            seed: *seed,
                        },
                        Op::Preserve {
                            session: session.clone(),
                            fd,
                            // As a repeat offsets it (scenario::template).
                            token: token.saturating_add(i),
                        },
                    ]
                })
                .collect(),
            _ => unreachable!("not a batch"),
        };
        if each.is_empty() {
            return None;
        }
        let mut after = self.clone();
        let mut answer = None;
        for op in &each {
            let e = after.apply(op)?;
            if matches!(op, Op::CreateMemfd { .. }) {
                continue;
            }
            if answer.is_some_and(|a| a != e) {
                return None;
            }
            answer = Some(e);
        }
        *self = after;
        answer
    }

    fn memfd(&self, h: &str) -> Option<usize> {
        match self.handles.get(h)? {
            Handle::Memfd(id) => Some(*id),
            _ => None,
        }
    }

    /// FINISH: the files retrieved are the process's now; those not retrieved are discarded.
    /// Once: closing a finished session lets go of nothing more (its files may be preserved in
    /// a new session by then: docs/fuzzing.md, finding 5).
    fn finish(&mut self, name: &str) {
        if let Some(Incoming::Retrieved {
            finished: finished @ false,
            retrieved,
        }) = self.incoming.get_mut(name)
        {
            *finished = true;
            for id in retrieved.values() {
                self.held.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut Model, ops: &[Op]) -> Vec<Option<Expect>> {
        ops.iter().map(|op| m.apply(op)).collect()
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    /// Finding 5 (docs/fuzzing.md), a model mistake: closing a finished session un-held a file
    /// that was preserved again in a new session since, so a second preserve of it was predicted
    /// to work.
    #[test]
    fn closing_a_finished_session_does_not_free_its_files_again() {
        let mut m = Model::default();
        let before = [
            Op::CreateMemfd {
                handle: s("m1"),
                size: 1,
                seed: 2,
            },
            Op::CreateSession {
                name: s("c"),
                handle: s("s2"),
            },
            Op::Preserve {
                session: s("s2"),
                fd: s("m1"),
                token: 1,
            },
            Op::Kexec,
        ];
        run(&mut m, &before);
        let after = [
            Op::RetrieveSession {
                name: s("c"),
                handle: s("r5"),
            },
            Op::RetrieveFd {
                session: s("r5"),
                token: 1,
                handle: s("f6"),
            },
            Op::CreateSession {
                name: s("c"),
                handle: s("s7"),
            },
            Op::Finish { session: s("r5") },
            Op::Preserve {
                session: s("s7"),
                fd: s("f6"),
                token: 2,
            },
            Op::Close { handle: s("r5") },
            Op::Preserve {
                session: s("s7"),
                fd: s("f6"),
                token: 1,
            },
        ];
        let got = run(&mut m, &after);
        assert_eq!(got[6], Some(Expect::Errno("EBUSY")), "{got:?}");
    }

    /// Finding 6: F_SEAL_WRITE again on a preserved file that has it is no wait, so no EBUSY.
    #[test]
    fn a_write_seal_a_preserved_file_already_has_is_added_again_without_ebusy() {
        let mut m = Model::default();
        let seal = || Op::Seal {
            fd: s("m2"),
            seals: vec!["write"],
        };
        let ops = [
            Op::CreateMemfd {
                handle: s("m2"),
                size: 1,
                seed: 636,
            },
            seal(),
            Op::CreateSession {
                name: s("a"),
                handle: s("s4"),
            },
            Op::Preserve {
                session: s("s4"),
                fd: s("m2"),
                token: 3,
            },
            seal(),
        ];
        assert_eq!(run(&mut m, &ops)[4], Some(Expect::Ok));
        let mut m = Model::default();
        let fresh = [&ops[..1], &ops[2..]].concat();
        assert_eq!(run(&mut m, &fresh)[3], Some(Expect::Errno("EBUSY")));
    }

    /// luo_ioctl()/luo_session_ioctl()'s order of checks: table, size readable, direction,
    /// size, tail, reserved.
    #[test]
    fn a_bad_raw_ioctl_is_refused_by_the_first_check_it_fails() {
        let mut m = Model::default();
        run(
            &mut m,
            &[Op::CreateSession {
                name: s("a"),
                handle: s("s1"),
            }],
        );
        let raw = |h: &str, call, bad| Op::Raw {
            handle: s(h),
            call,
            bad,
        };
        let e = |e| Some(Expect::Errno(e));
        let cases = [
            (raw(DEVICE, Call::PreserveFd, Bad::Unmapped), e("EINVAL")),
            (raw(DEVICE, Call::CreateSession, Bad::Unmapped), e("EFAULT")),
            (raw(DEVICE, Call::RetrieveSession, Bad::Short), e("EINVAL")),
            (raw(DEVICE, Call::CreateSession, Bad::LongTail), e("E2BIG")),
            (raw(DEVICE, Call::CreateSession, Bad::Reserved), None),
            (raw("s1", Call::Unknown(0x44), Bad::Unmapped), e("EINVAL")),
            (raw("s1", Call::Finish, Bad::Unmapped), e("EFAULT")),
            // FINISH is for an incoming session: refused before its size is looked at.
            (raw("s1", Call::Finish, Bad::LongTail), e("EINVAL")),
            (raw("s1", Call::PreserveFd, Bad::LongTail), e("E2BIG")),
            (raw("s1", Call::GetName, Bad::Reserved), e("EINVAL")),
            (raw("s1", Call::PreserveFd, Bad::BadFd), e("EBADF")),
            (raw(DEVICE, Call::PreserveFd, Bad::BadFd), e("EINVAL")),
            (raw("s1", Call::Finish, Bad::BadFd), None),
            (raw("m9", Call::GetName, Bad::Short), None),
        ];
        for (op, want) in cases {
            assert_eq!(m.apply(&op), want, "{op:?}");
        }
    }

    /// What scenarios/ioctl-faults.yaml shows each command leaves behind when its answer
    /// cannot be written.
    #[test]
    fn an_unanswerable_request_leaves_its_work_as_each_command_does() {
        let mut m = Model::default();
        let ro = |h: &str, request| Op::Unanswerable {
            handle: s(h),
            request,
        };
        let e = |e| Some(Expect::Errno(e));
        let create = |n: &str, h: &str| Op::CreateSession {
            name: s(n),
            handle: s(h),
        };
        let cases = [
            (create("kept", "s"), Some(Expect::Ok)),
            // Created and undone: the name is free again.
            (
                ro(DEVICE, Request::CreateSession { name: s("ro") }),
                e("EFAULT"),
            ),
            (create("ro", "ro"), Some(Expect::Ok)),
            // Refused before the work: the errno, nothing to undo.
            (
                ro(DEVICE, Request::CreateSession { name: s("ro") }),
                e("EEXIST"),
            ),
            (ro("s", Request::Finish), e("EINVAL")),
            (
                Op::CreateMemfd {
                    handle: s("m"),
                    size: 8192,
                    seed: 41,
                },
                Some(Expect::Ok),
            ),
            // Preserved although unanswered.
            (
                ro(
                    "s",
                    Request::PreserveFd {
                        fd: s("m"),
                        token: 1,
                    },
                ),
                e("EFAULT"),
            ),
            (
                Op::Preserve {
                    session: s("s"),
                    fd: s("m"),
                    token: 1,
                },
                e("EEXIST"),
            ),
            (ro("s", Request::GetName), e("EFAULT")),
            (create("lost", "lost"), Some(Expect::Ok)),
            (ro("m", Request::GetName), None),
            (ro("s", Request::CreateSession { name: s("x") }), None),
            (Op::Kexec, Some(Expect::Ok)),
            // Consumed: the session is gone.
            (
                ro(DEVICE, Request::RetrieveSession { name: s("lost") }),
                e("EFAULT"),
            ),
            (
                Op::RetrieveSession {
                    name: s("lost"),
                    handle: s("l2"),
                },
                e("ENOENT"),
            ),
            (
                Op::RetrieveSession {
                    name: s("kept"),
                    handle: s("s2"),
                },
                Some(Expect::Ok),
            ),
            // Retrieved, not handed out; the next retrieve gets the file.
            (ro("s2", Request::RetrieveFd { token: 1 }), e("EFAULT")),
            (ro("s2", Request::RetrieveFd { token: 7 }), e("ENOENT")),
            (
                Op::RetrieveFd {
                    session: s("s2"),
                    token: 1,
                    handle: s("m2"),
                },
                Some(Expect::Ok),
            ),
            // Finished although unanswered.
            (ro("s2", Request::Finish), e("EFAULT")),
            (
                Op::RetrieveFd {
                    session: s("s2"),
                    token: 1,
                    handle: s("m3"),
                },
                e("ENOENT"),
            ),
        ];
        for (op, want) in cases {
            assert_eq!(m.apply(&op), want, "{op:?}");
        }
        assert_eq!(m.file("m2").map(|f| f.seed), Some(41));
        assert!(m.file("\0unanswered").is_none());
    }

    #[test]
    fn a_session_stays_until_its_last_fd_is_closed() {
        let mut m = Model::default();
        let ops = [
            Op::CreateSession {
                name: s("a"),
                handle: s("s1"),
            },
            Op::Dup {
                handle: s("s1"),
                new_handle: s("d2"),
            },
            Op::Close { handle: s("s1") },
            // Still open: its name is taken.
            Op::CreateSession {
                name: s("a"),
                handle: s("s3"),
            },
            Op::Close { handle: s("d2") },
            Op::CreateSession {
                name: s("a"),
                handle: s("s4"),
            },
            Op::KexecWith {
                cmdline: s("kho_scratch=64M"),
            },
            Op::RetrieveSession {
                name: s("a"),
                handle: s("r5"),
            },
            Op::KexecWith {
                cmdline: s("kho_scratch=any"),
            },
        ];
        let e = |e| Some(Expect::Errno(e));
        assert_eq!(
            run(&mut m, &ops),
            [
                Some(Expect::Ok),
                Some(Expect::Ok),
                Some(Expect::Ok),
                e("EEXIST"),
                Some(Expect::Ok),
                Some(Expect::Ok),
                Some(Expect::Ok),
                Some(Expect::Ok),
                None,
            ]
        );
    }

    #[test]
    fn a_batch_applies_when_the_kernel_answers_each_of_its_steps_alike() {
        let mut m = Model::default();
        let files = |prefix: &str, count, token| Op::ManyFiles {
            session: s("s1"),
            prefix: s(prefix),
            count,
            token,
            seed: 9,
        };
        let ops = [
            Op::CreateSession {
                name: s("a"),
                handle: s("s1"),
            },
            Op::ManySessions {
                prefix: s("b2"),
                count: 130,
            },
            files("b3", 130, 1000),
            // Every token taken: EEXIST for each.
            files("b4", 130, 1000),
            // Half of them taken: no one answer, so no batch.
            files("b5", 130, 1065),
        ];
        assert_eq!(
            run(&mut m, &ops),
            [
                Some(Expect::Ok),
                Some(Expect::Ok),
                Some(Expect::Ok),
                Some(Expect::Errno("EEXIST")),
                None,
            ]
        );
        assert_eq!(m.created_sessions().len(), 131);
        assert_eq!(m.tokens("s1").len(), 130);
        m.apply(&Op::Kexec);
        assert_eq!(m.waiting().len(), 131);
    }
}
