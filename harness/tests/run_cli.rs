//! `luo-harness run` as a user runs it: several scenarios at once, one of them failing, and a
//! snapshot that no longer matches.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(common::bin())
        .current_dir(cwd)
        .env("COLUMNS", "200")
        .arg("run")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_failing_scenario_is_reported_beside_the_others_with_the_command_that_reruns_it() {
    let out = tempfile::tempdir().unwrap();
    let fixture = common::project("harness/tests/fixtures/wrong-expectation.yaml");
    let nested = common::project("scenarios/nested-repeat.yaml");
    let closed = common::project("scenarios/closed-session-gone.yaml");
    let trace = out.path().join("trace.json");
    let o = run(
        &[
            "-p",
            "1",
            "--out",
            out.path().to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            nested.to_str().unwrap(),
            fixture.to_str().unwrap(),
            closed.to_str().unwrap(),
        ],
        out.path(),
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let row = |name: &str, result: &str| {
        stdout
            .lines()
            .any(|l| l.split_whitespace().take(2).eq([name, result]))
    };
    assert!(row("nested-repeat", "pass"), "{stdout}");
    assert!(row("closed-session-gone", "pass"), "{stdout}");
    assert!(row("wrong-expectation", "FAIL"), "{stdout}");
    assert!(
        stdout.contains("L7 create_session: expected EEXIST, but the call succeeded"),
        "{stdout}"
    );
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
    let rerun = format!("rerun:     luo-harness run {} --keep", fixture.display());
    // (-p is how many at once, not how the scenario runs: the rerun leaves it out.)
    assert!(stdout.contains(&rerun), "expected {rerun:?} in\n{stdout}");
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("artifacts: "))
        .unwrap_or_else(|| panic!("the failed scenario's artifacts are named:\n{stdout}"));
    assert!(Path::new(kept).join("console.log").is_file());
    std::fs::remove_dir_all(kept).unwrap();
    let report = std::fs::read_to_string(out.path().join("wrong-expectation.report.yaml")).unwrap();
    assert!(report.contains("passed: false"), "{report}");
    for name in ["nested-repeat", "closed-session-gone"] {
        assert!(
            out.path().join(format!("{name}.report.yaml")).is_file(),
            "{name}'s report"
        );
    }
    timeline::check(&std::fs::read_to_string(&trace).unwrap());
}

/// The `--trace` file of the run above: Chrome trace-event JSON whose slices nest as the run did.
mod timeline {
    use serde_json::Value;

    #[derive(Debug, Clone)]
    struct Slice {
        name: String,
        pid: u64,
        tid: u64,
        from: f64,
        to: f64,
    }

    /// Microseconds are written to the nanosecond; `ts + dur` in floating point may pass the next
    /// slice's `ts` by far less than that.
    const EPS: f64 = 0.0005;

    impl Slice {
        fn holds(&self, other: &Slice) -> bool {
            self.from <= other.from + EPS && other.to <= self.to + EPS
        }
    }

    pub fn check(json: &str) {
        let v: Value = serde_json::from_str(json).expect("the trace is JSON");
        let events = v["traceEvents"].as_array().expect("traceEvents");
        let mut slices = Vec::new();
        let mut processes = std::collections::BTreeMap::new();
        for e in events {
            let field = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} of {e}"));
            match e["ph"].as_str() {
                Some("X") => {
                    let (ts, dur) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
                    assert!(dur >= 0.0 && ts >= 0.0, "{e}");
                    slices.push(Slice {
                        name: e["name"].as_str().unwrap().to_string(),
                        pid: field("pid"),
                        tid: field("tid"),
                        from: ts,
                        to: ts + dur,
                    });
                }
                Some("M") if e["name"] == "process_name" => {
                    processes.insert(
                        e["args"]["name"].as_str().unwrap().to_string(),
                        field("pid"),
                    );
                }
                Some("M") => {}
                other => panic!("unexpected phase {other:?}: {e}"),
            }
        }
        for name in ["nested-repeat", "wrong-expectation", "closed-session-gone"] {
            assert!(
                processes.contains_key(&format!("scenario {name}")),
                "{processes:?}"
            );
        }
        // On a track, two slices are apart or one holds the other: what Perfetto draws as a stack.
        for a in &slices {
            for b in &slices {
                let same_track = (a.pid, a.tid) == (b.pid, b.tid);
                let apart = a.to <= b.from + EPS || b.to <= a.from + EPS;
                assert!(
                    !same_track || apart || a.holds(b) || b.holds(a),
                    "{a:?} and {b:?} overlap"
                );
            }
        }
        let pid = processes["scenario closed-session-gone"];
        let mine: Vec<&Slice> = slices.iter().filter(|s| s.pid == pid).collect();
        let find = |name: &str| {
            *mine
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no {name:?} in {mine:#?}"))
        };
        let scenario = find("scenario closed-session-gone");
        let steps: Vec<_> = mine.iter().filter(|s| s.name.starts_with('L')).collect();
        assert_eq!(steps.len(), 11, "one slice per step: {steps:#?}");
        assert!(steps.iter().all(|s| scenario.holds(s)));
        let kexec_step = find("L11 kexec");
        let kexec = find("kexec");
        let boot = find("kexec into boot 1");
        let reboot = find("kexec_reboot");
        assert!(kexec_step.holds(kexec) && kexec.holds(boot) && kexec.holds(reboot));
        assert!(reboot.to <= boot.from, "{reboot:?} then {boot:?}");
        assert!(find("L13 retrieve_session").holds(find("retrieve_session")));
        // The new kernel's phases, on the guest's track, fill the blackout the host waited.
        let phases: Vec<_> = [
            "old kernel down, purgatory, decompression",
            "kernel (boot 1)",
            "agent (boot 1)",
        ]
        .map(find)
        .to_vec();
        assert!(phases.iter().all(|p| p.tid != boot.tid));
        for w in phases.windows(2) {
            assert!(
                (w[0].to - w[1].from).abs() < 2.0,
                "{:?} then {:?}",
                w[0],
                w[1]
            );
        }
        let (from, to) = (phases[0].from, phases[2].to);
        assert!(
            from + 1000.0 >= reboot.to && to <= boot.to + 1000.0,
            "{phases:?} in {boot:?}"
        );
        let waited = boot.to - boot.from;
        assert!(
            ((to - from) - waited).abs() < 5000.0,
            "{phases:?} against {boot:?}"
        );
        assert!(
            waited > 10_000.0,
            "a kexec under TCG takes more than 10 ms: {boot:?}"
        );
    }
}

#[test]
fn a_changed_snapshot_fails_the_run_shows_the_difference_and_can_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    let snaps = dir.path().join("snapshots/stock");
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::create_dir_all(&snaps).unwrap();
    std::fs::copy(
        common::project("scenarios/memfd-roundtrip.yaml"),
        scenarios.join("memfd-roundtrip.yaml"),
    )
    .unwrap();
    let reviewed =
        std::fs::read_to_string(common::project("snapshots/stock/memfd-roundtrip.snap")).unwrap();
    let snap = snaps.join("memfd-roundtrip.snap");
    let line = reviewed
        .lines()
        .find(|l| l.contains("retrieve_fd"))
        .expect("the snapshot retrieves a file");
    std::fs::write(
        &snap,
        reviewed.replace(line, &line.replace(": ok", ": EBADF as expected")),
    )
    .unwrap();

    // Run from the scenarios' parent: snapshots/ beside scenarios/ is found without --snapshots.
    let o = run(
        &["--out", "reports", "scenarios/memfd-roundtrip.yaml"],
        dir.path(),
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("the report differs from"), "{stdout}");
    let minus = stdout
        .lines()
        .find(|l| l.starts_with('-') && l.contains("EBADF as expected"));
    let plus = stdout
        .lines()
        .find(|l| l.starts_with('+') && l.contains("retrieve_fd") && l.contains(": ok"));
    assert!(
        minus.is_some() && plus.is_some(),
        "a unified diff of the change:\n{stdout}"
    );

    let o = run(
        &[
            "--out",
            "reports",
            "--update-snapshots",
            "scenarios/memfd-roundtrip.yaml",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let new = snaps.join("memfd-roundtrip.snap.new");
    // What `cargo insta review` reads: insta's own parser must take it.
    let parsed =
        insta::Snapshot::from_file(&new).unwrap_or_else(|e| panic!("{}: {e}", new.display()));
    assert_eq!(
        parsed.metadata().source(),
        Some("scenarios/memfd-roundtrip.yaml")
    );
    // Accepting it (what review does) makes the run pass: it holds this run's behaviour.
    std::fs::rename(&new, &snap).unwrap();
    let o = run(
        &["--out", "reports", "scenarios/memfd-roundtrip.yaml"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn a_declared_kernel_name_must_be_bound_and_then_is_kexeced_into() {
    let out = tempfile::tempdir().unwrap();
    let fixture = common::project("harness/tests/fixtures/kexec-into-next.yaml");
    let o = run(&["--out", "r", fixture.to_str().unwrap()], out.path());
    let (stdout, stderr) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "unbound: bad input, before any VM\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("kexecs into `next`, which is not bound"),
        "{stderr}"
    );
    let o = run(
        &[
            "--out",
            "r",
            "--kernel-as",
            "next=debian:7.2",
            fixture.to_str().unwrap(),
        ],
        out.path(),
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    let report = std::fs::read_to_string(out.path().join("r/kexec-into-next.report.yaml")).unwrap();
    let boot1 = report
        .split("- boot: 1")
        .nth(1)
        .unwrap_or_default()
        .replace('"', "");
    assert!(
        boot1.contains("release: 7.2."),
        "boot 1 ran the 7.2 kernel:\n{report}"
    );
    assert!(
        boot1.contains("kho_exec_from: 7.3."),
        "kexec'd from 7.3:\n{report}"
    );
    assert!(
        report.contains("L10 kexec into boot 1 (next): ok"),
        "{report}"
    );
}

#[test]
fn a_debug_kernel_asked_to_fit_in_too_little_memory_is_refused_before_anything_is_built() {
    let out = tempfile::tempdir().unwrap();
    let scenario = common::project("scenarios/memfd-roundtrip.yaml");
    let o = run(
        &["--debug", "--memory", "256", scenario.to_str().unwrap()],
        out.path(),
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("--memory 256 is too little for a debug kernel")
            && stderr.contains("768 MiB"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("kernel debian"),
        "nothing was built or looked up: {stderr}"
    );
}

#[test]
fn a_file_kernel_that_is_not_an_x86_64_bzimage_is_refused_by_name_before_any_vm() {
    let out = tempfile::tempdir().unwrap();
    let scenario = common::project("scenarios/memfd-roundtrip.yaml");
    let mut arm64 = vec![0u8; 0x1000];
    arm64[0x38..0x3c].copy_from_slice(b"ARM\x64");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("Image", arm64, "an arm64 Image; the guest is x86_64"),
        ("Image.gz", vec![0x1f, 0x8b, 8, 0, 0, 0], "gzip-compressed"),
        ("vmlinux", b"\x7fELF\x02\x01\x01".to_vec(), "an ELF"),
    ];
    for (name, bytes, says) in cases {
        let kernel = out.path().join(name);
        std::fs::write(&kernel, bytes).unwrap();
        let spec = format!("file:{}", kernel.display());
        let o = run(&["--kernel", &spec, scenario.to_str().unwrap()], out.path());
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}\n{stdout}\n{stderr}");
        assert!(
            stderr.contains(&format!("{}: ", kernel.display())) && stderr.contains(says),
            "{name}: {stderr}"
        );
        assert!(
            !out.path()
                .join("luo-reports")
                .join("memfd-roundtrip.report.yaml")
                .exists(),
            "no scenario ran on {name}"
        );
    }
}

#[test]
fn arm64_refuses_what_its_guest_cannot_boot_and_an_unknown_arch_by_name_before_any_vm() {
    let out = tempfile::tempdir().unwrap();
    let scenario = common::project("scenarios/memfd-roundtrip.yaml");
    let scenario = scenario.to_str().unwrap();
    let mut bz = vec![0u8; 0x1000];
    bz[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    bz[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
    let cases: [(&str, Vec<u8>, &str); 2] = [
        ("bzImage", bz, "an x86-64 bzImage; the guest is aarch64"),
        (
            "Image.gz",
            vec![0x1f, 0x8b, 8, 0, 0, 0],
            "takes only the uncompressed Image",
        ),
    ];
    for (name, bytes, says) in cases {
        let kernel = out.path().join(name);
        std::fs::write(&kernel, bytes).unwrap();
        let spec = format!("file:{}", kernel.display());
        let o = run(
            &["--arch", "aarch64", "--kernel", &spec, scenario],
            out.path(),
        );
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}\n{stdout}\n{stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
    let o = run(&["--arch", "riscv64", scenario], out.path());
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("riscv64") && stderr.contains("aarch64"),
        "{stderr}"
    );
    for (flags, says) in [
        (&["--accel", "kvm"][..], "KVM cannot run an aarch64 guest"),
        (
            &["--machine", "microvm"][..],
            "--machine microvm is a x86_64 machine",
        ),
    ] {
        let mut args = vec!["--arch", "aarch64"];
        args.extend(flags);
        args.push(scenario);
        let o = run(&args, out.path());
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
    assert!(
        !out.path()
            .join("luo-reports")
            .join("memfd-roundtrip.report.yaml")
            .exists(),
        "no scenario ran"
    );
}

#[test]
fn check_refuses_a_program_built_for_the_other_machine_at_its_step() {
    let d = tempfile::tempdir().unwrap();
    let c = d.path().join("p.c");
    std::fs::write(&c, "int main(void){return 0;}\n").unwrap();
    for (cc, name) in [("gcc", "x86"), ("aarch64-linux-gnu-gcc", "arm")] {
        let ok = Command::new(cc)
            .args(["-static", "-o"])
            .arg(d.path().join(name))
            .arg(&c)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cc} -static (ci/install-deps installs both)");
    }
    let yaml = d.path().join("s.yaml");
    std::fs::write(
        &yaml,
        "description: a prebuilt program\nsteps:\n  - exec: {path: ./x86}\n  - exec: {path: ./arm}\n",
    )
    .unwrap();
    let check = |arch: &str| {
        Command::new(common::bin())
            .args(["check", "--arch", arch])
            .arg(&yaml)
            .output()
            .unwrap()
    };
    for (arch, line, says) in [
        (
            "aarch64",
            "s.yaml:3:",
            "built for x86_64; the guest is aarch64",
        ),
        (
            "x86_64",
            "s.yaml:4:",
            "built for aarch64; the guest is x86_64",
        ),
    ] {
        let o = check(arch);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{arch}: {stderr}");
        assert!(
            stderr.contains(says) && stderr.contains(line),
            "{arch}: {stderr}"
        );
    }
}
