//! Runs a validated scenario on a booted guest and builds its [`Report`].

use super::model::{Scenario, Step};
use super::report::*;
use super::subst::expand;
use crate::guest::{Guest, GuestError, KexecTarget};
use crate::{Prepared, Vm};
use luo_protocol::{AgentError, MemorySnapshot, Observation, Reply, Request};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Patterns that make a kernel log line suspicious (any hit fails the scenario).
const SUSPICIOUS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "KASAN",
    "incompatible",
    "Kernel panic",
    "Call Trace",
];

pub struct Engine<'a> {
    guest: Guest,
    prepared: &'a Prepared,
    report: Report,
    metrics: Metrics,
    inodes: BTreeMap<(u32, u64, u64), String>,
    /// Handles that are session fds, in the current boot.
    session_handles: std::collections::BTreeSet<String>,
    /// Per boot: the inode labels of observed session fds.
    session_inodes: BTreeMap<u32, Vec<String>>,
    last_memory: Option<(String, MemorySnapshot)>,
    sizes: BTreeMap<String, u64>,
}

/// Why a step did not go as the scenario says.
enum StepFailure {
    /// The scenario's expectation was not met; the run stops here.
    Check(String),
    /// The VM itself failed.
    Vm(GuestError),
}

impl From<GuestError> for StepFailure {
    fn from(e: GuestError) -> Self {
        StepFailure::Vm(e)
    }
}

type StepResult = Result<String, StepFailure>;

impl<'a> Engine<'a> {
    pub async fn start(
        scenario: &Scenario,
        prepared: &'a Prepared,
        variant: &str,
    ) -> Result<Engine<'a>, GuestError> {
        let name = scenario.name.clone().unwrap_or_default();
        let mut cfg = prepared.vm_config(&name);
        // The scenario's own memory size wins over the run's.
        if let Some(m) = scenario.memory_mib {
            cfg.memory_mib = m;
        }
        if let Some(t) = scenario.step_timeout_s {
            cfg.request_timeout = Duration::from_secs(t);
        }
        let guest = Vm::boot(cfg).await?;
        let hello = guest.hello().clone();
        let report = Report {
            scenario: name.clone(),
            description: scenario.description.trim().to_string(),
            kernel: KernelFacts {
                release: hello.boot.release.clone(),
                variant: variant.to_string(),
            },
            boots: vec![BootFacts {
                boot: 0,
                liveupdate_number: hello.boot.liveupdate_number,
                kho_exec_from: hello.boot.kho_exec_from.clone(),
            }],
            steps: vec![],
            observations: BTreeMap::new(),
            session_identity: vec![],
            memory: vec![],
            kernel_log: vec![],
            failures: vec![],
            passed: false,
        };
        let metrics = Metrics {
            scenario: name,
            boots_ms: vec![guest.boots()[0].to_hello.as_secs_f64() * 1000.0],
            ..Default::default()
        };
        Ok(Engine {
            guest,
            prepared,
            report,
            metrics,
            inodes: BTreeMap::new(),
            session_handles: Default::default(),
            session_inodes: BTreeMap::new(),
            last_memory: None,
            sizes: BTreeMap::new(),
        })
    }

    /// Runs every step; stops at the first unmet expectation. A VM failure is returned as an error
    /// (exit code 3 territory), a check failure ends up in the report.
    pub async fn run(mut self, scenario: &Scenario) -> Result<(Report, Metrics), GuestError> {
        self.check_requirements(scenario);
        if self.report.failures.is_empty() {
            for step in &scenario.steps {
                match self.run_step(step).await {
                    Ok(()) => {}
                    Err(StepFailure::Check(msg)) => {
                        self.report.failures.push(msg);
                        break;
                    }
                    Err(StepFailure::Vm(e)) => return Err(e),
                }
            }
        }
        self.scan_kernel_log().await?;
        self.summarise_identity();
        let Engine {
            guest,
            mut report,
            metrics,
            ..
        } = self;
        report.passed = report.failures.is_empty() && report.kernel_log.is_empty();
        if report.passed {
            guest.power_off().await?;
        } else {
            let mut guest = guest;
            guest.keep_artifacts();
            eprintln!(
                "luo-harness: scenario {} failed; artifacts kept in {}",
                report.scenario,
                guest.artifacts().display()
            );
            let _ = guest.power_off().await;
        }
        Ok((report, metrics))
    }

    fn check_requirements(&mut self, s: &Scenario) {
        if let Some(min) = &s.requires.kernel
            && version_tuple(&self.report.kernel.release) < version_tuple(min)
        {
            self.report.failures.push(format!(
                "requires kernel >= {min}, running {}",
                self.report.kernel.release
            ));
        }
        if s.requires.config.is_empty() {
            return;
        }
        // The published config sits next to the bzImage in the cache.
        let cfg_path = self.prepared.kernel.with_file_name("config");
        let Ok(text) = std::fs::read_to_string(&cfg_path) else {
            self.report.failures.push(format!(
                "requires {:?} but the kernel's config is not available at {}",
                s.requires.config,
                cfg_path.display()
            ));
            return;
        };
        let cfg = luo_kernels::config::parse_dot_config(&text);
        for opt in &s.requires.config {
            let sym = opt.trim_start_matches("CONFIG_");
            if cfg.get(sym).map(String::as_str) != Some("y") {
                self.report
                    .failures
                    .push(format!("requires CONFIG_{sym}=y, which this kernel lacks"));
            }
        }
    }

    async fn run_step(&mut self, step: &Spanned<Step>) -> Result<(), StepFailure> {
        let line = step.referenced.line();
        if let Step::Repeat(r) = &step.value {
            let t0 = Instant::now();
            for i in 0..r.count {
                for inner in &r.steps {
                    let s = expand(&inner.value, i);
                    if let Err(e) = self.execute(&s).await {
                        return Err(match e {
                            StepFailure::Check(m) => {
                                let msg = format!(
                                    "L{} {} (repeat iteration {i} of {}): {m}",
                                    inner.referenced.line(),
                                    s.keyword(),
                                    r.count
                                );
                                self.report.steps.push(msg.clone());
                                StepFailure::Check(msg)
                            }
                            vm => vm,
                        });
                    }
                }
            }
            self.metrics.steps_ms.push((
                format!("L{line} repeat"),
                t0.elapsed().as_secs_f64() * 1000.0,
            ));
            self.report.steps.push(format!(
                "L{line} repeat x{} ({} step(s) each): ok",
                r.count,
                r.steps.len()
            ));
            return Ok(());
        }
        let t0 = Instant::now();
        let result = self.execute(&step.value).await;
        self.metrics.steps_ms.push((
            format!("L{line} {}", step.value.keyword()),
            t0.elapsed().as_secs_f64() * 1000.0,
        ));
        match result {
            Ok(summary) => {
                self.report.steps.push(format!("L{line} {summary}"));
                Ok(())
            }
            Err(StepFailure::Check(m)) => {
                let msg = format!("L{line} {}: {m}", step.value.keyword());
                self.report.steps.push(msg.clone());
                Err(StepFailure::Check(msg))
            }
            Err(e) => Err(e),
        }
    }

    /// One request with the step's `expect` applied: Ok(reply) when it succeeded as it should,
    /// Ok(None) when it failed with the expected errno.
    async fn call(
        &mut self,
        req: Request,
        expect: Option<&str>,
    ) -> Result<Option<Reply>, StepFailure> {
        let outcome = self.guest.try_request(req).await?;
        match (outcome, expect) {
            (Ok(r), None) => Ok(Some(r)),
            (Ok(_), Some(e)) => Err(StepFailure::Check(format!(
                "expected {e}, but the call succeeded"
            ))),
            (Err(err), Some(e)) if err.errno.as_deref() == Some(e) => Ok(None),
            (Err(err), _) => Err(StepFailure::Check(describe(&err, expect))),
        }
    }

    async fn execute(&mut self, step: &Step) -> StepResult {
        let expect = step.expect();
        let kw = step.keyword();
        let done = |what: String, r: &Option<Reply>| match (r, expect) {
            (None, Some(e)) => format!("{kw} {what}: {e} as expected"),
            _ => format!("{kw} {what}: ok"),
        };
        Ok(match step {
            Step::OpenDevice(s) => {
                let r = self
                    .call(
                        Request::OpenDevice {
                            handle: s.handle.clone(),
                        },
                        expect,
                    )
                    .await?;
                done(s.handle.clone(), &r)
            }
            Step::CreateSession(s) | Step::RetrieveSession(s) => {
                let req = if matches!(step, Step::CreateSession(_)) {
                    Request::CreateSession {
                        device: s.device.clone(),
                        handle: s.handle().into(),
                        name: s.name.clone(),
                    }
                } else {
                    Request::RetrieveSession {
                        device: s.device.clone(),
                        handle: s.handle().into(),
                        name: s.name.clone(),
                    }
                };
                let r = self.call(req, expect).await?;
                if r.is_some() {
                    self.session_handles.insert(s.handle().to_string());
                }
                done(format!("{:?}", s.name), &r)
            }
            Step::GetName(s) => {
                let r = self
                    .call(
                        Request::GetSessionName {
                            session: s.session.clone(),
                        },
                        expect,
                    )
                    .await?;
                match &r {
                    Some(Reply::Name { name }) => format!("{kw} {}: {name:?}", s.session),
                    _ => done(s.session.clone(), &r),
                }
            }
            Step::Finish(s) => {
                let r = self
                    .call(
                        Request::FinishSession {
                            session: s.session.clone(),
                        },
                        expect,
                    )
                    .await?;
                done(s.session.clone(), &r)
            }
            Step::Close(s) => {
                let r = self
                    .call(
                        Request::Close {
                            handle: s.handle.clone(),
                        },
                        expect,
                    )
                    .await?;
                self.session_handles.remove(&s.handle);
                done(s.handle.clone(), &r)
            }
            Step::CreateMemfd(s) => {
                let req = Request::CreateMemfd {
                    handle: s.handle.clone(),
                    name: s.handle.clone(),
                    size: s.size.0,
                    hugetlb: s.hugetlb,
                };
                let r = self.call(req, expect).await?;
                if r.is_some() {
                    self.sizes.insert(s.handle.clone(), s.size.0);
                    if let Some(seed) = s.seed {
                        self.call(
                            Request::WritePattern {
                                handle: s.handle.clone(),
                                seed,
                                offset: 0,
                                len: s.size.0,
                            },
                            None,
                        )
                        .await?;
                    }
                }
                let seeded = s.seed.map(|x| format!(" seed {x}")).unwrap_or_default();
                done(format!("{} {} bytes{seeded}", s.handle, s.size.0), &r)
            }
            Step::OpenPath(s) => {
                let r = self
                    .call(
                        Request::OpenPath {
                            handle: s.handle.clone(),
                            path: s.path.clone(),
                            write: false,
                        },
                        expect,
                    )
                    .await?;
                done(format!("{} {}", s.handle, s.path), &r)
            }
            Step::WritePattern(p) | Step::Verify(p) => {
                let offset = p.offset.map_or(0, |o| o.0);
                let len = match p.len {
                    Some(l) => l.0,
                    None => self.file_size(&p.fd).await?.saturating_sub(offset),
                };
                let req = if matches!(step, Step::Verify(_)) {
                    Request::VerifyPattern {
                        handle: p.fd.clone(),
                        seed: p.seed,
                        offset,
                        len,
                    }
                } else {
                    Request::WritePattern {
                        handle: p.fd.clone(),
                        seed: p.seed,
                        offset,
                        len,
                    }
                };
                let r = self.call(req, expect).await?;
                done(
                    format!("{} seed {} [{offset}, {})", p.fd, p.seed, offset + len),
                    &r,
                )
            }
            Step::Seal(s) => {
                let r = self
                    .call(
                        Request::AddSeals {
                            handle: s.fd.clone(),
                            seals: s.seals.clone(),
                        },
                        expect,
                    )
                    .await?;
                done(format!("{} {}", s.fd, s.seals.join(",")), &r)
            }
            Step::Truncate(s) => {
                let r = self
                    .call(
                        Request::Truncate {
                            handle: s.fd.clone(),
                            size: s.size.0,
                        },
                        expect,
                    )
                    .await?;
                done(format!("{} to {}", s.fd, s.size.0), &r)
            }
            Step::Seek(s) => {
                let r = self
                    .call(
                        Request::Seek {
                            handle: s.fd.clone(),
                            offset: s.offset.0,
                        },
                        expect,
                    )
                    .await?;
                done(format!("{} to {}", s.fd, s.offset.0), &r)
            }
            Step::Preserve(s) => {
                let r = self
                    .call(
                        Request::PreserveFd {
                            session: s.session.clone(),
                            fd: s.fd.clone(),
                            token: s.token,
                        },
                        expect,
                    )
                    .await?;
                done(format!("{} in {} token {}", s.fd, s.session, s.token), &r)
            }
            Step::RetrieveFd(s) => {
                let r = self
                    .call(
                        Request::RetrieveFd {
                            session: s.session.clone(),
                            handle: s.handle.clone(),
                            token: s.token,
                        },
                        expect,
                    )
                    .await?;
                done(
                    format!("token {} from {} as {}", s.token, s.session, s.handle),
                    &r,
                )
            }
            Step::Observe(s) => {
                let r = self
                    .call(
                        Request::Observe {
                            handle: s.handle.clone(),
                        },
                        expect,
                    )
                    .await?;
                let label = s.label.clone().unwrap_or_else(|| s.handle.clone());
                if let Some(Reply::Observation(o)) = &r {
                    let obs = self.observed(&o.clone(), &s.handle);
                    let summary = format!("{} {} {}", obs.inode, obs.fs, obs.link);
                    self.report.observations.insert(label.clone(), obs);
                    format!("{kw} {} as {label}: {summary}", s.handle)
                } else {
                    done(s.handle.clone(), &r)
                }
            }
            Step::MeasureMemory(m) => {
                let Some(Reply::Memory(snap)) = self.call(Request::MemorySnapshot, None).await?
                else {
                    return Err(StepFailure::Check(
                        "unexpected reply to memory_snapshot".into(),
                    ));
                };
                self.record_memory(&m.label, m.objects, snap);
                format!("{kw} {}: ok", m.label)
            }
            Step::Kexec(k) => {
                self.scan_kernel_log().await?;
                let kernel = match &k.kernel {
                    None => self.prepared.kernel.clone(),
                    Some(v) => variant_kernel(v).await.map_err(StepFailure::Check)?,
                };
                let target = KexecTarget {
                    kernel,
                    initrd: self.prepared.initrd.clone(),
                    extra_cmdline: k.cmdline.clone(),
                };
                let blackout = self.guest.kexec(&target).await?;
                let hello = self.guest.hello().clone();
                self.metrics
                    .blackouts_ms
                    .push(blackout.as_secs_f64() * 1000.0);
                self.metrics.boots_ms.push(blackout.as_secs_f64() * 1000.0);
                let boot = self.guest.boot_index();
                self.report.boots.push(BootFacts {
                    boot,
                    liveupdate_number: hello.boot.liveupdate_number,
                    kho_exec_from: hello.boot.kho_exec_from,
                });
                self.session_handles.clear();
                self.sizes.clear();
                match &k.kernel {
                    Some(v) => format!("{kw} into boot {boot} ({v}): ok"),
                    None => format!("{kw} into boot {boot}: ok"),
                }
            }
            Step::Exec(e) => {
                let path = self
                    .stage_program(&e.path)
                    .await
                    .map_err(StepFailure::Check)?;
                let req = Request::Exec {
                    path,
                    args: e.args.clone(),
                    env: vec![],
                    background: e.background.clone(),
                    timeout_ms: Some(60_000),
                };
                let r = self.call(req, expect).await?;
                match &r {
                    Some(Reply::Exited(x)) => {
                        let want = e.exit_code.unwrap_or(0);
                        if x.code != Some(want) {
                            return Err(StepFailure::Check(format!(
                                "{} exited with {:?} (signal {:?}), expected {want}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                                e.path,
                                x.code,
                                x.signal,
                                tail(&x.stdout),
                                tail(&x.stderr)
                            )));
                        }
                        if let Some(text) = &e.output_contains {
                            if !x.stdout.contains(text.as_str()) {
                                return Err(StepFailure::Check(format!(
                                    "{} did not print {text:?}\n--- stdout ---\n{}",
                                    e.path,
                                    tail(&x.stdout)
                                )));
                            }
                            return Ok(format!("{kw} {}: exit {want}, printed {text:?}", e.path));
                        }
                        format!("{kw} {}: exit {want}", e.path)
                    }
                    Some(Reply::Started { .. }) => {
                        format!("{kw} {}: started in the background", e.path)
                    }
                    _ => done(e.path.clone(), &r),
                }
            }
            Step::RawIoctl(x) => {
                let mut arg = vec![0u8; x.len.max(4) as usize];
                arg[..4].copy_from_slice(&x.size.to_ne_bytes());
                for (off, val) in &x.words {
                    let o = *off as usize;
                    if o + 4 > arg.len() {
                        return Err(StepFailure::Check(format!(
                            "word offset {o} is outside the {}-byte argument",
                            arg.len()
                        )));
                    }
                    arg[o..o + 4].copy_from_slice(&val.to_ne_bytes());
                }
                let r = self
                    .call(
                        Request::RawIoctl {
                            handle: x.handle.clone(),
                            nr: x.nr,
                            arg,
                        },
                        expect,
                    )
                    .await?;
                done(
                    format!(
                        "{} nr 0x{:02x} size {} len {}",
                        x.handle, x.nr, x.size, x.len
                    ),
                    &r,
                )
            }
            Step::Repeat(_) => unreachable!("repeat is unrolled by run_step"),
        })
    }

    /// `selftests/<name>`: the kernel's LUO selftest, built from the default source tree and staged
    /// into the share. Anything else is passed through (relative paths are in the share).
    async fn stage_program(&mut self, path: &str) -> Result<String, String> {
        let Some(name) = path.strip_prefix("selftests/") else {
            return Ok(path.to_string());
        };
        let name_owned = name.to_string();
        let bins = tokio::task::spawn_blocking(move || {
            luo_kernels::selftests::build(
                &luo_kernels::BuildRequest::default(),
                &luo_kernels::Cache::from_env(),
                &name_owned,
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("building selftest {name}: {e}"))?;
        let dir = self.guest.vm.artifacts.share().join("selftests");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let dst = dir.join(name);
        if !dst.exists() {
            std::fs::copy(&bins.test, &dst)
                .map_err(|e| format!("staging {}: {e}", dst.display()))?;
        }
        Ok(path.to_string())
    }

    async fn file_size(&mut self, fd: &str) -> Result<u64, StepFailure> {
        if let Some(s) = self.sizes.get(fd) {
            return Ok(*s);
        }
        match self
            .call(Request::Observe { handle: fd.into() }, None)
            .await?
        {
            Some(Reply::Observation(o)) => Ok(o.st_size.max(0) as u64),
            _ => Err(StepFailure::Check(format!("cannot learn the size of {fd}"))),
        }
    }

    fn observed(&mut self, o: &Observation, handle: &str) -> Observed {
        let boot = self.guest.boot_index();
        let n = self.inodes.len() + 1;
        let inode = self
            .inodes
            .entry((boot, o.st_dev, o.st_ino))
            .or_insert_with(|| format!("inode-{n}"))
            .clone();
        if self.session_handles.contains(handle) {
            self.session_inodes
                .entry(boot)
                .or_default()
                .push(inode.clone());
        }
        let is_regular = o.st_mode & 0o170000 == 0o100000;
        Observed {
            boot,
            inode,
            fs: magic_name(o.fs_magic),
            mode: mode_text(o.st_mode),
            link: o.link.clone(),
            size: is_regular.then_some(o.st_size),
            seals: o.seals.clone(),
            position: if is_regular { o.position } else { None },
            cloexec: o.cloexec,
        }
    }

    fn summarise_identity(&mut self) {
        for (boot, labels) in &self.session_inodes {
            let distinct: std::collections::BTreeSet<_> = labels.iter().collect();
            let verdict = match (labels.len(), distinct.len()) {
                (1, _) => "one session fd observed".to_string(),
                (n, 1) => format!("{n} session fds share one inode"),
                (n, d) if n == d => format!("{n} session fds, each with its own inode"),
                (n, d) => format!("{n} session fds, {d} distinct inodes"),
            };
            self.report
                .session_identity
                .push(format!("boot {boot}: {verdict}"));
        }
    }

    fn record_memory(&mut self, label: &str, objects: Option<u64>, snap: MemorySnapshot) {
        let meminfo: BTreeMap<String, u64> = snap.meminfo.iter().cloned().collect();
        let slab_bytes: BTreeMap<String, u64> = snap
            .slabs
            .iter()
            .map(|c| (c.name.clone(), c.num_slabs * c.pages_per_slab * 4096))
            .collect();
        self.metrics.memory.push(RawMemory {
            label: label.into(),
            meminfo_kb: meminfo.clone(),
            slab_bytes,
        });
        if let Some((prev_label, prev)) = &self.last_memory {
            let kb = |s: &MemorySnapshot, k: &str| {
                s.meminfo
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(0, |(_, v)| *v) as i64
            };
            let slab_delta = (kb(&snap, "Slab") - kb(prev, "Slab")) * 1024;
            let per_object = objects.filter(|n| *n >= 100).map(|n| {
                let per = slab_delta.max(0) as f64 / n as f64;
                ((per / 64.0).round() * 64.0) as u64
            });
            let mut grown = Vec::new();
            if let Some(n) = objects.filter(|n| *n >= 100) {
                for c in &snap.slabs {
                    let before = prev
                        .slabs
                        .iter()
                        .find(|p| p.name == c.name)
                        .map_or(0, |p| p.active_objs);
                    let per = (c.active_objs as f64 - before as f64) / n as f64;
                    if per >= 0.5 {
                        grown.push(format!(
                            "{}: +{:.1} per object ({} B each)",
                            c.name,
                            (per * 10.0).round() / 10.0,
                            c.objsize
                        ));
                    }
                }
            }
            self.report.memory.push(MemoryDelta {
                from: prev_label.clone(),
                to: label.into(),
                objects,
                slab_bytes_per_object: per_object,
                grown_caches: grown,
            });
        }
        self.last_memory = Some((label.to_string(), snap));
    }

    async fn scan_kernel_log(&mut self) -> Result<(), GuestError> {
        let boot = self.guest.boot_index();
        if let Reply::Log { lines } = self.guest.request(Request::KernelLog).await? {
            for l in lines {
                if l.contains("ommand line:") {
                    continue;
                }
                if SUSPICIOUS.iter().any(|p| l.contains(p)) {
                    // Strip the timestamp: it differs from run to run.
                    let text = l.split_once("] ").map_or(l.as_str(), |(_, t)| t);
                    self.report.kernel_log.push(format!("boot {boot}: {text}"));
                }
            }
        }
        Ok(())
    }
}

/// The default source's kernel for `variant`, from the cache or built (incrementally).
async fn variant_kernel(variant: &str) -> Result<std::path::PathBuf, String> {
    let req = luo_kernels::BuildRequest {
        variant: variant.to_string(),
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || {
        luo_kernels::build(&req, &luo_kernels::Cache::from_env(), &mut |_| {})
    })
    .await
    .map_err(|e| e.to_string())?
    .map(|k| k.bzimage())
    .map_err(|e| format!("kernel variant: {e}"))
}

fn describe(err: &AgentError, expect: Option<&str>) -> String {
    match (expect, &err.errno) {
        (Some(e), Some(got)) => format!("expected {e}, got {got} from {}", err.call),
        _ => err.to_string(),
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn version_tuple(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect()
}
