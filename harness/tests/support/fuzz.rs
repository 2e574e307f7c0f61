//! Fuzzing the parsers: what an input is made of, and what must hold for every input. Shared by the
//! short property run in CI (tests/fuzz.rs) and the long one (examples/fuzz_scenarios.rs, run by
//! ci/fuzz-scenarios MINUTES).
//!
//! Scenario inputs are the files in scenarios/ (valid and invalid) and the corpus of inputs that
//! once broke something, changed in two ways: structurally (the YAML tree: scalars swapped for
//! hostile ones, steps duplicated, dropped, moved and wrapped in repeats, keys renamed) and as bytes
//! (flips, insertions of YAML punctuation, deletions, splices of another file). Protocol inputs are
//! real agent transcript lines changed as bytes, fed through the line splitter in random chunks.
//!
//! What must hold: nothing panics; a rejected scenario names a line and column inside the file;
//! the splitter gives back exactly the lines it was fed; a message that decodes re-encodes to a
//! line that decodes to the same message.

#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The checkout, as the running test sees it (remapped when run from a nextest archive).
pub fn project() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
}

/// Inputs that once panicked, hung or went unlocated: replayed by tests/fuzz.rs for ever.
pub fn corpus_dir(kind: &str) -> PathBuf {
    project().join("harness/tests/fuzz-corpus").join(kind)
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    files_ending(dir, "")
}

fn files_ending(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(ext))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// The scenario files to start from.
pub fn scenario_seeds() -> Vec<Vec<u8>> {
    let mut seeds = files_in(&project().join("scenarios"));
    seeds.extend(files_in(&project().join("scenarios/invalid")));
    seeds.extend(files_in(&project().join("harness/tests/fixtures")));
    seeds.extend(files_in(&corpus_dir("scenarios")));
    assert!(seeds.len() > 20, "the scenario seeds must be found");
    seeds
}

/// Real agent lines, both directions (harness/tests/fuzz-corpus/protocol/*.jsonl).
pub fn protocol_seeds() -> Vec<String> {
    let seeds: Vec<String> = files_ending(&corpus_dir("protocol"), ".jsonl")
        .iter()
        .flat_map(|f| {
            String::from_utf8_lossy(f)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect();
    assert!(seeds.len() > 20, "the protocol seeds must be found");
    seeds
}

// ---------------------------------------------------------------------------------------------
// Changing inputs

/// Scalars that have broken parsers and validators somewhere.
const HOSTILE: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "1",
    "2",
    "63",
    "64",
    "4096",
    "4097",
    "2000",
    "10000",
    "10001",
    "4000000000",
    "18446744073709551615",
    "18446744073709551616",
    "1e999",
    "-0",
    "0x10",
    "0o7",
    "64K",
    "1M",
    "1G",
    "2G",
    "16E",
    "99999999999T",
    "1.5",
    "NaN",
    ".inf",
    "~",
    "null",
    "true",
    "no",
    "{{i}}",
    "{{ i }}",
    "{{i",
    "{{j + 1}}",
    "s{{i}}",
    "../x",
    "../../etc/passwd",
    "./prog",
    "/bin/sh",
    "/selftests/luo_kexec_simple",
    "CONFIG_LIVEUPDATE",
    "config_x",
    "7.2",
    "7.3.4",
    "banana",
    "EINVAL",
    "ENOENT",
    "EBANANA",
    "F_SEAL_WRITE",
    "F_SEAL_BANANA",
    "é",
    "\u{202e}",
    "a\tb",
    "x\ny",
    "\\",
    "'",
    "\"",
    "#",
    "&a",
    "*a",
    "<<",
];

/// YAML fragments for byte insertion.
const PUNCTUATION: &[&str] = &[
    ":",
    ": ",
    "- ",
    "-",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "? ",
    "|",
    ">",
    "'",
    "\"",
    "#",
    "\n",
    "\n  ",
    "\t",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "<<: *a\n",
    "\u{feff}",
    "\r\n",
    "\0",
    "{{",
    "}}",
    "\u{ffff}",
];

#[derive(Debug, Clone)]
pub enum TreeOp {
    /// Replace the n-th scalar with a hostile one.
    Scalar(usize, usize),
    /// Replace the n-th scalar with a number.
    Number(usize, i64),
    /// Duplicate, drop or move the n-th element of the n-th list.
    Duplicate(usize, usize),
    Drop(usize, usize),
    Move(usize, usize, usize),
    /// Wrap a run of the n-th list's elements in a repeat with this count.
    Repeat(usize, usize, usize, u64),
    /// Rename the n-th key to a known or hostile one.
    Rename(usize, usize),
    /// Replace the n-th node with a copy of the m-th.
    Graft(usize, usize),
}

#[derive(Debug, Clone)]
pub enum ByteOp {
    Flip(usize, u8),
    Insert(usize, usize),
    InsertByte(usize, u8),
    Delete(usize, usize),
    DuplicateRange(usize, usize),
    Splice(usize, usize, usize),
}

fn tree_op() -> impl Strategy<Value = TreeOp> {
    let n = any::<usize>;
    prop_oneof![
        (n(), 0..HOSTILE.len()).prop_map(|(a, b)| TreeOp::Scalar(a, b)),
        (
            n(),
            prop_oneof![
                Just(0i64),
                Just(-1),
                Just(i64::MAX),
                Just(1 << 40),
                any::<i64>()
            ]
        )
            .prop_map(|(a, b)| TreeOp::Number(a, b)),
        (n(), n()).prop_map(|(a, b)| TreeOp::Duplicate(a, b)),
        (n(), n()).prop_map(|(a, b)| TreeOp::Drop(a, b)),
        (n(), n(), n()).prop_map(|(a, b, c)| TreeOp::Move(a, b, c)),
        (
            n(),
            n(),
            1..6usize,
            prop_oneof![
                Just(0u64),
                Just(1),
                Just(2000),
                Just(10_000),
                Just(10_001),
                Just(4_000_000_000),
                Just(u64::MAX),
                0..50u64
            ]
        )
            .prop_map(|(a, b, c, d)| TreeOp::Repeat(a, b, c, d)),
        (n(), n()).prop_map(|(a, b)| TreeOp::Rename(a, b)),
        (n(), n()).prop_map(|(a, b)| TreeOp::Graft(a, b)),
    ]
}

fn byte_op() -> impl Strategy<Value = ByteOp> {
    let n = any::<usize>;
    prop_oneof![
        (n(), any::<u8>()).prop_map(|(a, b)| ByteOp::Flip(a, b)),
        (n(), 0..PUNCTUATION.len()).prop_map(|(a, b)| ByteOp::Insert(a, b)),
        (n(), any::<u8>()).prop_map(|(a, b)| ByteOp::InsertByte(a, b)),
        (n(), 0..64usize).prop_map(|(a, b)| ByteOp::Delete(a, b)),
        (n(), 0..256usize).prop_map(|(a, b)| ByteOp::DuplicateRange(a, b)),
        (n(), n(), 0..512usize).prop_map(|(a, b, c)| ByteOp::Splice(a, b, c)),
    ]
}

/// Every node of a tree, preorder, as paths of child indices.
fn nodes(v: &Value, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    out.push(path.clone());
    let children: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => o.values().collect(),
        _ => vec![],
    };
    for (i, c) in children.into_iter().enumerate() {
        path.push(i);
        nodes(c, path, out);
        path.pop();
    }
}

fn at<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    path.iter().fold(v, |v, &i| match v {
        Value::Array(a) => &mut a[i],
        Value::Object(o) => o.values_mut().nth(i).expect("path from nodes()"),
        _ => unreachable!("path from nodes()"),
    })
}

fn pick<T: Clone>(all: &[T], n: usize, keep: impl Fn(&T) -> bool) -> Option<T> {
    let some: Vec<&T> = all.iter().filter(|x| keep(x)).collect();
    (!some.is_empty()).then(|| some[n % some.len()].clone())
}

const KEYS: &[&str] = &[
    "steps",
    "name",
    "description",
    "memory_mib",
    "step_timeout_s",
    "requires",
    "kernels",
    "repeat",
    "count",
    "as",
    "index",
    "session",
    "fd",
    "token",
    "seed",
    "size",
    "expect",
    "kernel",
    "cmdline",
    "path",
    "args",
    "timeout_s",
    "background",
    "label",
    "handle",
    "seals",
    "config",
    "variant",
    "create_session",
    "create_memfd",
    "preserve",
    "kexec",
    "retrieve_fd",
    "exec",
    "raw_ioctl",
    "stepz",
    "",
];

/// The `n`th of `arrays` if it has elements, with its path and `i` taken as an index into it.
fn nonempty_array<'v>(
    v: &'v mut Value,
    arrays: &[Vec<usize>],
    n: usize,
    i: usize,
) -> Option<(Vec<usize>, &'v mut Vec<Value>, usize)> {
    let p = pick(arrays, n, |_| true)?;
    match at(v, &p) {
        Value::Array(a) if !a.is_empty() => {
            let i = i % a.len();
            Some((p, a, i))
        }
        _ => None,
    }
}

pub fn apply_tree(v: &mut Value, op: &TreeOp) {
    let mut all = Vec::new();
    nodes(v, &mut vec![], &mut all);
    let kind = |v: &mut Value, p: &Vec<usize>| -> u8 {
        match at(v, p) {
            Value::Array(_) => 1,
            Value::Object(_) => 2,
            _ => 0,
        }
    };
    let of_kind = |v: &mut Value, k: u8| -> Vec<Vec<usize>> {
        all.iter().filter(|p| kind(v, p) == k).cloned().collect()
    };
    match *op {
        TreeOp::Scalar(n, h) => {
            if let Some(p) = pick(&of_kind(v, 0), n, |_| true) {
                *at(v, &p) = Value::String(HOSTILE[h].into());
            }
        }
        TreeOp::Number(n, x) => {
            if let Some(p) = pick(&of_kind(v, 0), n, |_| true) {
                *at(v, &p) = x.into();
            }
        }
        TreeOp::Duplicate(n, i) | TreeOp::Drop(n, i) | TreeOp::Move(n, i, _) => {
            let arrays = of_kind(v, 1);
            let Some((_, a, i)) = nonempty_array(v, &arrays, n, i) else {
                return;
            };
            match *op {
                TreeOp::Duplicate(..) => a.insert(i, a[i].clone()),
                TreeOp::Drop(..) => drop(a.remove(i)),
                TreeOp::Move(_, _, j) => {
                    let x = a.remove(i);
                    a.insert(j % (a.len() + 1), x);
                }
                _ => unreachable!(),
            }
        }
        TreeOp::Repeat(n, i, len, count) => {
            let arrays = of_kind(v, 1);
            let Some((p, a, i)) = nonempty_array(v, &arrays, n, i) else {
                return;
            };
            let end = (i + len).min(a.len());
            let inner: Vec<Value> = a.drain(i..end).collect();
            let index = format!("i{}", p.len());
            a.insert(
                i,
                serde_json::json!({"repeat": {"count": count, "index": index, "steps": inner}}),
            );
        }
        TreeOp::Rename(n, k) => {
            let Some(p) = pick(&of_kind(v, 2), n, |_| true) else {
                return;
            };
            let Value::Object(o) = at(v, &p) else { return };
            if o.is_empty() {
                return;
            }
            let old = o.keys().nth(k % o.len()).cloned().expect("non-empty");
            let new = if k % 3 == 0 {
                HOSTILE[k % HOSTILE.len()]
            } else {
                KEYS[k % KEYS.len()]
            };
            if let Some(val) = o.remove(&old) {
                o.insert(new.to_string(), val);
            }
        }
        TreeOp::Graft(n, m) => {
            let from = all[m % all.len()].clone();
            let to = all[n % all.len()].clone();
            let copy = at(v, &from).clone();
            *at(v, &to) = copy;
        }
    }
}

pub fn apply_bytes(b: &mut Vec<u8>, op: &ByteOp, other: &[u8]) {
    let len = b.len();
    let pos = |n: usize| if len == 0 { 0 } else { n % (len + 1) };
    match *op {
        ByteOp::Flip(n, x) if len > 0 => b[n % len] ^= x.max(1),
        ByteOp::Flip(..) => {}
        ByteOp::Insert(n, k) => {
            let at = pos(n);
            b.splice(at..at, PUNCTUATION[k].bytes());
        }
        ByteOp::InsertByte(n, x) => b.insert(pos(n), x),
        ByteOp::Delete(n, k) => {
            let at = pos(n);
            b.drain(at..(at + k).min(len));
        }
        ByteOp::DuplicateRange(n, k) => {
            let at = pos(n);
            let piece: Vec<u8> = b[at..(at + k).min(len)].to_vec();
            b.splice(at..at, piece);
        }
        ByteOp::Splice(n, m, k) if !other.is_empty() => {
            let from = m % other.len();
            let piece = &other[from..(from + k).min(other.len())];
            let at = pos(n);
            b.splice(at..at, piece.iter().copied());
        }
        ByteOp::Splice(..) => {}
    }
}

/// A YAML tree from a seed, if it is YAML at all.
fn tree(seed: &[u8]) -> Option<Value> {
    serde_saphyr::from_str(std::str::from_utf8(seed).ok()?).ok()
}

/// One scenario input: which seed, the tree changes, the byte changes, and whether it is raw bytes.
pub fn scenario_input(seeds: std::sync::Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    prop_oneof![
        // Structured: a seed's tree changed, rendered back to YAML.
        4 => (0..n, prop::collection::vec(tree_op(), 1..8)).prop_map({
            let seeds = seeds.clone();
            move |(i, ops)| structured(&seeds[i], &ops)
        }),
        // Bytes of a seed changed.
        4 => (0..n, 0..n, prop::collection::vec(byte_op(), 1..8)).prop_map({
            let seeds = seeds.clone();
            move |(i, j, ops)| {
                let mut b = seeds[i].clone();
                for op in &ops {
                    apply_bytes(&mut b, op, &seeds[j]);
                }
                b
            }
        }),
        // Both.
        2 => (0..n, prop::collection::vec(tree_op(), 1..4), prop::collection::vec(byte_op(), 1..4))
            .prop_map({
                let seeds = seeds.clone();
                move |(i, t, ops)| {
                    let mut b = structured(&seeds[i], &t);
                    for op in &ops {
                        apply_bytes(&mut b, op, &seeds[i]);
                    }
                    b
                }
            }),
        // Anything at all.
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

fn structured(seed: &[u8], ops: &[TreeOp]) -> Vec<u8> {
    match tree(seed) {
        Some(mut v) => {
            for op in ops {
                apply_tree(&mut v, op);
            }
            serde_saphyr::to_string(&v)
                .map(String::into_bytes)
                .unwrap_or_else(|_| seed.to_vec())
        }
        None => seed.to_vec(),
    }
}

/// A protocol input: a real line (or two joined) changed as bytes, and how to chunk it.
pub fn protocol_input(
    seeds: std::sync::Arc<Vec<String>>,
) -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let n = seeds.len();
    (
        prop::collection::vec(0..n, 1..4),
        prop::collection::vec(byte_op(), 0..6),
        prop::collection::vec(1..64usize, 1..16),
    )
        .prop_map(move |(lines, ops, chunks)| {
            let mut b: Vec<u8> = lines
                .iter()
                .flat_map(|&i| format!("{}\n", seeds[i]).into_bytes())
                .collect();
            let other = seeds[lines[0]].as_bytes().to_vec();
            for op in &ops {
                apply_bytes(&mut b, op, &other);
            }
            (b, chunks)
        })
}

// ---------------------------------------------------------------------------------------------
// What must hold

#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub accepted: u64,
    pub rejected: u64,
    /// Rejections located at 1:1 (the start: right for some inputs, a fallback for others), by
    /// the start of their message.
    pub at_start: u64,
    pub at_start_messages: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.at_start += other.at_start;
        for (m, n) in other.at_start_messages {
            *self.at_start_messages.entry(m).or_default() += n;
        }
    }
}

/// Parses and validates one scenario input as `check` does. `Err` is a broken property.
pub fn check_scenario(input: &[u8], tally: &mut Tally) -> Result<(), String> {
    let got = catch_unwind(AssertUnwindSafe(|| {
        luo_harness::scenario::from_bytes("fuzz.yaml", input.to_vec())
    }));
    let result = match got {
        Ok(r) => r,
        Err(p) => return Err(format!("panicked: {}", panic_message(&p))),
    };
    match result {
        Ok(_) => tally.accepted += 1,
        Err(invalid) => {
            tally.rejected += 1;
            if invalid.problems.is_empty() {
                return Err("rejected with no problem named".into());
            }
            let text = String::from_utf8_lossy(input);
            let lines = text.lines().count().max(1) as u64;
            for p in &invalid.problems {
                if p.line < 1 || p.column < 1 || p.line > lines + 1 || p.message.trim().is_empty() {
                    return Err(format!(
                        "a problem outside the file ({} lines): {}:{}: {:?}",
                        lines, p.line, p.column, p.message
                    ));
                }
                if (p.line, p.column) == (1, 1) {
                    tally.at_start += 1;
                    let m: String = p.message.chars().take(60).collect();
                    *tally.at_start_messages.entry(m).or_default() += 1;
                }
            }
            // Rendering the diagnostic (what the CLI prints) must not panic either.
            let rendered = catch_unwind(AssertUnwindSafe(|| {
                format!("{:?}", miette::Report::new(invalid))
            }));
            if let Err(p) = rendered {
                return Err(format!("rendering panicked: {}", panic_message(&p)));
            }
        }
    }
    Ok(())
}

/// Feeds `input` through the agent-line splitter in `chunks`, decodes every line as each message
/// type, and re-encodes what decodes. `Err` is a broken property.
pub fn check_protocol(input: &[u8], chunks: &[usize]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| protocol_properties(input, chunks)))
        .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&p))))
}

fn protocol_properties(input: &[u8], chunks: &[usize]) -> Result<(), String> {
    use luo_harness::guest::link::{Lines, LinkError};
    const MAX: usize = 200;
    let mut lines = Lines::new(MAX);
    let mut got: Vec<Result<String, String>> = Vec::new();
    let mut rest = input;
    let mut k = 0;
    while !rest.is_empty() {
        let chunk = &rest[..chunks[k % chunks.len()].min(rest.len())];
        k += 1;
        let mut fed = 0;
        while fed < chunk.len() {
            let (taken, line) = lines.feed(&chunk[fed..]);
            if taken == 0 {
                return Err("the splitter took nothing".into());
            }
            fed += taken;
            if let Some(l) = line {
                got.push(l.map_err(|e| match e {
                    LinkError::TooLong => "too long".to_string(),
                    other => other.to_string(),
                }));
            }
        }
        rest = &rest[chunk.len()..];
    }
    // What it must have given: every newline-terminated line, UTF-8 and within the limit. A line
    // that went past the limit in some chunk is an error and the link is given up (no comparison
    // after it: the real reader stops there).
    let mut expected = Vec::new();
    for piece in input.split_inclusive(|b| *b == b'\n') {
        if !piece.ends_with(b"\n") {
            break;
        }
        expected.push(piece);
    }
    for (i, want) in expected.iter().enumerate() {
        let Some(g) = got.get(i) else {
            return Err(format!("line {i} was never given"));
        };
        match g {
            Err(e) if e == "too long" => {
                if want.len() <= MAX + 1 {
                    return Err(format!(
                        "line {i} ({} bytes) refused as too long",
                        want.len()
                    ));
                }
                return Ok(());
            }
            Err(e) => {
                if std::str::from_utf8(want).is_ok() {
                    return Err(format!("line {i}: {e}, but it is UTF-8"));
                }
            }
            Ok(line) => {
                if line.as_bytes() != *want {
                    return Err(format!("line {i} came back as {line:?}"));
                }
                round_trips(line)?;
            }
        }
    }
    Ok(())
}

/// A line that decodes as a message re-encodes to one that decodes to the same encoding.
fn round_trips(line: &str) -> Result<(), String> {
    fn one<T: serde::de::DeserializeOwned + serde::Serialize>(line: &str) -> Result<(), String> {
        if let Ok(msg) = luo_protocol::from_line::<T>(line) {
            let again = luo_protocol::to_line(&msg);
            let back: T = luo_protocol::from_line(&again)
                .map_err(|e| format!("{again:?} does not decode: {e}"))?;
            if luo_protocol::to_line(&back) != again {
                return Err(format!("{line:?} does not round-trip"));
            }
        }
        Ok(())
    }
    one::<luo_protocol::Envelope>(line)?;
    one::<luo_protocol::Response>(line)?;
    one::<luo_protocol::Hello>(line)
}

pub fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Keeps an input that broke a property in the corpus, named by its hash; returns the path.
pub fn keep(kind: &str, input: &[u8]) -> PathBuf {
    use sha2::Digest;
    let dir = corpus_dir(kind);
    let _ = std::fs::create_dir_all(&dir);
    let ext = if kind == "protocol" { "bin" } else { "yaml" };
    let name = hex::encode(&sha2::Sha256::digest(input)[..8]);
    let path = dir.join(format!("found-{name}.{ext}"));
    let _ = std::fs::write(&path, input);
    path
}
