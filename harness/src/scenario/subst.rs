//! `{i}` substitution inside `repeat`.

use super::model::*;

fn s(x: &str, i: u32) -> String {
    x.replace("{i}", &i.to_string())
}

fn o(x: &Option<String>, i: u32) -> Option<String> {
    x.as_ref().map(|x| s(x, i))
}

/// The step with `{i}` replaced by `i` in every name, handle and path; tokens are offset by `i`
/// so that N preserved files get N distinct tokens.
pub fn expand(step: &Step, i: u32) -> Step {
    match step {
        Step::OpenDevice(x) => Step::OpenDevice(OpenDevice {
            handle: s(&x.handle, i),
            ..x.clone()
        }),
        Step::CreateSession(x) => Step::CreateSession(session(x, i)),
        Step::RetrieveSession(x) => Step::RetrieveSession(session(x, i)),
        Step::GetName(x) => Step::GetName(OnSession {
            session: s(&x.session, i),
            ..x.clone()
        }),
        Step::Finish(x) => Step::Finish(OnSession {
            session: s(&x.session, i),
            ..x.clone()
        }),
        Step::Close(x) => Step::Close(OnHandle {
            handle: s(&x.handle, i),
            ..x.clone()
        }),
        Step::CreateMemfd(x) => Step::CreateMemfd(CreateMemfd {
            handle: s(&x.handle, i),
            ..x.clone()
        }),
        Step::OpenPath(x) => Step::OpenPath(OpenPath {
            path: s(&x.path, i),
            handle: s(&x.handle, i),
            ..x.clone()
        }),
        Step::WritePattern(x) => Step::WritePattern(Pattern {
            fd: s(&x.fd, i),
            ..x.clone()
        }),
        Step::Verify(x) => Step::Verify(Pattern {
            fd: s(&x.fd, i),
            ..x.clone()
        }),
        Step::Seal(x) => Step::Seal(Seal {
            fd: s(&x.fd, i),
            ..x.clone()
        }),
        Step::Truncate(x) => Step::Truncate(Truncate {
            fd: s(&x.fd, i),
            ..x.clone()
        }),
        Step::Seek(x) => Step::Seek(Seek {
            fd: s(&x.fd, i),
            ..x.clone()
        }),
        Step::Preserve(x) => Step::Preserve(Preserve {
            session: s(&x.session, i),
            fd: s(&x.fd, i),
            token: x.token + i as u64,
            ..x.clone()
        }),
        Step::RetrieveFd(x) => Step::RetrieveFd(RetrieveFd {
            session: s(&x.session, i),
            handle: s(&x.handle, i),
            token: x.token + i as u64,
            ..x.clone()
        }),
        Step::Observe(x) => Step::Observe(Observe {
            handle: s(&x.handle, i),
            label: o(&x.label, i),
            ..x.clone()
        }),
        Step::RawIoctl(x) => Step::RawIoctl(RawIoctl {
            handle: s(&x.handle, i),
            ..x.clone()
        }),
        Step::Exec(x) => Step::Exec(Exec {
            args: x.args.iter().map(|a| s(a, i)).collect(),
            background: o(&x.background, i),
            ..x.clone()
        }),
        Step::MeasureMemory(_) | Step::Kexec(_) | Step::Repeat(_) => step.clone(),
    }
}

fn session(x: &SessionStep, i: u32) -> SessionStep {
    SessionStep {
        name: s(&x.name, i),
        handle: o(&x.handle, i),
        device: s(&x.device, i),
        ..x.clone()
    }
}
