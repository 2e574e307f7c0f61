//! The long fuzz run (ci/fuzz-scenarios MINUTES): scenario inputs and agent lines generated and
//! mutated as in tests/fuzz.rs, for as long as asked. Prints the cases tried, how they were
//! answered, the slowest, and every panic, hang (no answer within HANG_S) or unlocated rejection,
//! each kept in harness/tests/fuzz-corpus/ so tests/fuzz.rs replays it from then on. Exits 1 if
//! anything was found.

#[path = "../tests/support/fuzz.rs"]
mod fuzz;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An answer slower than this is a hang.
const HANG_S: u64 = 10;
/// `check` is promised to answer within a second; slower cases are counted and the slowest kept.
const SLOW: Duration = Duration::from_secs(1);

type Job = (Vec<u8>, Option<Vec<usize>>);
type Answer = (Result<(), String>, fuzz::Tally, Duration);

/// A thread that checks inputs; abandoned (and replaced) when one hangs.
fn worker() -> (mpsc::Sender<Job>, mpsc::Receiver<Answer>) {
    let (tx, rx) = mpsc::channel::<Job>();
    let (atx, arx) = mpsc::channel::<Answer>();
    std::thread::spawn(move || {
        for (input, chunks) in rx {
            let mut tally = fuzz::Tally::default();
            let t0 = Instant::now();
            let r = match &chunks {
                None => fuzz::check_scenario(&input, &mut tally),
                Some(c) => fuzz::check_protocol(&input, c),
            };
            if atx.send((r, tally, t0.elapsed())).is_err() {
                return;
            }
        }
    });
    (tx, arx)
}

fn main() {
    let minutes: f64 = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(1.0);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    // Quiet: a panic is caught, counted and printed with its input below.
    std::panic::set_hook(Box::new(|_| {}));
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let scenarios = fuzz::scenario_input(Arc::new(fuzz::scenario_seeds()));
    let protocol = fuzz::protocol_input(Arc::new(fuzz::protocol_seeds()));
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let (mut tx, mut rx) = worker();
    let mut tally = fuzz::Tally::default();
    let (mut scenario_cases, mut protocol_cases, mut slow, mut found) = (0u64, 0u64, 0u64, 0u64);
    let mut times: Vec<Duration> = Vec::new();
    let mut slowest: (Duration, Vec<u8>) = (Duration::ZERO, vec![]);
    let started = Instant::now();
    println!("fuzzing for {minutes} minute(s), seed {seed}");
    while Instant::now() < deadline {
        // Three scenario inputs to one protocol input: the scenario side is the larger grammar.
        let is_protocol = (scenario_cases + protocol_cases) % 4 == 3;
        let job: Job = if is_protocol {
            let (b, c) = protocol.new_tree(&mut runner).expect("generates").current();
            (b, Some(c))
        } else {
            (
                scenarios
                    .new_tree(&mut runner)
                    .expect("generates")
                    .current(),
                None,
            )
        };
        let kind = if is_protocol { "protocol" } else { "scenarios" };
        let input = job.0.clone();
        tx.send(job).expect("the worker is alive");
        match rx.recv_timeout(Duration::from_secs(HANG_S)) {
            Ok((r, t, took)) => {
                if is_protocol {
                    protocol_cases += 1;
                } else {
                    scenario_cases += 1;
                    tally.add(t);
                    times.push(took);
                    if took > SLOW {
                        slow += 1;
                    }
                    if took > slowest.0 {
                        slowest = (took, input.clone());
                    }
                }
                if let Err(e) = r {
                    found += 1;
                    let kept = fuzz::keep(kind, &input);
                    println!("FOUND ({kind}): {e}\n  kept as {}", kept.display());
                }
            }
            Err(_) => {
                found += 1;
                let kept = fuzz::keep(kind, &input);
                println!(
                    "HANG ({kind}): no answer within {HANG_S} s\n  kept as {}",
                    kept.display()
                );
                (tx, rx) = worker();
            }
        }
    }
    times.sort();
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "cases:               {} ({:.0}/s)",
        scenario_cases + protocol_cases,
        (scenario_cases + protocol_cases) as f64 / secs
    );
    println!(
        "  scenario inputs:   {scenario_cases} ({} accepted, {} rejected; {} problems located at 1:1)",
        tally.accepted, tally.rejected, tally.at_start
    );
    println!("  agent-line inputs: {protocol_cases}");
    println!(
        "check time:          median {:?}, p99 {:?}, max {:?}; {slow} over {SLOW:?}",
        pct(0.5),
        pct(0.99),
        slowest.0
    );
    let mut common: Vec<(&String, &u64)> = tally.at_start_messages.iter().collect();
    common.sort_by(|a, b| b.1.cmp(a.1));
    for (m, n) in common.iter().take(8) {
        println!("  at 1:1 {n:>8} x {m}");
    }
    println!("panics, hangs or unlocated rejections: {found}");
    if slowest.0 > SLOW {
        let kept = fuzz::keep("slow", &slowest.1);
        println!("slowest input kept as {}", kept.display());
    }
    std::process::exit(if found == 0 { 0 } else { 1 });
}
