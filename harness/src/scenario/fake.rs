//! A scripted agent for the engine's unit tests: answers requests the way the real one would (or as
//! a test's script says), records every request, kexec and staged file. Pure logic only: nothing
//! here stands in for a kernel in any test that claims to test one.

use super::driver::{GuestDriver, RequestResult};
use crate::guest::{GuestError, KexecTarget};
use crate::plan::{Plan, PlannedKernel, VmOptions};
use crate::vm::Timeouts;
use crate::vm::qemu::{Accel, Machine};
use luo_protocol::{
    AgentError, BootFacts, ExitStatus, Hello, MemorySnapshot, Observation, Reply, Request,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a test's script answers for one request; `None` lets the fake answer as the agent would.
pub type Script = Box<dyn FnMut(&Request) -> Option<Result<Reply, AgentError>> + Send>;

/// What the fake saw, shared with the test after the engine consumed the guest.
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<(Request, Option<Duration>)>,
    pub kexecs: Vec<KexecTarget>,
    pub staged: Vec<(PathBuf, String)>,
    pub kept: bool,
    pub powered_off: bool,
}

pub struct FakeGuest {
    pub seen: Arc<Mutex<Seen>>,
    script: Script,
    hello: Hello,
    /// st_ino per handle (session handles share one, like stock, unless a test says otherwise).
    pub inodes: BTreeMap<String, u64>,
    fail_kexec: Option<GuestError>,
    lose_state: bool,
    /// Request ids, as the real guest numbers them.
    next_id: u64,
}

pub fn hello(boot: u32) -> Hello {
    Hello {
        protocol: luo_protocol::PROTOCOL_VERSION,
        boot: BootFacts {
            release: "7.3.4".into(),
            cmdline: String::new(),
            boot_index: Some(boot),
            liveupdate_number: (boot > 0).then_some(boot as u64),
            kho_exec_from: (boot > 0).then(|| "7.3.4".into()),
            liveupdate_device: true,
            kho_enabled: true,
            uptime_us: 400_000,
            agent_start_us: 350_000,
            tsc: None,
        },
        system: None,
    }
}

impl FakeGuest {
    pub fn new(script: Script) -> FakeGuest {
        FakeGuest {
            seen: Arc::default(),
            script,
            hello: hello(0),
            inodes: BTreeMap::new(),
            fail_kexec: None,
            lose_state: false,
            next_id: 1,
        }
    }

    /// A fake whose every request succeeds the way the agent's would.
    pub fn agreeable() -> FakeGuest {
        FakeGuest::new(Box::new(|_| None))
    }

    /// The kernel after a kexec finds no handed-over state.
    pub fn losing_state(mut self) -> FakeGuest {
        self.lose_state = true;
        self
    }

    pub fn failing_kexec(mut self, e: GuestError) -> FakeGuest {
        self.fail_kexec = Some(e);
        self
    }

    fn default_reply(&self, req: &Request) -> Reply {
        match req {
            Request::OpenDevice { .. }
            | Request::CreateSession { .. }
            | Request::RetrieveSession { .. }
            | Request::RetrieveFd { .. }
            | Request::CreateMemfd { .. }
            | Request::OpenPath { .. } => Reply::Opened { fd: 3 },
            Request::GetSessionName { session } => Reply::Name {
                name: session.clone(),
            },
            Request::VerifyPattern { len, .. } => Reply::Verified { bytes: *len },
            Request::Observe { handle } => Reply::Observation(Observation {
                st_dev: 14,
                st_ino: self.inodes.get(handle).copied().unwrap_or(1),
                st_mode: 0o600,
                st_nlink: 1,
                st_size: 0,
                st_rdev: 0,
                fs_magic: 0x0904_1934,
                link: format!("anon_inode:[luo_session] {handle}"),
                seals: None,
                position: None,
                cloexec: true,
            }),
            Request::KernelLog => Reply::Log { lines: vec![] },
            Request::KernelRecords { from } => Reply::Records(luo_protocol::KernelRecords {
                next: *from,
                ..Default::default()
            }),
            Request::KernelConfig => Reply::Text {
                text: "CONFIG_LIVEUPDATE=y\n".into(),
                truncated: false,
            },
            Request::MemorySnapshot => Reply::Memory(MemorySnapshot {
                meminfo: vec![],
                slabs: vec![],
                pcp_free_bytes: 0,
            }),
            Request::Exec { .. } => Reply::Exited(ExitStatus {
                code: Some(0),
                signal: None,
                stdout: String::new(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                duration_us: 1,
            }),
            _ => Reply::Done,
        }
    }
}

impl GuestDriver for FakeGuest {
    async fn try_request(&mut self, req: Request, within: Option<Duration>) -> RequestResult {
        self.next_id += 1;
        self.seen
            .lock()
            .unwrap()
            .requests
            .push((req.clone(), within));
        let answer = (self.script)(&req).unwrap_or_else(|| Ok(self.default_reply(&req)));
        Ok(answer)
    }
    async fn kexec_load(&mut self, target: &KexecTarget) -> Result<(), GuestError> {
        if let Some(e) = self.fail_kexec.take() {
            return Err(e);
        }
        self.seen.lock().unwrap().kexecs.push(target.clone());
        self.next_id += 1;
        Ok(())
    }
    async fn kexec_reboot(&mut self) -> Result<Duration, GuestError> {
        self.next_id += 1;
        let next = self.hello.boot.boot_index.unwrap_or(0) + 1;
        self.hello = hello(next);
        if self.lose_state {
            self.hello.boot.liveupdate_number = None;
            self.hello.boot.kho_exec_from = None;
        }
        Ok(Duration::from_millis(500))
    }
    fn next_request_id(&self) -> u64 {
        self.next_id
    }
    async fn power_off(self) -> Result<(), GuestError> {
        self.seen.lock().unwrap().powered_off = true;
        Ok(())
    }
    fn hello(&self) -> &Hello {
        &self.hello
    }
    fn boot_index(&self) -> u32 {
        self.hello.boot.boot_index.unwrap_or(0)
    }
    fn first_boot(&self) -> Duration {
        Duration::from_millis(700)
    }
    fn start(&self) -> String {
        "scripted".into()
    }
    fn timeouts(&self) -> Timeouts {
        Timeouts::for_accel(Accel::Tcg)
    }
    fn stage(&mut self, src: &Path, rel: &str) -> Result<(), GuestError> {
        self.seen
            .lock()
            .unwrap()
            .staged
            .push((src.to_path_buf(), rel.to_string()));
        Ok(())
    }
    fn keep_artifacts(&mut self) {
        self.seen.lock().unwrap().kept = true;
    }
    fn artifacts(&self) -> Option<PathBuf> {
        Some("/tmp/fake-artifacts".into())
    }
}

fn kernel(variant: &str) -> PlannedKernel {
    PlannedKernel {
        spec: "debian:7.3".into(),
        source: "debian:linux-source-7.3=7.3.4-1~bpo13+1".into(),
        variant: variant.into(),
        boot_image: format!("/cache/{variant}/bzImage").into(),
        arch: Default::default(),
        pvh_vmlinux: None,
        config: None,
        system_map: None,
        release: Some("7.3.4".into()),
        flavour: Default::default(),
        vmlinux: None,
        source_root: None,
        gcov: None,
    }
}

/// A plan with the stock kernel, one variant and one selftest, at paths no test opens.
pub fn plan() -> Plan {
    let mut kernels = BTreeMap::new();
    kernels.insert("stock".to_string(), kernel("stock"));
    kernels.insert("magic-unique".to_string(), kernel("magic-unique"));
    let mut selftests = BTreeMap::new();
    selftests.insert(
        "luo_kexec_simple".to_string(),
        PathBuf::from("/cache/selftests/luo_kexec_simple"),
    );
    Plan {
        boot: kernel("stock"),
        next: None,
        kernels,
        selftests,
        programs: BTreeMap::new(),
        initrd: "/cache/initrd".into(),
        agent_file: None,
        busybox_file: None,
        shell_initrd: Some("/cache/initrd-shell".into()),
        systemd_root: None,
        accel: Accel::Tcg,
        machine: Machine::Microvm,
        vm: VmOptions::default(),
        debug: None,
    }
}
