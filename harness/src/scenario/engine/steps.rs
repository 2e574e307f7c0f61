//! Each scenario step as the requests it makes and the one-line summary it leaves in the report.

use super::{Engine, StepFailure, StepResult};
use crate::guest::KexecTarget;
use crate::scenario::model::Step;
use crate::scenario::report::BootFacts;
use luo_protocol::{Reply, Request};

impl Engine<'_> {
    pub(super) async fn execute(&mut self, step: &Step) -> StepResult {
        let expect = step.expect();
        let kw = step.keyword();
        let done = |what: String, r: &Option<Reply>| match (r, expect) {
            (None, Some(e)) => format!("{kw} {what}: {e} as expected"),
            _ => format!("{kw} {what}: ok"),
        };
        if let Some((req, what)) = one_request(step) {
            let r = self.call(req, expect).await?;
            return Ok(done(what, &r));
        }
        Ok(match step {
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
            Step::OpenDevice(_)
            | Step::Finish(_)
            | Step::OpenPath(_)
            | Step::Seal(_)
            | Step::Truncate(_)
            | Step::Seek(_)
            | Step::Preserve(_)
            | Step::RetrieveFd(_) => unreachable!("handled by one_request"),
        })
    }

    /// `selftests/<name>`: the kernel's LUO selftest, built from the default source tree and staged
    /// into the share. Anything else is passed through (relative paths are in the share).
    pub(super) async fn stage_program(&mut self, path: &str) -> Result<String, String> {
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

    pub(super) async fn file_size(&mut self, fd: &str) -> Result<u64, StepFailure> {
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
}

/// Steps that are one request and nothing else: the request, and what the summary line names.
fn one_request(step: &Step) -> Option<(Request, String)> {
    Some(match step {
        Step::OpenDevice(s) => (
            Request::OpenDevice {
                handle: s.handle.clone(),
            },
            s.handle.clone(),
        ),
        Step::Finish(s) => (
            Request::FinishSession {
                session: s.session.clone(),
            },
            s.session.clone(),
        ),
        Step::OpenPath(s) => (
            Request::OpenPath {
                handle: s.handle.clone(),
                path: s.path.clone(),
                write: false,
            },
            format!("{} {}", s.handle, s.path),
        ),
        Step::Seal(s) => (
            Request::AddSeals {
                handle: s.fd.clone(),
                seals: s.seals.clone(),
            },
            format!("{} {}", s.fd, s.seals.join(",")),
        ),
        Step::Truncate(s) => (
            Request::Truncate {
                handle: s.fd.clone(),
                size: s.size.0,
            },
            format!("{} to {}", s.fd, s.size.0),
        ),
        Step::Seek(s) => (
            Request::Seek {
                handle: s.fd.clone(),
                offset: s.offset.0,
            },
            format!("{} to {}", s.fd, s.offset.0),
        ),
        Step::Preserve(s) => (
            Request::PreserveFd {
                session: s.session.clone(),
                fd: s.fd.clone(),
                token: s.token,
            },
            format!("{} in {} token {}", s.fd, s.session, s.token),
        ),
        Step::RetrieveFd(s) => (
            Request::RetrieveFd {
                session: s.session.clone(),
                handle: s.handle.clone(),
                token: s.token,
            },
            format!("token {} from {} as {}", s.token, s.session, s.handle),
        ),
        _ => return None,
    })
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

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
