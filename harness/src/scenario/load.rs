//! Reading a scenario file: decoding, YAML and semantic errors all become diagnostics with
//! file:line:column and the offending line underlined, before any VM starts.

use super::diagnostic::{InvalidScenario, diagnostic};
use super::limits;
use super::model::Scenario;
use super::steps::{MAX_UNROLLED_STEPS, check_all, site};
use super::template::Template;
use super::validate::{Problem, Site, Validator};
use std::path::Path;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] InvalidScenario),
}

impl crate::outcome::Classify for LoadError {
    fn kind(&self) -> crate::outcome::Kind {
        crate::outcome::Kind::BadInput
    }
}

pub fn load(path: &Path) -> Result<(Scenario, String), LoadError> {
    load_for(path, luo_kernels::Arch::X86_64)
}

/// `load` for a run on `arch`: the programs a scenario brings must be that machine's.
pub fn load_for(path: &Path, arch: luo_kernels::Arch) -> Result<(Scenario, String), LoadError> {
    let file = path.display().to_string();
    let read = |source| LoadError::Read {
        path: file.clone(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > limits::MAX_FILE_BYTES {
        return Err(too_big(&file, size).into());
    }
    let bytes = std::fs::read(path).map_err(read)?;
    if bytes.len() as u64 > limits::MAX_FILE_BYTES {
        return Err(too_big(&file, bytes.len() as u64).into());
    }
    let src = decode(&file, bytes)?;
    let s = parse_for(&file, &src, arch)?;
    Ok((s, src))
}

/// A scenario from a file's bytes: everything `check` does after reading the file (the fuzz tests
/// call this directly).
pub fn from_bytes(file: &str, bytes: Vec<u8>) -> Result<(Scenario, String), InvalidScenario> {
    if bytes.len() as u64 > limits::MAX_FILE_BYTES {
        return Err(too_big(file, bytes.len() as u64));
    }
    let src = decode(file, bytes)?;
    let s = parse(file, &src)?;
    Ok((s, src))
}

fn too_big(file: &str, size: u64) -> InvalidScenario {
    InvalidScenario::one(
        file,
        "",
        1,
        1,
        format!(
            "the file is {size} bytes; a scenario file is at most {} (1 MiB)",
            limits::MAX_FILE_BYTES
        ),
        None,
    )
}

/// UTF-8, or a diagnostic at the first byte that is not.
fn decode(file: &str, bytes: Vec<u8>) -> Result<String, InvalidScenario> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let good = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        let line = good.matches('\n').count() as u64 + 1;
        let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
        let shown = String::from_utf8_lossy(e.as_bytes()).into_owned();
        InvalidScenario::one(
            file,
            &shown,
            line,
            column,
            format!("not UTF-8: byte 0x{:02x} at offset {at}", e.as_bytes()[at]),
            Some("scenario files are UTF-8 text".into()),
        )
    })
}

/// The YAML budget: aliases, depth and nodes bounded, so no file makes the parser work long.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_aliases: limits::MAX_ALIASES,
            max_depth: limits::MAX_YAML_DEPTH,
            max_nodes: limits::MAX_YAML_NODES,
            max_total_scalar_bytes: limits::MAX_FILE_BYTES as usize,
        },
    }
}

pub fn parse(file: &str, src: &str) -> Result<Scenario, InvalidScenario> {
    parse_for(file, src, luo_kernels::Arch::X86_64)
}

/// `parse` for a run on `arch`.
pub fn parse_for(
    file: &str,
    src: &str,
    arch: luo_kernels::Arch,
) -> Result<Scenario, InvalidScenario> {
    if let Some((i, l)) = src
        .lines()
        .enumerate()
        .find(|(_, l)| l.len() > limits::MAX_LINE_BYTES)
    {
        return Err(InvalidScenario::one(
            file,
            src,
            i as u64 + 1,
            limits::MAX_LINE_BYTES as u64 + 1,
            format!(
                "this line is {} bytes; a line is at most {}",
                l.len(),
                limits::MAX_LINE_BYTES
            ),
            None,
        ));
    }
    let mut scenario: Scenario =
        serde_saphyr::from_str_with_options(src, options()).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            InvalidScenario::one(
                file,
                src,
                line,
                column,
                first_sentence(&e.to_string()),
                None,
            )
        })?;
    scenario.file = file.into();
    if scenario.name.is_none() {
        scenario.name = Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
    }
    let problems = validate_for(&scenario, src, arch)
        .into_iter()
        .map(|p| diagnostic(file, src, p.line, p.column, p.message, &p.label, p.help))
        .collect::<Vec<_>>();
    if problems.is_empty() {
        Ok(scenario)
    } else {
        Err(InvalidScenario {
            file: file.into(),
            problems,
        })
    }
}

/// serde-saphyr's message without the snippet it renders itself (ours comes from miette).
fn first_sentence(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    // "error: line 3 column 7: message" -> "message": the location is ours to print.
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((loc, m)) if loc.contains("column") => m.to_string(),
        _ => rest.to_string(),
    }
}

fn at<T>(s: &serde_saphyr::Spanned<T>, keyword: &'static str) -> Site {
    Site {
        line: s.referenced.line(),
        column: s.referenced.column(),
        keyword,
    }
}

/// The fields outside the steps: memory, timeouts, requirements.
fn top_level(s: &Scenario, v: &mut Validator) {
    if let Some(m) = &s.memory_mib {
        let debug_min = crate::plan::DEBUG_MEMORY_MIB as u64;
        if s.debug && m.value < debug_min {
            v.problem(
                &at(m, "memory_mib"),
                format!(
                    "memory_mib {} is too little for a debug kernel (debug: true)",
                    m.value
                ),
                Some(format!(
                    "KASAN's shadow and KHO's scratch need at least {debug_min} MiB"
                )),
            );
        } else if limits::MEMORY_MIB.contains(&m.value) {
            v.memory_mib = m.value;
        } else {
            let r = limits::MEMORY_MIB;
            v.problem(
                &at(m, "memory_mib"),
                format!("memory_mib {}: {} to {} MiB", m.value, r.start(), r.end()),
                None,
            );
        }
    }
    if let Some(t) = &s.step_timeout_s
        && !limits::TIMEOUT_S.contains(&t.value)
    {
        let r = limits::TIMEOUT_S;
        v.problem(
            &at(t, "step_timeout_s"),
            format!(
                "step_timeout_s {}: {} to {} seconds",
                t.value,
                r.start(),
                r.end()
            ),
            None,
        );
    }
    for c in &s.requires.config {
        if !limits::is_kconfig_symbol(&c.value) {
            v.problem(
                &at(c, "requires"),
                format!(
                    "`{}` is not a Kconfig symbol (CONFIG_NAME: capitals, digits, _)",
                    c.value
                ),
                None,
            );
        }
    }
    if let Some(k) = &s.requires.kernel
        && !limits::is_version(&k.value)
    {
        v.problem(
            &at(k, "requires"),
            format!("`{}` is not a kernel version (7.2, 7.2.13)", k.value),
            None,
        );
    }
}

/// `units:` and `programs:`: files beside the scenario, for the systemd image only.
fn image_files(s: &Scenario, v: &mut Validator) {
    let site = at::<String>;
    let systemd = s.image == crate::plan::GuestImage::Systemd;
    for u in &s.units {
        let at = site(u, "units");
        if !systemd {
            v.problem(
                &at,
                "`units` are installed by the systemd image only".into(),
                Some("add `image: systemd`".into()),
            );
        }
        v.file_beside(&at, &u.value);
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &s.programs {
        let at = site(p, "programs");
        if !systemd {
            v.problem(
                &at,
                "`programs` are installed by the systemd image only".into(),
                Some("add `image: systemd`, or build it with `exec: {source: ...}`".into()),
            );
        }
        v.c_source(&at, &p.value);
        if !names.insert(s.unit_program(&p.value).name()) {
            v.problem(
                &at,
                format!(
                    "two programs would both be /usr/local/bin/{}",
                    s.unit_program(&p.value).name()
                ),
                None,
            );
        }
    }
}

/// Every problem of a parsed scenario: the steps walked in order, each telling the validator what
/// it uses and creates.
pub fn validate(s: &Scenario, src: &str) -> Vec<Problem> {
    validate_for(s, src, luo_kernels::Arch::X86_64)
}

/// `validate` for a run on `arch`.
pub fn validate_for(s: &Scenario, src: &str, arch: luo_kernels::Arch) -> Vec<Problem> {
    let mut v = Validator::for_files_in(s.dir(), s.shell, s.image);
    v.arch = arch;
    image_files(s, &mut v);
    if s.steps.is_empty() {
        // An empty list has no span of its own: point at the top-level `steps:` key.
        let line = src
            .lines()
            .position(|l| {
                l.strip_prefix("steps")
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map_or(1, |i| i as u64 + 1);
        v.problems.push(Problem {
            line,
            column: 1,
            message: "a scenario needs at least one step".into(),
            label: "empty".into(),
            help: None,
        });
    }
    top_level(s, &mut v);
    for k in &s.kernels {
        let at = Site {
            line: k.referenced.line(),
            column: k.referenced.column(),
            keyword: "kernels",
        };
        let name = k.value.as_str();
        if luo_kernels::variant::find(name).is_ok() {
            v.problem(
                &at,
                format!("`{name}` is a kernel variant; a declared name must be another"),
                None,
            );
        } else if luo_kernels::spec::KernelSpec::looks_like(name)
            || !super::template::is_index_name(&name.replace('-', "_"))
        {
            v.problem(
                &at,
                format!("`{name}` cannot name a kernel"),
                Some("a declared name is a word such as `next` or `old`; sources are bound with --kernel-as".into()),
            );
        } else {
            v.declare_kernel(name);
        }
    }
    // Counted before anything is unrolled, so any count answers at once.
    let mut total = 0u64;
    for step in &s.steps {
        let n = step.value.unrolled();
        total = total.saturating_add(n);
        if total > MAX_UNROLLED_STEPS {
            let at = site(step);
            let message = if n > MAX_UNROLLED_STEPS {
                format!(
                    "this repeat unrolls to {n} steps; a scenario may have at most {MAX_UNROLLED_STEPS}"
                )
            } else {
                format!(
                    "with this step the scenario unrolls to more than {MAX_UNROLLED_STEPS} steps"
                )
            };
            v.problem(
                &at,
                message,
                Some("measure fewer objects, or make the loop's body smaller".into()),
            );
            return v.problems;
        }
    }
    check_all(&s.steps, &mut v, &Template::none());
    v.problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match parse("t.yaml", yaml) {
            Ok(_) => vec![],
            Err(e) => e
                .problems
                .iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect(),
        }
    }

    #[test]
    fn a_valid_scenario_has_no_problems() {
        let ok = "description: d\nsteps:\n  - open_device: {}\n  - create_session: {name: a}\n  - kexec: {}\n  - open_device: {}\n  - retrieve_session: {name: a}\n";
        assert_eq!(problems(ok), Vec::<String>::new());
    }

    #[test]
    fn nested_repeats_name_their_indices_and_expand_both() {
        let ok = "description: d\nsteps:\n  - open_device: {}\n  - repeat:\n      count: 3\n      steps:\n        - repeat:\n            count: 2\n            as: j\n            steps:\n              - create_session: {name: \"s-{i}-{j}\"}\n  - kexec: {}\n  - open_device: {}\n  - retrieve_session: {name: s-2-1}\n";
        assert_eq!(problems(ok), Vec::<String>::new());
        // The same index name twice cannot be told apart.
        let shadow = ok.replace("as: j", "as: i");
        assert!(
            problems(&shadow)[0].contains("already names its index `i`"),
            "{:?}",
            problems(&shadow)
        );
        // An index no repeat names.
        let unknown = ok.replace("s-{i}-{j}", "s-{k}");
        assert!(
            problems(&unknown)[0].starts_with("11:17 no enclosing repeat names its index `k`"),
            "{:?}",
            problems(&unknown)
        );
    }

    #[test]
    fn unrolling_is_counted_before_it_is_walked() {
        let huge = "description: d\nsteps:\n  - open_device: {}\n  - repeat:\n      count: 4000000000\n      steps:\n        - create_session: {name: \"s{i}\"}\n";
        let t = std::time::Instant::now();
        let p = problems(huge);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(p.iter().any(|m| m.contains("unroll")), "{p:?}");
    }

    #[test]
    fn invalid_utf8_is_located_at_its_first_bad_byte() {
        let e = decode("t.yaml", b"description: d\nsteps: [\xff]\n".to_vec()).unwrap_err();
        let p = &e.problems[0];
        assert_eq!((p.line, p.column), (2, 9));
        assert!(p.message.contains("0xff"));
    }

    #[test]
    fn kexec_kernels_are_variants_sources_or_declared_names() {
        let base = "description: d\nKERNELS\nsteps:\n  - kexec: {kernel: NAME}\n";
        let case = |kernels: &str, name: &str| {
            problems(&base.replace("KERNELS", kernels).replace("NAME", name))
        };
        assert!(case("", "magic-unique").is_empty());
        assert!(case("", "debian:7.2").is_empty());
        assert!(case("kernels: [next]", "next").is_empty());
        assert_eq!(
            case("", "debian:banana")[0],
            "4:5 not a kernel source: \"debian:banana\" (expected debian:7.3, debian:7.2.13, tree:PATH, git:PATH@REV or file:BZIMAGE)"
        );
        assert!(
            case("", "next")[0].starts_with("4:5 `next` is not a kernel variant"),
            "{:?}",
            case("", "next")
        );
        assert!(
            case("kernels: [stock]", "stock")[0].starts_with("2:11 `stock` is a kernel variant"),
            "{:?}",
            case("kernels: [stock]", "stock")
        );
    }

    #[test]
    fn unknown_seals_are_rejected() {
        let bad = "description: d\nsteps:\n  - create_memfd: {as: m, size: 4K}\n  - seal: {fd: m, seals: [grow, banana]}\n";
        assert_eq!(problems(bad), ["4:5 unknown seal `banana`"]);
    }
}
