//! The fault suite: kill -9 of QEMU, of virtiofsd or of the runner, and SIGINT, SIGTERM or SIGHUP
//! of the runner, each during a boot, in the middle of a request and during a kexec. Every case
//! checks the exit code, the message naming the phase, that no process of the runner's session is
//! left, that the artifacts are kept, and that the report of the scenario that finished first is
//! written. Also: artifacts on a full filesystem.
//!
//! The runner is `luo-harness run -p 1 memfd-roundtrip fault-phases`: the first scenario finishes,
//! the fault lands in the second, whose transcript (agent.jsonl) says which phase it is in.

mod common;

use common::session;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// QEMU is running and the agent has not said hello.
    Boot,
    /// A 768 MiB write_pattern is outstanding (seconds under TCG).
    MidRequest,
    /// kexec_reboot was sent and the next kernel has not said hello.
    Kexec,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillQemu,
    KillVirtiofsd,
    /// Of the runner.
    Signal(i32),
}

struct Transcript(Vec<String>);

impl Transcript {
    fn read(path: &Path) -> Transcript {
        Transcript(
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect(),
        )
    }
    fn hellos(&self) -> usize {
        self.0
            .iter()
            .filter(|l| l.contains(" < ") && l.contains("\"protocol\""))
            .count()
    }
    fn last(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }
    fn reached(&self, phase: Phase) -> bool {
        match phase {
            Phase::Boot => self.hellos() == 0,
            Phase::MidRequest => {
                self.last().contains(" > ") && self.last().contains("\"op\":\"write_pattern\"")
            }
            Phase::Kexec => {
                self.hellos() == 1 && self.0.iter().any(|l| l.contains("\"op\":\"kexec_reboot\""))
            }
        }
    }
}

/// The artifacts directory of the fault-phases VM, once it exists.
fn fault_vm_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("fault-phases-"))
        })
}

struct Ran {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    stdout: String,
    artifacts: tempfile::TempDir,
    out: tempfile::TempDir,
    vm_dir: PathBuf,
}

fn run_with_fault(phase: Phase, fault: Fault) -> Ran {
    let artifacts = tempfile::Builder::new()
        .prefix("luo-faults")
        .tempdir_in("/tmp")
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.arg("run")
        .args(["-p", "1", "--out"])
        .arg(out.path())
        .arg(common::project("scenarios/memfd-roundtrip.yaml"))
        .arg(common::project("harness/tests/fixtures/fault-phases.yaml"))
        .env("LUO_HARNESS_ARTIFACTS", artifacts.path())
        .env("COLUMNS", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = session::spawn(cmd);
    let sid = child.id() as i32;

    // Wait for the phase: poll the transcript every 5 ms (the boot window is about half a second).
    let deadline = Instant::now() + Duration::from_secs(120);
    let vm_dir = loop {
        assert!(
            Instant::now() < deadline,
            "{phase:?} never came; session: {:?}",
            session::members(sid)
        );
        // agent.jsonl is created once QEMU is up and the guest is booting towards its hello.
        if let Some(dir) = fault_vm_dir(artifacts.path())
            && dir.join("agent.jsonl").exists()
            && session::has(sid, "qemu-system")
            && Transcript::read(&dir.join("agent.jsonl")).reached(phase)
        {
            break dir;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let target = match fault {
        Fault::KillQemu => session::pid_of(sid, "qemu-system").map(|p| (p, libc::SIGKILL)),
        Fault::KillVirtiofsd => session::pid_of(sid, "virtiofsd").map(|p| (p, libc::SIGKILL)),
        Fault::Signal(sig) => Some((sid, sig)),
    };
    let (pid, sig) = target.unwrap_or_else(|| panic!("no process for {fault:?}"));
    // SAFETY: a plain syscall on a process of the session we started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);

    let output = child.wait_with_output().unwrap();
    session::assert_empty(sid);
    use std::os::unix::process::ExitStatusExt;
    Ran {
        code: output.status.code(),
        signal: output.status.signal(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        artifacts,
        out,
        vm_dir,
    }
}

/// The step names a message may give for `phase` (a kexec is two requests and then a wait).
fn steps_of(phase: Phase) -> &'static [&'static str] {
    match phase {
        Phase::Boot => &["boot 0, step `boot`", "starting the VM"],
        Phase::MidRequest => &["boot 0, step `write_pattern`"],
        Phase::Kexec => &[
            "boot 0, step `kexec_reboot`",
            "boot 1, step `kexec into boot 1`",
        ],
    }
}

fn check(phase: Phase, fault: Fault) {
    let r = run_with_fault(phase, fault);
    let all = format!("stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    match fault {
        Fault::Signal(libc::SIGKILL) => {
            assert_eq!(r.signal, Some(libc::SIGKILL), "{all}");
        }
        Fault::Signal(_) => {
            assert_eq!(r.code, Some(130), "{all}");
            assert!(
                steps_of(phase)
                    .iter()
                    .any(|s| r.stderr.contains(&format!("interrupted at {s}"))),
                "the message must name the phase {phase:?}:\n{all}"
            );
            assert!(
                r.stderr
                    .contains(&format!("artifacts kept in {}", r.vm_dir.display()))
            );
        }
        Fault::KillQemu | Fault::KillVirtiofsd => {
            assert_eq!(r.code, Some(3), "{all}");
            assert!(
                steps_of(phase)
                    .iter()
                    .any(|s| all.contains(&format!("({s})"))),
                "the message must name the phase {phase:?}:\n{all}"
            );
            let who = match fault {
                Fault::KillQemu => "QEMU",
                _ => "virtiofsd",
            };
            assert!(all.contains(who), "the message must name {who}:\n{all}");
            assert!(
                all.contains(&r.vm_dir.display().to_string()),
                "the artifacts' path must be printed:\n{all}"
            );
        }
    }
    assert!(
        r.vm_dir.join("console.log").is_file() && r.vm_dir.join("agent.jsonl").is_file(),
        "the failed VM's artifacts must be kept"
    );
    assert!(
        r.out.path().join("memfd-roundtrip.report.yaml").is_file(),
        "the report of the scenario that finished must be written; {} holds {:?}\n{all}",
        r.out.path().display(),
        std::fs::read_dir(r.out.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    drop(r.artifacts);
}

macro_rules! cases {
    ($($name:ident: $phase:expr, $fault:expr;)*) => {
        $(#[test] fn $name() { check($phase, $fault) })*
    };
}

cases! {
    kill_qemu_during_boot: Phase::Boot, Fault::KillQemu;
    kill_qemu_mid_request: Phase::MidRequest, Fault::KillQemu;
    kill_qemu_during_kexec: Phase::Kexec, Fault::KillQemu;
    kill_virtiofsd_during_boot: Phase::Boot, Fault::KillVirtiofsd;
    kill_virtiofsd_mid_request: Phase::MidRequest, Fault::KillVirtiofsd;
    kill_virtiofsd_during_kexec: Phase::Kexec, Fault::KillVirtiofsd;
    sigint_during_boot: Phase::Boot, Fault::Signal(libc::SIGINT);
    sigint_mid_request: Phase::MidRequest, Fault::Signal(libc::SIGINT);
    sigint_during_kexec: Phase::Kexec, Fault::Signal(libc::SIGINT);
    sigterm_during_boot: Phase::Boot, Fault::Signal(libc::SIGTERM);
    sigterm_mid_request: Phase::MidRequest, Fault::Signal(libc::SIGTERM);
    sigterm_during_kexec: Phase::Kexec, Fault::Signal(libc::SIGTERM);
    sighup_during_boot: Phase::Boot, Fault::Signal(libc::SIGHUP);
    sighup_mid_request: Phase::MidRequest, Fault::Signal(libc::SIGHUP);
    sighup_during_kexec: Phase::Kexec, Fault::Signal(libc::SIGHUP);
    sigkill_of_the_runner_during_boot: Phase::Boot, Fault::Signal(libc::SIGKILL);
    sigkill_of_the_runner_mid_request: Phase::MidRequest, Fault::Signal(libc::SIGKILL);
    sigkill_of_the_runner_during_kexec: Phase::Kexec, Fault::Signal(libc::SIGKILL);
}

/// A small tmpfs, unmounted on drop (mounting needs root; CI runs as root).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("luo-full")
            .tempdir_in("/tmp")
            .unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "luo-full"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Tmpfs(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Runs `luo-harness run -p 1 SCENARIOS...` with its artifacts on `fs`; reports go elsewhere.
fn run_on(fs: &Tmpfs, scenarios: &[&str]) -> (Option<i32>, String, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.args(["run", "-p", "1", "--out"]).arg(out.path());
    for s in scenarios {
        cmd.arg(common::project(s));
    }
    cmd.env("LUO_HARNESS_ARTIFACTS", fs.path())
        .env("COLUMNS", "400")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = session::spawn(cmd);
    let sid = child.id() as i32;
    let output = child.wait_with_output().unwrap();
    session::assert_empty(sid);
    let all = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), all, out)
}

/// Artifacts on a filesystem with no room at all: the VM cannot be set up; exit 3, naming what
/// could not be written and the (kept) directory.
#[test]
fn artifacts_on_a_full_filesystem() {
    let fs = Tmpfs::mount("64k");
    let _ = std::fs::write(fs.path().join("filler"), vec![0u8; 64 * 1024]);
    let (code, all, _out) = run_on(&fs, &["scenarios/memfd-roundtrip.yaml"]);
    assert_eq!(code, Some(3), "{all}");
    assert!(all.contains("No space left on device"), "{all}");
    assert!(
        all.contains(&format!(
            "artifacts kept in {}/memfd-roundtrip-",
            fs.path().display()
        )),
        "{all}"
    );
}

/// A filesystem that fills up during the run (staging the next kernel for the kexec does not fit
/// in 1 MiB): the scenario before it passes and its report is written; this one is exit 3 with
/// the step named.
#[test]
fn artifacts_filesystem_filling_up_mid_run() {
    let fs = Tmpfs::mount("1m");
    let (code, all, out) = run_on(
        &fs,
        &[
            "scenarios/memory-sessions.yaml",
            "scenarios/memfd-roundtrip.yaml",
        ],
    );
    assert_eq!(code, Some(3), "{all}");
    assert!(
        all.contains("No space left on device") && all.contains("step `stage kexec/bzImage`"),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "artifacts kept in {}/memfd-roundtrip-",
            fs.path().display()
        )),
        "{all}"
    );
    assert!(
        out.path().join("memory-sessions.report.yaml").is_file(),
        "the report of the scenario that passed must be written:\n{all}"
    );
}
