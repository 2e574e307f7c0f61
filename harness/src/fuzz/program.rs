//! Programs: random sequences of LUO operations drawn from what the model says is possible at each
//! point (so most of them mean something: a retrieve names a session that was preserved, a
//! preserve names a live memfd), with colliding names and tokens and edge values on purpose; and a
//! program written as an ordinary scenario, each step carrying the model's prediction.

use super::model::{
    Bad, Call, Expect, KHO_CMDLINES, KHO_FILES, MAX_NAME, Model, Op, Request, SEALS,
};
use crate::scenario::steps::device::DEVICE;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How big a program may get.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Operations, kexecs not counted.
    pub max_ops: usize,
    pub max_kexecs: u32,
}

/// Session names: few, so that they collide; an empty one and ones at and past the limit.
fn name(rng: &mut StdRng) -> String {
    match rng.random_range(0..20) {
        0 => String::new(),
        1 => "n".repeat(MAX_NAME),
        2 => "x".repeat(MAX_NAME + 1),
        i => ["a", "b", "c"][i as usize % 3].to_string(),
    }
}

/// Tokens: few, so that they collide; 0 and the largest.
fn token(rng: &mut StdRng) -> u64 {
    match rng.random_range(0..12) {
        0 => 0,
        1 => u64::MAX,
        i => 1 + i % 3,
    }
}

/// One operation in this many is a batch of sessions or files.
const BATCH_ONE_IN: u32 = 120;

/// File positions: the start, inside a page, past the first, past the end of most files.
const OFFSETS: &[u64] = &[0, 1, 100, 4096, 70000, 1 << 33];

const SIZES: &[u64] = &[0, 1, 4096, 5000, 12288, 65536, 1 << 20];

fn pick<'a>(rng: &mut StdRng, v: &[&'a str]) -> Option<&'a str> {
    (!v.is_empty()).then(|| v[rng.random_range(0..v.len())])
}

/// A program from `seed`: the same seed, the same program.
pub fn generate(seed: u64, shape: Shape) -> Vec<Op> {
    grow(&mut StdRng::seed_from_u64(seed), Vec::new(), shape)
}

/// A program from a corpus entry: `base` up to a point drawn from `seed` (its closing checks
/// dropped), then new operations and kexecs within `shape`, so the fuzzer goes on from a state
/// that reached new code.
pub fn mutate(base: &[Op], seed: u64, shape: Shape) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut body = base.to_vec();
    while matches!(body.last(), Some(Op::Check { .. })) {
        body.pop();
    }
    let cut = rng.random_range(0..=body.len());
    body.truncate(cut);
    grow(&mut rng, body, shape)
}

/// `prefix` (what of it applies), then operations drawn from the model until the program has a
/// new length drawn within `shape`, then a check of every file there is.
fn grow(rng: &mut StdRng, prefix: Vec<Op>, shape: Shape) -> Vec<Op> {
    let mut m = Model::default();
    let mut ops = Vec::new();
    for op in prefix {
        if m.apply(&op).is_some() {
            ops.push(op);
        }
    }
    let had_kexecs = ops.iter().filter(|op| op.is_kexec()).count();
    let had = ops.len() - had_kexecs;
    let kexecs = rng.random_range(0..=shape.max_kexecs.saturating_sub(had_kexecs as u32));
    let len = rng.random_range(1..=shape.max_ops.saturating_sub(had).max(1));
    // New handles are numbered past the prefix's.
    let mut next = ops
        .iter()
        .filter_map(|op| op.opens()?.get(1..)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    let mut fresh = |p: &str| {
        next += 1;
        format!("{p}{next}")
    };
    // Where the kexecs go: after that many new operations, never first or last.
    let mut at: Vec<usize> = (0..kexecs)
        .filter(|_| len > 1)
        .map(|_| rng.random_range(1..len))
        .collect();
    at.sort();
    let mut done = 0;
    while done < len {
        if at.first() == Some(&done) {
            at.remove(0);
            // A kexec in four with KHO's parameters.
            let kexec = match rng.random_range(0..4) {
                0 => Op::KexecWith {
                    cmdline: KHO_CMDLINES[rng.random_range(0..KHO_CMDLINES.len())].into(),
                },
                _ => Op::Kexec,
            };
            m.apply(&kexec);
            ops.push(kexec);
            continue;
        }
        let Some(op) = one(rng, &m, &mut fresh) else {
            continue;
        };
        if m.apply(&op).is_some() {
            ops.push(op);
            done += 1;
        }
    }
    // End by looking at every file there is.
    for fd in m.memfds().into_iter().map(String::from).collect::<Vec<_>>() {
        ops.push(Op::Check { fd });
    }
    ops
}

/// What a live update does, in order: retrieve what was handed over, its files, preserve free
/// files. Chosen a third of the time, so programs get across kexecs with something to carry.
fn purposeful(rng: &mut StdRng, m: &Model, fresh: &mut impl FnMut(&str) -> String) -> Option<Op> {
    if let Some(name) = pick(rng, &m.waiting()) {
        return Some(Op::RetrieveSession {
            name: name.into(),
            handle: fresh("r"),
        });
    }
    for session in m.retrieved_sessions() {
        if let Some(&token) = m.unretrieved(session).first() {
            return Some(Op::RetrieveFd {
                session: session.into(),
                token,
                handle: fresh("f"),
            });
        }
    }
    let created = m.created_sessions();
    Some(Op::Preserve {
        session: pick(rng, &created)?.into(),
        fd: pick(rng, &m.free_memfds())?.into(),
        token: token(rng),
    })
}

fn one(rng: &mut StdRng, m: &Model, fresh: &mut impl FnMut(&str) -> String) -> Option<Op> {
    if rng.random_range(0..3) == 0
        && let Some(op) = purposeful(rng, m, fresh)
    {
        return Some(op);
    }
    let memfds = m.memfds();
    let created = m.created_sessions();
    let retrieved = m.retrieved_sessions();
    let sessions: Vec<&str> = created.iter().chain(&retrieved).copied().collect();
    // Rare: a batch costs a request per session or file, and a check per file at the end.
    if rng.random_range(0..BATCH_ONE_IN) == 0 {
        let count = [64, 130][rng.random_range(0..2)];
        return Some(match rng.random_range(0..2) {
            0 => Op::ManySessions {
                prefix: fresh("b"),
                count,
            },
            _ => Op::ManyFiles {
                session: pick(rng, &sessions)?.into(),
                prefix: fresh("b"),
                count,
                token: 1000 * rng.random_range(1..4),
                seed: rng.random_range(1..1000),
            },
        });
    }
    Some(match rng.random_range(0..25) {
        0 | 1 => Op::CreateSession {
            name: name(rng),
            handle: fresh("s"),
        },
        2 => Op::CreateMemfd {
            handle: fresh("m"),
            size: SIZES[rng.random_range(0..SIZES.len())],
            seed: rng.random_range(1..1000),
        },
        3 | 4 => {
            // Now and then a file no handler takes: /dev/null, a session's own fd.
            let others: Vec<&str> = m.nulls().into_iter().chain(sessions.clone()).collect();
            let fds = match rng.random_range(0..8) {
                0 => &others,
                _ => &memfds,
            };
            Op::Preserve {
                session: pick(rng, &sessions)?.into(),
                fd: pick(rng, fds)?.into(),
                token: token(rng),
            }
        }
        5 | 6 => {
            // Mostly a name the last kernel handed over.
            let incoming = m.incoming_names();
            let name = match pick(rng, &incoming) {
                Some(n) if rng.random_range(0..4) > 0 => n.to_string(),
                _ => name(rng),
            };
            Op::RetrieveSession {
                name,
                handle: fresh("r"),
            }
        }
        7 | 8 => {
            let session = pick(rng, &sessions)?;
            let held = m.tokens(session);
            let token = match held.get(rng.random_range(0..held.len().max(1))) {
                Some(t) if rng.random_range(0..4) > 0 => *t,
                _ => token(rng),
            };
            Op::RetrieveFd {
                session: session.into(),
                token,
                handle: fresh("f"),
            }
        }
        9 => Op::Finish {
            session: pick(rng, &sessions)?.into(),
        },
        10 => Op::GetName {
            session: pick(rng, &sessions)?.into(),
        },
        11 => {
            let dev = m.device_open().then_some(DEVICE);
            let all: Vec<&str> = sessions.iter().chain(&memfds).copied().chain(dev).collect();
            Op::Close {
                handle: pick(rng, &all)?.into(),
            }
        }
        12 => Op::Write {
            fd: pick(rng, &memfds)?.into(),
            seed: rng.random_range(1..1000),
        },
        13 => Op::Truncate {
            fd: pick(rng, &memfds)?.into(),
            size: SIZES[rng.random_range(0..SIZES.len())],
        },
        14 => Op::Seal {
            fd: pick(rng, &memfds)?.into(),
            seals: vec![SEALS[rng.random_range(0..SEALS.len())]],
        },
        16 => Op::OpenDevice,
        15 => {
            let targets: Vec<&str> = std::iter::once(DEVICE).chain(sessions).collect();
            let bads = [
                Bad::Unmapped,
                Bad::Short,
                Bad::LongTail,
                Bad::Reserved,
                Bad::BadFd,
            ];
            let bad = bads[rng.random_range(0..bads.len())];
            let call = match bad {
                Bad::BadFd => Call::PreserveFd,
                _ => Call::ALL[rng.random_range(0..Call::ALL.len())],
            };
            Op::Raw {
                handle: pick(rng, &targets)?.into(),
                call,
                bad,
            }
        }
        18 | 19 => unanswerable(rng, m, &sessions, &memfds)?,
        20 | 21 => {
            let all: Vec<&str> = sessions.iter().chain(&memfds).copied().collect();
            Op::Dup {
                handle: pick(rng, &all)?.into(),
                new_handle: fresh("d"),
            }
        }
        23 => Op::Seek {
            fd: pick(rng, &memfds)?.into(),
            offset: OFFSETS[rng.random_range(0..OFFSETS.len())],
        },
        24 => Op::OpenNull { handle: fresh("n") },
        22 => Op::ReadKho {
            file: KHO_FILES[rng.random_range(0..KHO_FILES.len())].into(),
        },
        _ => Op::Check {
            fd: pick(rng, &memfds)?.into(),
        },
    })
}

/// A valid request in read-only memory, mostly one the kernel carries out before it cannot
/// answer: a session handed over, a token the session holds.
fn unanswerable(rng: &mut StdRng, m: &Model, sessions: &[&str], memfds: &[&str]) -> Option<Op> {
    let on = |handle: &str, request| Op::Unanswerable {
        handle: handle.into(),
        request,
    };
    Some(match rng.random_range(0..6) {
        0 => on(DEVICE, Request::CreateSession { name: name(rng) }),
        1 => {
            let incoming = m.incoming_names();
            let name = match pick(rng, &incoming) {
                Some(n) if rng.random_range(0..4) > 0 => n.to_string(),
                _ => name(rng),
            };
            on(DEVICE, Request::RetrieveSession { name })
        }
        2 => on(
            pick(rng, sessions)?,
            Request::PreserveFd {
                fd: pick(rng, memfds)?.into(),
                token: token(rng),
            },
        ),
        3 => {
            let session = pick(rng, sessions)?;
            let held = m.tokens(session);
            let token = match held.get(rng.random_range(0..held.len().max(1))) {
                Some(t) => *t,
                None => token(rng),
            };
            on(session, Request::RetrieveFd { token })
        }
        4 => on(pick(rng, sessions)?, Request::Finish),
        _ => on(pick(rng, sessions)?, Request::GetName),
    })
}

/// A raw ioctl's `size:` and `len:`, and its `words:` and `memory:`, for what is wrong with it.
fn raw_argument(call: Call, bad: Bad) -> (String, String) {
    let (size, min) = call.sizes();
    match bad {
        Bad::Unmapped => (
            format!("size: {size}, len: {size}"),
            ", memory: unmapped".into(),
        ),
        Bad::Short => (format!("size: {}, len: {size}", min - 1), String::new()),
        Bad::LongTail => (
            format!("size: {}, len: {}", size + 8, size + 8),
            format!(", words: [[{}, 1]]", size + 4),
        ),
        Bad::Reserved => (
            format!("size: {size}, len: {size}"),
            ", words: [[4, 1]]".into(),
        ),
        Bad::BadFd => (
            format!("size: {size}, len: {size}"),
            ", words: [[4, 1000000]]".into(),
        ),
    }
}

/// An unanswerable request's `size:`, `len:`, `words:` and `fds:` (the struct's fields at their
/// offsets in include/uapi/linux/liveupdate.h: a name from byte 8, an fd at 4, a token at 8).
fn request_argument(r: &Request) -> String {
    let (size, _) = r.call().sizes();
    let mut words: Vec<(u32, u32)> = Vec::new();
    let mut fds = String::new();
    let mut put = |at: u32, bytes: &[u8]| {
        for (i, chunk) in bytes.chunks(4).enumerate() {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            let v = u32::from_le_bytes(w);
            if v != 0 {
                words.push((at + 4 * i as u32, v));
            }
        }
    };
    match r {
        Request::CreateSession { name } | Request::RetrieveSession { name } => {
            put(8, &name.as_bytes()[..name.len().min(64)]);
        }
        Request::PreserveFd { fd, token } => {
            fds = format!(", fds: [[4, {fd}]]");
            put(8, &token.to_le_bytes());
        }
        Request::RetrieveFd { token } => put(8, &token.to_le_bytes()),
        Request::Finish | Request::GetName => {}
    }
    let words = match words.is_empty() {
        true => String::new(),
        false => format!(
            ", words: [{}]",
            words
                .iter()
                .map(|(o, v)| format!("[{o}, {v:#x}]"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("size: {size}, len: {size}{fds}{words}, memory: read_only")
}

/// YAML's double-quoted scalar is JSON's string.
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The program as a scenario: one step per operation (a kexec also opens the device again; a
/// check is a `verify` of the contents and an `observe` of size and seals), each with the
/// model's expectation. Operations that no longer apply (a shrunk program) are left out; the
/// operations kept are returned beside the text.
pub fn scenario(ops: &[Op], description: &str) -> (String, Vec<Op>) {
    let mut m = Model::default();
    let mut kept = Vec::new();
    let mut y = String::new();
    y.push_str("description: >\n");
    for l in textwrap::wrap(description, 96) {
        y.push_str(&format!("  {l}\n"));
    }
    y.push_str("steps:\n  - open_device: {}\n");
    for op in ops {
        let Some(e) = m.apply(op) else { continue };
        kept.push(op.clone());
        let expect = match e {
            Expect::Ok => String::new(),
            Expect::Errno(e) => format!(", expect: {e}"),
        };
        let line = match op {
            Op::CreateSession { name, handle } => {
                format!(
                    "create_session: {{name: {}, as: {handle}{expect}}}",
                    quote(name)
                )
            }
            Op::RetrieveSession { name, handle } => {
                format!(
                    "retrieve_session: {{name: {}, as: {handle}{expect}}}",
                    quote(name)
                )
            }
            Op::Close { handle } => format!("close: {{handle: {handle}{expect}}}"),
            Op::Finish { session } => format!("finish: {{session: {session}{expect}}}"),
            Op::GetName { session } => format!("get_name: {{session: {session}{expect}}}"),
            Op::CreateMemfd { handle, size, seed } if *size > 0 => {
                format!("create_memfd: {{as: {handle}, size: {size}, seed: {seed}{expect}}}")
            }
            Op::CreateMemfd { handle, size, .. } => {
                format!("create_memfd: {{as: {handle}, size: {size}{expect}}}")
            }
            Op::Write { fd, seed } => format!("write_pattern: {{fd: {fd}, seed: {seed}{expect}}}"),
            Op::Truncate { fd, size } => format!("truncate: {{fd: {fd}, size: {size}{expect}}}"),
            Op::OpenNull { handle } => {
                format!("open_path: {{path: /dev/null, as: {handle}{expect}}}")
            }
            Op::Seek { fd, offset } => format!("seek: {{fd: {fd}, offset: {offset}{expect}}}"),
            Op::Seal { fd, seals } => {
                format!("seal: {{fd: {fd}, seals: [{}]{expect}}}", seals.join(", "))
            }
            Op::Preserve { session, fd, token } => {
                format!("preserve: {{session: {session}, fd: {fd}, token: {token}{expect}}}")
            }
            Op::RetrieveFd {
                session,
                token,
                handle,
            } => {
                format!("retrieve_fd: {{session: {session}, token: {token}, as: {handle}{expect}}}")
            }
            Op::Check { fd } => {
                // A check changes nothing: the file is as the model has it now.
                let f = m.file(fd).expect("a check applies to a memfd");
                let mut s = String::new();
                if f.pattern_len > 0 {
                    s.push_str(&format!(
                        "verify: {{fd: {fd}, seed: {}, len: {}}}\n  - ",
                        f.seed, f.pattern_len
                    ));
                }
                let seals: Vec<&str> = f.seals.iter().copied().collect();
                s.push_str(&format!(
                    "observe: {{handle: {fd}, size: {}, position: {}, seals: [{}]}}",
                    f.size,
                    f.pos,
                    seals.join(", ")
                ));
                s
            }
            Op::Kexec => "kexec: {}\n  - open_device: {}".to_string(),
            Op::KexecWith { cmdline } => format!(
                "kexec: {{cmdline: {}}}\n  - open_device: {{}}",
                quote(cmdline)
            ),
            Op::Dup { handle, new_handle } => {
                format!("dup: {{handle: {handle}, as: {new_handle}{expect}}}")
            }
            Op::ReadKho { file } => {
                format!("read_file: {{path: /sys/kernel/debug/kho/out/{file}, contains: [\"0x\"]}}")
            }
            Op::OpenDevice if e == Expect::Ok => "open_device: {}".to_string(),
            // A name no generated handle has (those are a letter and a number).
            Op::OpenDevice => format!("open_device: {{as: busy{expect}}}"),
            Op::ManySessions { prefix, count } => format!(
                "repeat:\n      count: {count}\n      steps:\n        - create_session: \
                 {{name: \"{prefix}-{{i}}\", as: \"{prefix}-{{i}}\"{expect}}}"
            ),
            Op::ManyFiles {
                session,
                prefix,
                count,
                token,
                seed,
            } => format!(
                "repeat:\n      count: {count}\n      steps:\n        - create_memfd: \
                 {{as: \"{prefix}-{{i}}\", size: 4096, seed: {seed}}}\n        - preserve: \
                 {{session: {session}, fd: \"{prefix}-{{i}}\", token: {token}{expect}}}"
            ),
            Op::Unanswerable { handle, request } => format!(
                "raw_ioctl: {{handle: {handle}, nr: {:#04x}, {}{expect}}}",
                request.call().nr(),
                request_argument(request)
            ),
            Op::Raw { handle, call, bad } => {
                let (arg, rest) = raw_argument(*call, *bad);
                format!(
                    "raw_ioctl: {{handle: {handle}, nr: {:#04x}, {arg}{rest}{expect}}}",
                    call.nr()
                )
            }
        };
        y.push_str(&format!("  - {line}\n"));
    }
    (y, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        max_ops: 30,
        max_kexecs: 3,
    };

    #[test]
    fn the_same_seed_is_the_same_program_and_another_seed_another() {
        assert_eq!(generate(7, SHAPE), generate(7, SHAPE));
        assert_ne!(generate(7, SHAPE), generate(8, SHAPE));
    }

    #[test]
    fn every_generated_program_is_a_valid_scenario() {
        for seed in 0..300 {
            let ops = generate(seed, SHAPE);
            let (yaml, kept) = scenario(&ops, "fuzz");
            assert_eq!(kept, ops, "a generated program keeps every operation");
            let s = crate::scenario::parse("fuzz.yaml", &yaml)
                .unwrap_or_else(|e| panic!("seed {seed}: {e:?}\n{yaml}"));
            let problems = crate::scenario::load::validate(&s, &yaml);
            assert!(problems.is_empty(), "seed {seed}: {problems:?}\n{yaml}");
        }
    }

    #[test]
    fn programs_reach_every_operation_and_the_next_kernel() {
        let mut seen = std::collections::BTreeSet::new();
        let mut retrieved_after_kexec = 0;
        for seed in 0..200 {
            let ops = generate(seed, SHAPE);
            for op in &ops {
                seen.insert(
                    format!("{op:?}")
                        .split([' ', '{'])
                        .next()
                        .unwrap()
                        .to_string(),
                );
            }
            let (yaml, _) = scenario(&ops, "fuzz");
            if yaml.contains("retrieve_fd") && !yaml.contains("retrieve_fd: {session: s") {
                retrieved_after_kexec += 1;
            }
        }
        let every = [
            "Check",
            "Close",
            "CreateMemfd",
            "CreateSession",
            "Finish",
            "GetName",
            "Kexec",
            "OpenDevice",
            "Preserve",
            "Raw",
            "RetrieveFd",
            "RetrieveSession",
            "Seal",
            "Truncate",
            "Unanswerable",
            "Write",
            "ManySessions",
            "ManyFiles",
            "KexecWith",
            "Dup",
            "ReadKho",
            "Seek",
            "OpenNull",
        ];
        assert_eq!(
            seen,
            every.iter().map(|s| s.to_string()).collect(),
            "{seen:?}"
        );
        assert!(retrieved_after_kexec > 12, "{retrieved_after_kexec}");
    }

    #[test]
    fn the_device_closed_and_opened_again_is_a_valid_scenario_and_a_second_opener_is_ebusy() {
        let create = |h: &str| Op::CreateSession {
            name: "a".into(),
            handle: h.into(),
        };
        let ops = [
            Op::Close {
                handle: DEVICE.into(),
            },
            create("s1"),
            Op::OpenDevice,
            Op::OpenDevice,
            create("s2"),
        ];
        let (yaml, kept) = scenario(&ops, "x");
        assert_eq!(
            kept,
            [&ops[..1], &ops[2..]].concat(),
            "no session without the device"
        );
        assert!(
            yaml.contains("open_device: {as: busy, expect: EBUSY}"),
            "{yaml}"
        );
        let s = crate::scenario::parse("x.yaml", &yaml).unwrap();
        let problems = crate::scenario::load::validate(&s, &yaml);
        assert!(problems.is_empty(), "{problems:?}\n{yaml}");
    }

    #[test]
    fn a_removed_creation_drops_what_used_it() {
        let ops = [
            Op::CreateSession {
                name: "a".into(),
                handle: "s1".into(),
            },
            Op::CreateMemfd {
                handle: "m2".into(),
                size: 4096,
                seed: 3,
            },
            Op::Preserve {
                session: "s1".into(),
                fd: "m2".into(),
                token: 1,
            },
        ];
        let (_, kept) = scenario(&ops[1..], "x");
        assert_eq!(kept, ops[1..2], "the preserve lost its session");
    }
}
